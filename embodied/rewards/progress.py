"""Stage-aware progress reward models (SARM), with Robo-Dopamine and SPA-RL options; the `progress:` spec.

Labels (SARM). A frame t inside annotated stage k gets τ = (t − start_k)/(end_k − start_k) clipped to
[0, 1] (τ = 1 for a zero-length stage); before the first stage: (first stage, τ = 0); in a gap after
stage k, or after the last annotated stage: (k, τ = 1); on a frame two stages share, the later stage
wins (so a zero-length stage counts as done there). The regression target is y = k + τ. Dataset stage
weights ᾱ_k are the mean over successful annotated episodes of (end_k − start_k)/(T − 1), renormalised
to sum to 1 (or 1/K each: Robo-Dopamine's equal-mass stages). Normalised progress is
P = Σ_{j<k} ᾱ_j + ᾱ_k·τ ∈ [0, 1]; ᾱ is stored with the model and applied at inference.

Model. Per frame: normalised task views (state) and/or an image embedding per camera (a small CNN
trained from scratch, or a frozen CLIP from `embodied.rewards.clip`); a causal window of W frames
t − (W−1)·g, ..., t − g, t (clamped at the episode start: never a future frame); a stage classifier
(cross-entropy) and a within-stage progress regressor with a sigmoid output (MSE), conditioned on the
true stage 75 % of the time during training and on the predicted one otherwise and at inference.
Rewind augmentation (W > 1) appends earlier frames in reverse and uses the earlier frame's label.
Cameras are fused early (one embedding) or late (one estimate per camera, averaged with the task's
camera weights: Robo-Dopamine's multi-view fusion). Modes: ``dense`` (the task's stages), ``sparse``
(the coarse annotation set, one ``task`` stage by default), ``single_stage`` (τ = t/(T−1)).

SPA-RL objective (``objective="spa"``): per-step contributions c(o_t) trained so that each episode's sum
matches its outcome (1 success, 0 failure), for data with only a final success label. That is a
redistribution of reward, not a potential: such a model is a reward (``--reward progress:...``), never Φ.

Spec: ``progress:PATH[,mode=M][,readout=R]``. PATH is a model folder, or a folder name under
``reward_models/<task>/``. The default use is as the shaping potential Φ (``--reward env --shaping
progress:PATH``), which leaves optimal policies unchanged. As a whole reward the model only runs in the
non-invariant Shaper modes, named so: ``mode=raw_progress_not_invariant`` (r = P(s')) and
``mode=progress_delta_not_invariant`` (r = P(s') − P(s)). ``readout=argmax`` (SARM; default) uses the
most likely stage, ``readout=expected`` averages the progress over the stage probabilities.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from embodied.demos.dataset import DemoDataset, DemoError, Episode, Stage
from embodied.rewards.base import (
    Obs,
    Requirements,
    RewardError,
    RewardModel,
    RewardOutput,
    TransitionBatch,
    batch_size,
)
from embodied.tasks.spec import TaskSpec

Encoder = Literal["state", "cnn", "clip"]
Mode = Literal["dense", "sparse", "single_stage"]
CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE = "config.json", "model.pt", "metrics.json"
STD_FLOOR, INPUT_CLIP = 1e-2, 10.0


class ProgressError(ValueError):
    """A progress model or its training data is unusable; the message names the file/episode/field."""


# ---------------------------------------------------------------------------------------------------------------
# Labels, stage weights, normalisation, windows (numpy; hand-checkable)
# ---------------------------------------------------------------------------------------------------------------
def compute_tau(t: np.ndarray | int, start: int, end: int) -> np.ndarray:
    """τ = (t − start)/(end − start) clipped to [0, 1]; 1 for a zero-length stage (end == start)."""
    t = np.asarray(t, dtype=np.float64)
    if end <= start:
        return np.ones_like(t)
    return np.clip((t - start) / (end - start), 0.0, 1.0)


def stage_labels(stages: Sequence[Stage], length: int, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame (stage index, τ) from an episode's annotated stages (SARM's rules, module docstring).

    Args:
        stages: the annotated stages, in order (may cover only the first few of `names`).
        length: episode length T.
        names: the dataset's ordered stage names (indices refer to this list).

    Returns:
        stage int64 [T] and tau float64 [T]. With no stages, every frame is (0, 0).
    """
    stage = np.zeros(length, dtype=np.int64)
    tau = np.zeros(length, dtype=np.float64)
    if not stages:
        return stage, tau
    index = {n: i for i, n in enumerate(names)}
    for st in stages:
        if st.name not in index:
            raise ProgressError(f"stage {st.name!r} is not one of the model's stages {list(names)}")
    t = np.arange(length)
    stage[:] = index[stages[0].name]  # before the first stage: its index, τ = 0
    # Walk the stages in order; later assignments win only where a frame lies after the earlier stage.
    for k, st in enumerate(stages):
        after = t > st.end
        if k + 1 < len(stages):
            after &= t < stages[k + 1].start  # a gap between stage k and k+1
        stage[after] = index[st.name]
        tau[after] = 1.0
    for (
        st
    ) in stages:  # inside a stage; at a frame two stages share, the later one wins (an instant stage counts as done)
        inside = (t >= st.start) & (t <= st.end)
        stage[inside] = index[st.name]
        tau[inside] = compute_tau(t[inside], st.start, st.end)
    return stage, tau


def single_stage_labels(length: int) -> tuple[np.ndarray, np.ndarray]:
    """Single-stage mode: stage 0, τ = t/(T − 1)."""
    return np.zeros(length, np.int64), np.arange(length) / max(length - 1, 1)


def stage_proportions(annotated: Sequence[tuple[Sequence[Stage], int]], names: Sequence[str]) -> np.ndarray:
    """Dataset stage weights ᾱ [K]: mean over episodes of (end_k − start_k)/(T − 1), renormalised to sum 1.

    Args:
        annotated: (stages, episode length) of each (successful, annotated) episode.
        names: ordered stage names.

    Returns:
        ᾱ float64 [K]; uniform when no episode gives any duration.
    """
    k = len(names)
    if k == 0:
        raise ProgressError("no stages to weight")
    index = {n: i for i, n in enumerate(names)}
    ratios = np.zeros((max(len(annotated), 1), k))
    for e, (stages, length) in enumerate(annotated):
        for st in stages:
            ratios[e, index[st.name]] += (st.end - st.start) / max(length - 1, 1)
    mean = ratios.mean(0)
    if mean.sum() <= 0:
        return np.full(k, 1.0 / k)
    return mean / mean.sum()


def normalize_progress(stage: np.ndarray, tau: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """P = Σ_{j<k} ᾱ_j + ᾱ_k·τ (float [N])."""
    alpha = np.asarray(alpha, np.float64)
    cum = np.concatenate([[0.0], np.cumsum(alpha)[:-1]])
    stage = np.asarray(stage, np.int64)
    return cum[stage] + alpha[stage] * np.asarray(tau, np.float64)


def denormalize_progress(progress: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `normalize_progress`: P -> (stage, τ), skipping zero-weight stages.

    P on a boundary maps to the later stage with τ = 0 (y = k + 1 with τ = 0 ≡ y = k with τ = 1); P ≥ 1 maps
    to the last weighted stage with τ = 1.
    """
    alpha = np.asarray(alpha, np.float64)
    cum = np.concatenate([[0.0], np.cumsum(alpha)[:-1]])
    p = np.asarray(progress, np.float64)
    live = np.flatnonzero(alpha > 0)
    stage = np.empty(p.shape, np.int64)
    tau = np.empty(p.shape, np.float64)
    for i, v in np.ndenumerate(p):
        cands = live[cum[live] <= v + 1e-12]
        k = int(cands[-1]) if cands.size else int(live[0])
        stage[i] = k
        tau[i] = float(np.clip((v - cum[k]) / alpha[k], 0.0, 1.0))
    return stage, tau


def causal_window(t: np.ndarray | int, window: int, stride: int = 1) -> np.ndarray:
    """Frame indices of the past-only window ending at t: [t − (W−1)g, ..., t − g, t], clamped at 0.

    Args:
        t: int or int [N], current frame(s).
        window: W >= 1 frames.
        stride: g >= 1 frames between window entries.

    Returns:
        int64 [N, W] (or [W] for a scalar t); every entry is <= its t.
    """
    if window < 1 or stride < 1:
        raise ProgressError(f"window and stride must be >= 1, got window={window}, stride={stride}")
    t_arr = np.asarray(t, dtype=np.int64)
    offsets = stride * np.arange(window - 1, -1, -1, dtype=np.int64)
    idx = np.maximum(t_arr[..., None] - offsets, 0)
    return idx


def rewind_window(t: int, rewind: int, window: int, stride: int = 1) -> tuple[np.ndarray, int]:
    """Rewind augmentation: go forward to t, then back `rewind` strides; the window is the last W frames.

    Returns:
        (frame indices int64 [W], the frame whose label is the target = t − rewind·g, clamped at 0).
        Every index is <= t (no frame after the forward pass's last frame).
    """
    forward = causal_window(t, window, stride)
    back = np.maximum(t - stride * np.arange(1, rewind + 1, dtype=np.int64), 0)
    seq = np.concatenate([forward, back])
    return seq[-window:], int(max(t - stride * rewind, 0))


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with `n` intra-op torch threads (restored afterwards); None leaves torch's setting.

    Small MLPs and CNNs train fastest on one thread; on a shared CPU more threads mostly spin.
    """
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ---------------------------------------------------------------------------------------------------------------
# Configuration and networks
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class ProgressConfig:
    """Training options (all stored with the model).

    Attributes:
        encoder: ``state`` (task views only), ``cnn`` (small CNN from scratch), ``clip`` (frozen CLIP).
        mode: ``dense`` | ``sparse`` | ``single_stage`` (which labels; module docstring).
        objective: ``sarm`` (stage + progress) or ``spa`` (per-step contributions summing to the outcome).
        cameras: cameras for frame encoders (default: the task's first camera).
        frame_size: (H, W) frames are resized to before the CNN.
        with_state: frame encoders also read the task views.
        views: task views used as state input (default: all, in the task's order).
        relative: add differences and distances between every pair of 3-vector views to the state input.
        window: W frames in the causal window; 1 gives a Markov model (usable online as Φ).
        stride: g frames between window entries.
        fusion: ``early`` (one embedding from all cameras) or ``mean`` (per-camera estimates, weighted mean).
        stage_weights: ``dataset`` (ᾱ from annotations) or ``equal`` (1/K, Robo-Dopamine).
        rewind_prob, max_rewind: rewind augmentation (only with window > 1).
        true_stage_prob: how often the τ head sees the true stage during training (SARM: 0.75).
        include_failures: also train on failed episodes (their completed stages; never for single_stage).
        hidden: width of the MLPs.
        steps, batch_size, lr, weight_decay: optimisation.
        augment: random ±4 px shifts of frames while training.
        val_fraction: successful episodes held out for the metrics written with the model.
        clip_model, clip_pretrained, clip_checkpoint: which frozen CLIP (``encoder="clip"``): an open_clip
            architecture and pretrained tag (weights from the Hugging Face cache), or a local weights file /
            adapted-model folder (`embodied clip adapt`).
        seed: torch/numpy seed.
        device: torch device for training.
        threads: torch CPU threads while training (None: torch's default).
    """

    encoder: Encoder = "state"
    mode: Mode = "dense"
    objective: Literal["sarm", "spa"] = "sarm"
    cameras: tuple[str, ...] | None = None
    frame_size: tuple[int, int] = (64, 64)
    with_state: bool = False
    views: tuple[str, ...] | None = None
    relative: bool = True
    window: int = 1
    stride: int = 1
    fusion: Literal["early", "mean"] = "early"
    stage_weights: Literal["dataset", "equal"] = "dataset"
    rewind_prob: float = 0.8
    max_rewind: int = 4
    true_stage_prob: float = 0.75
    include_failures: bool = False
    hidden: int = 128
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-5
    augment: bool = True
    val_fraction: float = 0.2
    clip_model: str = "ViT-B-32"
    clip_pretrained: str | None = None
    clip_checkpoint: str | None = None
    seed: int = 0
    device: str = "cpu"
    threads: int | None = 1

    def check(self) -> None:
        """Raise `ProgressError` for inconsistent options (one line naming the option)."""
        choices = {
            "encoder": ("state", "cnn", "clip"),
            "mode": ("dense", "sparse", "single_stage"),
            "objective": ("sarm", "spa"),
            "fusion": ("early", "mean"),
            "stage_weights": ("dataset", "equal"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ProgressError(f"option --{key.replace('_', '-')}: {getattr(self, key)!r} is not one of {allowed}")
        for key in ("window", "stride", "steps", "batch_size", "hidden"):
            if int(getattr(self, key)) < 1:
                raise ProgressError(f"option --{key.replace('_', '-')}: must be >= 1, got {getattr(self, key)}")
        if not 0.0 <= self.true_stage_prob <= 1.0 or not 0.0 <= self.rewind_prob <= 1.0:
            raise ProgressError("options true_stage_prob and rewind_prob must be probabilities in [0, 1]")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ProgressError(f"option --val-fraction: must be in [0, 1), got {self.val_fraction}")
        if self.encoder == "state" and self.cameras:
            raise ProgressError("option --camera: the state encoder reads no frames; use --encoder cnn or clip")


class SmallCNN(nn.Module):
    """uint8 frames [B, H, W, 3] -> embedding [B, out].

    Frames are resized to `size` (64x64 by default); 4 conv layers (stride 2, 2, 2, 1; 64x64 -> 8x8), a 4x4
    average pool (keeps coarse positions, which progress depends on), then a linear layer: ~0.25 M weights.
    """

    def __init__(self, out: int, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = size
        self.conv = nn.Sequential(
            nn.Conv2d(3, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(64, 64, 3, 1, 1), nn.ReLU(),
            nn.AdaptiveAvgPool2d((4, 4)),
        )  # fmt: skip
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 16, out), nn.LayerNorm(out), nn.ReLU())

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).float() / 255.0
        if tuple(x.shape[-2:]) != tuple(self.size):
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return self.head(self.conv(x - 0.5))


class ProgressNet(nn.Module):
    """Window of per-frame inputs -> stage logits and within-stage progress (or SPA contributions).

    Inputs: state [B, W, Ds] (or None) and per-camera inputs [B, W, C, ...] (uint8 frames for the CNN,
    float embeddings for CLIP). Outputs per estimate e (1 estimate, or C with late fusion): stage logits
    [B, E, K] and a trunk embedding [B, E, h] for the τ head.
    """

    def __init__(
        self,
        *,
        state_dim: int,
        cameras: int,
        encoder: str,
        clip_dim: int,
        stages: int,
        window: int,
        hidden: int,
        fusion: str,
        frame_size: tuple[int, int],
        objective: str,
    ) -> None:
        super().__init__()
        self.state_dim, self.cameras, self.encoder, self.fusion = state_dim, cameras, encoder, fusion
        self.stages, self.window, self.objective = stages, window, objective
        h = hidden
        self.state_enc = nn.Sequential(nn.Linear(state_dim, h), nn.ReLU()) if state_dim else None
        if cameras and encoder == "cnn":
            self.cam_enc = nn.ModuleList([SmallCNN(h, frame_size) for _ in range(cameras)])
        elif cameras and encoder == "clip":
            self.cam_enc = nn.ModuleList([nn.Sequential(nn.Linear(clip_dim, h), nn.ReLU()) for _ in range(cameras)])
        else:
            self.cam_enc = None
        per_cam = fusion == "mean" and cameras > 1
        step_in = (h if state_dim else 0) + (h if per_cam else h * cameras)
        self.step = nn.Sequential(nn.Linear(step_in, h), nn.ReLU())
        self.temporal = nn.Sequential(nn.Linear(h * window, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU())
        self.stage_head = nn.Linear(h, stages)
        self.tau_head = nn.Sequential(nn.Linear(h + stages, h), nn.ReLU(), nn.Linear(h, 1))
        self.contrib_head = nn.Linear(h, 1)

    @property
    def estimates(self) -> int:
        return self.cameras if (self.fusion == "mean" and self.cameras > 1) else 1

    def trunk(self, state: torch.Tensor | None, cams: torch.Tensor | None) -> torch.Tensor:
        """Embedding [B, E, h] of each window."""
        parts_state = None
        b = (state if state is not None else cams).shape[0]  # type: ignore[union-attr]
        w = self.window
        if self.state_enc is not None and state is not None:
            parts_state = self.state_enc(state.reshape(b * w, -1))  # [B*W, h]
        cam_feats: list[torch.Tensor] = []
        if self.cam_enc is not None and cams is not None:
            for c, enc in enumerate(self.cam_enc):
                x = cams[:, :, c]
                cam_feats.append(enc(x.reshape(b * w, *x.shape[2:])))  # [B*W, h]
        if self.estimates > 1:
            outs = []
            for feat in cam_feats:
                step = self.step(torch.cat([p for p in (parts_state, feat) if p is not None], -1))
                outs.append(self.temporal(step.reshape(b, -1)))
            return torch.stack(outs, 1)
        step = self.step(torch.cat([p for p in (parts_state, *cam_feats) if p is not None], -1))
        return self.temporal(step.reshape(b, -1)).unsqueeze(1)

    def tau(self, z: torch.Tensor, stage: torch.Tensor) -> torch.Tensor:
        """σ(head(z, onehot(stage))): z [..., h], stage int [...] -> τ [...] in (0, 1)."""
        onehot = F.one_hot(stage, self.stages).to(z.dtype)
        return torch.sigmoid(self.tau_head(torch.cat([z, onehot], -1)).squeeze(-1))


# ---------------------------------------------------------------------------------------------------------------
# Inputs: task views -> normalised state; frames -> encoder inputs
# ---------------------------------------------------------------------------------------------------------------
def _view_features(task: TaskSpec, views: Sequence[str], relative: bool = False) -> Callable[[Any], np.ndarray]:
    """obs batch [N, ...] (or dict) -> float32 [N, Ds]: the named views, flattened and concatenated.

    With `relative`, every pair of 3-vector views (positions) also contributes its difference and its
    distance, in view order: distances generalise to states far from the demonstrations much better than
    absolute coordinates (a progress MLP on coordinates alone extrapolates arbitrarily off the demos).
    """
    from embodied.tasks.views import make_getter

    getters = []
    for name in views:
        if name not in task.views:
            raise ProgressError(f"{task.source or task.name}: field 'views': task has no view {name!r}")
        getters.append(make_getter(task.views[name].expr, f"{task.source or task.name}: views.{name}")[0])

    def features(obs: Any) -> np.ndarray:
        n = batch_size(obs)
        cols = [np.asarray(g(obs), dtype=np.float32).reshape(n, -1) for g in getters]
        if relative:
            vecs = [c for c in cols if c.shape[1] == 3]
            for i in range(len(vecs)):
                for j in range(i + 1, len(vecs)):
                    diff = vecs[i] - vecs[j]
                    cols += [diff, np.linalg.norm(diff, axis=1, keepdims=True)]
        return np.concatenate(cols, axis=1) if cols else np.zeros((n, 0), np.float32)

    return features


@dataclass
class Prediction:
    """Model outputs for N frames (or windows).

    Attributes:
        progress: float [N], normalised progress P in [0, 1] (SARM), or the contribution c (SPA).
        stage: int [N], predicted stage index.
        tau: float [N], predicted within-stage progress.
        stage_probs: float [N, K].
        per_camera: float [N, C] progress per camera with late fusion, else None.
    """

    progress: np.ndarray
    stage: np.ndarray
    tau: np.ndarray
    stage_probs: np.ndarray
    per_camera: np.ndarray | None = None


class ProgressModel:
    """A trained progress model: network, stage names, ᾱ, input normalisation and the task views it reads.

    Build with `train_progress` or `ProgressModel.load(path, task)`.
    """

    def __init__(self, config: dict[str, Any], net: ProgressNet, path: Path | None = None) -> None:
        self.config, self.net, self.path = config, net.eval(), path
        self.names: list[str] = list(config["stages"])
        self.alpha = np.asarray(config["alpha"], np.float64)
        self.cameras: tuple[str, ...] = tuple(config["cameras"])
        self.frame_size: tuple[int, int] = tuple(config["frame_size"])  # type: ignore[assignment]
        self.window, self.stride = int(config["window"]), int(config["stride"])
        self.objective: str = config["objective"]
        self.encoder: str = config["encoder"]
        self.views: list[str] = list(config["views"])
        self.mean = np.asarray(config["state_mean"], np.float32)
        self.std = np.asarray(config["state_std"], np.float32)
        self.camera_weights = np.asarray(config.get("camera_weights") or [1.0] * len(self.cameras), np.float64)
        self._features: Callable[[Any], np.ndarray] | None = None
        self._clip: Any = None
        self.readout: str = "argmax"

    # -- task binding ---------------------------------------------------------------------------------------
    def bind(self, task: TaskSpec) -> ProgressModel:
        """Check the model against `task` (same views, known cameras) and compile its view getters."""
        where = str(self.path or "progress model")
        trained = self.config.get("task", "?")
        for name in self.views:
            expr = self.config["view_exprs"][name]
            if name not in task.views:
                raise ProgressError(
                    f"{where}: field 'views.{name}': the model (trained on {trained!r}) reads view "
                    f"{name!r} = {expr!r}; "
                    f"task {task.name!r} has no such view"
                )
            if task.views[name].expr.replace(" ", "") != expr.replace(" ", ""):
                raise ProgressError(
                    f"{where}: field 'views.{name}': the model (trained on {trained!r}) reads {name!r} = {expr!r}; "
                    f"task {task.name!r} defines it as {task.views[name].expr!r}"
                )
        missing = [c for c in self.cameras if c not in task.cameras]
        if missing:
            raise ProgressError(
                f"{where}: field 'cameras': the model reads camera(s) {missing}; "
                f"task {task.name!r} has {list(task.cameras)}"
            )
        self._features = _view_features(task, self.views, bool(self.config.get("relative", False)))
        return self

    def state_features(self, obs: Any) -> np.ndarray:
        """Normalised, clipped view features float32 [N, Ds] of an observation batch."""
        if self._features is None:
            raise ProgressError("progress model is not bound to a task; call .bind(task) first")
        x = self._features(obs)
        if x.shape[1] != self.mean.shape[0]:
            raise ProgressError(
                f"{self.path}: field 'views': features have {x.shape[1]} dims, the model expects {self.mean.shape[0]}"
            )
        return np.clip((x - self.mean) / self.std, -INPUT_CLIP, INPUT_CLIP).astype(np.float32)

    def camera_inputs(self, frames: Mapping[str, np.ndarray] | None, n: int) -> np.ndarray | None:
        """Per-camera encoder inputs [N, C, ...]: uint8 frames (CNN) or CLIP embeddings."""
        if not self.cameras:
            return None
        if frames is None:
            raise RewardError(f"progress model {self.path} needs frames from cameras {list(self.cameras)}")
        arrs = []
        for cam in self.cameras:
            if cam not in frames:
                raise RewardError(
                    f"progress model {self.path}: missing camera {cam!r} in the frames (got {sorted(frames)})"
                )
            f = np.asarray(frames[cam])
            if f.shape[0] != n:
                raise RewardError(f"progress model {self.path}: camera {cam!r} has {f.shape[0]} frames for {n} states")
            arrs.append(self._embed(f) if self.encoder == "clip" else f)
        return np.stack(arrs, 1)

    def _embed(self, frames: np.ndarray) -> np.ndarray:
        if self._clip is None:
            self._clip = clip_image_encoder(
                self.config["clip_model"], self.config.get("clip_pretrained"), self.config.get("clip_checkpoint")
            )
        emb = self._clip(frames)
        if emb.shape[-1] != int(self.config["clip_dim"]):
            raise ProgressError(
                f"{self.path}: field 'clip_dim': the image encoder gives {emb.shape[-1]}-dim embeddings, the model "
                f"was trained on {self.config['clip_dim']}-dim ones (a different CLIP?)"
            )
        return emb

    def use_image_encoder(self, encoder: Callable[[np.ndarray], np.ndarray]) -> ProgressModel:
        """Embed frames with `encoder` (uint8 [N, H, W, 3] -> float [N, E]) instead of loading the configured CLIP.

        For injected or already-loaded CLIP models (tests, a shared GPU scorer).
        """
        self._clip = encoder
        return self

    # -- inference ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _forward(self, state: np.ndarray | None, cams: np.ndarray | None) -> Prediction:
        net = self.net
        st = torch.as_tensor(state) if state is not None and state.shape[-1] else None
        cm = torch.as_tensor(cams) if cams is not None else None
        z = net.trunk(st, cm)  # [B, E, h]
        logits = net.stage_head(z)  # [B, E, K]
        probs = torch.softmax(logits, -1)
        if self.objective == "spa":
            c = net.contrib_head(z).squeeze(-1).mean(1).numpy().astype(np.float64)
            zero = np.zeros(c.shape[0])
            return Prediction(c, zero.astype(np.int64), zero, probs.mean(1).numpy())
        alpha = torch.as_tensor(self.alpha, dtype=z.dtype)
        cum = torch.cat([torch.zeros(1, dtype=z.dtype), torch.cumsum(alpha, 0)[:-1]])
        k_hat = probs.argmax(-1)  # [B, E]
        tau_hat = net.tau(z, k_hat)
        if self.readout == "expected":
            ks = torch.arange(net.stages)
            taus = torch.stack([net.tau(z, ks[j].expand(k_hat.shape)) for j in range(net.stages)], -1)  # [B, E, K]
            per_est = (probs * (cum + alpha * taus)).sum(-1)
        else:
            per_est = cum[k_hat] + alpha[k_hat] * tau_hat
        weights = torch.as_tensor(self.camera_weights if per_est.shape[1] > 1 else [1.0], dtype=z.dtype)
        fused = (per_est * weights).sum(1) / weights.sum()
        mean_probs = probs.mean(1)
        return Prediction(
            progress=fused.numpy().astype(np.float64),
            stage=mean_probs.argmax(-1).numpy(),
            tau=tau_hat.mean(1).numpy().astype(np.float64),
            stage_probs=mean_probs.numpy(),
            per_camera=per_est.numpy().astype(np.float64) if per_est.shape[1] > 1 else None,
        )

    def predict(self, obs: Any, frames: Mapping[str, np.ndarray] | None = None) -> Prediction:
        """Progress of N single observations (a window of W = 1), batched in one forward pass.

        Args:
            obs: observation batch [N, ...] (or dict); the bound task's views are read from it.
            frames: camera -> uint8 [N, H, W, 3] for frame encoders.
        """
        if self.window != 1:
            raise ProgressError(
                f"{self.path}: field 'window': this model reads a causal window of {self.window} frames; "
                "score episodes with score_episode() or keep per-env history with ProgressScorer"
            )
        n = batch_size(obs)
        state = self.state_features(obs)[:, None] if self.views else None
        cams = self.camera_inputs(frames, n)
        return self._forward(state, None if cams is None else cams[:, None])

    def predict_windows(self, state: np.ndarray | None, cams: np.ndarray | None) -> Prediction:
        """Progress of N windows: state features [N, W, Ds] (normalised) and camera inputs [N, W, C, ...]."""
        return self._forward(state, cams)

    def score_episode(
        self, states: Any, frames: Mapping[str, np.ndarray] | None = None, chunk: int = 512
    ) -> Prediction:
        """Progress at every frame of one episode with causal windows (frame t reads frames <= t only).

        Args:
            states: the episode's observations [T, ...].
            frames: camera -> uint8 [T, H, W, 3] (frame encoders).
            chunk: frames per forward pass.
        """
        t_len = batch_size(states)
        feats = self.state_features(states) if self.views else None
        cams = self.camera_inputs(frames, t_len)
        idx = causal_window(np.arange(t_len), self.window, self.stride)  # [T, W]
        outs = []
        for s in range(0, t_len, chunk):
            rows = idx[s : s + chunk]
            outs.append(
                self._forward(
                    None if feats is None else feats[rows],
                    None if cams is None else cams[rows],
                )
            )
        return Prediction(
            progress=np.concatenate([o.progress for o in outs]),
            stage=np.concatenate([o.stage for o in outs]),
            tau=np.concatenate([o.tau for o in outs]),
            stage_probs=np.concatenate([o.stage_probs for o in outs]),
            per_camera=None if outs[0].per_camera is None else np.concatenate([o.per_camera for o in outs]),  # type: ignore[misc]
        )

    def score(self, episode: Episode) -> Prediction:
        """`score_episode` on a loaded `Episode` (its frames must include the model's cameras)."""
        return self.score_episode(episode.states, episode.frames or None)

    # -- persistence ----------------------------------------------------------------------------------------
    def save(self, path: str | Path, metrics: Mapping[str, Any] | None = None, overwrite: bool = False) -> Path:
        """Write config.json, model.pt (state dict) and metrics.json to folder `path`, atomically."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise ProgressError(f"{path}: model folder exists; pick another --name or pass --overwrite")
        tmp = path.with_name(f".{path.name}.partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / CONFIG_FILE).write_text(json.dumps(self.config, indent=1))
        torch.save(self.net.state_dict(), tmp / WEIGHTS_FILE)
        (tmp / METRICS_FILE).write_text(json.dumps(dict(metrics or {}), indent=1))
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | Path, task: TaskSpec | None = None) -> ProgressModel:
        """Load a model folder; with `task`, check and bind it (views, cameras)."""
        path = Path(path)
        cfg_path = path / CONFIG_FILE
        if not cfg_path.is_file():
            raise ProgressError(f"{path}: not a progress model folder (no {CONFIG_FILE})")
        try:
            config = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as exc:
            raise ProgressError(f"{cfg_path}: malformed JSON: {exc}") from None
        if config.get("kind") != "progress":
            raise ProgressError(f"{cfg_path}: field 'kind': expected 'progress', got {config.get('kind')!r}")
        net = _build_net(config)
        state = torch.load(path / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        model = cls(config, net, path)
        if task is not None:
            model.bind(task)
        return model


def _build_net(config: Mapping[str, Any]) -> ProgressNet:
    return ProgressNet(
        state_dim=len(config["state_mean"]),
        cameras=len(config["cameras"]),
        encoder=config["encoder"],
        clip_dim=int(config.get("clip_dim", 0)),
        stages=len(config["stages"]),
        window=int(config["window"]),
        hidden=int(config["hidden"]),
        fusion=config["fusion"],
        frame_size=tuple(config["frame_size"]),  # type: ignore[arg-type]
        objective=config["objective"],
    )


def clip_image_encoder(
    model_name: str = "ViT-B-32",
    pretrained: str | None = None,
    checkpoint: str | None = None,
    clip: tuple[Any, Any, Any] | None = None,
    device: str = "auto",
) -> Callable[[np.ndarray], np.ndarray]:
    """A frozen CLIP image encoder: uint8 frames [N, H, W, 3] -> L2-normalised float32 embeddings [N, E].

    Uses `embodied.rewards.clip` (open_clip with each model's own preprocessing: short-side resize and
    centre crop, never squashing). Weights: an open_clip pretrained tag from the Hugging Face cache, a local
    `checkpoint` (weights file or adapted folder), or an injected ``(model, preprocess, tokenizer)`` triple.
    """
    import importlib.util

    if importlib.util.find_spec("embodied.rewards.clip") is None:
        raise ProgressError(
            "option --encoder clip: embodied.rewards.clip is not available in this installation; use --encoder cnn"
        )
    from embodied.rewards.clip import ClipReward

    # The goal prompt is irrelevant here (only the image tower is used) but ClipReward needs one.
    scorer = ClipReward(
        "a robot", model=model_name, pretrained=pretrained, checkpoint=checkpoint, clip=clip, device=device,
        verbose=False,
    )  # fmt: skip
    return lambda frames: scorer.embed_images(np.asarray(frames, np.uint8)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class _Flat:
    """All training frames, concatenated over episodes."""

    state: np.ndarray | None  # float32 [N, Ds] normalised
    cams: np.ndarray | None  # [N, C, ...]
    stage: np.ndarray  # int64 [N]
    tau: np.ndarray  # float32 [N]
    local_t: np.ndarray  # int64 [N], frame index within its episode
    offset: np.ndarray  # int64 [N], the episode's first row
    episodes: list[tuple[int, int, float]] = field(default_factory=list)  # (offset, length, outcome)


def _labels_for(ep: Episode, mode: str, names: Sequence[str], set_name: str) -> tuple[np.ndarray, np.ndarray]:
    if mode == "single_stage":
        return single_stage_labels(ep.length)
    return stage_labels(ep.annotations.get(set_name, []), ep.length, names)


def _set_for(mode: str) -> str:
    return "sparse" if mode == "sparse" else "dense"


def _stage_names(datasets: Sequence[DemoDataset], mode: str) -> list[str]:
    if mode == "single_stage":
        return ["task"]
    set_name = _set_for(mode)
    names: list[str] | None = None
    for ds in datasets:
        got = ds.stage_names.get(set_name)
        if not got:
            raise ProgressError(
                f"{ds.root}: field 'stages.{set_name}': no {set_name} annotations (use --mode single_stage, "
                "or annotate the demos)"
            )
        if names is None:
            names = got
        elif got != names:
            raise ProgressError(
                f"{ds.root}: field 'stages.{set_name}': stages {got} differ from {names} of the other demos"
            )
    assert names is not None
    return names


def train_progress(
    datasets: DemoDataset | Sequence[DemoDataset],
    task: TaskSpec,
    config: ProgressConfig | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
    image_encoder: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[ProgressModel, dict[str, Any]]:
    """Train a progress model on demonstrations of `task`.

    Args:
        datasets: one or more demonstration datasets of the task.
        task: the task (its views are the state input; its camera weights fuse late estimates).
        config: options (see `ProgressConfig`).
        out: model folder to write (config.json, model.pt, metrics.json); None keeps it in memory.
        progress: show a progress bar.
        overwrite: replace an existing `out`.
        log: where to print one-line notes (held-out split, timings).
        image_encoder: for ``encoder="clip"``, an already-built frozen encoder (frames -> embeddings) to use
            instead of loading the configured CLIP (tests inject a small random one).

    Returns:
        (model, metrics): metrics hold the training loss and `evaluate_progress` on the held-out episodes.
    """
    cfg = config or ProgressConfig()
    cfg.check()
    dss = [datasets] if isinstance(datasets, DemoDataset) else list(datasets)
    if not dss:
        raise ProgressError("no demonstration datasets given")
    for ds in dss:
        ds.validate()
    if not any(ok for ds in dss for ok in ds.successes):
        dss[0].validate(require_success=True)  # raises the one-line "no successful episode" error
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    cams: tuple[str, ...] = () if cfg.encoder == "state" else tuple(cfg.cameras or task.cameras[:1])
    if cfg.encoder != "state" and not cams:
        raise ProgressError(f"option --camera: task {task.name!r} lists no cameras for a frame encoder")
    for ds in dss:
        ds.validate(cameras=cams)
    views = (
        list(cfg.views)
        if cfg.views is not None
        else (list(task.views) if (cfg.encoder == "state" or cfg.with_state) else [])
    )
    if cfg.encoder == "state" and not views:
        raise ProgressError(f"{task.source or task.name}: field 'views': the state encoder needs task views")
    names = ["task"] if cfg.objective == "spa" else _stage_names(dss, cfg.mode)
    set_name = _set_for(cfg.mode)

    # Which episodes: successes (and failures when asked or for SPA); a held-out split of successes.
    pool: list[tuple[DemoDataset, int]] = []
    for ds in dss:
        for i, ok in enumerate(ds.successes):
            if ok or cfg.include_failures or cfg.objective == "spa":
                pool.append((ds, i))
    if cfg.objective == "spa":
        outcomes = [ds.successes[i] for ds, i in pool]
        if all(outcomes) or not any(outcomes):
            raise ProgressError(
                "objective spa: needs both successful and failed episodes (contributions are fitted to outcomes)"
            )
    succ_idx = [j for j, (ds, i) in enumerate(pool) if ds.successes[i]]
    n_val = round(cfg.val_fraction * len(succ_idx)) if len(succ_idx) >= 5 else 0
    val_set = set(rng.choice(succ_idx, size=n_val, replace=False).tolist()) if n_val else set()
    train_items = [p for j, p in enumerate(pool) if j not in val_set]
    val_items = [p for j, p in enumerate(pool) if j in val_set]
    if log:
        log(f"training on {len(train_items)} episodes, {len(val_items)} held out")

    episodes = [ds.load(i, cams) for ds, i in train_items]
    feat_fn = _view_features(task, views, cfg.relative)
    raw_states = [feat_fn(ep.states) for ep in episodes]
    all_states = np.concatenate(raw_states) if views else np.zeros((1, 0), np.float32)
    mean = all_states.mean(0).astype(np.float32)
    std = np.maximum(all_states.std(0), STD_FLOOR).astype(np.float32)

    clip_dim = 0
    clip_fn = None
    if cfg.encoder == "clip":
        clip_fn = image_encoder or clip_image_encoder(cfg.clip_model, cfg.clip_pretrained, cfg.clip_checkpoint)

    def cam_array(ep: Episode) -> np.ndarray | None:
        if not cams:
            return None
        per = [clip_fn(ep.frames[c]) if clip_fn is not None else ep.frames[c] for c in cams]
        return np.stack(per, 1)

    # Labels and ᾱ.
    annotated = []
    stage_l, tau_l, local_l, offset_l, state_l, cam_l, ep_meta = [], [], [], [], [], [], []
    off = 0
    for ep, raw in zip(episodes, raw_states, strict=True):
        if cfg.objective == "spa":
            st, ta = np.zeros(ep.length, np.int64), np.zeros(ep.length)
        else:
            st, ta = _labels_for(ep, cfg.mode, names, set_name)
        if ep.success and cfg.mode != "single_stage" and ep.annotations.get(set_name):
            annotated.append((ep.annotations[set_name], ep.length))
        stage_l.append(st)
        tau_l.append(ta)
        local_l.append(np.arange(ep.length))
        offset_l.append(np.full(ep.length, off))
        state_l.append(np.clip((raw - mean) / std, -INPUT_CLIP, INPUT_CLIP).astype(np.float32))
        ca = cam_array(ep)
        if ca is not None:
            cam_l.append(ca)
            clip_dim = int(ca.shape[-1]) if cfg.encoder == "clip" else 0
        ep_meta.append((off, ep.length, 1.0 if ep.success else 0.0))
        off += ep.length
    if cfg.mode == "single_stage" or cfg.objective == "spa":
        alpha = np.ones(1)
    elif cfg.stage_weights == "equal":
        alpha = np.full(len(names), 1.0 / len(names))
    else:
        if not annotated:
            raise ProgressError(f"no successful episode carries {set_name} annotations; use --mode single_stage")
        alpha = stage_proportions(annotated, names)
    flat = _Flat(
        state=np.concatenate(state_l) if views else None,
        cams=np.concatenate(cam_l) if cam_l else None,
        stage=np.concatenate(stage_l),
        tau=np.concatenate(tau_l).astype(np.float32),
        local_t=np.concatenate(local_l),
        offset=np.concatenate(offset_l),
        episodes=ep_meta,
    )
    weights = [float(task.camera_weights.get(c, 1.0)) for c in cams]
    model_cfg: dict[str, Any] = {
        "kind": "progress",
        "version": 1,
        "task": task.name,
        "goal": task.goal,
        "stages": names,
        "annotation_set": None if cfg.mode == "single_stage" else set_name,
        "alpha": alpha.tolist(),
        "views": views,
        "view_exprs": {v: task.views[v].expr for v in views},
        "state_mean": mean.tolist() if views else [],
        "state_std": std.tolist() if views else [],
        "cameras": list(cams),
        "camera_weights": weights,
        "frame_size": list(cfg.frame_size),
        "clip_dim": clip_dim,
        **{k: v for k, v in asdict(cfg).items() if k not in ("cameras", "views", "frame_size", "device", "threads")},
        "demos": [str(ds.root) for ds in dss],
    }
    if not views:
        model_cfg["state_mean"], model_cfg["state_std"] = [], []
    net = _build_net(model_cfg).to(cfg.device)
    t0 = time.perf_counter()
    with torch_threads(cfg.threads):
        losses = _fit(net, flat, cfg, rng, progress)
    train_s = time.perf_counter() - t0
    net = net.cpu().eval()
    model = ProgressModel(model_cfg, net, Path(out) if out else None).bind(task)
    if clip_fn is not None:
        model.use_image_encoder(clip_fn)
    metrics: dict[str, Any] = {
        "train_episodes": len(train_items),
        "train_frames": int(flat.stage.shape[0]),
        "held_out_episodes": len(val_items),
        "train_seconds": round(train_s, 2),
        "final_loss": losses[-1] if losses else None,
        "loss_curve": losses,
    }
    if val_items:
        val_eps = [ds.load(i, cams) for ds, i in val_items]
        metrics["held_out"] = evaluate_progress(model, val_eps)
    if out is not None:
        model.save(out, metrics, overwrite=overwrite)
    return model, metrics


def _batch_inputs(
    flat: _Flat, rows: np.ndarray, window_idx: np.ndarray, augment: bool, rng: np.random.Generator
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gather windows: rows [B] global frame rows, window_idx [B, W] local frame indices."""
    glob = flat.offset[rows][:, None] + window_idx
    st = torch.as_tensor(flat.state[glob]) if flat.state is not None else None
    cm = None
    if flat.cams is not None:
        arr = flat.cams[glob]  # [B, W, C, ...]
        if augment and arr.dtype == np.uint8:
            arr = _random_shift(arr, rng)
        cm = torch.as_tensor(arr)
    return st, cm


def _random_shift(frames: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
    """DrQ-style augmentation: the same random ±pad px shift for every frame of a sample's window."""
    b = frames.shape[0]
    h, w = frames.shape[-3], frames.shape[-2]
    padded = np.pad(frames, [(0, 0)] * (frames.ndim - 3) + [(pad, pad), (pad, pad), (0, 0)], mode="edge")
    out = np.empty_like(frames)
    dy = rng.integers(0, 2 * pad + 1, size=b)
    dx = rng.integers(0, 2 * pad + 1, size=b)
    for i in range(b):
        out[i] = padded[i, ..., dy[i] : dy[i] + h, dx[i] : dx[i] + w, :]
    return out


def _fit(net: ProgressNet, flat: _Flat, cfg: ProgressConfig, rng: np.random.Generator, progress: bool) -> list[float]:
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
    n = flat.stage.shape[0]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, desc="training progress model", unit="step")
    losses: list[float] = []
    net.train()
    try:
        for step in range(cfg.steps):
            if cfg.objective == "spa":
                loss = _spa_loss(net, flat, cfg, rng)
            else:
                rows = rng.integers(0, n, size=min(cfg.batch_size, n))
                t = flat.local_t[rows]
                win = causal_window(t, cfg.window, cfg.stride)
                targets = rows.copy()
                if cfg.window > 1 and cfg.rewind_prob > 0:
                    for j in np.flatnonzero(rng.random(rows.size) < cfg.rewind_prob):
                        r = int(rng.integers(1, cfg.max_rewind + 1))
                        win[j], tgt = rewind_window(int(t[j]), r, cfg.window, cfg.stride)
                        targets[j] = flat.offset[rows[j]] + tgt
                st, cm = _batch_inputs(flat, rows, win, cfg.augment, rng)
                if st is not None:
                    st = st.to(cfg.device)
                if cm is not None:
                    cm = cm.to(cfg.device)
                z = net.trunk(st, cm)  # [B, E, h]
                stage = torch.as_tensor(flat.stage[targets], device=z.device)
                tau = torch.as_tensor(flat.tau[targets], device=z.device)
                logits = net.stage_head(z)  # [B, E, K]
                e = z.shape[1]
                ce = F.cross_entropy(logits.reshape(-1, net.stages), stage.repeat_interleave(e))
                use_true = torch.rand(stage.shape, device=z.device) < cfg.true_stage_prob
                cond = torch.where(use_true[:, None], stage[:, None].expand(-1, e), logits.argmax(-1).detach())
                mse = F.mse_loss(net.tau(z, cond), tau[:, None].expand(-1, e))
                loss = ce + mse
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(round(float(loss.detach()), 5))
            if bar is not None:
                bar.update(1)
                if step % 50 == 0:
                    bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
    finally:
        if bar is not None:
            bar.close()
    # Keep the curve small: at most 200 points.
    stride = max(1, len(losses) // 200)
    return losses[::stride]


def _spa_loss(net: ProgressNet, flat: _Flat, cfg: ProgressConfig, rng: np.random.Generator) -> torch.Tensor:
    """SPA-RL: (Σ_t c(o_t) − outcome)² averaged over a batch of whole episodes."""
    k = min(8, len(flat.episodes))
    picks = rng.choice(len(flat.episodes), size=k, replace=False)
    total = torch.zeros(())
    for p in picks:
        off, length, outcome = flat.episodes[p]
        rows = off + np.arange(length)
        win = causal_window(np.arange(length), cfg.window, cfg.stride)
        st, cm = _batch_inputs(flat, rows, win, cfg.augment, rng)
        c = net.contrib_head(net.trunk(st, cm)).squeeze(-1).mean(1)
        total = total + (c.sum() - outcome) ** 2
    return total / k


# ---------------------------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------------------------
def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(spearmanr(x, y).statistic)


def evaluate_progress(model: ProgressModel, episodes: Sequence[Episode]) -> dict[str, Any]:
    """Held-out quality of a progress model.

    Returns:
        voc_mean / voc_min / voc (per episode): value-order correlation, the Spearman correlation of the
        predicted progress with time on each successful episode; stage_accuracy: argmax stage vs the label
        over frames of annotated successful episodes; progress_mae: |P − P_label| there; success_final /
        failure_final: mean progress at the last frame; separation_auc: P(final progress of a random success
        > that of a random failure) (None without failures).
    """
    voc, acc_hits, acc_total, mae = [], 0, 0, []
    final_s, final_f = [], []
    set_name = model.config.get("annotation_set")
    for ep in episodes:
        pred = model.score(ep)
        p = pred.progress
        (final_s if ep.success else final_f).append(float(p[-1]))
        if not ep.success:
            continue
        voc.append(_spearman(p, np.arange(ep.length, dtype=np.float64)))
        if model.objective == "spa":
            continue
        if set_name is None:
            st, ta = single_stage_labels(ep.length)
        elif ep.annotations.get(set_name):
            st, ta = stage_labels(ep.annotations[set_name], ep.length, model.names)
        else:
            continue
        acc_hits += int((pred.stage == st).sum())
        acc_total += ep.length
        mae.append(np.abs(p - normalize_progress(st, ta, model.alpha)))
    auc = None
    if final_s and final_f:
        s, f = np.asarray(final_s)[:, None], np.asarray(final_f)[None, :]
        auc = float(((s > f).sum() + 0.5 * (s == f).sum()) / (s.size * f.size))
    return {
        "episodes": len(episodes),
        "successes": len(final_s),
        "failures": len(final_f),
        "voc_mean": float(np.mean(voc)) if voc else None,
        "voc_min": float(np.min(voc)) if voc else None,
        "voc": [round(v, 4) for v in voc],
        "stage_accuracy": acc_hits / acc_total if acc_total else None,
        "progress_mae": float(np.mean(np.concatenate(mae))) if mae else None,
        "success_final": float(np.mean(final_s)) if final_s else None,
        "failure_final": float(np.mean(final_f)) if final_f else None,
        "separation_auc": auc,
    }


# ---------------------------------------------------------------------------------------------------------------
# Online use: per-env history for windowed models; the reward model behind `progress:`
# ---------------------------------------------------------------------------------------------------------------
class ProgressScorer:
    """Batched online scoring with per-env causal windows (for models with window > 1).

    Keeps the last (W−1)·g + 1 inputs of each env; `reset` starts an env's history (the first frame is
    repeated backwards, as in training), `step` appends and scores. One forward pass per call.
    """

    def __init__(self, model: ProgressModel, num_envs: int) -> None:
        self.model, self.num_envs = model, num_envs
        self.span = (model.window - 1) * model.stride + 1
        self._state: list[list[np.ndarray]] = [[] for _ in range(num_envs)]
        self._cams: list[list[np.ndarray]] = [[] for _ in range(num_envs)]

    def _inputs(self, obs: Any, frames: Mapping[str, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray | None]:
        n = batch_size(obs)
        st = self.model.state_features(obs) if self.model.views else np.zeros((n, 0), np.float32)
        return st, self.model.camera_inputs(frames, n)

    def reset(self, idx: Sequence[int], obs: Any, frames: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Start episodes in envs `idx` from first observations; returns their progress [len(idx)]."""
        st, cm = self._inputs(obs, frames)
        for row, i in enumerate(idx):
            self._state[i] = [st[row]] * self.span
            self._cams[i] = [cm[row]] * self.span if cm is not None else []
        return self._score(idx)

    def step(self, idx: Sequence[int], obs: Any, frames: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Append the next observation of envs `idx` and score them in one batch."""
        st, cm = self._inputs(obs, frames)
        for row, i in enumerate(idx):
            if not self._state[i]:
                raise ProgressError(f"env {i}: step() before reset()")
            self._state[i] = [*self._state[i][1:], st[row]]
            if cm is not None:
                self._cams[i] = [*self._cams[i][1:], cm[row]]
        return self._score(idx)

    def _score(self, idx: Sequence[int]) -> np.ndarray:
        sel = causal_window(self.span - 1, self.model.window, self.model.stride)
        state = np.stack([np.stack(self._state[i])[sel] for i in idx]) if self.model.views else None
        cams = np.stack([np.stack(self._cams[i])[sel] for i in idx]) if self.model.cameras else None
        return self.model.predict_windows(state, cams).progress


class ProgressReward(RewardModel):
    """A progress model behind the reward protocol: Φ(s) = normalised progress (batched across envs).

    Args:
        model: a bound `ProgressModel` with window 1 (online Φ must be a function of the current state).
        task: the task (for γ of the non-invariant delta mode).
        mode: ``potential`` (default; use it through shaping), ``raw_progress_not_invariant`` or
            ``progress_delta_not_invariant`` (as a whole reward; not policy-invariant, warns).
        readout: ``argmax`` or ``expected``.
    """

    def __init__(self, model: ProgressModel, task: TaskSpec, mode: str = "potential", readout: str = "argmax") -> None:
        from embodied.rewards.shaping import NOT_INVARIANT, Shaper

        where = str(model.path)
        if model.window != 1:
            raise RewardError(
                f"{where}: field 'window': the model reads a {model.window}-frame window, but the online reward path "
                "scores one observation per env; train a Markov model (--window 1) for rewards and shaping"
            )
        if mode != "potential" and mode not in NOT_INVARIANT:
            raise RewardError(
                f"progress spec option mode={mode!r}: use potential (via --shaping) or one of {sorted(NOT_INVARIANT)}"
            )
        if readout not in ("argmax", "expected"):
            raise RewardError(f"progress spec option readout={readout!r}: use argmax or expected")
        if model.objective == "spa" and mode != "potential":
            raise RewardError(f"{where}: an SPA contribution model is already a reward; drop mode={mode}")
        if mode == "progress_delta_not_invariant" and model.cameras:
            raise RewardError(
                f"{where}: mode=progress_delta_not_invariant needs Φ(s), but transition batches carry frames of s' "
                "only; use potential shaping (--shaping), which caches Φ(s)"
            )
        model.readout = readout
        self.model, self.task, self.mode = model, task, mode
        self.name = f"progress:{model.path}"
        self.requires = Requirements(model.cameras, model.frame_size if model.cameras else None)
        self.state_only = model.objective == "sarm"
        self._shaper = Shaper(self.potential, task.gamma, mode=mode) if mode != "potential" else None  # type: ignore[arg-type]

    def potential(self, obs: Obs, frames: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Φ(s) = normalised progress P(s) in [0, 1], float [N], one batched forward pass."""
        if self.model.objective == "spa":
            raise RewardError(
                f"{self.model.path}: SPA contributions redistribute the episode outcome over steps; they are not a "
                "potential. Use it as --reward progress:... instead of --shaping"
            )
        return self.model.predict(obs, frames).progress

    def compute_reward(self, batch: TransitionBatch) -> RewardOutput:
        if self.model.objective == "spa":
            c = self.model.predict(batch.next_obs, batch.frames).progress
            return RewardOutput(c, {"contribution": c})
        if self._shaper is None:
            raise RewardError(
                f"{self.name}: a progress model as the whole reward is not policy-invariant; use it as Φ "
                "(--reward env --shaping progress:PATH) or name a non-invariant mode "
                "(progress:PATH,mode=raw_progress_not_invariant | progress_delta_not_invariant)"
            )
        phi_next = self.potential(batch.next_obs, batch.frames)
        phi_s = phi_next if self.mode == "raw_progress_not_invariant" else self.potential(batch.obs, None)
        reward = self._shaper.term(phi_s, phi_next, np.asarray(batch.terminated, bool))
        return RewardOutput(reward, {"progress": phi_next})


def resolve_model_path(arg: str, task: TaskSpec, root: Path = Path("reward_models")) -> Path:
    """A model folder from a spec argument: a path, or a folder name under ``reward_models/<task>/``."""
    path = Path(arg).expanduser()
    if (path / CONFIG_FILE).is_file():
        return path
    named = root / task.name / arg
    if "/" not in arg and (named / CONFIG_FILE).is_file():
        return named
    known = sorted(p.name for p in (root / task.name).glob("progress*") if (p / CONFIG_FILE).is_file())
    raise RewardError(
        f"progress model {arg!r} not found (no {path / CONFIG_FILE}); models for {task.name}: {known or 'none'} "
        f"(train one with `embodied progress train {task.name} --demos DIR`)"
    )


def parse_progress_spec(arg: str) -> tuple[str, dict[str, str]]:
    """``PATH[,key=value...]`` -> (path, options)."""
    path, *opts = [p.strip() for p in arg.split(",")]
    options: dict[str, str] = {}
    for opt in opts:
        key, sep, value = opt.partition("=")
        if not sep or key not in ("mode", "readout"):
            raise RewardError(f"progress spec option {opt!r}: expected mode=... or readout=...")
        options[key] = value
    return path, options


def from_spec(arg: str, task: TaskSpec) -> ProgressReward:
    """Factory for ``progress:PATH[,mode=M][,readout=R]`` (see the module docstring)."""
    if not arg:
        raise RewardError(
            "reward spec 'progress' needs a model: progress:reward_models/<task>/progress-<name> "
            "(or just its folder name)"
        )
    path, options = parse_progress_spec(arg)
    try:
        model = ProgressModel.load(resolve_model_path(path, task), task)
    except (ProgressError, DemoError) as exc:
        raise RewardError(str(exc)) from None
    return ProgressReward(model, task, mode=options.get("mode", "potential"), readout=options.get("readout", "argmax"))


def localize_spec(arg: str, task: TaskSpec | None, run_dir: Path) -> str:
    """Copy the progress model folder into ``run_dir/models/`` and point the spec there (runs reproduce)."""
    import shutil

    path, options = parse_progress_spec(arg)
    if task is None:
        return arg
    src = resolve_model_path(path, task)
    dst = Path(run_dir) / "models" / src.name
    if not dst.exists():
        shutil.copytree(src, dst)
    return ",".join([str(dst.relative_to(run_dir)), *(f"{k}={v}" for k, v in options.items())])


def absolute_spec(arg: str, run_dir: Path) -> str:
    """Resolve a model folder stored relative to a run folder (see `localize_spec`)."""
    path, options = parse_progress_spec(arg)
    if not Path(path).is_absolute() and (Path(run_dir) / path / CONFIG_FILE).is_file():
        path = str(Path(run_dir) / path)
    return ",".join([path, *(f"{k}={v}" for k, v in options.items())])
