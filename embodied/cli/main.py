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
    shaping_gamma: Annotated[
        Optional[float],
        typer.Option(help="Discount of the shaping term; must equal the learner's (refused otherwise). Default: it."),
    ] = None,
    algo: Annotated[str, typer.Option(help="ppo | sac (both backends) | appo (--backend rllib)")] = "ppo",
    steps: Annotated[int, typer.Option(help="Total environment steps.")] = 50_000,
    seed: Annotated[int, typer.Option(help="Training seed (sub-env i is seeded seed+i).")] = 0,
    envs: Annotated[int, typer.Option(help="Parallel environments (rllib: per EnvRunner by default).")] = 4,
    gamma: Annotated[Optional[float], typer.Option(help="Learner discount (default: the task's gamma).")] = None,
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N env steps.")] = 10_000,
    run: Annotated[Optional[str], typer.Option(help="Run name (default: <task>-<algo>-<reward kind>-s<seed>).")] = None,
    resume: Annotated[Optional[str], typer.Option(help="Continue an interrupted run from its last checkpoint.")] = None,
    backend: Annotated[str, typer.Option(help="sb3 (this machine) | rllib (a Ray cluster; local by default).")] = "sb3",
    env_runners: Annotated[
        Optional[int], typer.Option(help="rllib: EnvRunner actors, one CPU each (default 2; 0 = sample in the driver).")
    ] = None,
    envs_per_runner: Annotated[
        Optional[int], typer.Option(help="rllib: vector envs per EnvRunner (default --envs).")
    ] = None,
    learners: Annotated[Optional[int], typer.Option(help="rllib: Learner actors (default 0: in the driver).")] = None,
    gpus_per_learner: Annotated[Optional[float], typer.Option(help="rllib: GPUs per learner (fractional ok).")] = None,
    reward_service: Annotated[
        Optional[str],
        typer.Option(help="rllib: where rewards are scored: auto | in-runner | actor (one shared batching actor)."),
    ] = None,
    reward_gpus: Annotated[
        Optional[float], typer.Option(help="rllib: GPUs for reward scoring (the actor's, or split over runners).")
    ] = None,
    address: Annotated[
        Optional[str],
        typer.Option(help="rllib: Ray cluster to join (host:6379, ray://host:10001, auto); default RAY_ADDRESS/local."),
    ] = None,
    root: Root = Path("policies"),
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train a policy on TASK with a reward spec and optional shaping; writes policies/<run>/.

    --backend rllib trains the same specs on a Ray cluster (local by default; --address joins one).
    """
    if resume:
        from embodied.train.config import load_config
        from embodied.train.runs import partial_dir

        saved = partial_dir(root, resume) / "config.toml"
        if saved.is_file() and load_config(saved).backend == "rllib":
            from embodied.train import rllib

            out = rllib.resume(resume, root, progress, address=address)
        else:
            from embodied.train import sb3

            out = sb3.resume(resume, root, progress)
    else:
        if task is None:
            raise ValueError("give a TASK (or --resume RUN)")
        cfg = build_config(
            task,
            reward,
            shaping,
            shaping_scale,
            algo,
            steps,
            seed,
            envs,
            gamma,
            checkpoint_every,
            run,
            backend=backend,
            env_runners=env_runners,
            envs_per_runner=envs_per_runner,
            learners=learners,
            gpus_per_learner=gpus_per_learner,
            reward_service=reward_service,
            reward_gpus=reward_gpus,
            shaping_gamma=shaping_gamma,
        )
        if cfg.backend == "rllib":
            from embodied.train import rllib

            out = rllib.train(cfg, root, progress, address=address)
        else:
            if address:
                raise ValueError("--address joins a Ray cluster: use it with --backend rllib")
            from embodied.train import sb3

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
    *,
    backend: str = "sb3",
    env_runners: int | None = None,
    envs_per_runner: int | None = None,
    learners: int | None = None,
    gpus_per_learner: float | None = None,
    reward_service: str | None = None,
    reward_gpus: float | None = None,
    shaping_gamma: float | None = None,
) -> TrainConfig:  # noqa: F821
    """Resolve CLI options into a validated `TrainConfig`.

    The RLlib options (keyword-only) must be None with `backend="sb3"`; with `backend="rllib"`, None
    keeps the config's default (2 runners, `envs` per runner, learner in the driver, auto reward placement).
    """
    from pydantic import ValidationError

    from embodied.rewards.registry import parse_spec
    from embodied.rewards.shaping import check_gamma
    from embodied.tasks.spec import load_task
    from embodied.train.config import ConfigError, TrainConfig

    if backend not in ("sb3", "rllib"):
        raise ConfigError(f"option --backend: unknown backend {backend!r}; available: sb3, rllib")
    rllib_opts = {
        "env_runners": env_runners,
        "envs_per_runner": envs_per_runner,
        "learners": learners,
        "gpus_per_learner": gpus_per_learner,
        "reward_service": reward_service,
        "reward_gpus": reward_gpus,
    }
    given = {k: v for k, v in rllib_opts.items() if v is not None}
    if backend == "sb3" and given:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in given)
        raise ConfigError(f"option {flags}: only for --backend rllib")
    spec = load_task(task)
    learner_gamma = spec.gamma if gamma is None else gamma
    if shaping_gamma is not None:
        check_gamma(shaping_gamma, learner_gamma, "option --shaping-gamma")
    name = run or f"{spec.name}-{algo}-{parse_spec(reward)[0]}{'-shaped' if shaping else ''}-s{seed}"
    try:
        return TrainConfig(
            run=name,
            task=spec,
            reward=reward,
            shaping=shaping,
            shaping_scale=shaping_scale,
            algo=algo,
            backend=backend,
            steps=steps,
            seed=seed,
            envs=envs,
            gamma=learner_gamma,
            shaping_gamma=shaping_gamma,
            checkpoint_every=checkpoint_every,
            **given,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "config"
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"option --{field.replace('_', '-')}: {msg}") from None


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
    steps: Annotated[int, typer.Option(help="Env steps per run.")] = 150_000,
    episodes: Annotated[int, typer.Option(help="Evaluation episodes per run.")] = 20,
    root: Root = Path("policies"),
) -> None:
    """Main job: expert reward program + shaping vs the env's own reward, same budget; eval, video, table."""
    from embodied.demo import run_demo

    run_demo(task, steps, episodes, root)


SUB_APPS: dict[str, str] = {
    "reward": "embodied.cli.reward:app",
    "clip": "embodied.cli.clip:app",
    "demos": "embodied.cli.demos:app",
    "progress": "embodied.cli.progress:app",
    "bc": "embodied.cli.bc:app",
    "calm": "embodied.cli.calm:app",
}
COMMANDS: dict[str, str] = {
    "compare": "embodied.cli.compare:compare",
    "deploy": "embodied.cli.ros:deploy",
    "monitor": "embodied.cli.ros:monitor",
    "record": "embodied.cli.ros:record",
    "reward check": "embodied.cli.reward_check:check",
}


def _mount() -> None:
    """Attach the sub-commands; their modules import their heavy dependencies lazily."""
    import importlib
    import importlib.util

    def load(target: str) -> object | None:
        module, _, attr = target.partition(":")
        if importlib.util.find_spec(module) is None:
            return None
        return getattr(importlib.import_module(module), attr)

    sub_apps = {}
    for name, target in SUB_APPS.items():
        sub = load(target)
        if sub is not None:
            app.add_typer(sub, name=name)
            sub_apps[name] = sub
    for name, target in COMMANDS.items():
        fn = load(target)
        if fn is None:
            continue
        group, _, command = name.rpartition(" ")
        (sub_apps[group] if group else app).command(command)(fn)


_mount()


def main() -> None:
    app()
