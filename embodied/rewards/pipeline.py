"""The per-step reward path shared by every adapter: reward model -> potential shaping -> stats.

Adapters (gymnasium single env, gymnasium vector env, SB3 VecEnvWrapper, RLlib) differ only in how
they find the true final observation and the episode boundaries; they all call this one object,
so the numbers they produce are identical for the same seeds and actions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from embodied.rewards.base import (
    Obs,
    Requirements,
    RewardModel,
    TransitionBatch,
    checked,
    frames_concat,
    merged_requirements,
    obs_concat,
)
from embodied.rewards.shaping import Shaper


@dataclass
class StepOutput:
    """Result for the scored transitions (n of them, in batch order).

    Attributes:
        reward: float [n], base reward (model or env) plus the shaping term.
        env_reward: float [n], the environment's own reward.
        shaping: float [n], the shaping term F (0 without shaping).
        components: name -> float [n], the reward model's components.
        episodes: (env index, stats) for every episode that ended in this step; stats has
            `env_return`, `return` (what the learner saw), `shaping_return` (Σ_t γ^t F_t),
            `shaping_residual` (that sum minus γ^T Φ(s_T)·[not terminated] + Φ(s_0); ≈ 0), `length`.
    """

    reward: np.ndarray
    env_reward: np.ndarray
    shaping: np.ndarray
    components: dict[str, np.ndarray] = field(default_factory=dict)
    episodes: list[tuple[int, dict[str, float]]] = field(default_factory=list)


class RewardPipeline:
    """Reward model (or the env reward) plus optional shaping, with per-env episode state.

    Args:
        reward: the reward model; None keeps the environment's reward.
        shaper: potential-based shaping; None for none.
        num_envs: number of parallel envs the adapter drives.
    """

    def __init__(self, reward: RewardModel | None, shaper: Shaper | None, num_envs: int) -> None:
        self.reward, self.shaper, self.num_envs = reward, shaper, num_envs
        self.step_count = 0
        self._invariant = shaper is not None and shaper.mode == "potential"
        self._phi = np.zeros(num_envs)
        self._phi0 = np.zeros(num_envs)
        self._disc = np.ones(num_envs)
        self._shaping_sum = np.zeros(num_envs)
        self._env_return = np.zeros(num_envs)
        self._return = np.zeros(num_envs)
        self._length = np.zeros(num_envs, dtype=np.int64)

    @property
    def requires(self) -> Requirements:
        """Frames/cameras needed by the reward model and the potential together."""
        return merged_requirements(self.reward, self.shaper)

    def begin(self, idx: np.ndarray, obs: Obs, frames: dict[str, np.ndarray] | None = None) -> None:
        """Start episodes in envs `idx` from first observations `obs` (rows aligned with idx)."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size == 0:
            return
        phi = self.shaper.phi(obs, frames) if self.shaper is not None else np.zeros(idx.size)
        self._start(idx, phi)

    def _start(self, idx: np.ndarray, phi: np.ndarray) -> None:
        self._phi[idx] = phi
        self._phi0[idx] = phi
        self._disc[idx] = 1.0
        self._shaping_sum[idx] = 0.0
        self._env_return[idx] = 0.0
        self._return[idx] = 0.0
        self._length[idx] = 0

    def step(
        self,
        idx: np.ndarray | None,
        batch: TransitionBatch,
        starts: tuple[np.ndarray, Obs, dict[str, np.ndarray] | None] | None = None,
    ) -> StepOutput:
        """Score transitions of envs `idx` (rows of `batch`), then start new episodes `starts`.

        Args:
            idx: int [n], sorted distinct env index of each batch row; None means every env.
            batch: the n transitions; `next_obs` must be the true final obs where an episode ended.
            starts: (env indices [m], first observations [m, ...], frames or None) of episodes
                that begin in this call; their Φ is computed in the same batched call as Φ(s').
        """
        n = len(batch)
        idx = np.arange(n) if idx is None else np.asarray(idx, dtype=np.int64)
        # idx is sorted and distinct, so n == num_envs means every env in order: a slice is cheaper.
        sel: slice | np.ndarray = slice(None) if n == self.num_envs else idx
        self.step_count += 1
        env_reward = np.asarray(batch.env_reward, dtype=np.float64).reshape(n)
        if self.reward is not None:
            out = checked(self.reward.compute_reward(batch), n, self.reward.name, self.step_count)
            base, components = out.reward, out.components
        else:
            base, components = env_reward, {}
        start_phi = None
        if self.shaper is not None:
            obs, frames = batch.next_obs, batch.frames
            if starts is not None and len(starts[0]):
                obs, frames = obs_concat(obs, starts[1]), frames_concat(frames, starts[2])
            phi_all = self.shaper.phi(obs, frames)
            phi_next, start_phi = phi_all[:n], phi_all[n:]
            shaping = self.shaper.term(self._phi[sel], phi_next, batch.terminated)
            self._phi[sel] = phi_next
        else:
            phi_next, shaping = np.zeros(n), np.zeros(n)
        reward = base + shaping

        self._shaping_sum[sel] += self._disc[sel] * shaping
        self._env_return[sel] += env_reward
        self._return[sel] += reward
        self._length[sel] += 1
        if self.shaper is not None:
            self._disc[sel] *= self.shaper.gamma

        episodes = []
        terminated = np.asarray(batch.terminated, dtype=bool)
        done = terminated | np.asarray(batch.truncated, dtype=bool)
        for row in np.flatnonzero(done):
            i = int(idx[row])
            # γ^T Φ(s_T)[not terminated] − Φ(s_0); _disc already holds γ^T.
            expected = self._disc[i] * (0.0 if terminated[row] else phi_next[row]) - self._phi0[i]
            episodes.append(
                (
                    i,
                    {
                        "env_return": float(self._env_return[i]),
                        "return": float(self._return[i]),
                        "shaping_return": float(self._shaping_sum[i]),
                        "shaping_residual": float(self._shaping_sum[i] - expected) if self._invariant else 0.0,
                        "length": int(self._length[i]),
                    },
                )
            )
        if starts is not None and len(starts[0]):
            sidx = np.asarray(starts[0], dtype=np.int64)
            self._start(sidx, start_phi if start_phi is not None else np.zeros(sidx.size))
        return StepOutput(reward, env_reward, shaping, components, episodes)
