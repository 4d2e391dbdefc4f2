"""`embodied` command: tasks, train, eval, video, demo (+ reward, compare sub-commands)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from embodied.cli.errors import user_errors

app = typer.Typer(
    help="The reward side of embodied RL: tasks, reward models, policy-invariant shaping, training, comparison.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

Root = Annotated[Path, typer.Option("--root", help="Folder holding run folders.")]


@app.command()
@user_errors
def tasks(json_out: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """List the tasks in envs/ with their suite, env id and language goal."""
    from embodied.tasks.spec import list_tasks

    specs = list_tasks()
    if json_out:
        typer.echo(
            json.dumps(
                [{"name": t.name, "suite": t.suite, "env_id": t.env_id, "goal": t.goal} for t in specs], indent=1
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("task", "suite", "env id", "goal")
    for t in specs:
        table.add_row(t.name, t.suite, t.env_id, t.goal)
    Console().print(table)


@app.command()
@user_errors
def train(
    task: Annotated[Optional[str], typer.Argument(help="Task name (envs/<task>.toml) or path.")] = None,
    reward: Annotated[
        str, typer.Option(help="Reward spec: env | program:PATH | clip:... | progress:... | subgoals:...")
    ] = "env",
    shaping: Annotated[
        Optional[str], typer.Option(help="Potential spec for policy-invariant shaping (state-only).")
    ] = None,
    shaping_scale: Annotated[float, typer.Option(help="Positive constant multiplying the potential.")] = 1.0,
    algo: Annotated[str, typer.Option(help="ppo | sac")] = "ppo",
    steps: Annotated[int, typer.Option(help="Total environment steps.")] = 50_000,
    seed: Annotated[int, typer.Option(help="Training seed (sub-env i is seeded seed+i).")] = 0,
    envs: Annotated[int, typer.Option(help="Parallel environments.")] = 4,
    gamma: Annotated[Optional[float], typer.Option(help="Learner discount (default: the task's gamma).")] = None,
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N env steps.")] = 10_000,
    run: Annotated[Optional[str], typer.Option(help="Run name (default: <task>-<algo>-<reward kind>-s<seed>).")] = None,
    resume: Annotated[Optional[str], typer.Option(help="Continue an interrupted run from its last checkpoint.")] = None,
    backend: Annotated[str, typer.Option(help="sb3 (this machine).")] = "sb3",
    root: Root = Path("policies"),
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train a policy on TASK with a reward spec and optional shaping; writes policies/<run>/."""
    from embodied.train import sb3

    if resume:
        out = sb3.resume(resume, root, progress)
    else:
        if task is None:
            raise ValueError("give a TASK (or --resume RUN)")
        if backend != "sb3":
            raise ValueError(f"unknown backend {backend!r}; available: sb3")
        cfg = build_config(task, reward, shaping, shaping_scale, algo, steps, seed, envs, gamma, checkpoint_every, run)
        out = sb3.train(cfg, root, progress)
    typer.echo(f"run written to {out}")


def build_config(
    task: str,
    reward: str,
    shaping: str | None,
    shaping_scale: float,
    algo: str,
    steps: int,
    seed: int,
    envs: int,
    gamma: float | None,
    checkpoint_every: int,
    run: str | None,
) -> TrainConfig:  # noqa: F821
    """Resolve CLI options into a validated `TrainConfig`."""
    from pydantic import ValidationError

    from embodied.rewards.registry import parse_spec
    from embodied.tasks.spec import load_task
    from embodied.train.config import ConfigError, TrainConfig

    spec = load_task(task)
    name = run or f"{spec.name}-{algo}-{parse_spec(reward)[0]}{'-shaped' if shaping else ''}-s{seed}"
    try:
        return TrainConfig(
            run=name,
            task=spec,
            reward=reward,
            shaping=shaping,
            shaping_scale=shaping_scale,
            algo=algo,
            steps=steps,
            seed=seed,
            envs=envs,
            gamma=spec.gamma if gamma is None else gamma,
            checkpoint_every=checkpoint_every,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"option --{str(err['loc'][0]).replace('_', '-')}: {err['msg']}") from None


@app.command("eval")
@user_errors
def eval_(
    run: Annotated[str, typer.Argument(help="Run name (policies/<run>) or path.")],
    episodes: Annotated[int, typer.Option(help="Episodes on held-out seeds.")] = 10,
    seed: Annotated[int, typer.Option(help="First held-out seed.")] = 1_000_000,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    root: Root = Path("policies"),
) -> None:
    """Evaluate a run: success rate and env return over held-out seeds."""
    from rich.progress import Progress

    from embodied.train.evaluate import evaluate

    with Progress(transient=True, disable=json_out) as bar:
        job = bar.add_task("evaluating", total=episodes)
        result = evaluate(run, episodes, seed, root, progress=lambda k: bar.advance(job, k))
    if json_out:
        typer.echo(json.dumps(result, indent=1))
    else:
        typer.echo(
            f"{result['run']}: success {result['success_rate']:.0%}, env return {result['env_return']:.2f} "
            f"± {result['env_return_std']:.2f}, learner return {result['return']:.2f} over {episodes} episodes"
        )


@app.command()
@user_errors
def video(
    run: Annotated[str, typer.Argument(help="Run name (policies/<run>) or path.")],
    out: Annotated[Optional[Path], typer.Option(help="Output mp4 (default videos/<run>.mp4).")] = None,
    episodes: Annotated[int, typer.Option(help="Episodes to record.")] = 1,
    camera: Annotated[Optional[str], typer.Option(help="Camera (default: the task's first).")] = None,
    size: Annotated[int, typer.Option(help="Frame height and width in pixels.")] = 480,
    seed: Annotated[int, typer.Option(help="First held-out seed.")] = 1_000_000,
    root: Root = Path("policies"),
) -> None:
    """Write an mp4 of the run's policy with reward components and returns drawn on the frames."""
    from embodied.video.record import record

    path = record(run, out, episodes, seed, camera, size, root)
    typer.echo(f"video written to {path}")


@app.command()
@user_errors
def demo(
    task: Annotated[str, typer.Option(help="Meta-World task to train on.")] = "metaworld-reach",
    steps: Annotated[int, typer.Option(help="Env steps per run.")] = 60_000,
    episodes: Annotated[int, typer.Option(help="Evaluation episodes per run.")] = 20,
    root: Root = Path("policies"),
) -> None:
    """Main job: expert reward program + shaping vs the env's own reward, same budget; eval, video, table."""
    from embodied.demo import run_demo

    run_demo(task, steps, episodes, root)


def _mount() -> None:
    import importlib.util

    if importlib.util.find_spec("embodied.cli.reward"):
        from embodied.cli import reward

        app.add_typer(reward.app, name="reward")
    if importlib.util.find_spec("embodied.cli.compare"):
        from embodied.cli import compare

        app.command("compare")(compare.compare)


_mount()


def main() -> None:
    app()
