"""`embodied calm`: LLM credit assignment (CALM) — evaluate subgoal judges, decompose goals, show text views.

Judges label transitions with the subgoals they achieve; `eval` scores a judge's labels against the
exact oracle on a balanced set of transitions from scripted and random play. LLM commands talk to an
OpenAI-compatible endpoint (--llm-base-url/--llm-model/--llm-key-env or EMBODIED_LLM_* variables) or
replay a recording (--replay FILE; add --record to fill it from the endpoint).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from embodied.cli.errors import user_errors
from embodied.cli.llm_options import BaseUrl, KeyEnv, Model, Record, Replay, make_cli_client

app = typer.Typer(
    help=(
        "LLM credit assignment (CALM) for sparse-reward tasks: decompose a task's goal into subgoals, judge which "
        "subgoals each transition achieved (LLM or exact oracle), and measure a judge's precision/recall. "
        "Train with it: embodied train TASK --reward env --shaping subgoals:judge=oracle|llm,..."
    ),
    no_args_is_help=True,
)

Task = Annotated[str, typer.Argument(help="Task name (envs/<task>.toml) or path, e.g. minihack-keyroom.")]
Seed = Annotated[int, typer.Option(help="Seed: LLM requests, env seeds of the evaluation episodes.")]


def _print_subgoals(subgoals: Any, where: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("subgoal", "weight", "oracle", "description", title=f"{subgoals.task}: {subgoals.source} ({where})")
    for s in subgoals.subgoals:
        table.add_row(s.name, f"{s.weight:g}", s.oracle or "-", s.description)
    Console().print(table)


@app.command("eval")
@user_errors
def eval_(
    task: Task,
    judge: Annotated[str, typer.Option(help="oracle (exact, from the game state) | llm (asks the LLM).")] = "oracle",
    transitions: Annotated[int, typer.Option(help="Size N of the balanced evaluation set.")] = 60,
    question: Annotated[
        str,
        typer.Option(
            help="transition: which subgoals did the action achieve (CALM, used by bonus mode and SubgoalFlags); "
            "state: which subgoals does the state show achieved (used by the default potential)."
        ),
    ] = "transition",
    subgoals: Annotated[
        Optional[Path],
        typer.Option(
            help="Subgoal file for the judge (default: the oracle's set, so labels are comparable). Subgoals are "
            "matched to oracle detectors by their 'oracle' field or name."
        ),
    ] = None,
    seed: Seed = 0,
    epsilon: Annotated[float, typer.Option(help="Random-action rate of the scripted solver.")] = 0.1,
    llm_base_url: BaseUrl = None,
    llm_model: Model = None,
    llm_key_env: KeyEnv = None,
    replay: Replay = None,
    record: Record = False,
    cache: Annotated[
        Optional[Path], typer.Option(help="Judgment cache JSONL (repeated items cost nothing); default: memory.")
    ] = None,
    per_request: Annotated[int, typer.Option(help="Transitions per LLM request.")] = 1,
    workers: Annotated[int, typer.Option(help="Concurrent LLM requests.")] = 4,
    map_: Annotated[str, typer.Option("--map", help="Text view map: crop | full.")] = "crop",
    radius: Annotated[int, typer.Option(help="Text view crop radius (4 = 9x9).")] = 4,
    budget: Annotated[int, typer.Option(help="Text view characters per observation.")] = 1500,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Also write the JSON report to this file.")] = None,
) -> None:
    """Precision, recall and F1 per subgoal of a judge against the exact oracle, on N balanced transitions.

    The set holds about N/(2K) positives per subgoal (K subgoals) and negatives from scripted play (BFS
    solver with random actions mixed in) and uniformly random play, half each. Failed LLM answers
    (not JSON, unknown subgoal, truncated) count as "no subgoal" and are reported by reason.
    """
    from rich.progress import Progress

    from embodied.llm.text_view import MiniHackTextView, ViewConfig, task_action_names
    from embodied.rewards.subgoal_oracle import OracleJudge, evaluate_judge, evaluation_set, oracle_subgoals
    from embodied.rewards.subgoals import JudgmentCache, LLMJudge, SubgoalSet
    from embodied.tasks.spec import load_task

    spec = load_task(task)
    if question not in ("transition", "state"):
        raise ValueError(f"--question must be 'transition' or 'state', got {question!r}")
    if judge not in ("oracle", "llm"):
        raise ValueError(f"--judge must be 'oracle' or 'llm', got {judge!r}")
    if transitions < 2:
        raise ValueError(f"--transitions must be at least 2, got {transitions}")
    truth_set = oracle_subgoals(spec)  # raises for tasks the oracle cannot label
    client = make_cli_client(llm_base_url, llm_model, llm_key_env, replay, record) if judge == "llm" else None
    judge_set = SubgoalSet.load(subgoals) if subgoals else truth_set
    episodes = 2 * (max(2, math.ceil(transitions / (2 * len(truth_set.subgoals))) + 2))
    with Progress(transient=True, disable=json_out) as bar:
        job = bar.add_task("playing scripted and random episodes", total=episodes)
        chosen = evaluation_set(spec, transitions, question, seed, epsilon, progress=lambda n: bar.advance(job, n))
    if judge == "oracle":
        the_judge: Any = OracleJudge(spec, judge_set)
    else:
        view = MiniHackTextView(ViewConfig(map_, radius, budget=budget), task_action_names(spec))
        the_judge = LLMJudge(
            client, judge_set, view, JudgmentCache(cache), seed=seed, per_request=per_request, workers=workers
        )
    report = evaluate_judge(the_judge, chosen, question, spec)
    report["task"] = spec.name
    if judge == "llm":
        report["model"] = the_judge.model
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1))
    if json_out:
        typer.echo(json.dumps(report, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "subgoal", "support", "tp", "fp", "fn", "precision", "recall", "F1",
        title=f"{spec.name}: {judge} judge, {question} question, {report['transitions']} transitions "
        f"({report['sources']['scripted']} scripted, {report['sources']['random']} random)",
    )  # fmt: skip
    for name, row in report["per_subgoal"].items():
        table.add_row(
            name, str(row["support"]), str(row["tp"]), str(row["fp"]), str(row["fn"]),
            *(f"{row[m]:.3f}" if row[m] is not None else "n/a" for m in ("precision", "recall", "f1")),
        )  # fmt: skip
    Console().print(table)
    stats = report["stats"]
    reasons = ", ".join(f"{r} {c}" for r, c in stats.get("failure_reasons", {}).items() if c) or "none"
    typer.echo(
        f"macro F1 {_fmt(report['macro_f1'])}, micro F1 {report['micro_f1']:.3f}; requests {stats['requests']}, "
        f"cache hits {stats['cache_hits']}, failed answers {stats['failures']} ({reasons})"
    )
    if report["unmatched_subgoals"]:
        typer.echo(f"no ground truth for: {', '.join(report['unmatched_subgoals'])} (set their 'oracle' field)")


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


@app.command()
@user_errors
def decompose(
    task: Task,
    out: Annotated[
        Optional[Path], typer.Option(help="Subgoal file (default reward_models/<task>/subgoals.json).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Ask again even if the file exists.")] = False,
    from_oracle: Annotated[
        bool, typer.Option("--from-oracle", help="Write the oracle's subgoals (no LLM) as a starting point.")
    ] = False,
    edit: Annotated[
        bool, typer.Option("--edit", help="Open the file in $EDITOR afterwards; it is saved only if it validates.")
    ] = False,
    llm_base_url: BaseUrl = None,
    llm_model: Model = None,
    llm_key_env: KeyEnv = None,
    replay: Replay = None,
    record: Record = False,
    seed: Seed = 0,
    temperature: Annotated[float, typer.Option(help="LLM sampling temperature.")] = 0.0,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Token limit of the answer.")] = 1024,
    attempts: Annotated[int, typer.Option(help="Tries; each rejected answer is fed back to the LLM.")] = 3,
) -> None:
    """Decompose TASK's goal into subgoals with an LLM (or the oracle), cache them per task, and edit them.

    The file is JSON: {"task", "goal", "source", "subgoals": [{"name", "description", "weight", "oracle"}], "meta"}.
    An existing file is shown, not replaced, unless --force. Runs copy the file into their folder.
    """
    from embodied.rewards.subgoal_oracle import oracle_subgoals
    from embodied.rewards.subgoals import SubgoalSet, default_subgoal_path
    from embodied.rewards.subgoals import decompose as run_decompose
    from embodied.tasks.spec import load_task

    spec = load_task(task)
    path = out or default_subgoal_path(spec)
    if from_oracle:
        subgoals = oracle_subgoals(spec)
        if path.exists() and not force:
            raise ValueError(f"{path} exists; pass --force to replace it with the oracle's subgoals")
        subgoals.save(path)
    elif path.exists() and not force:
        subgoals = SubgoalSet.load(path)
    else:
        client = make_cli_client(llm_base_url, llm_model, llm_key_env, replay, record)
        subgoals = run_decompose(
            spec, client, seed=seed, temperature=temperature, max_tokens=max_tokens, attempts=attempts
        )
        subgoals.save(path)
    if edit:
        subgoals = _edit(subgoals, path)
    _print_subgoals(subgoals, str(path))


def _edit(subgoals: Any, path: Path) -> Any:
    import click

    from embodied.rewards.subgoals import SubgoalError, SubgoalSet

    text = click.edit(json.dumps(subgoals.to_dict(), indent=1, ensure_ascii=False) + "\n", extension=".json")
    if text is None:
        typer.echo("not edited; file unchanged")
        return subgoals
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SubgoalError(f"edited subgoals are not valid JSON ({exc}); {path} unchanged") from None
    try:
        edited = SubgoalSet.from_dict(data, "edited subgoals")
    except SubgoalError as exc:
        raise SubgoalError(f"{exc}; {path} unchanged") from None
    if edited.to_dict() != subgoals.to_dict():
        edited = SubgoalSet(edited.task, edited.goal, edited.subgoals, "edited", edited.meta)
    edited.save(path)
    return edited


@app.command()
@user_errors
def show(
    task: Task,
    seed: Seed = 0,
    steps: Annotated[int, typer.Option(help="Transitions of scripted play to show.")] = 3,
    map_: Annotated[str, typer.Option("--map", help="crop | full.")] = "crop",
    radius: Annotated[int, typer.Option(help="Crop radius (4 = 9x9).")] = 4,
    budget: Annotated[int, typer.Option(help="Characters per observation.")] = 1500,
) -> None:
    """Print the text view of a few transitions of scripted play: exactly what an LLM judge reads."""
    from embodied.llm.text_view import ViewConfig, text_view_for
    from embodied.rewards.subgoal_oracle import collect_transitions
    from embodied.tasks.spec import load_task

    spec = load_task(task)
    if spec.suite != "minihack":
        raise ValueError(f"task {spec.name!r}: `calm show` plays scripted MiniHack episodes; {spec.suite} has none")
    view = text_view_for(spec, ViewConfig(map_, radius, budget=budget))
    for t in collect_transitions(spec, 1, 0, seed, epsilon=0.0)[:steps]:
        typer.echo(f"--- step {t.step} ---\n{view.render_transition(t.obs, t.action, t.next_obs)}\n")
