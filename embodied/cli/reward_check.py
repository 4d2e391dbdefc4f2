"""`embodied reward check TASK --reward SPEC`: is this reward worth training on? (minutes, no training)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from embodied.cli.errors import user_errors


@user_errors
def check(
    task: Annotated[str, typer.Argument(help="Task name (envs/<task>.toml) or path.")],
    reward: Annotated[
        str, typer.Option(help="Reward spec to check: env | program:PATH | clip:... | progress:... | subgoals:...")
    ] = "env",
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    episodes: Annotated[int, typer.Option(help="Episodes per policy (layouts seed .. seed+episodes-1).")] = 4,
    policies: Annotated[
        Optional[str],
        typer.Option(help="Comma-separated policies (default: expert,expert:0.5,random on Meta-World; random else)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="First layout seed; policy noise seed.")] = 0,
    episode_steps: Annotated[Optional[int], typer.Option(help="Cut episodes (default: the task's limit).")] = None,
    render: Annotated[
        str, typer.Option(help="Frame quality: fast (no MSAA/shadows) | full (as in training).")
    ] = "fast",
    epic: Annotated[bool, typer.Option(help="Also compute the EPIC distance to the env reward.")] = True,
    epic_transitions: Annotated[int, typer.Option(help="EPIC transitions per seed (3 seeds).")] = 2048,
    epic_samples: Annotated[int, typer.Option(help="EPIC (A, S') samples per seed.")] = 1024,
    out: Annotated[
        Optional[Path],
        typer.Option(help="Folder for <spec>.json and <spec>.png (default reward_models/<task>/checks)."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Roll out scripted experts and random/perturbed policies; score them with the reward.

    Reports the Spearman correlation with ground-truth progress, success-vs-failure AUC, the EPIC
    distance to the env's reward and a PNG of the per-episode reward curves. Works for any reward spec.
    """
    from embodied.rewards.quality import check_reward
    from embodied.tasks.spec import load_task

    if render not in ("fast", "full"):
        raise ValueError(f"--render must be fast or full, got {render!r}")
    spec = load_task(task)
    pols = tuple(p.strip() for p in policies.split(",") if p.strip()) if policies else None
    folder = out if out is not None else Path("reward_models") / spec.name / "checks"
    report = check_reward(
        spec, reward, pols, episodes, seed, render, episode_steps, epic, epic_transitions, epic_samples, folder,
        progress=progress and not json_out,
    )  # fmt: skip
    if json_out:
        typer.echo(json.dumps(report.to_dict(), indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.3f}"

    table = Table(title=f"{report.task} — {report.reward}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("Spearman (reward vs progress, all transitions)", fmt(report.spearman))
    table.add_row("Spearman (within clean expert episodes)", fmt(report.spearman_expert))
    table.add_row("AUC success vs failure (episodes)", fmt(report.auc_episode))
    table.add_row("AUC success vs other states (transitions)", fmt(report.auc_transition))
    if report.epic:
        e = report.epic
        table.add_row("EPIC distance to env reward", f"{fmt(e['distance'])} [{fmt(e['ci_low'])}, {fmt(e['ci_high'])}]")
    for name, stats in report.policies.items():
        table.add_row(
            f"policy {name}",
            f"success {stats['success_rate']:.0%}, mean reward {fmt(stats['mean_reward'])}, "
            f"final {fmt(stats['final_score'])}",
        )
    Console().print(table)
    typer.echo(f"verdict: {report.verdict}")
    typer.echo(f"plot: {report.plot}; json: {Path(report.plot or '').with_suffix('.json')}")
