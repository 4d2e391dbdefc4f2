"""`embodied reward`: LLM-written reward code (generate, refine, Eureka-style search).

Every command talks to an OpenAI-compatible endpoint (--llm-base-url/--llm-model/--llm-key-env, or
the EMBODIED_LLM_* variables) or replays a recording (--replay FILE; add --record to fill it from
the endpoint). Programs are validated (static checks + sandboxed dry run) before they are written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from embodied.cli.errors import user_errors
from embodied.cli.llm_options import BaseUrl, KeyEnv, Model, Record, Replay, make_cli_client

app = typer.Typer(
    help=(
        "LLM-written reward code: generate a reward program for a task (Text2Reward), refine it from a "
        "person's feedback, or search for one (Eureka: sample K programs per iteration, train each briefly, "
        "keep the best, reflect). Programs land in reward_models/<task>/, validated and versioned."
    ),
    no_args_is_help=True,
)

Seed = Annotated[int, typer.Option(help="Base seed for LLM sampling (sample k uses seed + k) and training.")]
Temperature = Annotated[float, typer.Option(help="LLM sampling temperature.")]
MaxTokens = Annotated[
    int, typer.Option("--max-tokens", help="Token limit per response (a cut-off response is rejected).")
]
Root = Annotated[Path, typer.Option("--root", help="Reward model folder (reward_models/<task>/ inside it).")]


@app.command()
@user_errors
def generate(
    task: Annotated[str, typer.Argument(help="Task name (envs/<task>.toml) or path to a task file.")],
    few_shot: Annotated[
        bool, typer.Option("--few-shot", help="Show the LLM one expert program of another task (never this one).")
    ] = False,
    llm_base_url: BaseUrl = None,
    llm_model: Model = None,
    llm_key_env: KeyEnv = None,
    replay: Replay = None,
    record: Record = False,
    seed: Seed = 0,
    temperature: Temperature = 0.7,
    max_tokens: MaxTokens = 2048,
    attempts: Annotated[int, typer.Option(help="Tries; each rejection is fed back to the LLM.")] = 3,
    root: Root = Path("reward_models"),
) -> None:
    """Write a dense reward program for TASK (Text2Reward style) and validate it.

    The prompt describes the task's observation views (name, shape, unit, meaning) and its action space.
    The answer is checked statically, then dry-run in a sandbox on random-policy transitions.
    Saved as reward_models/<task>/gen-NNN.py with gen-NNN.json (model, prompt hash, response, validation log).
    Train with it: embodied train TASK --reward program:reward_models/<task>/gen-NNN.py
    """
    from embodied.llm.generate import generate as run

    client = make_cli_client(llm_base_url, llm_model, llm_key_env, replay, record)
    out = run(
        task, client, few_shot=few_shot, root=root, seed=seed, temperature=temperature, max_tokens=max_tokens,
        attempts=attempts,
    )  # fmt: skip
    comps = ", ".join(out.meta["validation"]["components"]) or "none"
    typer.echo(f"wrote {out.path} (components: {comps}; model {out.meta['model']})")


@app.command()
@user_errors
def refine(
    program: Annotated[
        Path, typer.Argument(help="The reward program to improve (e.g. reward_models/<task>/gen-001.py).")
    ],
    feedback: Annotated[str, typer.Option("--feedback", help="What the robot did wrong, in words.")],
    video: Annotated[
        Optional[str],
        typer.Option("--video", help="Path of the rollout video the feedback refers to (kept as context)."),
    ] = None,
    run: Annotated[
        Optional[Path],
        typer.Option("--run", help="Training run folder (policies/<run>) whose metrics show what the robot did."),
    ] = None,
    task: Annotated[
        Optional[str],
        typer.Option("--task", help="Task, when the program has no metadata and its folder is not named after it."),
    ] = None,
    llm_base_url: BaseUrl = None,
    llm_model: Model = None,
    llm_key_env: KeyEnv = None,
    replay: Replay = None,
    record: Record = False,
    seed: Seed = 0,
    temperature: Temperature = 0.7,
    max_tokens: MaxTokens = 2048,
    attempts: Annotated[int, typer.Option(help="Tries; each rejection is fed back to the LLM.")] = 3,
) -> None:
    """Write the next version of PROGRAM from a person's feedback (Text2Reward refinement).

    The prompt holds the previous code, rollout statistics (from --run), the video path and the feedback.
    The new version is validated like `generate` and saved next to PROGRAM as gen-NNN.py.
    Its gen-NNN.json keeps the parent program and the whole refinement history.
    """
    from embodied.llm.generate import refine as run_refine
    from embodied.llm.generate import run_stats

    stats = run_stats(run) if run is not None else None
    client = make_cli_client(llm_base_url, llm_model, llm_key_env, replay, record)
    out = run_refine(
        program, feedback, client, video=video, rollout_stats=stats, task=task, seed=seed, temperature=temperature,
        max_tokens=max_tokens, attempts=attempts,
    )  # fmt: skip
    typer.echo(f"wrote {out.path} (refines {program}; history of {len(out.meta['history'])} refinement(s))")


@app.command()
@user_errors
def search(
    task: Annotated[str, typer.Argument(help="Task name (envs/<task>.toml) or path to a task file.")],
    samples: Annotated[int, typer.Option("--samples", "-k", help="Programs sampled per iteration (K).")] = 4,
    iterations: Annotated[int, typer.Option("--iterations", "-i", help="Search iterations (I).")] = 3,
    steps: Annotated[int, typer.Option("--steps", "-n", help="Environment steps per training run (N).")] = 20_000,
    llm_base_url: BaseUrl = None,
    llm_model: Model = None,
    llm_key_env: KeyEnv = None,
    replay: Replay = None,
    record: Record = False,
    seed: Seed = 0,
    temperature: Temperature = 1.0,
    max_tokens: MaxTokens = 2048,
    few_shot: Annotated[bool, typer.Option("--few-shot", help="Include an expert program of another task.")] = False,
    workers: Annotated[int, typer.Option(help="Trainings in parallel (process pool; 1 = in this process).")] = 1,
    executor: Annotated[str, typer.Option(help="process | ray (parallel trainings as Ray tasks).")] = "process",
    algo: Annotated[str, typer.Option(help="Learner for the short training runs: ppo | sac.")] = "ppo",
    envs: Annotated[int, typer.Option(help="Parallel environments per training run.")] = 1,
    eval_episodes: Annotated[int, typer.Option(help="Held-out evaluation episodes for the fitness.")] = 5,
    reeval_seeds: Annotated[int, typer.Option(help="Training seeds for re-evaluating the winner (at least 3).")] = 3,
    validate_timeout: Annotated[float, typer.Option(help="Seconds each sandboxed dry run may take.")] = 10.0,
    search_id: Annotated[
        Optional[str], typer.Option("--id", help="Search id; an existing reward_models/<task>/search-<id>/ is resumed.")
    ] = None,
    root: Root = Path("reward_models"),
) -> None:
    """Eureka-style search for a reward program for TASK.

    Each iteration samples K programs (K requests, distinct seeds) and validates them in a sandbox.
    Each valid program trains for N steps; fitness is its success rate on held-out seeds.
    The next prompt reflects on the best (per-component statistics, correlation with success, tips).
    It also lists the errors of failed samples. The winner is re-trained with 3+ seeds.
    Everything is saved under reward_models/<task>/search-<id>/; rerun with --id ID to resume.
    """
    from embodied.llm.search import SB3Trainer, Search, SearchConfig

    if reeval_seeds < 3:
        raise ValueError("--reeval-seeds must be at least 3")
    cfg = SearchConfig(
        samples=samples, iterations=iterations, steps=steps, seed=seed,
        reeval_seeds=tuple(range(seed + 1, seed + 1 + reeval_seeds)), temperature=temperature, max_tokens=max_tokens,
        few_shot=few_shot, validate_timeout_s=validate_timeout, workers=workers, executor=executor,
    )  # fmt: skip
    client = make_cli_client(llm_base_url, llm_model, llm_key_env, replay, record)
    s = Search(task, client, cfg, root=root, search_id=search_id, log=lambda m: typer.echo(m, err=True))
    s.trainer = SB3Trainer(task=task, root=str((s.dir / "runs").resolve()), algo=algo, envs=envs,
                           eval_episodes=eval_episodes)  # fmt: skip
    result = s.run()
    t = result.timings
    split = f"llm {t['llm']:.1f}s, validation {t['validation']:.1f}s, training {t['training'] + t['reeval']:.1f}s"
    if result.best_path is None:
        typer.echo(f"no valid program trained in {result.directory} ({split})")
        raise typer.Exit(1)
    summary = {
        "best": str(result.best_path),
        "fitness": result.best_fitness,
        "reeval": result.reeval,
        "reeval_mean": result.reeval_mean,
        "search": str(result.directory),
    }
    typer.echo(json.dumps(summary))
    typer.echo(f"time: {split}", err=True)
