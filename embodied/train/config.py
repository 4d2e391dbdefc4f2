"""Training configuration: one dataclass, resolved once and written into the run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from embodied.tasks.spec import TaskError, TaskSpec
from embodied.tomlfile import load_model


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
    algo: Literal["ppo", "sac", "appo"] = "ppo"
    backend: Literal["sb3", "rllib"] = Field("sb3", validate_default=True)
    steps: int = Field(gt=0)
    seed: int = 0
    envs: int = Field(4, ge=1)
    gamma: float = Field(ge=0, lt=1)
    checkpoint_every: int = Field(10_000, gt=0)
    hyperparams: dict[str, Any] = Field(default_factory=dict)
    device: str = "cpu"
    threads: int = Field(1, ge=1, description="torch CPU threads of the learner; 1 is fastest for small MLPs")
    # RLlib backend (ignored by SB3): the scale-out knobs. None = derived (see `embodied.train.rllib`).
    env_runners: int = Field(2, ge=0, description="RLlib EnvRunner actors (0 = sample in the driver)")
    envs_per_runner: int | None = Field(None, ge=1, description="vector envs per EnvRunner; None = `envs`")
    learners: int | None = Field(None, ge=0, description="RLlib Learner actors; None = the algorithm's default")
    gpus_per_learner: float = Field(0.0, ge=0)
    reward_service: Literal["auto", "in-runner", "actor"] = "auto"
    reward_gpus: float | None = Field(
        None, ge=0, description="GPUs for reward scoring (the actor's, or split over runners); None = auto"
    )

    @field_validator("backend")
    @classmethod
    def _algo_fits_backend(cls, backend: str, info: Any) -> str:
        algo = info.data.get("algo")
        if backend == "sb3" and algo == "appo":
            raise ValueError("algo 'appo' needs --backend rllib (Stable-Baselines3 has no APPO)")
        return backend

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def load_config(path: Path) -> TrainConfig:
    """Read a run's resolved `config.toml`."""
    try:
        return load_model(path, TrainConfig, ConfigError)
    except TaskError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def save_config(cfg: TrainConfig, path: Path) -> None:
    import tomli_w

    path.write_text(tomli_w.dumps(_drop_none(cfg.to_dict())))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value
