"""`embodied progress train | eval`: stage-aware progress reward models (SARM) from annotated demonstrations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from embodied.cli.errors import user_errors

app = typer.Typer(
    help="Stage-aware progress models: train on annotated demos, check on held-out demos; use as progress:PATH.",
    no_args_is_help=True,
)


@app.command()
@user_errors
def train(
    task: Annotated[str, typer.Argument(help="Task name (envs/<task>.toml) or path.")],
    demos: Annotated[list[Path], typer.Option("--demos", help="Demonstration dataset folder (repeat for several).")],
    name: Annotated[Optional[str], typer.Option(help="Model folder name (default progress-<encoder>).")] = None,
    encoder: Annotated[str, typer.Option(help="state | cnn | clip")] = "state",
    mode: Annotated[str, typer.Option(help="dense | sparse | single_stage")] = "dense",
    objective: Annotated[
        str, typer.Option(help="sarm (stage + progress) | spa (contributions summing to outcome)")
    ] = "sarm",
    camera: Annotated[Optional[list[str]], typer.Option(help="Camera for frame encoders (repeat for several).")] = None,
    with_state: Annotated[bool, typer.Option(help="Frame encoders also read the task views.")] = False,
    window: Annotated[int, typer.Option(help="Causal window length W (1 = Markov, usable online).")] = 1,
    stride: Annotated[int, typer.Option(help="Frames between window entries.")] = 1,
    fusion: Annotated[str, typer.Option(help="early | mean (per-camera estimates, weighted mean)")] = "early",
    stage_weights: Annotated[str, typer.Option(help="dataset (ᾱ from annotations) | equal (1/K)")] = "dataset",
    include_failures: Annotated[bool, typer.Option(help="Also train on failed episodes' completed stages.")] = False,
    steps: Annotated[int, typer.Option(help="Gradient steps.")] = 2000,
    batch_size: Annotated[int, typer.Option(help="Samples per step.")] = 256,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
    size: Annotated[int, typer.Option(help="Frame size the CNN reads (pixels).")] = 64,
    clip_model: Annotated[str, typer.Option(help="open_clip architecture for --encoder clip.")] = "ViT-B-32",
    clip_pretrained: Annotated[Optional[str], typer.Option(help="open_clip pretrained tag (default LAION-2B).")] = None,
    clip_checkpoint: Annotated[
        Optional[str], typer.Option(help="Local CLIP weights file or adapted folder (embodied clip adapt).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    threads: Annotated[int, typer.Option(help="Torch CPU threads.")] = 1,
    root: Annotated[Path, typer.Option("--root", help="Folder of reward models.")] = Path("reward_models"),
    overwrite: Annotated[bool, typer.Option(help="Replace an existing model folder.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train a progress model on TASK's demos; writes reward_models/<task>/progress-<name>/."""
    from embodied.demos.dataset import DemoDataset
    from embodied.rewards.progress import ProgressConfig, train_progress
    from embodied.tasks.spec import load_task

    spec = load_task(task)
    cfg = ProgressConfig(
        encoder=encoder,  # type: ignore[arg-type]
        mode=mode,  # type: ignore[arg-type]
        objective=objective,  # type: ignore[arg-type]
        cameras=tuple(camera) if camera else None,
        frame_size=(size, size),
        with_state=with_state,
        window=window,
        stride=stride,
        fusion=fusion,  # type: ignore[arg-type]
        stage_weights=stage_weights,  # type: ignore[arg-type]
        include_failures=include_failures,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        threads=threads,
        clip_model=clip_model,
        clip_pretrained=clip_pretrained,
        clip_checkpoint=clip_checkpoint,
    )
    cfg.check()
    folder = name or f"progress-{encoder}"
    if not folder.startswith("progress"):
        folder = f"progress-{folder}"
    out = root / spec.name / folder
    datasets = [DemoDataset(d) for d in demos]
    model, metrics = train_progress(
        datasets, spec, cfg, out=out, progress=progress, overwrite=overwrite, log=typer.echo
    )
    held = metrics.get("held_out")
    line = f"model written to {out} (stages {model.names}, ᾱ {[round(float(a), 3) for a in model.alpha]})"
    if held and held.get("voc_mean") is not None:
        acc = held["stage_accuracy"]
        line += f"; held-out value-order correlation {held['voc_mean']:.3f}" + (
            f", stage accuracy {acc:.3f}" if acc is not None else ""
        )
    typer.echo(line)


@app.command("eval")
@user_errors
def eval_(
    model: Annotated[str, typer.Argument(help="Model folder (reward_models/<task>/progress-*).")],
    demos: Annotated[list[Path], typer.Option("--demos", help="Held-out demonstration dataset (repeat for several).")],
    task: Annotated[
        Optional[str], typer.Option(help="Task to bind to (default: the one the model was trained on).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Value-order correlation, stage accuracy and success/failure separation on held-out demos."""
    from embodied.demos.dataset import DemoDataset
    from embodied.rewards.progress import ProgressModel, evaluate_progress
    from embodied.tasks.spec import load_task

    path = Path(model)
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise ValueError(f"{path}: not a progress model folder (no config.json)")
    trained_on = json.loads(cfg_path.read_text()).get("task", "")
    spec = load_task(task or trained_on)
    pm = ProgressModel.load(path, spec)
    episodes = []
    for d in demos:
        ds = DemoDataset(d)
        ds.validate(cameras=pm.cameras)
        episodes += list(ds.episodes(pm.cameras))
    result = {
        "model": str(path),
        "task": spec.name,
        "demos": [str(d) for d in demos],
        **evaluate_progress(pm, episodes),
    }
    if json_out:
        typer.echo(json.dumps(result, indent=1))
        return

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    typer.echo(
        f"{path}: {result['episodes']} episodes ({result['successes']} successful, {result['failures']} failed); "
        f"value-order correlation {fmt(result['voc_mean'])} (min {fmt(result['voc_min'])}), "
        f"stage accuracy {fmt(result['stage_accuracy'])}, progress MAE {fmt(result['progress_mae'])}, "
        f"final progress success {fmt(result['success_final'])} vs failure {fmt(result['failure_final'])} "
        f"(separation AUC {fmt(result['separation_auc'])})"
    )
