"""Run folders: `policies/<run>/`, written under a temporary name and renamed when complete.

Layout: config.toml (resolved config), programs/ (copies of reward programs), model.zip,
checkpoints/step_<N>.zip, metrics.json, tb/ (TensorBoard). A crashed run stays in
`policies/.<run>.partial/` where `--resume RUN` finds it; it never looks complete.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from embodied.rewards.registry import kind_module, parse_spec
from embodied.tasks.spec import TaskSpec

if TYPE_CHECKING:
    from embodied.train.config import TrainConfig


class RunError(ValueError):
    """A run folder is missing, incomplete or already exists."""


def partial_dir(root: Path, run: str) -> Path:
    return root / f".{run}.partial"


def check_name(run: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", run):
        raise RunError(f"run name {run!r} must be letters, digits, '.', '_' or '-'")
    return run


def start(root: Path, run: str) -> Path:
    """Create the temporary folder of a new run; refuse if the run exists or a partial one waits."""
    check_name(run)
    final, tmp = root / run, partial_dir(root, run)
    if final.exists():
        raise RunError(f"run folder {final} already exists; pick another --run name or delete it")
    if tmp.exists():
        raise RunError(f"an interrupted run {run!r} exists at {tmp}; continue it with --resume {run} or delete it")
    tmp.mkdir(parents=True)
    return tmp


def finish(tmp: Path, root: Path, run: str) -> Path:
    """Atomically publish a completed run folder."""
    final = root / run
    tmp.rename(final)
    return final


def find_run(run: str | Path, root: Path = Path("policies")) -> Path:
    """A completed run folder by name or path."""
    path = Path(run)
    for candidate in (path, root / str(run)):
        if (candidate / "config.toml").is_file() and (candidate / "model.zip").is_file():
            return candidate
    if partial_dir(root, str(run)).exists():
        raise RunError(f"run {run!r} did not finish; continue it with `embodied train --resume {run}`")
    raise RunError(f"no completed run {str(run)!r} (looked in {path} and {root / str(run)})")


def localize_spec(spec: str | None, run_dir: Path, task: TaskSpec | None = None) -> str | None:
    """Copy the files a reward spec names into the run folder; return the spec pointing there.

    Each reward kind decides what to copy through an optional ``localize_spec(arg, task, run_dir)``
    beside its factory (programs copy their file, subgoal rewards their subgoal set).
    """
    if spec is None:
        return None
    kind, arg = parse_spec(spec)
    fn = getattr(kind_module(kind), "localize_spec", None)
    return spec if fn is None else f"{kind}:{fn(arg, task, run_dir)}"


def absolute_spec(spec: str | None, run_dir: Path) -> str | None:
    """Resolve a spec stored relative to a run folder (see `localize_spec`)."""
    if spec is None:
        return None
    kind, arg = parse_spec(spec)
    fn = getattr(kind_module(kind), "absolute_spec", None)
    return spec if fn is None else f"{kind}:{fn(arg, run_dir)}"


@contextmanager
def new_run(cfg: TrainConfig, root: Path) -> Iterator[tuple[TrainConfig, Path]]:
    """Start a run folder for `cfg`: copy what its specs name, write the resolved config.

    Yields (the config with localized specs, the temporary folder). If the body fails before the
    first checkpoint, the folder is removed (nothing worth resuming); after one it stays for --resume.
    """
    from embodied.train.config import save_config

    tmp = start(root, cfg.run)
    try:
        cfg = cfg.model_copy(
            update={
                "reward": localize_spec(cfg.reward, tmp, cfg.task),
                "shaping": localize_spec(cfg.shaping, tmp, cfg.task),
            }
        )
        save_config(cfg, tmp / "config.toml")
        yield cfg, tmp
    except BaseException:
        if not (tmp / "checkpoints" / "latest.json").exists():
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def interrupted_run(root: Path, run: str) -> tuple[TrainConfig, Path, dict]:
    """An interrupted run to resume: (its config, its temporary folder, its latest checkpoint record)."""
    import json

    from embodied.train.config import load_config

    tmp = partial_dir(root, run)
    if (root / run).exists():
        raise RunError(f"run {run!r} already completed at {root / run}")
    latest = tmp / "checkpoints" / "latest.json"
    if not latest.is_file():
        raise RunError(f"no interrupted run {run!r} with a checkpoint at {tmp}")
    return load_config(tmp / "config.toml"), tmp, json.loads(latest.read_text())
