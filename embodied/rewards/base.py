"""The reward protocol: one framework-free contract every reward source implements.

A reward model scores a *batch* of transitions in one call and returns one float per
transition plus named components. It never knows which learner consumes it.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Obs = np.ndarray | dict[str, np.ndarray]
"""A batch of observations: an array [N, ...] or a dict of arrays [N, ...] (dict spaces)."""


class RewardError(ValueError):
    """A reward model produced unusable output (wrong shape, NaN/inf) or got unusable input."""


@dataclass(frozen=True)
class Requirements:
    """What a reward model needs from the environment, so the env only renders what is used.

    Attributes:
        cameras: camera names whose frames (uint8 [N, H, W, 3]) must be captured per step.
        frame_size: (height, width) the frames should be rendered at; None = the task's default.
    """

    cameras: tuple[str, ...] = ()
    frame_size: tuple[int, int] | None = None

    def merge(self, other: Requirements) -> Requirements:
        """Union of two requirement sets (used when a reward and a potential both need frames)."""
        cams = tuple(dict.fromkeys(self.cameras + other.cameras))
        sizes = {s for s in (self.frame_size, other.frame_size) if s is not None}
        if len(sizes) > 1:
            raise RewardError(f"conflicting frame sizes requested: {sorted(sizes)}")
        return Requirements(cams, next(iter(sizes), None))


def merged_requirements(*parts: Any) -> Requirements:
    """What the env must render for all of `parts` (reward models, shapers, or None) together."""
    req = Requirements()
    for part in parts:
        if part is not None:
            req = req.merge(part.requires)
    return req


@dataclass
class TransitionBatch:
    """N transitions (s, a, s'), batched along the first axis.

    Attributes:
        obs: observations s, [N, ...] (or dict of such arrays).
        action: actions a, [N, ...].
        next_obs: s', [N, ...]; on episode end this is the true final observation, never a reset one.
        terminated: bool [N]; the MDP reached a terminal state at s'.
        truncated: bool [N]; the episode was cut (time limit); s' is not terminal.
        env_reward: float [N]; the environment's own reward for the transition.
        infos: N per-transition info dicts (from the step that produced s').
        frames: camera name -> uint8 [N, H, W, 3] frames of s', present only when requested.
    """

    obs: Obs
    action: np.ndarray
    next_obs: Obs
    terminated: np.ndarray
    truncated: np.ndarray
    env_reward: np.ndarray
    infos: Sequence[Mapping[str, Any]] = ()
    frames: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return int(np.asarray(self.terminated).shape[0])


@dataclass
class RewardOutput:
    """Rewards for a batch: `reward` float64 [N] and named `components`, each float [N]."""

    reward: np.ndarray
    components: dict[str, np.ndarray] = field(default_factory=dict)


class RewardModel(ABC):
    """Base class of every reward source.

    Subclasses implement `compute_reward(batch)`. Models whose reward depends on s' alone set
    `state_only = True` and implement `potential(obs, frames)`, which lets them serve as the
    potential Φ of policy-invariant shaping.
    """

    name: str = "reward"
    requires: Requirements = Requirements()
    state_only: bool = False
    uses_obs: bool = True
    """Whether `compute_reward` reads `batch.obs` (s). Models of (a, s') set False: comparisons then
    need not evaluate them over every s."""

    @abstractmethod
    def compute_reward(self, batch: TransitionBatch) -> RewardOutput:
        """Score every transition of `batch`; returns reward float [N] and components."""

    def potential(self, obs: Obs, frames: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Φ(s) for a batch of states, float [N]. Only for state-only models."""
        raise RewardError(f"reward model {self.name!r} depends on the action, so it cannot be a potential")

    def __call__(self, batch: TransitionBatch) -> RewardOutput:
        return checked(self.compute_reward(batch), len(batch), self.name)


def batch_size(obs: Obs) -> int:
    """Leading dimension of a batch of observations (array or dict of arrays)."""
    if isinstance(obs, dict):
        return int(next(iter(obs.values())).shape[0])
    return int(np.asarray(obs).shape[0])


def checked(out: RewardOutput, n: int, name: str, step: int | None = None) -> RewardOutput:
    """Validate a model's output: float [n], finite; components likewise. Raises RewardError."""
    where = f"reward model {name!r}" + (f" at step {step}" if step is not None else "")
    reward = np.asarray(out.reward, dtype=np.float64)
    if reward.shape != (n,):
        raise RewardError(f"{where} returned shape {reward.shape}, expected ({n},)")
    if not np.all(np.isfinite(reward)):
        bad = int(np.flatnonzero(~np.isfinite(reward))[0])
        raise RewardError(f"{where} returned a non-finite reward ({reward[bad]}) for transition {bad}")
    comps: dict[str, np.ndarray] = {}
    for key, value in out.components.items():
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
        if arr.shape != (n,):
            raise RewardError(f"{where} component {key!r} has shape {arr.shape}, expected ({n},)")
        comps[key] = arr
    return RewardOutput(reward, comps)


def checked_potential(values: Any, n: int, name: str) -> np.ndarray:
    """Validate Φ values: float [n], finite."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise RewardError(f"potential {name!r} returned shape {arr.shape}, expected ({n},)")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise RewardError(f"potential {name!r} returned a non-finite value ({arr[bad]}) for state {bad}")
    return arr


def is_finite_number(x: Any) -> bool:
    """True for a real, finite Python or numpy scalar."""
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def obs_take(obs: Obs, idx: np.ndarray) -> Obs:
    """Rows `idx` of a batch of observations (array or dict of arrays)."""
    if isinstance(obs, dict):
        return {k: np.asarray(v)[idx] for k, v in obs.items()}
    return np.asarray(obs)[idx]


def obs_concat(a: Obs, b: Obs) -> Obs:
    """Stack two observation batches along the first axis."""
    if isinstance(a, dict):
        return {k: np.concatenate([np.asarray(a[k]), np.asarray(b[k])]) for k in a}
    return np.concatenate([np.asarray(a), np.asarray(b)])


def frames_take(frames: dict[str, np.ndarray] | None, idx: np.ndarray) -> dict[str, np.ndarray] | None:
    """Rows `idx` of per-camera frames."""
    return None if frames is None else {k: v[idx] for k, v in frames.items()}


def frames_concat(a: dict[str, np.ndarray] | None, b: dict[str, np.ndarray] | None) -> dict[str, np.ndarray] | None:
    """Stack per-camera frames along the first axis (None when either side has none)."""
    if a is None or b is None:
        return None
    return {k: np.concatenate([a[k], b[k]]) for k in a}
