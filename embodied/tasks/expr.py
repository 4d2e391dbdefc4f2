"""Safe evaluation of the small expressions task files contain (views, success and stage rules).

Allowed: names bound by the caller, numbers, strings, subscripts and slices, arithmetic,
comparisons, boolean logic, and calls to a fixed set of math helpers. Nothing else parses.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": np.abs,
    "min": np.minimum,
    "max": np.maximum,
    "norm": lambda x: np.linalg.norm(np.asarray(x, dtype=np.float64), axis=-1),
    "sqrt": np.sqrt,
    "clip": np.clip,
    "bool": bool,
    "float": float,
    "any": np.any,
    "all": np.all,
}

_ALLOWED = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.UAdd,
    ast.BinOp,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.Pow,
    ast.Mod,
    ast.FloorDiv,
    ast.Compare,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.Eq,
    ast.NotEq,
    ast.In,
    ast.NotIn,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Subscript,
    ast.Slice,
    ast.Tuple,
    ast.Call,
    ast.IfExp,
)


class ExprError(ValueError):
    """An expression is malformed or uses something outside the allow-list."""


def compile_expr(source: str, names: set[str], where: str) -> Callable[[Mapping[str, Any]], Any]:
    """Parse `source` and return a function of a name->value mapping.

    Args:
        source: expression text, e.g. ``"norm(hand_pos - goal_pos) < 0.05"``.
        names: the names the expression may refer to (besides FUNCTIONS).
        where: what to call the expression in errors, e.g. ``"envs/reach.toml: success"``.
    """
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"{where}: cannot parse {source!r}: {exc.msg}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise ExprError(f"{where}: {type(node).__name__} is not allowed in {source!r}")
        if isinstance(node, ast.Name) and node.id not in names and node.id not in FUNCTIONS:
            known = ", ".join(sorted(names)) or "none"
            raise ExprError(f"{where}: unknown name {node.id!r} in {source!r} (known: {known})")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS):
            raise ExprError(f"{where}: only {sorted(FUNCTIONS)} may be called in {source!r}")
    code = compile(tree, where, "eval")

    def evaluate(scope: Mapping[str, Any]) -> Any:
        return eval(code, {"__builtins__": {}}, {**FUNCTIONS, **scope})

    return evaluate
