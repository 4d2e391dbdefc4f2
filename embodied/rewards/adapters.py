"""Gymnasium adapters of the reward path: a single-env wrapper, a vector-env wrapper, and `shape`.

Both put the environment's own reward in `info["env_reward"]`, the shaping term in
`info["shaping"]`, the reward model's components in `info["reward_components"]`, and, on the step
that ends an episode, the episode's returns and shaping residual in `info["reward_episode"]`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from embodied.rewards.base import Obs, RewardError, RewardModel, TransitionBatch, obs_take
from embodied.rewards.pipeline import RewardPipeline
from embodied.rewards.shaping import Mode, Shaper


def _batch1(obs: Any) -> Obs:
    if isinstance(obs, dict):
        return {k: np.asarray(v)[None] for k, v in obs.items()}
    return np.asarray(obs)[None]


def _frames1(info: dict, pipeline: RewardPipeline) -> dict[str, np.ndarray] | None:
    cams = pipeline.requires.cameras
    if not cams:
        return None
    frames = info.get("frames")
    missing = [c for c in cams if frames is None or c not in frames]
    if missing:
        raise RewardError(
            f"reward needs frames from cameras {missing}; build the env with embodied.make(task, frames={list(cams)})"
        )
    return {c: np.asarray(frames[c])[None] for c in cams}


class RewardWrapper(gym.Wrapper):
    """Replaces a single env's reward with a reward model's (optional) plus potential shaping (optional)."""

    def __init__(self, env: gym.Env, reward: RewardModel | None = None, shaper: Shaper | None = None) -> None:
        super().__init__(env)
        self.pipeline = RewardPipeline(reward, shaper, num_envs=1)
        self._obs: Any = None

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        obs, info = self.env.reset(**kwargs)
        self.pipeline.begin(np.array([0]), _batch1(obs), _frames1(info, self.pipeline))
        self._obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        batch = TransitionBatch(
            obs=_batch1(self._obs),
            action=np.asarray(action)[None],
            next_obs=_batch1(obs),
            terminated=np.array([terminated]),
            truncated=np.array([truncated]),
            env_reward=np.array([env_reward], dtype=np.float64),
            infos=[info],
            frames=_frames1(info, self.pipeline),
        )
        out = self.pipeline.step(np.array([0]), batch)
        info = {
            **info,
            "env_reward": float(env_reward),
            "shaping": float(out.shaping[0]),
            "reward_components": {k: float(v[0]) for k, v in out.components.items()},
        }
        if out.episodes:
            info["reward_episode"] = out.episodes[0][1]
        self._obs = obs
        return obs, float(out.reward[0]), terminated, truncated, info


class _RowInfos(Sequence[dict]):
    """Per-transition info dicts of a vector step, built only when a reward model reads them.

    Row j is sub-env `rows[j]`'s entries of the vector env's dict of arrays (masked keys dropped).
    """

    def __init__(self, infos: dict, rows: np.ndarray) -> None:
        self._infos, self._rows = infos, rows

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, j: int) -> dict:  # type: ignore[override]
        i, out = int(self._rows[j]), {}
        for key, value in self._infos.items():
            if key.startswith("_") or key == "frames":
                continue
            mask = self._infos.get(f"_{key}")
            if mask is None or mask[i]:
                out[key] = {k: v[i] for k, v in value.items()} if isinstance(value, dict) else value[i]
        return out


class VectorRewardWrapper(gym.vector.VectorWrapper):
    """The reward path for a gymnasium vector env with next-step or same-step autoreset.

    Next-step autoreset: the step after an episode ends is a reset step (action ignored, env reward 0);
    it is never scored or shaped here: its reward is 0 and it starts the env's next episode.
    Same-step autoreset: the true final observation comes from `infos["final_obs"]`.
    """

    def __init__(
        self, env: gym.vector.VectorEnv, reward: RewardModel | None = None, shaper: Shaper | None = None
    ) -> None:
        super().__init__(env)
        mode = env.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        if mode not in (gym.vector.AutoresetMode.NEXT_STEP, gym.vector.AutoresetMode.SAME_STEP):
            raise RewardError(f"autoreset mode {mode} is not supported; use NEXT_STEP or SAME_STEP")
        self.same_step = mode == gym.vector.AutoresetMode.SAME_STEP
        self.pipeline = RewardPipeline(reward, shaper, num_envs=env.num_envs)
        self._obs: Any = None
        self._resetting = np.zeros(env.num_envs, dtype=bool)

    def _frames(self, infos: dict, key: str = "frames") -> dict[str, np.ndarray] | None:
        cams = self.pipeline.requires.cameras
        if not cams:
            return None
        frames = infos.get(key)
        missing = [c for c in cams if frames is None or c not in frames]
        if missing:
            raise RewardError(
                f"reward needs frames from cameras {missing}; "
                f"build the env with embodied.make_vec(task, n, frames={list(cams)})"
            )
        return {c: np.asarray(frames[c]) for c in cams}

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        obs, infos = self.env.reset(**kwargs)
        self.pipeline.begin(np.arange(self.num_envs), obs, self._frames(infos))
        self._obs, self._resetting[:] = obs, False
        return obs, infos

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        obs, env_reward, terminated, truncated, infos = self.env.step(actions)
        n = self.num_envs
        frames = self._frames(infos)
        if self.same_step:
            scored = np.arange(n)
            done = terminated | truncated
            next_obs = _replace_rows(obs, infos.get("final_obs"), done)
            next_frames = frames
            if frames is not None and done.any():
                final = infos.get("final_info", {}).get("frames")
                next_frames = (
                    {c: np.where(done[:, None, None, None], final[c], frames[c]) for c in frames} if final else frames
                )
            starts = (np.flatnonzero(done), obs_take(obs, done), _take(frames, done))
            prev_obs = self._obs
        else:
            scored = np.flatnonzero(~self._resetting)
            if scored.size == n:  # no env is resetting: no copies needed
                next_obs, next_frames, starts, prev_obs = obs, frames, None, self._obs
            else:
                next_obs, next_frames, prev_obs = (
                    obs_take(obs, scored),
                    _take(frames, scored),
                    obs_take(self._obs, scored),
                )
                starts = (
                    np.flatnonzero(self._resetting),
                    obs_take(obs, self._resetting),
                    _take(frames, self._resetting),
                )
        batch = TransitionBatch(
            obs=prev_obs,
            action=np.asarray(actions)[scored],
            next_obs=next_obs,
            terminated=terminated[scored],
            truncated=truncated[scored],
            env_reward=np.asarray(env_reward, dtype=np.float64)[scored],
            infos=_RowInfos(infos, scored),
            frames=next_frames,
        )
        out = self.pipeline.step(None if self.same_step else scored, batch, starts)
        reward = np.zeros(n)
        reward[scored] = out.reward
        infos = dict(infos)
        infos["env_reward"] = np.asarray(env_reward, dtype=np.float64)
        infos["shaping"] = np.zeros(n)
        infos["shaping"][scored] = out.shaping
        comps = {}
        for key, value in out.components.items():
            comps[key] = np.zeros(n)
            comps[key][scored] = value
        infos["reward_components"] = comps
        if out.episodes:
            infos["reward_episode"] = {i: stats for i, stats in out.episodes}
        self._obs = obs
        if not self.same_step:
            self._resetting = np.asarray(terminated | truncated, dtype=bool)
        return obs, reward, terminated, truncated, infos


def _take(frames: dict[str, np.ndarray] | None, mask: np.ndarray) -> dict[str, np.ndarray] | None:
    return None if frames is None else {k: v[mask] for k, v in frames.items()}


def _replace_rows(obs: Obs, final: Any, done: np.ndarray) -> Obs:
    """obs with rows `done` replaced by the final observations gymnasium keeps in `final_obs`."""
    if not done.any():
        return obs
    if isinstance(obs, dict):
        out = {k: np.array(v, copy=True) for k, v in obs.items()}
        for i in np.flatnonzero(done):
            for k in out:
                out[k][i] = final[i][k]
        return out
    out = np.array(obs, copy=True)
    for i in np.flatnonzero(done):
        out[i] = final[i]
    return out


def wrap_rewards(
    env: gym.Env | gym.vector.VectorEnv, reward: RewardModel | None = None, shaper: Shaper | None = None
) -> gym.Env | gym.vector.VectorEnv:
    """Wrap a single or vector gymnasium env with the reward path."""
    if isinstance(env, gym.vector.VectorEnv):
        return VectorRewardWrapper(env, reward, shaper)
    if isinstance(env, gym.Env):
        return RewardWrapper(env, reward, shaper)
    raise TypeError(f"expected a gymnasium.Env or gymnasium.vector.VectorEnv, got {type(env).__name__}")


def shape(
    env: gym.Env | gym.vector.VectorEnv, potential: Any, gamma: float, scale: float = 1.0, mode: Mode = "potential"
) -> gym.Env | gym.vector.VectorEnv:
    """Add potential-based shaping F = γΦ(s') − Φ(s) to an env's reward.

    Args:
        env: any `gymnasium.Env` or `gymnasium.vector.VectorEnv`.
        potential: batched callable obs [N, ...] -> float [N] (or a state-only reward model).
        gamma: the learner's discount; shaping is policy-invariant only with the learner's γ.
        scale: positive constant multiplying Φ (F itself is never clipped or gated).
        mode: "potential" (invariant). Modes ending in "_not_invariant" exist for ablations and warn.

    Returns:
        The wrapped env: reward = env reward + F; `info["env_reward"]`, `info["shaping"]` hold the parts.
    """
    return wrap_rewards(env, None, Shaper(potential, gamma, scale, mode))
