"""Named views of an observation, e.g. ``hand_pos = "obs[0:3]"``.

A view getter works on one observation (shape [D]) and on a batch ([N, D]) alike, because
indices apply to the last axis. Dict observations use ``obs['key']`` first.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np


class ViewError(ValueError):
    """A view expression is malformed or does not fit the observation space."""


@dataclass(frozen=True)
class _Step:
    key: str | None = None
    index: int | slice | None = None


def _parse(expr: str, where: str) -> list[_Step]:
    try:
        node = ast.parse(expr.strip(), mode="eval").body
    except SyntaxError:
        raise ViewError(f"{where}: cannot parse view {expr!r} (expected e.g. 'obs[0:3]')") from None
    steps: list[_Step] = []
    while isinstance(node, ast.Subscript):
        sl = node.slice
        if isinstance(sl, ast.Constant) and isinstance(sl.value, str):
            steps.append(_Step(key=sl.value))
        elif isinstance(sl, ast.Slice):
            bounds = []
            for part in (sl.lower, sl.upper, sl.step):
                bounds.append(None if part is None else _int(part, expr, where))
            steps.append(_Step(index=slice(*bounds)))
        else:
            steps.append(_Step(index=_int(sl, expr, where)))
        node = node.value
    if not (isinstance(node, ast.Name) and node.id == "obs") or not steps:
        raise ViewError(f"{where}: view {expr!r} must index 'obs', e.g. 'obs[0:3]' or \"obs['key'][2]\"")
    steps.reverse()
    if any(s.key is not None for s in steps[1:]):
        raise ViewError(f"{where}: in {expr!r} a dict key may only come first")
    return steps


def _int(node: ast.AST, expr: str, where: str) -> int:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        node = ast.Constant(-node.operand.value)
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return node.value
    raise ViewError(f"{where}: view {expr!r} may only use integer indices and slices")


def make_getter(expr: str, where: str, space: gym.Space | None = None) -> tuple[Callable[[Any], Any], tuple[int, ...]]:
    """Compile a view expression into a getter and check it against `space`.

    Returns:
        (getter, shape): getter(obs) -> array with the view's trailing shape; `shape` is the view's
        shape for one observation (() for a scalar), or () when no space was given.
    """
    steps = _parse(expr, where)
    shape: tuple[int, ...] = ()
    if space is not None:
        sub = space
        if steps[0].key is not None:
            if not isinstance(space, gym.spaces.Dict) or steps[0].key not in space.spaces:
                keys = list(space.spaces) if isinstance(space, gym.spaces.Dict) else "none (not a dict space)"
                raise ViewError(f"{where}: view {expr!r} names key {steps[0].key!r}; observation keys: {keys}")
            sub = space.spaces[steps[0].key]
        if not hasattr(sub, "shape") or sub.shape is None:
            raise ViewError(f"{where}: view {expr!r} selects a space without a shape")
        probe = np.zeros(sub.shape, dtype=np.float32)
        for step in steps:
            if step.key is not None:
                continue
            try:
                dim = probe.shape[-1] if probe.ndim else 0
                if isinstance(step.index, int) and not -dim <= step.index < dim:
                    raise IndexError
                probe = probe[..., step.index]
            except IndexError:
                size = probe.shape[-1] if probe.ndim else 0
                raise ViewError(
                    f"{where}: view {expr!r} indexes past the observation (last axis has {size} entries)"
                ) from None
            if probe.size == 0:
                raise ViewError(f"{where}: view {expr!r} selects nothing from an observation of shape {sub.shape}")
        shape = probe.shape

    def getter(obs: Any) -> Any:
        out = obs
        for step in steps:
            out = out[step.key] if step.key is not None else np.asarray(out)[..., step.index]
        return out

    return getter, shape


class View:
    """Attribute access to named views of one observation or a batch: ``view.hand_pos``.

    This is the object reward programs receive; values are numpy arrays (or numpy scalars).
    """

    __slots__ = ("_getters", "_obs")

    def __init__(self, getters: Mapping[str, Callable[[Any], Any]], obs: Any) -> None:
        self._getters = getters
        self._obs = obs

    def __getattr__(self, name: str) -> Any:
        try:
            getter = self._getters[name]
        except KeyError:
            raise AttributeError(f"no view named {name!r}; views: {sorted(self._getters)}") from None
        return getter(self._obs)

    def __getitem__(self, name: str) -> Any:
        return self.__getattr__(name)

    def __dir__(self) -> list[str]:
        return sorted(self._getters)

    def as_dict(self) -> dict[str, Any]:
        """All views evaluated, name -> array."""
        return {name: get(self._obs) for name, get in self._getters.items()}
