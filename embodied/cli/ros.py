"""`embodied deploy`, `embodied monitor`, `embodied record`: a trained policy, a reward model or a
demonstration recorder on a real robot through rosbridge (ROS 1 or ROS 2). See docs/deploy.md."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer

from embodied.cli.errors import user_errors

Rosbridge = Annotated[
    str, typer.Option("--rosbridge", help="rosbridge_server WebSocket URL, ws://HOST:PORT (ROS 1 or ROS 2).")
]
Robot = Annotated[str, typer.Option("--robot", help="Robot profile: a name in robots/ or a path to a TOML file.")]
MaxSeconds = Annotated[
    Optional[float], typer.Option("--max-seconds", help="Stop after this many seconds (default: until Ctrl-C).")
]
ConnectTimeout = Annotated[float, typer.Option("--connect-timeout", help="Seconds to wait for the bridge.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log every step (DEBUG).")]


@contextlib.contextmanager
def _logging(verbose: bool) -> Iterator[None]:
    """Deployment logs to stderr for the duration of a command (and nothing is left attached after)."""
    logger = logging.getLogger("embodied.deploy")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    roslibpy_logger = logging.getLogger("roslibpy")
    old_ros = roslibpy_logger.level
    roslibpy_logger.setLevel(logging.WARNING)  # its INFO lines repeat what our own connection log says
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        roslibpy_logger.setLevel(old_ros)


@user_errors
def deploy(
    run: Annotated[str, typer.Argument(help="Run name (policies/<run>) or path of the policy to deploy.")],
    rosbridge: Rosbridge,
    robot: Robot,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Subscribe and compute, but only log commands (nothing is published).")
    ] = False,
    max_seconds: MaxSeconds = None,
    root: Annotated[Path, typer.Option("--root", help="Folder holding run folders.")] = Path("policies"),
    connect_timeout: ConnectTimeout = 5.0,
    log_file: Annotated[
        Optional[Path], typer.Option("--log", help="Append one JSON line per step and state change to this file.")
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Run a trained policy on a robot: observations from ROS topics, commands at a fixed rate, with limits,
    rate limits, a stale-data/connection watchdog that publishes the hold command, and an e-stop topic."""
    from embodied.deploy.control import run_deploy

    with _logging(verbose):
        stats = run_deploy(run, rosbridge, robot, dry_run, max_seconds, root, connect_timeout, log_file)
    s = stats.summary()
    typer.echo(
        f"deploy {'(dry run) ' if dry_run else ''}finished: {s['steps']} steps in {s['seconds']:.1f} s "
        f"({s['rate_hz']:.1f} Hz), latency p50 {s['latency_ms_p50']} ms p99 {s['latency_ms_p99']} ms, "
        f"{s['holds']} holds, {s['published']} messages published"
    )


@user_errors
def monitor(
    rosbridge: Rosbridge,
    robot: Robot,
    task: Annotated[str, typer.Option("--task", help="Task name (envs/<task>.toml) or path whose reward is scored.")],
    reward: Annotated[
        str, typer.Option("--reward", help="Reward spec: program:PATH | clip:... | progress:... (any registered kind).")
    ],
    max_seconds: MaxSeconds = None,
    connect_timeout: ConnectTimeout = 5.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Log scores without publishing them.")] = False,
    log_file: Annotated[
        Optional[Path], typer.Option("--log", help="Append one JSON line per scored tick to this file.")
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Score the robot's camera/state stream with a reward model; publish reward, progress and stage."""
    import numpy as np

    from embodied.deploy.monitor import run_monitor

    with _logging(verbose):
        stats = run_monitor(rosbridge, robot, task, reward, max_seconds, connect_timeout, not dry_run, log_file)
    rewards = [s.reward for s in stats.scores]
    mean = f"{np.mean(rewards):.4f}" if rewards else "-"
    typer.echo(
        f"monitor finished: {len(rewards)} scored ticks ({stats.skipped} skipped on stale data), mean reward {mean}"
    )


@user_errors
def record(
    rosbridge: Rosbridge,
    robot: Robot,
    out: Annotated[Path, typer.Option("--out", help="Dataset folder to create (embodied demonstration format).")],
    task: Annotated[
        Optional[str], typer.Option("--task", help="Task being demonstrated (stage names, goal, frame size).")
    ] = None,
    stages: Annotated[
        Optional[str], typer.Option("--stages", help="Comma-separated subtask names when there is no task.")
    ] = None,
    episodes: Annotated[Optional[int], typer.Option("--episodes", help="Stop after saving this many episodes.")] = None,
    max_seconds: MaxSeconds = None,
    frame_size: Annotated[
        Optional[int], typer.Option("--frame-size", help="Square frame size in pixels (default: the task's).")
    ] = None,
    keys: Annotated[
        Optional[bool],
        typer.Option("--keys/--no-keys", help="Read operator keys from stdin (default: when stdin is a terminal)."),
    ] = None,
    auto_start: Annotated[
        bool, typer.Option("--auto-start/--no-auto-start", help="Start the first episode at once.")
    ] = True,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out folder.")] = False,
    connect_timeout: ConnectTimeout = 5.0,
    verbose: Verbose = False,
) -> None:
    """Record episodes (frames, states, actions, timestamps) with operator-marked subtasks.

    Keys (then Enter) or words on the annotation topic: s start, n next subtask, y success, f fail,
    e end (unlabelled), d discard, q quit.
    """
    from embodied.deploy.record import run_record

    if episodes is not None and episodes < 1:
        raise ValueError(f"option --episodes: must be >= 1, got {episodes}")
    if frame_size is not None and frame_size < 8:
        raise ValueError(f"option --frame-size: must be >= 8 pixels, got {frame_size}")
    use_keys = sys.stdin.isatty() if keys is None else keys
    names = [s.strip() for s in stages.split(",") if s.strip()] if stages else None
    with _logging(verbose):
        path, saved = run_record(
            rosbridge, robot, out, task, names, episodes, max_seconds,
            (frame_size, frame_size) if frame_size else None, auto_start, sys.stdin if use_keys else None,
            connect_timeout, overwrite,
        )  # fmt: skip
    if saved:
        typer.echo(f"recorded {len(saved)} episode(s) to {path}")
    else:
        typer.echo("no episode recorded")
