"""`embodied compare`: distance matrix between rewards (STARC, EPIC, DARD), as markdown/JSON plus a heatmap.

Wire into the main app with ``app.command("compare")(compare)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from embodied.cli.errors import user_errors

if TYPE_CHECKING:
    from embodied.compare.report import DistanceReport

DEFAULT_OUT = Path("reward_models/compare")


@user_errors
def compare(
    task: Annotated[
        Optional[str], typer.Argument(help="Task name (envs/<task>.toml) or path. Omit with --tabular.")
    ] = None,
    rewards: Annotated[
        Optional[str],
        typer.Option(
            "--rewards", "-r", help="Comma-separated reward specs, e.g. env,program:reward_models/x.py,clip:..."
        ),
    ] = None,
    metric: Annotated[str, typer.Option(help="starc (value-adjusted levelling, default) | epic | dard.")] = "starc",
    json_out: Annotated[bool, typer.Option("--json", help="Print the matrix as JSON instead of markdown.")] = False,
    tabular: Annotated[
        Optional[Path],
        typer.Option(
            help="Compare tabular rewards from an .npz file (R_<name> or R [K,S,A,S], P, gamma; docs/compare.md)."
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for the .md, .json and heatmap .png.")] = DEFAULT_OUT,
    policies: Annotated[
        Optional[str],
        typer.Option(
            help="Coverage policies, comma-separated: random | expert | expert:SIGMA. "
            "Default: random,expert:0.5 on Meta-World, random elsewhere."
        ),
    ] = None,
    transitions: Annotated[int, typer.Option(help="Coverage transitions collected (and drawn per seed).")] = 4096,
    samples: Annotated[
        int, typer.Option(help="EPIC: (action, next state) samples per seed for the inner means.")
    ] = 4096,
    seeds: Annotated[int, typer.Option(help="Seeds (repeated draws); CIs bootstrap over seeds and transitions.")] = 3,
    dard_samples: Annotated[int, typer.Option(help="DARD: simulator next-state draws per transition.")] = 8,
    canonical: Annotated[str, typer.Option(help="Tabular STARC canonicalisation: val | minimal.")] = "val",
    norm: Annotated[str, typer.Option(help="STARC norm: l1 | l2 | linf.")] = "l2",
    gamma: Annotated[Optional[float], typer.Option(help="Discount (default: the task's, or the npz 'gamma').")] = None,
    episode_steps: Annotated[Optional[int], typer.Option(help="Cut coverage episodes after N steps.")] = None,
    seed: Annotated[int, typer.Option(help="Base seed for rollouts and estimators.")] = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar while collecting coverage.")] = False,
) -> None:
    """Compare rewards: a distance matrix (0 = same policy order, 1 = opposite) and a heatmap.

    Simulator: embodied compare TASK --rewards SPEC1,SPEC2,... [--metric starc|epic|dard] [--json]

    Rolls out coverage policies, scores every reward on the same transitions, prints 95 % CIs.

    Tabular: embodied compare --tabular FILE.npz (exact values; npz format in docs/compare.md).

    Writes <name>-<metric>.md, .json and .png to --out (default reward_models/compare/).
    """
    from embodied.compare.report import DistanceReport, write_report

    if metric not in ("starc", "epic", "dard"):
        raise ValueError(f"--metric: unknown metric {metric!r}; choose starc, epic or dard")
    if tabular is not None:
        if task is not None or rewards is not None:
            raise ValueError("--tabular compares the rewards in the npz file: give no TASK or --rewards with it")
        report = _tabular_report(tabular, metric, canonical, norm, gamma)
        stem = f"{tabular.stem}-{metric}"
        title = f"{tabular.name}: {metric}" + (f" ({canonical}, {norm})" if metric == "starc" else "")
    else:
        if task is None:
            raise ValueError("give a TASK and --rewards SPEC1,SPEC2,... (or --tabular FILE.npz)")
        from embodied.rewards.registry import split_specs

        specs = split_specs(rewards or "")
        if len(specs) < 2:
            raise ValueError("--rewards: give at least two comma-separated reward specs, e.g. env,program:PATH")
        if canonical != "val":
            raise ValueError("--canonical: simulator comparisons use value-adjusted levelling (val) only")
        from embodied.compare.simulator import compare_task

        coverage = [p.strip() for p in policies.split(",") if p.strip()] if policies else None
        result = compare_task(
            task, specs, metric, policies=coverage, n_transitions=transitions, n_samples=samples,
            n_seeds=seeds, gamma=gamma, dard_samples=dard_samples, norm=norm, seed=seed,
            episode_steps=episode_steps, progress=progress,
        )  # fmt: skip
        report = DistanceReport.from_sampled(result)
        name = result.settings.get("task", Path(task).stem)
        stem = f"{name}-{metric}"
        title = f"{name}: {metric} ({result.settings['n_transitions']} transitions, {seeds} seeds)"
    paths = write_report(report, out, stem, title)
    if json_out:
        typer.echo(json.dumps({**report.to_dict(), "files": {k: str(v) for k, v in paths.items()}}, indent=1))
    else:
        typer.echo(report.to_markdown())
        typer.echo(f"\nheatmap: {paths['png']}  (json: {paths['json']})", err=True)


def _tabular_report(path: Path, metric: str, canonical: str, norm: str, gamma: float | None) -> DistanceReport:
    from embodied.compare.report import DistanceReport
    from embodied.compare.tabular import distance_matrix, load_tabular

    prob = load_tabular(path)
    g = gamma if gamma is not None else prob.gamma
    if g is None:
        raise ValueError(f"gamma: {path} has no 'gamma' array; pass --gamma")
    if metric in ("starc", "dard") and prob.P is None:
        raise ValueError(f"P: {path} has no transition array 'P', needed by --metric {metric} (epic works without)")
    D = distance_matrix(
        prob.rewards, g, metric, P=prob.P, weights=prob.weights, canonical=canonical, norm=norm,
        policy=prob.policy, state_dist=prob.state_dist, action_dist=prob.action_dist,
    )  # fmt: skip
    settings: dict[str, object] = {"source": str(path), "gamma": g, "exact": True}
    if metric == "starc":
        settings.update({"canonical": canonical, "norm": norm})
    return DistanceReport(list(prob.rewards), metric, D, None, None, settings)
