"""`embodied demo`: the main job on an embedded default, offline on a CPU in a few minutes.

Trains PPO twice on a Meta-World task with the same budget: once with the shipped expert reward
program plus policy-invariant shaping (the same program as the potential Φ), once with the
environment's own reward; evaluates both on held-out seeds, writes a video of the first, and
prints a comparison table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer


def run_demo(task: str, steps: int, episodes: int, root: Path) -> dict:
    from rich.console import Console
    from rich.table import Table

    from embodied.cli.main import build_config
    from embodied.tasks.spec import load_task
    from embodied.train import sb3
    from embodied.train.evaluate import evaluate
    from embodied.train.runs import RunError
    from embodied.video.record import record

    spec = load_task(task)
    program = Path("reward_models") / spec.name / "expert.py"
    if not program.is_file():
        raise RunError(f"the demo needs the shipped expert program {program}; run it from the repository root")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    arms = {
        "program+shaping": (f"program:{program}", f"program:{program}"),
        "env reward": ("env", None),
    }
    console = Console()
    results = {}
    for label, (reward, shaping) in arms.items():
        run = f"demo-{spec.name}-{'program' if shaping else 'env'}-{stamp}"
        console.print(
            f"[bold]training[/bold] {label}: --reward {reward}" + (f" --shaping {shaping}" if shaping else "")
        )
        cfg = build_config(spec.name, reward, shaping, 1.0, "ppo", steps, 0, 4, None, max(steps // 4, 1), run)
        t0 = time.perf_counter()
        sb3.train(cfg, root, progress=True)
        train_s = time.perf_counter() - t0
        res = evaluate(run, episodes, root=root)
        res["train_s"] = round(train_s, 1)
        results[label] = res
    first = next(iter(results.values()))["run"]
    video = record(first, root=root, size=320)
    table = Table("reward", "success", "env return", "train s", "run")
    for label, res in results.items():
        table.add_row(
            label, f"{res['success_rate']:.0%}", f"{res['env_return']:.1f}", f"{res['train_s']:.0f}", res["run"]
        )
    console.print(table)
    console.print(f"video: {video}")
    summary = {"task": spec.name, "steps": steps, "episodes": episodes, "results": results, "video": str(video)}
    out = root / f"demo-{spec.name}-{stamp}.json"
    out.write_text(json.dumps(summary, indent=1))
    typer.echo(f"summary: {out}")
    return summary
