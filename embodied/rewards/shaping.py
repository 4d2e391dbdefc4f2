"""Potential-based shaping (Ng, Harada, Russell 1999): F = γΦ(s') − Φ(s).

Rules this module enforces (FACTS.md): γ equals the learner's γ; Φ(s') := 0 only when the
transition `terminated`, never on truncation; Φ(s') is taken from the true final observation;
no shaping across an episode boundary; F is never clipped or gated; only Φ is scaled.
With these, Σ_t γ^t F_t = γ^T Φ(s_T)·[not terminated] − Φ(s_0) for every episode, and optimal
policies are unchanged.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from embodied.rewards.base import Obs, Requirements, RewardError, RewardModel, batch_size, checked_potential

Mode = Literal["potential", "raw_progress_not_invariant", "progress_delta_not_invariant"]
NOT_INVARIANT: dict[str, str] = {
    "raw_progress_not_invariant": "reward = Φ(s'): rewards living longer in high-Φ states; optimal policies can change",
    "progress_delta_not_invariant": (
        "F = Φ(s') − Φ(s) (γ_shaping = 1) under a learner with γ < 1 adds a loitering bonus"
    ),
}


class ShapingError(ValueError):
    """Shaping misconfigured (γ mismatch, bad scale, unknown mode)."""


@runtime_checkable
class Potential(Protocol):
    """A batched state score Φ: obs [N, ...] (and frames, when `requires` names cameras) -> float [N]."""

    name: str
    requires: Requirements

    def __call__(self, obs: Obs, frames: dict[str, np.ndarray] | None = None) -> np.ndarray: ...


@dataclass
class CallablePotential:
    """Wraps a plain batched callable ``obs [N, ...] -> float [N]`` as a `Potential`."""

    fn: Callable[[Obs], Any]
    name: str = "potential"
    requires: Requirements = field(default_factory=Requirements)

    def __call__(self, obs: Obs, frames: dict[str, np.ndarray] | None = None) -> np.ndarray:
        return np.asarray(self.fn(obs), dtype=np.float64)


@dataclass
class ModelPotential:
    """A state-only `RewardModel` used as Φ."""

    model: RewardModel

    def __post_init__(self) -> None:
        if not self.model.state_only:
            raise ShapingError(
                f"reward model {self.model.name!r} depends on the action; a potential must be state-only"
            )
        self.name = self.model.name
        self.requires = self.model.requires

    def __call__(self, obs: Obs, frames: dict[str, np.ndarray] | None = None) -> np.ndarray:
        return self.model.potential(obs, frames)


def as_potential(obj: Any) -> Potential:
    """Accept a `Potential`, a state-only `RewardModel` or a plain batched callable."""
    if isinstance(obj, RewardModel):
        return ModelPotential(obj)
    if isinstance(obj, Potential):
        return obj
    if callable(obj):
        return CallablePotential(obj, name=getattr(obj, "__name__", "potential"))
    raise ShapingError(f"potential must be callable (obs [N, ...] -> float [N]), got {type(obj).__name__}")


def shaping_term(phi_s: np.ndarray, phi_next: np.ndarray, terminated: np.ndarray, gamma: float) -> np.ndarray:
    """F = γ·Φ(s')·(1 − terminated) − Φ(s), float [N]. Truncation keeps Φ(s')."""
    return gamma * np.where(np.asarray(terminated, dtype=bool), 0.0, phi_next) - phi_s


class Shaper:
    """Holds Φ, γ, the scale on Φ and the mode; computes Φ and F for batches."""

    def __init__(self, potential: Any, gamma: float, scale: float = 1.0, mode: Mode = "potential") -> None:
        if not 0.0 <= gamma <= 1.0:
            raise ShapingError(f"gamma must be in [0, 1], got {gamma}")
        if not np.isfinite(scale) or scale <= 0:
            raise ShapingError(f"scale must be a positive finite constant, got {scale}")
        if mode != "potential" and mode not in NOT_INVARIANT:
            raise ShapingError(f"unknown shaping mode {mode!r}; use 'potential' or one of {sorted(NOT_INVARIANT)}")
        if mode in NOT_INVARIANT:
            warnings.warn(f"shaping mode {mode!r} is NOT policy-invariant: {NOT_INVARIANT[mode]}", stacklevel=2)
        self.potential = as_potential(potential)
        self.gamma, self.scale, self.mode = float(gamma), float(scale), mode

    @property
    def name(self) -> str:
        return self.potential.name

    @property
    def requires(self) -> Requirements:
        return self.potential.requires

    def phi(self, obs: Obs, frames: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """scale · Φ(obs), float [N]."""
        n = batch_size(obs)
        return self.scale * checked_potential(self.potential(obs, frames), n, self.name)

    def term(self, phi_s: np.ndarray, phi_next: np.ndarray, terminated: np.ndarray) -> np.ndarray:
        """The additive term for the mode: F (invariant), Φ(s') (raw), or Φ(s') − Φ(s) (delta)."""
        if self.mode == "potential":
            return shaping_term(phi_s, phi_next, terminated, self.gamma)
        if self.mode == "raw_progress_not_invariant":
            return phi_next.copy()
        return phi_next - phi_s


def check_gamma(shaper_gamma: float, learner_gamma: float, where: str = "shaping") -> None:
    """Refuse a shaping γ that differs from the learner's γ (invariance needs them equal)."""
    if not np.isclose(shaper_gamma, learner_gamma, rtol=0, atol=1e-12):
        raise ShapingError(
            f"{where}: shaping gamma {shaper_gamma} != learner gamma {learner_gamma}; "
            "potential-based shaping is policy-invariant only when they are equal"
        )


def require_state_only(model: RewardModel) -> None:
    """Raise unless `model` can be a potential."""
    if not model.state_only:
        raise RewardError(f"reward model {model.name!r} depends on the action and cannot serve as a potential")
