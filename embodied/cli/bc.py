"""`embodied bc train`: behaviour cloning, plain or reward-aligned (RA-BC), into a run folder `embodied eval` reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from embodied.cli.errors import user_errors

app = typer.Typer(
    help="Behaviour cloning from demonstrations: vanilla BC or RA-BC (progress-weighted).", no_args_is_help=True
)


@app.command()
@user_errors
def train(
    task: Annotated[str, typer.Argument(help="Task name (envs/<task>.toml) or path.")],
    demos: Annotated[list[Path], typer.Option("--demos", help="Demonstration dataset folder (repeat for several).")],
    weighting: Annotated[str, typer.Option(help="rabc (progress-delta weights) | none (vanilla BC)")] = "none",
    progress_model: Annotated[
        Optional[str],
        typer.Option("--progress-model", help="Progress model folder (or its name) for --weighting rabc."),
    ] = None,
    delta: Annotated[int, typer.Option(help="Chunk Δ in frames for progress deltas.")] = 10,
    kappa: Annotated[float, typer.Option(help="Soft threshold κ: deltas above it get weight 1.")] = 0.05,
    successes_only: Annotated[bool, typer.Option(help="Drop failed episodes (filtered BC).")] = False,
    steps: Annotated[int, typer.Option(help="Gradient steps.")] = 3000,
    batch_size: Annotated[int, typer.Option(help="Samples per step.")] = 256,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    run: Annotated[Optional[str], typer.Option(help="Run name (default <task>-bc-<weighting>-s<seed>).")] = None,
    root: Annotated[Path, typer.Option("--root", help="Folder holding run folders.")] = Path("policies"),
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Clone TASK's demos into a policy (policies/<run>/); evaluate with `embodied eval RUN`."""
    from embodied.demos.dataset import DemoDataset
    from embodied.policies.bc import BCConfig, train_bc

    cfg = BCConfig(
        weighting=weighting,  # type: ignore[arg-type]
        progress=progress_model,
        delta=delta,
        kappa=kappa,
        successes_only=successes_only,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
    )
    cfg.check()
    out = train_bc([DemoDataset(d) for d in demos], task, cfg, run=run, root=root, progress=progress)
    typer.echo(f"run written to {out}; evaluate with `embodied eval {out.name} --root {root}`")
