"""Reward spec strings -> reward models.

A spec is ``KIND`` or ``KIND:ARG`` (e.g. ``env``, ``program:reward_models/metaworld-reach/expert.py``).
Each kind maps to a factory ``(arg: str, task: TaskSpec) -> RewardModel``, named by an import path so
heavy modules (torch, open_clip) load only when their kind is used. Adding a reward source is one
module plus one entry here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from types import ModuleType

from embodied.rewards.base import RewardError, RewardModel
from embodied.tasks.spec import TaskSpec

Factory = Callable[[str, TaskSpec], RewardModel]

BUILTIN: Mapping[str, str] = {
    "env": "embodied.rewards.env:from_spec",
    "program": "embodied.rewards.program:from_spec",
    "clip": "embodied.rewards.clip:from_spec",
    "progress": "embodied.rewards.progress:from_spec",
    "subgoals": "embodied.rewards.subgoals:from_spec",
}


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``KIND:ARG`` into (kind, arg); arg may be empty."""
    kind, _, arg = spec.strip().partition(":")
    if not kind:
        raise RewardError(f"empty reward spec {spec!r}; expected e.g. 'env' or 'program:PATH'")
    return kind, arg


def kind_module(kind: str) -> ModuleType | None:
    """The module behind a built-in reward kind (None for unknown kinds or kinds not installed)."""
    target = BUILTIN.get(kind)
    if target is None:
        return None
    try:
        return importlib.import_module(target.partition(":")[0])
    except ModuleNotFoundError:
        return None


def _factory(kind: str, extra: Mapping[str, str | Factory] | None) -> Factory:
    table: dict[str, str | Factory] = {**BUILTIN, **(extra or {})}
    if kind not in table:
        raise RewardError(f"unknown reward kind {kind!r}; known: {', '.join(sorted(table))}")
    target = table[kind]
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            raise RewardError(
                f"reward kind {kind!r} is not available in this installation ({module} missing)"
            ) from None
        raise


def split_specs(text: str, extra: Mapping[str, str | Factory] | None = None) -> list[str]:
    """Split a comma-separated list of specs whose own options may contain commas.

    An item that is an option (``key=value``, not starting with a known ``KIND:``) belongs to the spec
    before it; every other item starts a spec: ``env,progress:m,mode=raw_progress_not_invariant`` is two.
    """
    kinds = {**BUILTIN, **(extra or {})}
    specs: list[str] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item.partition(":")[0] in kinds or "=" not in item or not specs:
            specs.append(item)
        else:
            specs[-1] += f",{item}"
    return specs


def make_reward(spec: str, task: TaskSpec, extra: Mapping[str, str | Factory] | None = None) -> RewardModel:
    """Build the reward model a spec names, for `task`.

    Args:
        spec: ``KIND[:ARG]``; kinds: env, program, clip, progress, subgoals (+ `extra`).
        task: the task the reward is for (views, cameras, goal text).
        extra: additional kinds, name -> factory or ``"module:attr"`` (plugins, tests).
    """
    kind, arg = parse_spec(spec)
    return _factory(kind, extra)(arg, task)


def make_potential(spec: str, task: TaskSpec, extra: Mapping[str, str | Factory] | None = None) -> RewardModel:
    """Like `make_reward`, but the model must be state-only so it can serve as Φ."""
    model = make_reward(spec, task, extra)
    if not model.state_only:
        raise RewardError(f"reward spec {spec!r} depends on the action, so it cannot be a shaping potential")
    return model
