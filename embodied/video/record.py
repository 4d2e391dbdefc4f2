"""Rollout videos (mp4) with the reward, its components and the cumulative returns drawn on each frame."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from embodied.train.config import load_config
from embodied.train.evaluate import HELD_OUT_SEED, Step, load_policy, reward_env, rollout
from embodied.train.runs import find_run


class VideoError(ValueError):
    """A video cannot be made (no camera, unwritable path)."""


def overlay(frame: np.ndarray, step: Step, t: int) -> np.ndarray:
    """Draw step t's numbers in the top-left corner of a uint8 [H, W, 3] frame (returns a copy)."""
    import cv2

    img = np.ascontiguousarray(frame).copy()
    lines = [f"t={t}  r={step.reward:+.3f}  R={step.ret:+.2f}", f"env r={step.env_reward:+.3f}  R={step.env_ret:+.2f}"]
    lines += [f"{k}={v:+.3f}" for k, v in list(step.components.items())[:6]]
    if step.success:
        lines.append("SUCCESS")
    scale = max(img.shape[0] / 480, 0.35)
    for i, text in enumerate(lines):
        y = int((16 + 16 * i) * scale * 1.4)
        cv2.putText(img, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale * 1.4, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * scale * 1.4, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def _at_least(frame: np.ndarray, size: int) -> np.ndarray:
    """Upscale a frame smaller than `size` (a scorer's small input) so the overlay stays readable."""
    import cv2

    h, w = frame.shape[:2]
    if min(h, w) >= size:
        return frame
    scale = size / min(h, w)
    return cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_NEAREST)


def write_mp4(frames: Iterable[np.ndarray], path: Path, fps: int = 30) -> int:
    """Write uint8 RGB frames to an mp4 (written to a temp name, then renamed). Returns the frame count."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.mp4")
    writer = None
    count = 0
    try:
        for frame in frames:
            if writer is None:
                h, w = frame.shape[:2]
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                if not writer.isOpened():
                    raise VideoError(f"cannot open a video writer for {path}")
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            count += 1
    finally:
        if writer is not None:
            writer.release()
    if count == 0:
        tmp.unlink(missing_ok=True)
        raise VideoError(f"no frames to write to {path}")
    tmp.replace(path)
    return count


def record(
    run: str | Path,
    out: Path | None = None,
    episodes: int = 1,
    seed: int = HELD_OUT_SEED,
    camera: str | None = None,
    size: int = 480,
    root: Path = Path("policies"),
) -> Path:
    """Roll out a run's policy and write `videos/<run>.mp4` with reward overlays."""
    run_dir = find_run(run, root)
    cfg = load_config(run_dir / "config.toml")
    cam = camera or (cfg.task.cameras[0] if cfg.task.cameras else None)
    if cam is None:
        raise VideoError(f"task {cfg.task.name!r} lists no cameras to record")
    model = load_policy(run_dir, cfg)
    env = reward_env(cfg, run_dir, frames=[cam], frame_size=(size, size))
    out = out or Path("videos") / f"{cfg.run}.mp4"

    def frames() -> Iterable[np.ndarray]:
        for k in range(episodes):
            for t, step in enumerate(rollout(model, env, seed + k, camera=cam)):
                yield overlay(_at_least(step.frame, size), step, t)

    try:
        write_mp4(frames(), out, fps=30)
    finally:
        env.close()
    return out
