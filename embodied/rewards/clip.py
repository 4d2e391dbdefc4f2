"""Vision-language zero-shot rewards (VLM-RM, Rocamonde et al. 2023): CLIP scores frames against prompts.

`ClipReward` embeds rendered frames with an open_clip model and scores them against a goal prompt:

* ``form="projection"`` (VLM-RM): r = 1 − ½‖(x̂ − g)P‖², P = α·ddᵀ/‖d‖² + (1 − α)I, d = g − b, with x̂
  the L2-normalised image embedding and g, b the means of the normalised goal / baseline prompt
  embeddings (prompt ensembles). α = 0 with one goal prompt is the cosine similarity to the goal;
  α = 1 keeps only the goal-baseline direction.
* ``form="softmax"``: the probability of the goal among [goal, negative prompts] under
  softmax(temperature · cosine), temperature = the model's logit scale (100 for CLIP) by default.

The reward depends on s' only (`state_only = True`), so the model is also a potential Φ for
policy-invariant shaping — the recommended use (docs/clip.md): absolute CLIP scores are positive
and reward merely staying alive. Several cameras are scored in the same forward pass and fused
(mean, min, or the task's ``camera_weights``). Text embeddings are computed once and cached.

Reward spec (``--reward clip:...`` / ``--shaping clip:...``; comma-separated, every key optional)::

    clip:                                         ViT-B-32 / LAION-2B, the task's goal and baseline, α = 0
    clip:model=ViT-B-32,pretrained=laion2b_s34b_b79k,alpha=0.5,form=projection,fusion=mean
    clip:model=ViT-bigG-14,pretrained=laion2b_s39b_b160k,alpha=1.0          (VLM-RM humanoid kneeling)
    clip:model=ViT-L-14,checkpoint=/data/clip/vit-l-14.bin                   (local open_clip weights file)
    clip:reward_models/metaworld-reach/clip-adapted/                         (adapted model: `embodied clip adapt`)
    clip:reward_models/metaworld-reach/clip-adapted/,alpha=0,cameras=corner+topview,fusion=min

Keys: ``model``, ``pretrained``, ``checkpoint`` (file or adapted folder), ``alpha`` (in [0, 1]),
``form`` (projection | softmax), ``fusion`` (mean | min | weights), ``cameras`` (joined by ``+``),
``goal`` / ``baseline`` / ``negatives`` (prompts joined by ``|``: an ensemble; no commas inside a spec),
``temperature`` (softmax), ``device`` (auto | cpu | cuda | cuda:N), ``precision`` (auto | fp32 | bf16 |
fp16), ``batch`` (frames per forward pass). A bare first item is a path (adapted folder or weights file).
"""

from __future__ import annotations

import difflib
import functools
import os
import sys
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from embodied.rewards.base import Obs, Requirements, RewardError, RewardModel, RewardOutput, TransitionBatch, batch_size
from embodied.rewards.frames import FrameSpec, stack_views, to_tensor, validate_frames

if TYPE_CHECKING:
    import torch

    from embodied.tasks.spec import TaskSpec

Form = Literal["projection", "softmax"]
Fusion = Literal["mean", "min", "weights"]
Prompts = str | Sequence[str]

DEFAULT_MODEL = "ViT-B-32"
ADAPTED_CONFIG = "clip_config.json"


class ClipError(RewardError):
    """Bad CLIP reward configuration or input (one-line message)."""


# --------------------------------------------------------------------------------------------------
# loading


def prompt_list(prompts: Prompts | None, what: str) -> list[str]:
    """A prompt or prompt ensemble as a non-empty list of non-empty strings."""
    if prompts is None:
        raise ClipError(f"{what}: no prompt given")
    items = [prompts] if isinstance(prompts, str) else list(prompts)
    if not items:
        raise ClipError(f"{what}: empty prompt list")
    for p in items:
        if not isinstance(p, str) or not p.strip():
            raise ClipError(f"{what}: empty prompt {p!r}")
    return [p.strip() for p in items]


def _known_model(name: str) -> None:
    import open_clip

    if name.startswith(("hf-hub:", "local-dir:")):
        return
    known = open_clip.list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=4)
        hint = f"did you mean {', '.join(close)}?" if close else "see open_clip.list_models()"
        raise ClipError(f"unknown open_clip model {name!r}; {hint} ({len(known)} known)")


def default_pretrained(model: str) -> str:
    """The tag used when none is given: LAION-2B when open_clip has it (as in VLM-RM), else the first tag."""
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(model)
    if not tags:
        raise ClipError(f"open_clip has no pretrained weights for {model!r}; pass checkpoint=<file>")
    laion = [t for t in tags if t.startswith("laion2b")]
    return laion[0] if laion else tags[0]


def _hf_cache_hint() -> str:
    return os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface")), "hub"
    )


def load_open_clip(
    model: str = DEFAULT_MODEL,
    pretrained: str | None = None,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> tuple[Any, Any, Any]:
    """Build an open_clip model with real weights: (model, preprocess, tokenizer), in eval mode on `device`.

    Args:
        model: an open_clip architecture name (``open_clip.list_models()``), or ``hf-hub:ORG/REPO``.
        pretrained: a tag open_clip knows for `model` (``open_clip.list_pretrained_tags_by_model``);
            None = the LAION-2B tag when there is one. Weights come from the Hugging Face cache,
            downloaded on first use.
        checkpoint: a local weights file for `model` instead (its preprocessing is taken from
            `pretrained` when that is also given, else open_clip's defaults).

    Raises:
        ClipError: unknown model or tag, missing checkpoint file, or weights that cannot be fetched —
            one line saying how to get them.
    """
    import logging

    import open_clip

    _known_model(model)
    kwargs: dict[str, Any] = {"device": device}
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise ClipError(f"checkpoint file {path} does not exist")
        if pretrained:
            cfg = open_clip.get_pretrained_cfg(model, pretrained)
            if not cfg:
                raise ClipError(f"unknown pretrained tag {pretrained!r} for {model}")
            kwargs["force_preprocess_cfg"] = {k: cfg[k] for k in ("mean", "std", "interpolation") if k in cfg}
            kwargs["force_quick_gelu"] = bool(cfg.get("quick_gelu", False))
        source = str(path)
    elif model.startswith("hf-hub:"):
        source = None
    else:
        tag = pretrained or default_pretrained(model)
        tags = open_clip.list_pretrained_tags_by_model(model)
        if tag not in tags:
            raise ClipError(f"unknown pretrained tag {tag!r} for {model}; known: {', '.join(tags) or 'none'}")
        source = tag
        if open_clip.get_pretrained_cfg(model, tag).get("quick_gelu", False):
            kwargs["force_quick_gelu"] = True  # the OpenAI weights were trained with QuickGELU
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)  # open_clip logs download failures at ERROR on the root logger
    try:
        net, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=source, **kwargs)
    except Exception as exc:  # hub clients raise many types; they all mean "weights not available"
        if checkpoint is not None:
            raise ClipError(f"cannot load checkpoint {checkpoint} into {model}: {_first_line(exc)}") from None
        raise ClipError(
            f"cannot fetch open_clip weights {model}/{source}: not in the Hugging Face cache ({_hf_cache_hint()}) "
            f"and the download failed ({_first_line(exc)[:120]}); on a machine with internet run `python -c "
            f"\"import open_clip; open_clip.create_model_and_transforms('{model}', pretrained='{source}')\"` "
            f"and copy the cache, or pass checkpoint=/path/to/open_clip_pytorch_model.bin"
        ) from None
    finally:
        root.setLevel(level)
    tokenizer = open_clip.get_tokenizer(model)
    return net.eval(), preprocess, tokenizer


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def pick_device(device: str = "auto") -> torch.device:
    """ "auto" -> cuda when available, else cpu; otherwise the named device (checked)."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ClipError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ClipError(f"device {device!r} requested but torch sees no CUDA GPU (use device=cpu or auto)")
    return dev


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """Autocast dtype for encoding: bf16 (or fp16) on GPU with "auto", none (fp32) on CPU."""
    import torch

    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ClipError(f"precision must be auto, fp32, bf16 or fp16, got {precision!r}")
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


@functools.cache
def render_backend() -> str:
    """Which GL renderer MuJoCo frames come from in this process, e.g. 'egl: Mesa/X.org llvmpipe (...)'.

    Opens a 1x1 MuJoCo GL context and asks OpenGL for its vendor and renderer (~0.2 s); falls back
    to the MUJOCO_GL setting when that is not possible. llvmpipe / softpipe / swrast mean software
    rendering on the CPU.
    """
    backend = os.environ.get("MUJOCO_GL", "(unset)")
    try:
        from embodied.envs.wrappers import _preload_triton

        _preload_triton()  # triton must load before the first Mesa context (see docs/training.md)
        import mujoco
        from OpenGL import GL

        ctx = mujoco.GLContext(1, 1)
        ctx.make_current()
        try:
            vendor = GL.glGetString(GL.GL_VENDOR).decode()
            renderer = GL.glGetString(GL.GL_RENDERER).decode()
        finally:
            ctx.free()
    except Exception as exc:  # no display, no EGL, no PyOpenGL: report the setting only
        return f"MUJOCO_GL={backend} (renderer not probed: {_first_line(exc)[:80]})"
    software = any(s in renderer.lower() for s in ("llvmpipe", "softpipe", "swrast", "software"))
    return f"MUJOCO_GL={backend}: {vendor} {renderer}" + (" [software rendering on the CPU]" if software else "")


_ANNOUNCED: set[str] = set()


def announce(line: str) -> None:
    """Print a startup line to stderr once per process."""
    if line not in _ANNOUNCED:
        _ANNOUNCED.add(line)
        print(line, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# the reward model


class ClipReward(RewardModel):
    """CLIP (open_clip) frame scorer: VLM-RM goal-baseline projection or softmax over negative prompts.

    Args:
        goal: goal prompt or prompt ensemble (embedding = mean of the normalised prompt embeddings).
        baseline: baseline prompt(s) b for the direction d = g − b; required when α > 0.
        alpha: α in [0, 1], weight of the goal-baseline direction in the projection P.
        model: open_clip architecture name (ignored with `clip`).
        pretrained: open_clip pretrained tag (None: the LAION-2B tag when available).
        checkpoint: a local open_clip weights file for `model`, or an adapted-model folder written by
            `embodied clip adapt` (holds its own architecture).
        clip: already-built ``(model, preprocess, tokenizer)`` (open_clip objects; tests, power users).
        form: "projection" (VLM-RM) or "softmax" (goal vs `negatives`).
        negatives: negative prompts for "softmax" (each its own class; default: the baseline prompts).
        temperature: softmax inverse temperature (default: the model's logit scale).
        cameras: cameras whose frames `compute_reward` / `potential` score (declared in `requires`).
        fusion: fuse per-camera scores by "mean", "min" or "weights" (`camera_weights`).
        camera_weights: camera -> weight for fusion "weights" (normalised over `cameras`).
        device: "auto" (GPU if present), "cpu", "cuda", "cuda:N".
        precision: "auto" (bf16/fp16 autocast on GPU, fp32 on CPU), "fp32", "bf16", "fp16".
        batch_size: most frames per forward pass (all envs and cameras of a step go in one pass when
            they fit).
        verbose: print the startup line (which device scores, which renders) to stderr.
    """

    state_only = True

    def __init__(
        self,
        goal: Prompts,
        baseline: Prompts | None = None,
        alpha: float = 0.0,
        model: str = DEFAULT_MODEL,
        pretrained: str | None = None,
        *,
        checkpoint: str | Path | None = None,
        clip: tuple[Any, Any, Any] | None = None,
        form: Form = "projection",
        negatives: Sequence[str] | None = None,
        temperature: float | None = None,
        cameras: Sequence[str] = (),
        fusion: Fusion = "mean",
        camera_weights: Mapping[str, float] | None = None,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int = 256,
        name: str | None = None,
        verbose: bool = True,
    ) -> None:
        import torch

        self.goal_prompts = prompt_list(goal, "goal")
        self.baseline_prompts = None if baseline is None else prompt_list(baseline, "baseline")
        try:
            self.alpha = float(alpha)
        except (TypeError, ValueError):
            raise ClipError(f"alpha must be a number in [0, 1], got {alpha!r}") from None
        if not 0.0 <= self.alpha <= 1.0:
            raise ClipError(f"alpha must be in [0, 1], got {self.alpha}")
        if form not in ("projection", "softmax"):
            raise ClipError(f"form must be 'projection' or 'softmax', got {form!r}")
        self.form = form
        if form == "projection" and self.alpha > 0 and self.baseline_prompts is None:
            raise ClipError(f"alpha = {self.alpha} needs a baseline prompt (d = goal − baseline)")
        if self.baseline_prompts is not None and sorted(self.baseline_prompts) == sorted(self.goal_prompts):
            raise ClipError(f"baseline equals the goal ({self.goal_prompts}): d = g − b = 0, so P is undefined")
        if form == "softmax":
            neg = negatives if negatives is not None else self.baseline_prompts
            if not neg:
                raise ClipError("form=softmax needs negative prompts (negatives=... or a baseline)")
            self.negative_prompts = prompt_list(list(neg), "negatives")
        else:
            self.negative_prompts = []
        if fusion not in ("mean", "min", "weights"):
            raise ClipError(f"fusion must be mean, min or weights, got {fusion!r}")
        self.cameras = tuple(cameras)
        if len(set(self.cameras)) != len(self.cameras):
            raise ClipError(f"cameras listed twice: {list(self.cameras)}")
        self.fusion = fusion
        self._weights = self._fusion_weights(camera_weights)
        if int(batch_size) < 1:
            raise ClipError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)

        self.device = pick_device(device)
        self.amp_dtype = autocast_dtype(self.device, precision)
        self.adapted: dict[str, Any] | None = None
        if clip is not None:
            if not (isinstance(clip, tuple) and len(clip) == 3):
                raise ClipError("clip must be a (model, preprocess, tokenizer) tuple")
            net, preprocess, tokenizer = clip
            desc = name or f"injected-{type(net).__name__}"
        elif checkpoint is not None and Path(checkpoint).is_dir():
            from embodied.rewards.clip_adapt import load_adapted

            net, preprocess, tokenizer, self.adapted = load_adapted(Path(checkpoint))
            desc = f"adapted:{checkpoint}"
        else:
            net, preprocess, tokenizer = load_open_clip(model, pretrained, checkpoint, "cpu")
            desc = f"{model}/{checkpoint or pretrained or default_pretrained(model)}"
        self.model = net.eval().to(self.device)
        self.preprocess, self.tokenizer = preprocess, tokenizer
        self.frame_spec = FrameSpec.from_model(net, preprocess)
        self.name = name or f"clip:{desc}"
        self.requires = Requirements(self.cameras, self.frame_spec.size)
        self._text_cache: dict[str, np.ndarray] = {}
        with torch.inference_mode():
            scale = getattr(net, "logit_scale", None)
            self.temperature = (
                float(temperature)
                if temperature is not None
                else (float(scale.exp().item()) if isinstance(scale, torch.Tensor) else 100.0)
            )
        if self.temperature <= 0:
            raise ClipError(f"temperature must be > 0, got {self.temperature}")
        self._prepare_prompts()
        if verbose:
            announce(self.startup_line())

    # ---------------------------------------------------------------- configuration helpers
    def _fusion_weights(self, camera_weights: Mapping[str, float] | None) -> np.ndarray | None:
        if self.fusion != "weights":
            return None
        if not camera_weights:
            raise ClipError("fusion=weights needs camera weights (the task's camera_weights or camera_weights=...)")
        if not self.cameras:
            raise ClipError("fusion=weights needs cameras")
        missing = [c for c in self.cameras if c not in camera_weights]
        if missing:
            raise ClipError(f"fusion=weights: no weight for camera(s) {missing} (weights: {dict(camera_weights)})")
        w = np.array([float(camera_weights[c]) for c in self.cameras])
        if np.any(w < 0) or w.sum() <= 0:
            raise ClipError(f"camera weights must be >= 0 with a positive sum, got {dict(camera_weights)}")
        return w / w.sum()

    def _prepare_prompts(self) -> None:
        g_each = self.embed_text(self.goal_prompts)
        self.goal_embedding = g_each.mean(axis=0)
        if self.baseline_prompts is not None:
            self.baseline_embedding: np.ndarray | None = self.embed_text(self.baseline_prompts).mean(axis=0)
            d = self.goal_embedding - self.baseline_embedding
            if float(np.linalg.norm(d)) < 1e-6:
                raise ClipError(
                    f"baseline {self.baseline_prompts} embeds to the goal {self.goal_prompts}: d = g − b = 0, "
                    "so the projection is undefined; use a different baseline"
                )
            self.direction: np.ndarray | None = d / np.linalg.norm(d)
        else:
            self.baseline_embedding, self.direction = None, None
        if self.form == "softmax":
            negs = self.embed_text(self.negative_prompts)
            g = self.goal_embedding / np.linalg.norm(self.goal_embedding)
            self._classes = np.concatenate([g[None], negs], axis=0)

    def startup_line(self) -> str:
        """'clip: scoring on <device> (<precision>) with <model>; frames: <renderer>' (+ a warning on mismatch)."""
        import torch

        if self.device.type == "cuda":
            where = f"{self.device} ({torch.cuda.get_device_name(self.device)})"
        else:
            where = f"cpu ({torch.get_num_threads()} threads)"
        prec = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}[self.amp_dtype]
        render = render_backend()
        line = f"clip: scoring on {where}, {prec}, {self.name}; frames rendered by {render}"
        if self.device.type == "cuda" and "software" in render:
            line += " — WARNING: the GPU scores but frames render on the CPU; use the NVIDIA EGL driver"
        return line

    @property
    def projection(self) -> np.ndarray:
        """P = α·ddᵀ/‖d‖² + (1 − α)·I, float64 [D, D] (for inspection and tests; scoring never builds it)."""
        dim = self.goal_embedding.shape[0]
        P = (1.0 - self.alpha) * np.eye(dim)
        if self.direction is not None:
            P += self.alpha * np.outer(self.direction, self.direction)
        return P

    # ---------------------------------------------------------------- embeddings
    def _autocast(self) -> Any:
        import torch

        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def embed_text(self, prompts: Sequence[str]) -> np.ndarray:
        """L2-normalised text embeddings float64 [P, D]; each prompt is encoded once per model (cached)."""
        import torch

        todo = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        if todo:
            tokens = self.tokenizer(todo)
            with torch.inference_mode(), self._autocast():
                emb = self.model.encode_text(tokens.to(self.device)).float()
            emb = _unit(emb.cpu().double().numpy())
            for p, e in zip(todo, emb, strict=True):
                self._text_cache[p] = e
        return np.stack([self._text_cache[p] for p in prompts])

    def embed_images(self, frames: np.ndarray) -> np.ndarray:
        """L2-normalised image embeddings float64 [N, D] of uint8 frames [N, H, W, 3], in passes of `batch_size`."""
        import torch

        validate_frames(frames)
        out = []
        for lo in range(0, frames.shape[0], self.batch_size):
            x = to_tensor(frames[lo : lo + self.batch_size], self.frame_spec, self.device, validate=False)
            with torch.inference_mode(), self._autocast():
                emb = self.model.encode_image(x).float()
            out.append(_unit(emb.cpu().double().numpy()))
        if not out:
            return np.zeros((0, self.goal_embedding.shape[0]))
        return np.concatenate(out, axis=0)

    # ---------------------------------------------------------------- scoring
    def score_embeddings(self, x: np.ndarray) -> np.ndarray:
        """Reward float64 [N] of normalised image embeddings [N, D] (the reward form, without the encoder)."""
        if self.form == "softmax":
            logits = self.temperature * (x @ self._classes.T)
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            return p[:, 0] / p.sum(axis=1)
        v = x - self.goal_embedding
        # ‖vP‖² with P = (1−α)I + α d̂d̂ᵀ: (1−α)²‖v‖² + α(2−α)(v·d̂)², without forming P
        sq = (1.0 - self.alpha) ** 2 * np.einsum("nd,nd->n", v, v)
        if self.direction is not None and self.alpha > 0:
            sq += self.alpha * (2.0 - self.alpha) * (v @ self.direction) ** 2
        return 1.0 - 0.5 * sq

    def score(self, frames: np.ndarray) -> np.ndarray:
        """Reward float64 [N] for uint8 frames [N, H, W, 3] of one camera."""
        return self.score_embeddings(self.embed_images(frames))

    def score_views(self, frames: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Fused reward [N] and per-camera rewards {camera: [N]} for `self.cameras`, in one forward pass."""
        if not self.cameras:
            raise ClipError("no cameras set: build the reward with cameras=[...] (the spec takes the task's)")
        stacked, n = stack_views(frames, self.cameras)
        per = self.score(stacked).reshape(len(self.cameras), n)
        if self.fusion == "mean":
            fused = per.mean(axis=0)
        elif self.fusion == "min":
            fused = per.min(axis=0)
        else:
            assert self._weights is not None
            fused = self._weights @ per
        return fused, {c: per[i] for i, c in enumerate(self.cameras)}

    def compute_reward(self, batch: TransitionBatch) -> RewardOutput:
        """Score the frames of s' for every transition: fused reward [N], per-camera components."""
        fused, per = self.score_views(self._frames(batch.frames, len(batch)))
        comps = {f"clip/{c}": v for c, v in per.items()} if len(per) > 1 else {}
        return RewardOutput(fused, comps)

    def potential(self, obs: Obs, frames: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Φ(s) = the fused score of the frames of s, float64 [N]."""
        return self.score_views(self._frames(frames, batch_size(obs)))[0]

    def _frames(self, frames: Mapping[str, np.ndarray] | None, n: int) -> Mapping[str, np.ndarray]:
        if frames is None:
            raise ClipError(
                f"{self.name} needs frames from cameras {list(self.cameras)}; build the envs with frames=[...]"
            )
        for c in self.cameras:
            if c in frames and frames[c].shape[0] != n:
                raise ClipError(f"frames[{c!r}] has {frames[c].shape[0]} rows for a batch of {n}")
        return frames

    @classmethod
    def from_adapted(cls, path: str | Path, **overrides: Any) -> ClipReward:
        """An adapted model folder with its own prompts, α, cameras and fusion (any of them overridable)."""
        from embodied.rewards.clip_adapt import read_config

        cfg = read_config(Path(path))
        kwargs: dict[str, Any] = {
            "goal": cfg["goal"],
            "baseline": cfg.get("baseline"),
            "alpha": cfg.get("alpha", 0.0),
            "cameras": tuple(cfg.get("cameras", ())),
            "fusion": cfg.get("fusion", "mean"),
        }
        kwargs.update(overrides)
        return cls(checkpoint=path, **kwargs)


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, in float64 (so 1 − ½‖x − g‖² = x·g holds to 1e-15 for one prompt)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


# --------------------------------------------------------------------------------------------------
# reward spec


SPEC_KEYS = (
    "model", "pretrained", "checkpoint", "alpha", "form", "fusion", "cameras", "goal", "baseline", "negatives",
    "temperature", "device", "precision", "batch",
)  # fmt: skip


def parse_clip_spec(arg: str) -> dict[str, str]:
    """``path,key=value,...`` -> {key: value}; a bare first item becomes ``checkpoint``."""
    out: dict[str, str] = {}
    items = [s.strip() for s in arg.split(",")] if arg.strip() else []
    for i, item in enumerate(items):
        if not item:
            continue
        key, eq, value = item.partition("=")
        if not eq:
            if i != 0:
                raise ClipError(
                    f"clip spec {arg!r}: item {item!r} is not key=value (only the first item may be a path)"
                )
            key, value = "checkpoint", item
        key = key.strip()
        if key not in SPEC_KEYS:
            raise ClipError(f"clip spec {arg!r}: unknown key {key!r}; known: {', '.join(SPEC_KEYS)}")
        if key in out:
            raise ClipError(f"clip spec {arg!r}: key {key!r} given twice")
        out[key] = value.strip()
    return out


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split("|") if v.strip()]


def from_spec(arg: str, task: TaskSpec) -> ClipReward:
    """Factory for ``clip:...`` (see the module docstring for the syntax); defaults come from the task.

    Defaults: goal and baseline = the task's; cameras = the task's weighted cameras with fusion
    "weights" when it has ``camera_weights``, else its first camera; an adapted folder supplies its
    own prompts, α, cameras and fusion. Keys in the spec override all of these.
    """
    from embodied.rewards.clip_adapt import read_config

    opts = parse_clip_spec(arg)
    if not task.cameras:
        raise ClipError(f"task {task.name!r} lists no cameras, so a clip reward has no frames to score")
    kwargs: dict[str, Any] = {"goal": task.goal, "baseline": task.baseline or None, "alpha": 0.0}
    if task.camera_weights:
        kwargs["cameras"] = tuple(c for c in task.cameras if c in task.camera_weights)
        kwargs["fusion"] = "weights"
    else:
        kwargs["cameras"] = task.cameras[:1]
    kwargs["camera_weights"] = dict(task.camera_weights)
    ckpt = opts.get("checkpoint")
    if ckpt is not None:
        path = Path(ckpt)
        if path.is_dir():
            cfg = read_config(path)
            if cfg.get("task") and cfg["task"] != task.name:
                announce(f"clip: note: {path} was adapted on task {cfg['task']!r}, used here for {task.name!r}")
            for key in ("goal", "baseline", "alpha", "fusion"):
                if cfg.get(key) is not None:
                    kwargs[key] = cfg[key]
            if cfg.get("cameras"):
                kwargs["cameras"] = tuple(cfg["cameras"])
        elif not path.is_file():
            raise ClipError(
                f"clip spec: no adapted model folder or checkpoint file at {path} "
                f"(train one with `embodied clip adapt {task.name}`)"
            )
        kwargs["checkpoint"] = path
    for key, target in (("model", "model"), ("pretrained", "pretrained"), ("form", "form"), ("fusion", "fusion")):
        if key in opts:
            kwargs[target] = opts[key]
    for key in ("device", "precision"):
        if key in opts:
            kwargs[key] = opts[key]
    for key in ("goal", "baseline", "negatives"):
        if key in opts:
            kwargs[key] = _split(opts[key]) or [""]
    if "cameras" in opts:
        kwargs["cameras"] = tuple(c.strip() for c in opts["cameras"].replace("|", "+").split("+") if c.strip())
    for key, target, conv in (
        ("alpha", "alpha", float),
        ("temperature", "temperature", float),
        ("batch", "batch_size", int),
    ):
        if key in opts:
            try:
                kwargs[target] = conv(opts[key])
            except ValueError:
                raise ClipError(f"clip spec: {key}={opts[key]!r} is not a number") from None
    unknown = [c for c in kwargs["cameras"] if c not in task.cameras]
    if unknown:
        raise ClipError(
            f"clip: camera(s) {unknown} not in task {task.name!r} cameras {list(task.cameras)}; pass cameras=A+B"
        )
    if kwargs.get("fusion") != "weights":
        kwargs.pop("camera_weights")
    return ClipReward(**kwargs)


# --------------------------------------------------------------------------------------------------
# run folders: the files a clip spec names travel with the run (embodied.train.runs)


def _checkpoint_item(arg: str) -> tuple[list[str], int | None, str]:
    """(items, index of the item naming a checkpoint or None, its path)."""
    items = arg.split(",")
    for i, item in enumerate(items):
        text = item.strip()
        if i == 0 and text and "=" not in text:
            return items, i, text
        key, _, value = text.partition("=")
        if key.strip() == "checkpoint":
            return items, i, value.strip()
    return items, None, ""


def _with_checkpoint(items: list[str], i: int, path: str) -> str:
    bare = "=" not in items[i]
    return ",".join([*items[:i], path if bare else f"checkpoint={path}", *items[i + 1 :]])


def localize_spec(arg: str, task: TaskSpec | None, run_dir: Path) -> str:
    """Copy an adapted model folder into ``run_dir/clip/<name>/`` and point the spec there.

    Adapted folders are small (config + weights, ~1 MB), so a run folder reproduces its reward on its
    own. A checkpoint *file* (web-scale weights, up to GBs) is not copied: the spec gets its absolute path.
    """
    import shutil

    from embodied.rewards.clip_adapt import read_config

    items, i, value = _checkpoint_item(arg)
    if i is None:
        return arg
    src = Path(value)
    if src.is_file():
        return _with_checkpoint(items, i, str(src.resolve()))
    if not src.is_dir():
        return arg  # the factory reports the missing path
    cfg = read_config(src)
    dst = Path(run_dir) / "clip" / f"{src.resolve().parent.name}-{src.resolve().name}"
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("clip_config.json", cfg.get("weights", "model.safetensors")):
        shutil.copyfile(src / name, dst / name)
    return _with_checkpoint(items, i, str(dst.relative_to(run_dir)))


def absolute_spec(arg: str, run_dir: Path) -> str:
    """Resolve a checkpoint path stored relative to a run folder (see `localize_spec`)."""
    items, i, value = _checkpoint_item(arg)
    if i is None or Path(value).is_absolute() or not (Path(run_dir) / value).exists():
        return arg
    return _with_checkpoint(items, i, str(Path(run_dir) / value))
