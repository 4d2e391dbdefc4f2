"""Domain adaptation of CLIP to a task's simulator (in the spirit of LIV): an offline VLM reward that works.

Web-trained CLIP models know little about a simulated Sawyer arm, and here no weights can be
downloaded at all. This module trains a vision-language scorer on the task itself:

1. **Frames**: roll out Meta-World's scripted expert, the expert with action noise, and a random
   policy (`embodied.make(task, frames=[cameras])`), on seeded layouts; episodes are split by seed
   into training and validation sets.
2. **Captions**, generated from the task file: a *progress ladder* of L levels — the task's baseline
   description (progress 0), three levels per stage from its description ("...: just started",
   "...: halfway", "...: nearly done"), and the goal itself (progress 1, success) — each level with
   two templates (a prompt ensemble). Every frame's ground-truth progress (stage rules + success,
   `embodied.rewards.quality.progress_labels`) gives it soft labels over the levels (a Gaussian in
   progress), so neighbouring levels are near in embedding space.
3. **Contrastive training** of an open_clip ``CLIP`` (both towers): symmetric InfoNCE between image
   and caption embeddings with the soft labels as targets (image → all captions; caption → the
   batch's images), random shifts and brightness/contrast jitter. Either a *small* model from
   scratch (default: ViT on 64 px frames, patch 16, width 96, 3 layers; text width 64, 2 layers;
   ~0.4 M parameters besides the token table, ~0.8 MB in fp16) or *fine-tuning* of a loaded CLIP
   (``init=``).
4. **Selection**: the reward's α is picked on the validation episodes (Spearman with progress).

The result is a folder ``reward_models/<task>/clip-adapted/`` with ``clip_config.json`` (architecture,
preprocessing incl. the frames' own mean/std, prompts, α, cameras, training and validation numbers)
and ``model.safetensors`` (fp16). It loads through the same path as any CLIP:
``ClipReward.from_adapted(folder)`` or the spec ``clip:reward_models/<task>/clip-adapted/``.

From-scratch models only ever see their caption vocabulary, so only the token-embedding rows of
tokens in the captions are stored (the rest are zero on load: a 49408 x 64 fp16 table would be 6 MB).
Prompts outside the vocabulary still run but mean little; the config lists the captions.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embodied.rewards.base import RewardError

if TYPE_CHECKING:
    import torch

    from embodied.rewards.quality import Rollout
    from embodied.tasks.spec import TaskSpec

FORMAT = "embodied.clip-adapted/1"
CONFIG = "clip_config.json"
WEIGHTS = "model.safetensors"
TOKENIZER = "ViT-B-32"  # open_clip's SimpleTokenizer (49408 BPE tokens), shared by every OpenAI-style CLIP
TEMPLATES = ("{}", "a robot arm: {}")
QUALIFIERS = ("just started", "halfway", "nearly done")


class AdaptError(RewardError):
    """Adaptation misconfigured, or an adapted model folder is missing or malformed (one line)."""


# --------------------------------------------------------------------------------------------------
# small open_clip models


def small_clip_config(
    image_size: int = 64,
    patch_size: int = 8,
    width: int = 96,
    layers: int = 3,
    head_width: int = 32,
    embed_dim: int = 64,
    text_width: int = 64,
    text_layers: int = 2,
    text_heads: int = 2,
    context_length: int = 32,
) -> dict[str, Any]:
    """An open_clip ``CLIP`` config (the ``model_cfg`` of an open_clip JSON) for a small ViT + text transformer."""
    if image_size % patch_size:
        raise AdaptError(f"image_size {image_size} must be a multiple of patch_size {patch_size}")
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {
            "image_size": image_size, "patch_size": patch_size, "width": width, "layers": layers,
            "head_width": head_width, "mlp_ratio": 2.0,
        },
        "text_cfg": {
            "context_length": context_length, "vocab_size": 49408, "width": text_width, "heads": text_heads,
            "layers": text_layers, "mlp_ratio": 2.0,
        },
    }  # fmt: skip


def build_clip(
    model_cfg: dict[str, Any],
    preprocess_cfg: dict[str, Any] | None = None,
    seed: int | None = 0,
) -> tuple[Any, Any, Any]:
    """(model, preprocess, tokenizer) of an open_clip architecture config, randomly initialised (seeded).

    The model carries its preprocess config (size, mean, std) like open_clip's pretrained models, so
    `embodied.rewards.frames.FrameSpec.from_model` reads its own normalisation from it.
    """
    import open_clip
    import torch
    from open_clip.model import CLIP, CustomTextCLIP
    from open_clip.transform import PreprocessCfg, image_transform_v2

    cfg = json.loads(json.dumps(model_cfg))  # deep copy; open_clip pops keys
    custom = cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})
    if seed is not None:
        torch.manual_seed(seed)
    net = (CustomTextCLIP if custom else CLIP)(**cfg)
    pp = {**asdict(PreprocessCfg()), **(preprocess_cfg or {})}
    pp["size"] = cfg["vision_cfg"].get("image_size", pp["size"])
    if isinstance(pp["size"], list):
        pp["size"] = tuple(pp["size"])
    pp["mean"], pp["std"] = tuple(pp["mean"]), tuple(pp["std"])
    open_clip.set_model_preprocess_cfg(net, pp)
    net.embodied_model_cfg = json.loads(json.dumps(model_cfg))  # how to rebuild it when saving a fine-tune
    preprocess = image_transform_v2(PreprocessCfg(**pp), is_train=False)
    tokenizer = open_clip.get_tokenizer(TOKENIZER, context_length=cfg["text_cfg"].get("context_length", 77))
    return net.eval(), preprocess, tokenizer


def small_clip(seed: int = 0, preprocess_cfg: dict[str, Any] | None = None, **sizes: Any) -> tuple[Any, Any, Any]:
    """A small randomly initialised open_clip CLIP: ``build_clip(small_clip_config(**sizes))``."""
    return build_clip(small_clip_config(**sizes), preprocess_cfg, seed)


# --------------------------------------------------------------------------------------------------
# captions


@dataclass(frozen=True)
class Level:
    """One rung of the caption ladder: prompts (an ensemble) describing progress `position` in [0, 1]."""

    prompts: tuple[str, ...]
    position: float


def caption_ladder(task: TaskSpec) -> list[Level]:
    """Captions from the task file: baseline (0), three levels per stage, the goal (1) — module docstring."""
    base = task.baseline or f"a robot at the start of the task: {task.goal}"
    stages = task.stages or ()
    K = max(len(stages), 1)
    levels = [Level(tuple(t.format(base) for t in TEMPLATES), 0.0)]
    descriptions = [s.description for s in stages] or [task.goal]
    for k, desc in enumerate(descriptions):
        for q, word in enumerate(QUALIFIERS):
            text = f"{desc}: {word}"
            levels.append(Level(tuple(t.format(text) for t in TEMPLATES), (k + (q + 1) / (len(QUALIFIERS) + 1)) / K))
    levels.append(Level(tuple(t.format(task.goal) for t in TEMPLATES), 1.0))
    return levels


def soft_labels(progress: np.ndarray, levels: Sequence[Level], sigma: float | None = None) -> np.ndarray:
    """Targets float32 [N, L]: a Gaussian in progress around each frame's progress, normalised per frame.

    `sigma` defaults to 0.6 x the mean spacing of the levels, so a frame between two rungs is split
    between them and rungs further away get almost nothing.
    """
    pos = np.array([lv.position for lv in levels])
    if sigma is None:
        sigma = 0.6 * float(np.mean(np.diff(np.sort(pos))))
    w = np.exp(-0.5 * ((np.asarray(progress)[:, None] - pos[None, :]) / sigma) ** 2)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# training


@dataclass
class AdaptConfig:
    """Settings of `adapt` (CLI: ``embodied clip adapt TASK --help``).

    Data: `episodes` per policy on seeds `seed`... (the last `val_episodes` seeds of every policy are
    held out for validation), cut `after_success` steps after the first success, every `stride`-th
    state kept, `cameras` rendered at the model's input size with `render` quality.
    Model: a small CLIP from `small_clip_config(image_size, patch_size, width, layers, ...)`, or
    fine-tuning of `init` (a loaded (model, preprocess, tokenizer)).
    Optimiser: AdamW (`lr`, `weight_decay`), cosine schedule with 5 % warm-up, `epochs` passes.
    """

    cameras: tuple[str, ...] = ()
    policies: tuple[str, ...] = ("expert", "expert:0.3", "expert:1.0", "random")
    episodes: int = 10
    val_episodes: int = 2
    after_success: int | None = 20
    episode_steps: int | None = None
    stride: int = 1
    render: str = "fast"
    image_size: int = 64
    patch_size: int = 16
    width: int = 96
    layers: int = 3
    embed_dim: int = 64
    text_width: int = 64
    text_layers: int = 2
    context_length: int = 32
    epochs: int = 12
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    sigma: float | None = None
    augment: bool = True
    seed: int = 0
    threads: int | None = None
    alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass
class AdaptResult:
    """What `adapt` produced: the folder, the config written into it, and timings."""

    path: Path
    config: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def _frames_dataset(rollouts: Sequence[Rollout], cameras: Sequence[str], stride: int) -> tuple[np.ndarray, np.ndarray]:
    """All kept frames uint8 [M, H, W, 3] (every camera is a sample) and their progress float [M]."""
    frames, prog = [], []
    for r in rollouts:
        idx = np.arange(0, r.length + 1, stride)
        if idx[-1] != r.length:
            idx = np.append(idx, r.length)  # keep the final state (often the success)
        for c in cameras:
            frames.append(r.frames[c][idx])
            prog.append(r.progress[idx])
    return np.concatenate(frames), np.concatenate(prog)


def _augment(x: torch.Tensor, gen: torch.Generator, shift: int = 4) -> torch.Tensor:
    """Random shifts (replicate-pad `shift` px, random crop) and brightness/contrast jitter of uint8 [B, 3, H, W]."""
    import torch
    import torch.nn.functional as F

    b, c, h, w = x.shape
    xf = F.pad(x.float(), (shift, shift, shift, shift), mode="replicate")
    iy = torch.randint(0, 2 * shift + 1, (b, 1), generator=gen) + torch.arange(h)[None, :]
    ix = torch.randint(0, 2 * shift + 1, (b, 1), generator=gen) + torch.arange(w)[None, :]
    xf = xf[
        torch.arange(b)[:, None, None, None],
        torch.arange(c)[None, :, None, None],
        iy[:, None, :, None],
        ix[:, None, None, :],
    ]
    bright = 1.0 + 0.2 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 2
    contrast = 1.0 + 0.2 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 2
    mean = xf.mean(dim=(1, 2, 3), keepdim=True)
    return ((xf - mean) * contrast + mean * bright).clamp_(0, 255)


def _normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    import torch

    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x / 255.0 - m) / s


def contrastive_loss(
    img: torch.Tensor, txt: torch.Tensor, targets: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE with soft targets.

    Args:
        img: normalised image embeddings [B, D]; txt: normalised caption-level embeddings [L, D].
        targets: soft labels [B, L] (rows sum to 1).
        logit_scale: log of the inverse temperature (open_clip's learnable ``logit_scale``).

    image -> text: cross-entropy of softmax over the L levels against the row's targets;
    text -> image: for each level present in the batch, softmax over the B images against the
    column's targets renormalised; the two halves are averaged.
    """
    import torch

    logits = logit_scale.exp().clamp(max=100.0) * img @ txt.T
    i2t = -(targets * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    col = targets.sum(dim=0)
    present = col > 1e-3
    t_targets = targets[:, present] / col[present]
    t2i = -(t_targets * torch.log_softmax(logits[:, present], dim=0)).sum(dim=0).mean()
    return 0.5 * (i2t + t2i)


def _level_embeddings(model: Any, tokens: torch.Tensor, n_levels: int) -> torch.Tensor:
    """Caption embeddings [L, D]: the renormalised mean of each level's normalised template embeddings."""
    import torch.nn.functional as F

    emb = F.normalize(model.encode_text(tokens), dim=-1)
    return F.normalize(emb.view(n_levels, -1, emb.shape[-1]).mean(dim=1), dim=-1)


def train_contrastive(
    model: Any,
    tokenizer: Any,
    frames: np.ndarray,
    progress: np.ndarray,
    levels: Sequence[Level],
    mean: Sequence[float],
    std: Sequence[float],
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.05,
    sigma: float | None = None,
    augment: bool = True,
    seed: int = 0,
    on_step: Callable[[int, int, float], None] | None = None,
) -> list[float]:
    """Train `model` in place on frames uint8 [M, S, S, 3] with progress [M]; returns the mean loss per epoch."""
    import torch

    image_size = tuple(frames.shape[1:3])
    size = getattr(model.visual, "image_size", image_size)
    size = (size, size) if isinstance(size, int) else tuple(size)
    if size != image_size:
        raise AdaptError(f"frames are {image_size} but the model takes {size}")
    gen = torch.Generator().manual_seed(seed)
    targets_all = torch.from_numpy(soft_labels(progress, levels, sigma))
    tokens = tokenizer([p for lv in levels for p in lv.prompts])
    data = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # uint8 [M, 3, S, S]
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr
    )
    m = data.shape[0]
    steps_per_epoch = max(1, math.ceil(m / batch_size))
    total = epochs * steps_per_epoch
    warm = max(1, int(0.05 * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))
    )
    model.train()
    history = []
    step = 0
    for _ in range(epochs):
        perm = torch.randperm(m, generator=gen)
        losses = []
        for lo in range(0, m, batch_size):
            idx = perm[lo : lo + batch_size]
            if idx.numel() < 2:
                continue
            x = data[idx]
            x = _augment(x, gen) if augment else x.float()
            img = torch.nn.functional.normalize(model.encode_image(_normalise(x, mean, std)), dim=-1)
            txt = _level_embeddings(model, tokens, len(levels))
            loss = contrastive_loss(img, txt, targets_all[idx], model.logit_scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            step += 1
            losses.append(loss.item())
            if on_step is not None:
                on_step(step, total, losses[-1])
        history.append(float(np.mean(losses)) if losses else float("nan"))
    model.eval()
    return history


# --------------------------------------------------------------------------------------------------
# saving and loading


def _token_rows(tokenizer: Any, levels: Sequence[Level]) -> list[int]:
    tokens = tokenizer([p for lv in levels for p in lv.prompts])
    return sorted({int(t) for t in tokens.flatten().tolist()})


def save_adapted(model: Any, path: Path, config: dict[str, Any], token_rows: Sequence[int] | None = None) -> Path:
    """Write ``clip_config.json`` + ``model.safetensors`` (fp16) into `path`, atomically (temp folder + rename).

    Args:
        model: the open_clip model; its config must be ``config["model_cfg"]``.
        path: the folder (replaced if it exists).
        config: everything `load_adapted` and `ClipReward.from_adapted` need (see `adapt`).
        token_rows: keep only these rows of the token embedding (None: keep all).
    """
    from safetensors.torch import save_file

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    out: dict[str, Any] = {}
    for key, value in state.items():
        out[key] = value.half().contiguous() if value.is_floating_point() else value.contiguous()
    cfg = dict(config)
    if token_rows is not None:
        import torch

        key = _token_key(out)
        table = out.pop(key)
        rows = torch.tensor(list(token_rows), dtype=torch.int64)
        out[f"{key}.rows"] = rows
        out[f"{key}.values"] = table[rows].contiguous()
        cfg["token_embedding"] = "sparse"
    else:
        cfg["token_embedding"] = "dense"
    cfg.update({"format": FORMAT, "weights": WEIGHTS, "dtype": "float16"})
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(out, str(tmp / WEIGHTS))
    (tmp / WEIGHTS).chmod(0o644)  # safetensors creates it owner-only; these files are shared (git)
    (tmp / CONFIG).write_text(json.dumps(cfg, indent=1))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return path


def _token_key(state: dict[str, Any]) -> str:
    """The token-embedding table's key: ``token_embedding.weight`` (CLIP) or ``text.token_embedding.weight``."""
    for key in ("token_embedding.weight", "text.token_embedding.weight"):
        if key in state:
            return key
    raise AdaptError("model has no token_embedding.weight; only open_clip text towers can be stored sparsely")


def read_config(path: Path) -> dict[str, Any]:
    """The ``clip_config.json`` of an adapted model folder (checked)."""
    cfg_path = Path(path) / CONFIG
    if not cfg_path.is_file():
        raise AdaptError(f"{path}: not an adapted CLIP folder (no {CONFIG}); train one with `embodied clip adapt TASK`")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise AdaptError(f"{cfg_path}: malformed JSON: {exc}") from None
    if cfg.get("format") != FORMAT:
        raise AdaptError(f"{cfg_path}: field 'format' is {cfg.get('format')!r}, expected {FORMAT!r}")
    for key in ("model_cfg", "preprocess_cfg", "goal"):
        if key not in cfg:
            raise AdaptError(f"{cfg_path}: missing field {key!r}")
    return cfg


def load_adapted(path: Path) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(model, preprocess, tokenizer, config) of an adapted folder; fp32 weights, eval mode."""
    import torch
    from safetensors.torch import load_file

    cfg = read_config(path)
    weights = Path(path) / cfg.get("weights", WEIGHTS)
    if not weights.is_file():
        raise AdaptError(f"{path}: weights file {weights.name} is missing")
    model, preprocess, tokenizer = build_clip(cfg["model_cfg"], cfg["preprocess_cfg"], seed=None)
    state = load_file(str(weights))
    if cfg.get("token_embedding") == "sparse":
        key = _token_key(model.state_dict())
        if f"{key}.rows" not in state:
            raise AdaptError(f"{weights}: config says sparse token embedding but {key}.rows is missing")
        rows = state.pop(f"{key}.rows").long()
        values = state.pop(f"{key}.values")
        table = torch.zeros_like(model.state_dict()[key])
        table[rows] = values.float()
        state[key] = table
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise AdaptError(
            f"{weights}: does not match the architecture in {CONFIG}: {str(exc).splitlines()[0]}"
        ) from None
    return model.eval(), preprocess, tokenizer, cfg


# --------------------------------------------------------------------------------------------------
# the whole procedure


def choose_alpha(
    model: Any,
    preprocess: Any,
    tokenizer: Any,
    goal: Sequence[str],
    baseline: Sequence[str],
    rollouts: Sequence[Rollout],
    cameras: Sequence[str],
    alphas: Sequence[float],
) -> tuple[float, dict[str, dict[str, float | None]]]:
    """Pick α by the pooled Spearman of the fused score with progress on `rollouts` (ties: smaller α)."""
    from embodied.rewards.clip import ClipReward
    from embodied.rewards.quality import evaluate_rollouts

    results: dict[str, dict[str, float | None]] = {}
    best, best_rho = alphas[0], -np.inf
    emb: dict[str, np.ndarray] | None = None
    for a in alphas:
        rew = ClipReward(
            goal, baseline, a, clip=(model, preprocess, tokenizer), cameras=cameras, device="cpu", verbose=False
        )
        if emb is None:  # encode once: the embeddings do not depend on α
            emb = {c: np.concatenate([rew.embed_images(r.frames[c]) for r in rollouts]) for c in cameras}
        fused = np.mean([rew.score_embeddings(emb[c]) for c in cameras], axis=0)
        lengths = [r.length + 1 for r in rollouts]
        per_state = np.split(fused, np.cumsum(lengths)[:-1])
        m = evaluate_rollouts(rollouts, [s[1:] for s in per_state])
        results[f"{a:g}"] = {
            "spearman": m["spearman"],
            "spearman_expert": m["spearman_expert"],
            "auc_episode": m["auc_episode"],
        }
        rho = m["spearman"] if m["spearman"] is not None else -np.inf
        if rho > best_rho + 1e-9:
            best, best_rho = a, rho
    return float(best), results


def adapt(
    task: str | Path | TaskSpec,
    out: Path | None = None,
    config: AdaptConfig | None = None,
    init: tuple[Any, Any, Any] | None = None,
    init_name: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> AdaptResult:
    """Collect frames, train, pick α, save: the whole of `embodied clip adapt TASK` (module docstring).

    Args:
        task: task name, path or spec.
        out: output folder (default ``reward_models/<task>/clip-adapted``).
        config: settings (default `AdaptConfig()`; cameras default to the task's first camera).
        init: fine-tune this loaded (model, preprocess, tokenizer) instead of training a small model
            from scratch; frames are rendered at its input size and normalised with its own mean/std.
        init_name: how to describe `init` in the config (e.g. "ViT-B-32/laion2b_s34b_b79k").
        progress: show progress bars.
        log: where to print one-line progress messages (default: nowhere).
    """
    import torch

    from embodied.tasks.spec import load_task

    spec = load_task(task)
    cfg = config or AdaptConfig()
    say = log or (lambda _m: None)
    cameras = tuple(cfg.cameras) or spec.cameras[:1]
    if not cameras:
        raise AdaptError(f"task {spec.name!r} has no cameras to render frames from")
    unknown = [c for c in cameras if c not in spec.cameras]
    if unknown:
        raise AdaptError(f"cameras {unknown} are not cameras of task {spec.name!r} ({list(spec.cameras)})")
    if cfg.episodes <= cfg.val_episodes or cfg.val_episodes < 1:
        raise AdaptError(f"episodes ({cfg.episodes}) must exceed val_episodes ({cfg.val_episodes}) >= 1")
    threads_before = torch.get_num_threads()
    if cfg.threads:
        # on a shared, oversubscribed CPU one thread is often several times faster than two (no spin-waiting)
        torch.set_num_threads(cfg.threads)
    try:
        return _adapt(spec, cfg, out, cameras, init, init_name, progress, say)
    finally:
        torch.set_num_threads(threads_before)


def _adapt(
    spec: TaskSpec,
    cfg: AdaptConfig,
    out: Path | None,
    cameras: tuple[str, ...],
    init: tuple[Any, Any, Any] | None,
    init_name: str | None,
    progress: bool,
    say: Callable[[str], None],
) -> AdaptResult:
    from embodied.rewards.frames import FrameSpec
    from embodied.rewards.quality import collect_rollouts

    out = Path(out) if out is not None else Path("reward_models") / spec.name / "clip-adapted"
    t0 = time.perf_counter()

    if init is not None:
        model, preprocess, tokenizer = init
        fspec = FrameSpec.from_model(model, preprocess)
        size = fspec.size
    else:
        size = (cfg.image_size, cfg.image_size)
    say(f"collecting {cfg.episodes} episodes x {len(cfg.policies)} policies of {spec.name} ({list(cameras)}, {size})")
    rollouts = collect_rollouts(
        spec, cfg.policies, cfg.episodes, cfg.seed, cameras, size, cfg.render, cfg.episode_steps, cfg.after_success,
        progress=progress,
    )  # fmt: skip
    val_seeds = set(range(cfg.seed + cfg.episodes - cfg.val_episodes, cfg.seed + cfg.episodes))
    train_set = [r for r in rollouts if r.seed not in val_seeds]
    val_set = [r for r in rollouts if r.seed in val_seeds]
    frames, prog = _frames_dataset(train_set, cameras, cfg.stride)
    t1 = time.perf_counter()

    levels = caption_ladder(spec)
    if init is None:
        flat = frames.reshape(-1, 3).astype(np.float64) / 255.0
        mean = tuple(float(v) for v in flat.mean(axis=0))
        std = tuple(float(max(v, 1e-3)) for v in flat.std(axis=0))
        model_cfg = small_clip_config(
            cfg.image_size, cfg.patch_size, cfg.width, cfg.layers, 32, cfg.embed_dim, cfg.text_width,
            cfg.text_layers, 2, cfg.context_length,
        )  # fmt: skip
        model, preprocess, tokenizer = build_clip(model_cfg, {"mean": mean, "std": std}, cfg.seed)
        source = "small open_clip CLIP trained from scratch"
    else:
        mean, std = fspec.mean, fspec.std
        model_cfg = _model_cfg_of(model, init_name)
        source = f"fine-tuned from {init_name or type(model).__name__}"
        if "vision_cfg" not in model_cfg:
            raise AdaptError("cannot save a fine-tuned model whose open_clip config is unknown; pass init_name=MODEL")
    n_params = sum(p.numel() for p in model.parameters())
    say(f"training {source} ({n_params / 1e6:.2f} M parameters) on {len(frames)} frames, {len(levels)} caption levels")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.epochs * max(1, math.ceil(len(frames) / cfg.batch_size)), desc="adapt", unit="step")

    def on_step(step: int, total: int, loss: float) -> None:
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")

    try:
        history = train_contrastive(
            model, tokenizer, frames, prog, levels, mean, std, cfg.epochs, cfg.batch_size, cfg.lr, cfg.weight_decay,
            cfg.sigma, cfg.augment, cfg.seed, on_step,
        )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    t2 = time.perf_counter()

    goal = list(levels[-1].prompts)
    baseline = list(levels[0].prompts)
    alpha, alpha_table = choose_alpha(model, preprocess, tokenizer, goal, baseline, val_set, cameras, cfg.alphas)
    t3 = time.perf_counter()
    say(f"alpha {alpha:g} chosen on {len(val_set)} validation episodes: {alpha_table[f'{alpha:g}']}")
    pp = getattr(model.visual, "preprocess_cfg", {})
    config = {
        "task": spec.name,
        "source": source,
        "model_cfg": model_cfg,
        "preprocess_cfg": {
            "size": list(size), "mean": list(mean), "std": list(std),
            "interpolation": pp.get("interpolation", "bicubic"), "resize_mode": "shortest",
        },
        "goal": goal, "baseline": baseline, "alpha": alpha, "cameras": list(cameras), "fusion": "mean",
        "frame_size": list(size), "render": cfg.render,
        "captions": [{"position": round(lv.position, 4), "prompts": list(lv.prompts)} for lv in levels],
        "training": {
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
            "cameras": list(cameras), "frames": len(frames), "train_episodes": len(train_set),
            "val_episodes": len(val_set), "parameters": int(n_params), "loss_per_epoch": [round(x, 4) for x in history],
            "seconds": {"collect": round(t1 - t0, 1), "train": round(t2 - t1, 1), "select": round(t3 - t2, 1)},
        },
        "validation": {"alpha": alpha_table},
    }  # fmt: skip
    rows = _token_rows(tokenizer, levels) if init is None else None
    save_adapted(model, out, config, rows)
    say(f"wrote {out} ({sum(f.stat().st_size for f in out.iterdir()) / 1e6:.2f} MB)")
    return AdaptResult(out, config, {"collect_s": t1 - t0, "train_s": t2 - t1, "select_s": t3 - t2})


def _model_cfg_of(model: Any, name: str | None) -> dict[str, Any]:
    """open_clip architecture config of a loaded model (by its open_clip name)."""
    import open_clip

    if name:
        base, _, tag = name.partition("/")
        cfg = open_clip.get_model_config(base)
        if cfg is not None:
            if tag and (open_clip.get_pretrained_cfg(base, tag) or {}).get("quick_gelu", False):
                cfg["quick_gelu"] = True
            return cfg
    cfg = getattr(model, "embodied_model_cfg", None)
    return dict(cfg) if cfg else {}
