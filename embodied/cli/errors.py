"""Turn user errors into one-line messages and exit code 2 (set EMBODIED_DEBUG=1 for tracebacks)."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Decorator for CLI commands: user errors -> one line on stderr, exit 2; Ctrl-C -> exit 130.

    User errors are ValueError (every validation error of this package), missing files, and LLM
    request failures (`embodied.llm.client.LLMError`, a RuntimeError).
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError, PermissionError, RuntimeError) as exc:
            if os.environ.get("EMBODIED_DEBUG") or (isinstance(exc, RuntimeError) and not _is_llm_error(exc)):
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _is_llm_error(exc: BaseException) -> bool:
    # Only loaded when an LLM client was used, so an LLMError cannot exist otherwise (no import cost).
    client = sys.modules.get("embodied.llm.client")
    return client is not None and isinstance(exc, client.LLMError)
