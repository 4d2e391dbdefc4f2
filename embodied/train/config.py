"""Training configuration: one dataclass, resolved once and written into the run folder."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from embodied.tasks.spec import TaskError, TaskSpec


class ConfigError(ValueError):
    """A training configuration is invalid; the message names the field."""


class TrainConfig(BaseModel):
    """Everything needed to reproduce a training run.

    `task` holds the full resolved task spec (not just its name), so a run folder reproduces the run
    even after `envs/` changes; reward programs are copied into the run folder for the same reason.
    """

    model_config = ConfigDict(extra="forbid")

    run: str
    task: TaskSpec
    reward: str = "env"
    shaping: str | None = None
    shaping_scale: float = Field(1.0, gt=0)
    shaping_gamma: float | None = Field(None, description="defaults to the learner's gamma; must equal it")
    algo: Literal["ppo", "sac"] = "ppo"
    backend: Literal["sb3"] = "sb3"
    steps: int = Field(gt=0)
    seed: int = 0
    envs: int = Field(4, ge=1)
    gamma: float = Field(ge=0, lt=1)
    checkpoint_every: int = Field(10_000, gt=0)
    hyperparams: dict[str, Any] = Field(default_factory=dict)
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def load_config(path: Path) -> TrainConfig:
    """Read a run's resolved `config.toml`."""
    try:
        return TrainConfig.model_validate(tomllib.loads(path.read_text()))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None
    except (ValidationError, TaskError) as exc:
        raise ConfigError(f"{path}: {_first_error(exc)}") from None


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        return f"field {'.'.join(map(str, err['loc']))!r}: {err['msg']}"
    return str(exc)


def save_config(cfg: TrainConfig, path: Path) -> None:
    import tomli_w

    path.write_text(tomli_w.dumps(_drop_none(cfg.to_dict())))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value
