"""`embodied demos collect | import | export | info`: demonstration datasets with subtask annotations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from embodied.cli.errors import user_errors

app = typer.Typer(
    help="Demonstrations: scripted collection with stage annotations, LeRobot v3 import/export.",
    no_args_is_help=True,
)


@app.command()
@user_errors
def collect(
    task: Annotated[str, typer.Argument(help="Meta-World task name (envs/<task>.toml) or path.")],
    n: Annotated[int, typer.Option("-n", "--episodes", help="Number of episodes.")] = 10,
    out: Annotated[Path, typer.Option("--out", help="Dataset folder to create.")] = Path("demos/out"),
    noise: Annotated[float, typer.Option(help="Gaussian action noise σ added to every action.")] = 0.0,
    pause: Annotated[float, typer.Option(help="Per-step probability of starting a 5-15 step pause.")] = 0.0,
    regress: Annotated[
        float, typer.Option(help="Per-step probability of a 5-15 step regression (reversed motion).")
    ] = 0.0,
    fail: Annotated[float, typer.Option(help="Per-episode probability of heading to a wrong place (a failure).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Episode i resets with seed+i.")] = 0,
    camera: Annotated[
        Optional[list[str]], typer.Option(help="Camera to record (repeat for several; default the task's first).")
    ] = None,
    no_frames: Annotated[bool, typer.Option("--no-frames", help="Record states and actions only.")] = False,
    size: Annotated[int, typer.Option(help="Frame height and width in pixels.")] = 64,
    tail: Annotated[int, typer.Option(help="Steps recorded after the first success.")] = 10,
    max_steps: Annotated[Optional[int], typer.Option(help="Step limit (default: the task's).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = False,
) -> None:
    """Record scripted-expert demonstrations, annotate stages from the task's rules, optionally degrade them."""
    from embodied.demos.collect import Degradation
    from embodied.demos.collect import collect as run_collect

    cams: list[str] | None = [] if no_frames else camera
    ds = run_collect(
        task,
        n,
        out,
        degradation=Degradation(noise=noise, pause=pause, regress=regress, fail=fail),
        seed=seed,
        cameras=cams,
        frame_size=(size, size),
        tail=tail,
        max_steps=max_steps,
        overwrite=overwrite,
    )
    s = ds.summary()
    typer.echo(
        f"wrote {s['episodes']} episodes ({s['frames']} frames, {s['successes']} successful, "
        f"cameras {s['cameras'] or 'none'}) to {ds.root}"
    )


@app.command("import")
@user_errors
def import_(
    src: Annotated[Path, typer.Argument(help="LeRobotDataset v3 folder (with meta/info.json).")],
    out: Annotated[Path, typer.Option("--out", help="Dataset folder to create.")],
    task: Annotated[str, typer.Option(help="embodied task name the data belongs to.")] = "",
    camera: Annotated[Optional[list[str]], typer.Option(help="Cameras to import (default all video features).")] = None,
    state_key: Annotated[str, typer.Option(help="Feature holding the state.")] = "observation.state",
    action_key: Annotated[str, typer.Option(help="Feature holding the action.")] = "action",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = False,
) -> None:
    """Convert a LeRobotDataset v3 (parquet + mp4 + meta, SARM subtask columns) into a demonstration dataset."""
    from embodied.demos.lerobot import import_lerobot

    ds = import_lerobot(
        src, out, task=task, state_key=state_key, action_key=action_key, cameras=camera, overwrite=overwrite
    )
    typer.echo(f"imported {len(ds)} episodes ({sum(ds.successes)} successful) from {src} to {ds.root}")


@app.command()
@user_errors
def export(
    src: Annotated[Path, typer.Argument(help="Demonstration dataset folder.")],
    out: Annotated[Path, typer.Option("--out", help="LeRobotDataset v3 folder to create.")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out folder.")] = False,
) -> None:
    """Write a demonstration dataset as a LeRobotDataset v3 folder with SARM-style annotation columns."""
    from embodied.demos.lerobot import export_lerobot

    path = export_lerobot(src, out, overwrite=overwrite)
    typer.echo(f"exported {src} to {path} (LeRobotDataset v3)")


@app.command()
@user_errors
def info(
    src: Annotated[Path, typer.Argument(help="Demonstration dataset folder.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Validate a dataset and print its episodes, successes, cameras and stages."""
    from embodied.demos.dataset import DemoDataset

    ds = DemoDataset(src)
    ds.validate()
    for i in range(len(ds)):
        ds.load(i, ())  # checks every episode's arrays and annotations
    s = ds.summary()
    if json_out:
        typer.echo(json.dumps(s, indent=1))
        return
    typer.echo(
        f"{s['path']}: task {s['task'] or '?'}, {s['episodes']} episodes, {s['frames']} frames "
        f"(mean length {s['mean_length']:.1f}), {s['successes']} successful, cameras {s['cameras'] or 'none'}, "
        f"stages {s['stages']}"
    )
