"""Stable-Baselines3 adapter of the reward path: a `VecEnvWrapper`.

SB3 VecEnvs reset inside `step`: for a finished env the returned obs is already the reset obs; the
true final obs is `infos[i]["terminal_observation"]` and `infos[i]["TimeLimit.truncated"]` marks a
time limit (PPO bootstraps there, so it is kept). Frames come from each sub-env's
`FrameCapture` (step info for s', `reset_infos` for the new episode's first frame).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from embodied.rewards.base import Obs, RewardError, RewardModel, TransitionBatch, obs_take
from embodied.rewards.pipeline import RewardPipeline
from embodied.rewards.shaping import Shaper


class SB3RewardWrapper(VecEnvWrapper):
    """Scores every SB3 vector step with a reward model and/or potential shaping.

    Info keys added per env: `env_reward`, `shaping`, `reward_components` and, when an episode
    ends, `reward_episode` (env return, shaped return, shaping return and residual, length).
    """

    def __init__(self, venv: VecEnv, reward: RewardModel | None = None, shaper: Shaper | None = None) -> None:
        super().__init__(venv)
        self.pipeline = RewardPipeline(reward, shaper, num_envs=venv.num_envs)
        self._obs: Obs | None = None
        self._actions: np.ndarray | None = None

    def _frames(self, infos: list[dict], idx: np.ndarray) -> dict[str, np.ndarray] | None:
        cams = self.pipeline.requires.cameras
        if not cams:
            return None
        try:
            return {c: np.stack([infos[i]["frames"][c] for i in idx]) for c in cams}
        except KeyError:
            raise RewardError(
                f"reward needs frames from cameras {list(cams)}; build the sub-envs with frames={list(cams)}"
            ) from None

    def reset(self) -> Obs:
        obs = self.venv.reset()
        idx = np.arange(self.num_envs)
        self.pipeline.begin(idx, obs, self._frames(self.venv.reset_infos, idx))
        self._obs = obs
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)
        self.venv.step_async(actions)

    def step_wait(self) -> tuple[Obs, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        obs, env_reward, dones, infos = self.venv.step_wait()
        n = self.num_envs
        dones = np.asarray(dones, dtype=bool)
        truncated = np.array([bool(info.get("TimeLimit.truncated", False)) for info in infos])
        terminated = dones & ~truncated
        done_idx = np.flatnonzero(dones)
        next_obs = _with_terminal(obs, infos, done_idx)
        all_idx = np.arange(n)
        batch = TransitionBatch(
            obs=self._obs,
            action=self._actions,
            next_obs=next_obs,
            terminated=terminated,
            truncated=truncated,
            env_reward=np.asarray(env_reward, dtype=np.float64),
            infos=infos,
            frames=self._frames(infos, all_idx),
        )
        starts = (
            (done_idx, obs_take(obs, done_idx), self._frames(self.venv.reset_infos, done_idx))
            if done_idx.size
            else None
        )
        out = self.pipeline.step(None, batch, starts)
        for i, info in enumerate(infos):
            info["env_reward"] = float(env_reward[i])
            info["shaping"] = float(out.shaping[i])
            info["reward_components"] = {k: float(v[i]) for k, v in out.components.items()}
        for i, stats in out.episodes:
            infos[i]["reward_episode"] = stats
        self._obs = obs
        return obs, out.reward.astype(np.float32), dones, infos


def _with_terminal(obs: Obs, infos: list[dict], done_idx: np.ndarray) -> Obs:
    """obs with the rows of finished envs replaced by their true final observation."""
    if done_idx.size == 0:
        return obs
    if isinstance(obs, dict):
        out = {k: np.array(v, copy=True) for k, v in obs.items()}
        for i in done_idx:
            for k in out:
                out[k][i] = infos[i]["terminal_observation"][k]
        return out
    out = np.array(obs, copy=True)
    for i in done_idx:
        out[i] = infos[i]["terminal_observation"]
    return out
