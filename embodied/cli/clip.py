"""`embodied clip`: vision-language rewards — adapt a CLIP scorer to a task offline, inspect a scorer.

The scorer itself is used through reward specs (`embodied train TASK --reward clip:...`, see
docs/clip.md); these commands make and inspect the models behind such specs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from embodied.cli.errors import user_errors

app = typer.Typer(
    help=(
        "Vision-language (CLIP) rewards: adapt a small CLIP to a task's simulator frames offline "
        "(`adapt`), show which device scores and which renders (`info`). Use a scorer with "
        "--reward/--shaping clip:... (docs/clip.md)."
    ),
    no_args_is_help=True,
)


@app.command()
@user_errors
def adapt(
    task: Annotated[str, typer.Argument(help="Task name (envs/<task>.toml) or path.")],
    out: Annotated[
        Optional[Path], typer.Option(help="Output folder (default reward_models/<task>/clip-adapted).")
    ] = None,
    cameras: Annotated[
        Optional[str], typer.Option(help="Cameras to train on, joined by '+' (default: the task's first).")
    ] = None,
    episodes: Annotated[int, typer.Option(help="Episodes per policy (the last --val-episodes are held out).")] = 10,
    val_episodes: Annotated[int, typer.Option(help="Episodes per policy held out to choose alpha.")] = 2,
    policies: Annotated[
        str, typer.Option(help="Comma-separated policies: expert, expert:SIGMA (noisy expert), random.")
    ] = "expert,expert:0.3,expert:1.0,random",
    after_success: Annotated[int, typer.Option(help="Stop episodes this many steps after the first success.")] = 20,
    episode_steps: Annotated[Optional[int], typer.Option(help="Cut episodes (default: the task's limit).")] = None,
    image_size: Annotated[int, typer.Option(help="Model input size in pixels (frames render at this size).")] = 64,
    patch_size: Annotated[int, typer.Option(help="ViT patch size.")] = 16,
    width: Annotated[int, typer.Option(help="Vision transformer width.")] = 96,
    layers: Annotated[int, typer.Option(help="Vision transformer layers.")] = 3,
    embed_dim: Annotated[int, typer.Option(help="Joint embedding dimension.")] = 64,
    text_width: Annotated[int, typer.Option(help="Text transformer width.")] = 64,
    text_layers: Annotated[int, typer.Option(help="Text transformer layers.")] = 2,
    epochs: Annotated[int, typer.Option(help="Passes over the frames.")] = 12,
    batch_size: Annotated[int, typer.Option(help="Frames per training step.")] = 128,
    lr: Annotated[float, typer.Option(help="AdamW learning rate (use ~1e-5 when fine-tuning --init).")] = 2e-3,
    render: Annotated[str, typer.Option(help="fast (no MSAA/shadows, CPU friendly) | full.")] = "fast",
    init: Annotated[
        Optional[str],
        typer.Option(
            help="Fine-tune a real CLIP instead of training a small one: MODEL/TAG (e.g. ViT-B-32/laion2b_s34b_b79k) "
            "or MODEL/PATH to a weights file. Needs the weights (Hugging Face cache or file)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for layouts, policy noise, initialisation and batches.")] = 0,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads (default: torch's choice).")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Train a CLIP scorer on TASK's own frames with captions from its stages; write reward_models/<task>/clip-adapted/.

    Frames come from the scripted expert, noisy experts and a random policy; each frame's caption
    level follows its ground-truth progress (stage rules, success). The model is trained
    contrastively (images vs captions), alpha is chosen on held-out episodes, and the folder
    (clip_config.json + model.safetensors) loads with --reward clip:<folder>.
    """
    from embodied.rewards.clip_adapt import AdaptConfig
    from embodied.rewards.clip_adapt import adapt as run_adapt

    cfg = AdaptConfig(
        cameras=tuple(c for c in (cameras or "").split("+") if c),
        policies=tuple(p.strip() for p in policies.split(",") if p.strip()),
        episodes=episodes, val_episodes=val_episodes, after_success=after_success, episode_steps=episode_steps,
        render=render, image_size=image_size, patch_size=patch_size, width=width, layers=layers, embed_dim=embed_dim,
        text_width=text_width, text_layers=text_layers, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
        threads=threads,
    )  # fmt: skip
    if render not in ("fast", "full"):
        raise ValueError(f"--render must be fast or full, got {render!r}")
    loaded = None
    if init:
        from embodied.rewards.clip import load_open_clip

        model, _, source = init.partition("/")
        if not source:
            raise ValueError(f"--init must be MODEL/TAG or MODEL/PATH, got {init!r}")
        is_file = Path(source).is_file() or "/" in source or source.endswith((".bin", ".pt", ".pth", ".safetensors"))
        loaded = load_open_clip(model, None if is_file else source, source if is_file else None)
    result = run_adapt(task, out, cfg, init=loaded, init_name=init, progress=progress, log=lambda m: typer.echo(m))
    val = result.config["validation"]["alpha"][f"{result.config['alpha']:g}"]
    typer.echo(
        f"adapted scorer written to {result.path} (alpha {result.config['alpha']:g}; validation Spearman "
        f"{val['spearman']}, AUC {val['auc_episode']}); use --reward clip:{result.path}"
    )


@app.command()
@user_errors
def info(
    task: Annotated[str, typer.Argument(help="Task name (envs/<task>.toml) or path.")],
    reward: Annotated[str, typer.Option(help="A clip reward spec, e.g. clip:reward_models/<task>/clip-adapted/.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Build a clip scorer and report what it uses: device, precision, renderer, prompts, cameras, input size."""
    from embodied.rewards.clip import ClipReward
    from embodied.rewards.registry import make_reward
    from embodied.tasks.spec import load_task

    spec = load_task(task)
    model = make_reward(reward, spec)
    if not isinstance(model, ClipReward):
        raise ValueError(f"--reward must be a clip:... spec, got {reward!r}")
    out = {
        "name": model.name,
        "startup": model.startup_line(),
        "form": model.form,
        "alpha": model.alpha,
        "goal": model.goal_prompts,
        "baseline": model.baseline_prompts,
        "negatives": model.negative_prompts,
        "cameras": list(model.cameras),
        "fusion": model.fusion,
        "frame_size": list(model.frame_spec.size),
        "mean": list(model.frame_spec.mean),
        "std": list(model.frame_spec.std),
    }
    if json_out:
        typer.echo(json.dumps(out, indent=1))
        return
    for key, value in out.items():
        typer.echo(f"{key:>10}: {value}")
