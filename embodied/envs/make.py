"""`make` and `make_vec`: task spec -> gymnasium env / vector env."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
from pydantic import ValidationError

from embodied.envs.suites import build_base_env
from embodied.envs.wrappers import FrameCapture, RenderQuality, TaskWrapper
from embodied.tasks.spec import TaskError, TaskSpec, load_task

Frames = bool | Sequence[str] | None


def resolve(task: str | Path | TaskSpec, **overrides: Any) -> TaskSpec:
    """Load a task and apply field overrides (e.g. ``max_episode_steps=50``), re-validated."""
    spec = load_task(task)
    if not overrides:
        return spec
    unknown = set(overrides) - set(TaskSpec.model_fields)
    if unknown:
        raise TaskError(f"{spec.source or spec.name}: unknown override field(s) {sorted(unknown)}")
    try:
        return TaskSpec.model_validate({**spec.model_dump(), **overrides})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise TaskError(
            f"{spec.source or spec.name}: override {'.'.join(map(str, err['loc']))!r}: {err['msg']}"
        ) from None


def _cameras(spec: TaskSpec, frames: Frames) -> tuple[str, ...]:
    if not frames:
        return ()
    if frames is True:
        if not spec.cameras:
            raise TaskError(f"{spec.source or spec.name}: frames requested but the task lists no cameras")
        return spec.cameras
    return tuple(frames)  # type: ignore[arg-type]


def make(
    task: str | Path | TaskSpec,
    frames: Frames = None,
    frame_size: tuple[int, int] | None = None,
    render_quality: RenderQuality = "fast",
    **overrides: Any,
) -> gym.Env:
    """Build the task's environment.

    Args:
        task: task name (a file in `envs/`), a path to a TOML file, or a `TaskSpec`.
        frames: None/False renders nothing; True captures all task cameras; a list captures those.
            Frames arrive as `info["frames"][camera]`, uint8 [H, W, 3], after every reset and step.
        frame_size: (H, W) of captured frames; default the task's `frame_size` (224x224).
        render_quality: "fast" (no MSAA/shadows/reflections; ~20x cheaper on CPU) or "full" (videos).
        **overrides: task fields to override, e.g. ``max_episode_steps=50``.

    Returns:
        A `gymnasium.Env` with `info["success"]` (bool) on every step and the task's time limit.
    """
    spec = resolve(task, **overrides)
    env: gym.Env = TaskWrapper(build_base_env(spec), spec)
    env = gym.wrappers.TimeLimit(env, spec.max_episode_steps)
    cams = _cameras(spec, frames)
    if cams:
        env = FrameCapture(env, cams, tuple(frame_size or spec.frame_size), render_quality)
    return env


def make_vec(
    task: str | Path | TaskSpec,
    num_envs: int,
    frames: Frames = None,
    frame_size: tuple[int, int] | None = None,
    render_quality: RenderQuality = "fast",
    vectorization: str = "sync",
    **overrides: Any,
) -> gym.vector.VectorEnv:
    """`num_envs` copies of the task env in a gymnasium vector env with next-step autoreset.

    `reset(seed=s)` seeds sub-env i with s + i. Frames, when requested, are captured inside each
    sub-env (before autoreset) and arrive as `infos["frames"][camera]`, uint8 [N, H, W, 3].
    """
    if num_envs < 1:
        raise TaskError(f"num_envs must be >= 1, got {num_envs}")
    spec = resolve(task, **overrides)
    fns = [lambda: make(spec, frames=frames, frame_size=frame_size, render_quality=render_quality)] * num_envs
    mode = gym.vector.AutoresetMode.NEXT_STEP
    if vectorization == "sync":
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)
    if vectorization == "async":
        return gym.vector.AsyncVectorEnv(fns, autoreset_mode=mode, context="spawn")
    raise TaskError(f"vectorization must be 'sync' or 'async', got {vectorization!r}")
