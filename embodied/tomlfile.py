"""TOML files validated into pydantic models (task specs, robot profiles, run configs).

Every failure is one line of the caller's error type naming the file and, where there is one,
the field: `path: malformed TOML: ...`, `path: field 'views.hand_pos.expr': ...`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def workspace_dir(folder: str, env_var: str) -> Path:
    """A workspace data folder: `$env_var`, else `./<folder>`, else the repository's `<folder>/`."""
    import os

    env = os.environ.get(env_var)
    if env:
        return Path(env)
    local = Path.cwd() / folder
    if local.is_dir():
        return local
    return Path(__file__).resolve().parents[1] / folder


def field_path(parts: tuple[Any, ...]) -> str:
    """A pydantic error location as the user wrote it: `stages[0].name` (union branch names dropped)."""
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif "[" in str(p) or "(" in str(p) or str(p) in ("float", "str", "int", "bool"):
            continue  # union branch names pydantic adds; not part of the user's field path
        else:
            out += f".{p}" if out else str(p)
    return out


def describe(exc: ValidationError) -> str:
    """The first validation error as ``field 'a.b': message``."""
    err = exc.errors()[0]
    loc = field_path(tuple(err["loc"]))
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"field {loc!r}: {msg}" if loc else msg


def load_model(
    path: Path,
    model: type[M],
    error: type[ValueError],
    defaults: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> M:
    """Read `path` and validate it as `model`; `defaults` fill missing keys, `overrides` replace keys."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: malformed TOML: {exc}") from None
    data = {**(defaults or {}), **data, **(overrides or {})}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(f"{path}: {describe(exc)}") from None
