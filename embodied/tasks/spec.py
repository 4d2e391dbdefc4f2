"""Task specs: one TOML file per task in `envs/`, validated on load.

A task names an environment and everything reward sources need to know about it: the language
goal, a baseline description (for VLM regularisation), ordered stages, a success rule, cameras,
the episode limit, the learner's discount, and named views of the observation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from embodied.tomlfile import load_model, workspace_dir

Suite = Literal["mujoco", "metaworld", "fetch", "minihack", "scripted"]


class TaskError(ValueError):
    """A task cannot be found or its file is invalid. The message names the file and field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ViewSpec(_Model):
    """A named slice of the observation, with its meaning and unit (what prompts and programs see)."""

    expr: str = Field(description="e.g. 'obs[0:3]' or \"obs['blstats'][0:2]\"")
    meaning: str
    unit: str = ""


class StageSpec(_Model):
    """One stage of the task, in order. `done` is an optional rule over views/info marking its end."""

    name: str
    description: str
    done: str | None = None


class TaskSpec(_Model):
    """A validated task. Field docs are the TOML schema (see docs/tasks.md)."""

    name: str
    suite: Suite
    env_id: str
    env_kwargs: dict[str, object] = Field(default_factory=dict)
    goal: str
    baseline: str = ""
    stages: tuple[StageSpec, ...] = ()
    success: str = Field(description="expression over views and info, e.g. \"info['success'] > 0\"")
    success_at: Literal["any", "end"] = Field(
        "any", description="an episode succeeds if the rule held at any step (Meta-World) or at its last step"
    )
    cameras: tuple[str, ...] = ()
    camera_weights: dict[str, float] = Field(default_factory=dict)
    frame_size: tuple[int, int] = (224, 224)
    max_episode_steps: int = Field(gt=0)
    gamma: float = Field(ge=0.0, lt=1.0)
    views: dict[str, ViewSpec] = Field(default_factory=dict)
    source: str = Field(default="", description="file the spec was loaded from (set by the loader)")

    @field_validator("name")
    @classmethod
    def _name_is_slug(cls, v: str) -> str:
        if not v or not all(c.isalnum() or c in "-_" for c in v):
            raise ValueError(f"must be letters, digits, '-' or '_' (got {v!r})")
        return v

    @field_validator("views")
    @classmethod
    def _view_names(cls, v: dict[str, ViewSpec]) -> dict[str, ViewSpec]:
        for key in v:
            if not key.isidentifier() or key.startswith("_") or key in {"info", "obs", "action"}:
                raise ValueError(f"view name {key!r} must be a Python identifier, not private, not info/obs/action")
        return v

    @model_validator(mode="after")
    def _weights_name_cameras(self) -> TaskSpec:
        unknown = set(self.camera_weights) - set(self.cameras)
        if unknown:
            raise ValueError(f"camera_weights names cameras not in 'cameras': {sorted(unknown)}")
        return self

    def view_table(self) -> str:
        """One line per view: name, expression, unit, meaning (for prompts and `embodied tasks`)."""
        return "\n".join(f"{k} = {v.expr}  [{v.unit or '-'}]  {v.meaning}" for k, v in self.views.items())


def tasks_dir() -> Path:
    """The workspace's task folder: `$EMBODIED_TASKS`, else `./envs`, else the repository's `envs/`."""
    return workspace_dir("envs", "EMBODIED_TASKS")


def list_tasks(directory: Path | None = None) -> list[TaskSpec]:
    """Every task in `directory` (default: `tasks_dir()`), sorted by name."""
    directory = directory or tasks_dir()
    return sorted((load_task(p) for p in sorted(directory.glob("*.toml"))), key=lambda t: t.name)


def load_task(task: str | Path | TaskSpec) -> TaskSpec:
    """Load and validate a task by name (a file in `tasks_dir()`), by path, or pass a spec through.

    Raises:
        TaskError: unknown task, unreadable or malformed TOML, or an invalid field (named).
    """
    if isinstance(task, TaskSpec):
        return task
    path = Path(task)
    if path.suffix != ".toml":
        candidate = tasks_dir() / f"{task}.toml"
        if not candidate.is_file():
            names = sorted(p.stem for p in tasks_dir().glob("*.toml"))
            raise TaskError(f"unknown task {str(task)!r}; known tasks: {', '.join(names) or 'none'} (in {tasks_dir()})")
        path = candidate
    if not path.is_file():
        raise TaskError(f"{path}: no such task file")
    return load_model(path, TaskSpec, TaskError, defaults={"name": path.stem}, overrides={"source": str(path)})
