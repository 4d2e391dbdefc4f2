"""CLIP scoring throughput on CPU: batched pipeline vs bare encode_image vs a naive per-frame pipeline.

For each model (ViT-B-32 with random weights — same compute as the real one — and the shipped adapted
scorer of metaworld-reach) and each input size (frames rendered at the model's input size, and
480x480 frames as reference implementations render them):

* ``bare``: ``model.encode_image`` on an already preprocessed float tensor [B, 3, S, S];
* ``pipeline``: ``ClipReward.score(frames)`` on uint8 [B, H, W, 3] — validate, crop/resize, normalise,
  encode, normalise, score — one batched call;
* ``naive``: per frame, PIL resize + centre crop + ToTensor + normalise (open_clip's eval transform),
  ``encode_image`` on a batch of one, score — what the reference implementations do.

Frames are real Meta-World renders. Repeats are interleaved (bare, pipeline, naive, bare, ...) and the
median frames/s is reported, because the 2 CPU cores are shared. Targets (issue 3): pipeline / bare
>= 0.8, pipeline / naive >= 1.7. Writes bench/results/clip.json.

    .venv/bin/python bench/bench_clip.py [--batch 32] [--repeats 3] [--threads 1,2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def render_frames(n: int, size: int) -> np.ndarray:
    """n distinct Meta-World reach frames (corner camera) at size x size, tiled from a few renders."""
    import embodied
    from embodied.compare.simulator import make_policy
    from embodied.rewards.frames import set_render_quality
    from embodied.tasks import load_task

    spec = load_task("metaworld-reach")
    env = embodied.make(spec, frames=["corner"], frame_size=(size, size))
    set_render_quality(env, "fast")
    policy = make_policy("expert", env, spec, np.random.default_rng(0))
    obs, info = env.reset(seed=0)
    frames = [info["frames"]["corner"]]
    for _ in range(min(n, 16) - 1):
        obs, _, _, _, info = env.step(policy(obs))
        frames.append(info["frames"]["corner"])
    env.close()
    reps = -(-n // len(frames))
    return np.ascontiguousarray(np.concatenate([frames] * reps)[:n])


def bench_model(label: str, clip: tuple, frames_by_size: dict[int, np.ndarray], batch: int, repeats: int) -> list[dict]:
    import torch
    from PIL import Image

    from embodied.rewards.clip import ClipReward
    from embodied.rewards.frames import to_tensor

    model, preprocess, _ = clip
    reward = ClipReward("a robot arm reaching the goal", clip=clip, device="cpu", verbose=False, batch_size=batch)
    spec = reward.frame_spec
    rows = []
    for size, frames in frames_by_size.items():
        frames = frames[:batch]
        pre = to_tensor(frames, spec)

        def bare(pre=pre) -> None:
            with torch.inference_mode():
                model.encode_image(pre)

        def pipeline(frames=frames) -> None:
            reward.score(frames)

        def naive(frames=frames) -> None:
            g = torch.from_numpy(reward.goal_embedding).float()
            with torch.inference_mode():
                for f in frames:
                    x = preprocess(Image.fromarray(f)).unsqueeze(0)
                    e = model.encode_image(x)
                    e = e / e.norm(dim=-1, keepdim=True)
                    float((e[0] * g).sum())

        for fn in (bare, pipeline, naive):  # warm-up
            fn()
        times: dict[str, list[float]] = {"bare": [], "pipeline": [], "naive": []}
        for _ in range(repeats):
            for name, fn in (("bare", bare), ("pipeline", pipeline), ("naive", naive)):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        fps = {k: batch / statistics.median(v) for k, v in times.items()}
        row = {
            "model": label,
            "frame_size": [size, size],
            "model_input": list(spec.size),
            "batch": batch,
            "fps_bare": round(fps["bare"], 2),
            "fps_pipeline": round(fps["pipeline"], 2),
            "fps_naive": round(fps["naive"], 2),
            "pipeline_over_bare": round(fps["pipeline"] / fps["bare"], 3),
            "pipeline_over_naive": round(fps["pipeline"] / fps["naive"], 3),
            "seconds": {k: [round(x, 4) for x in v] for k, v in times.items()},
        }
        print(
            f"{label:>36} {size:>3}px -> {spec.size[0]}px  bare {row['fps_bare']:8.1f}/s  pipeline "
            f"{row['fps_pipeline']:8.1f}/s  naive {row['fps_naive']:8.1f}/s  pipeline/bare "
            f"{row['pipeline_over_bare']:.2f}  pipeline/naive {row['pipeline_over_naive']:.2f}",
            flush=True,
        )
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32, help="frames per call (pipeline and bare)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the median is reported")
    ap.add_argument("--threads", default="1,2", help="torch thread counts to measure, comma-separated")
    ap.add_argument("--quick", action="store_true", help="adapted model only, batch 16, 2 repeats (a smoke test)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "clip.json")
    args = ap.parse_args()

    import open_clip
    import torch

    from embodied.rewards.clip_adapt import load_adapted

    threads = [int(t) for t in str(args.threads).split(",")]
    if args.quick:
        args.batch, args.repeats = 16, 2
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    models = []
    adapted = ROOT / "reward_models" / "metaworld-reach" / "clip-adapted"
    if adapted.is_dir():
        m, p, t, cfg = load_adapted(adapted)
        models.append((f"adapted reach ({cfg['frame_size'][0]}px)", (m, p, t), cfg["frame_size"][0]))
    if not args.quick:
        torch.manual_seed(0)
        m, _, p = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)  # random weights, same FLOPs
        models.append(("ViT-B-32 (random init)", (m.eval(), p, open_clip.get_tokenizer("ViT-B-32")), 224))
    rows = []
    for label, clip, size in models:
        frames = {size: render_frames(args.batch, size), 480: render_frames(args.batch, 480)}
        for n in threads:
            torch.set_num_threads(n)
            for row in bench_model(
                f"{label}, {n} thread{'s' if n > 1 else ''}", clip, frames, args.batch, args.repeats
            ):
                rows.append({**row, "threads": n})
    result = {
        "rows": rows,
        "targets": {"pipeline_over_bare": 0.8, "pipeline_over_naive": 1.7},
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": threads,
            "torch": torch.__version__,
            "platform": platform.platform(),
            "load_average_start": [round(x, 2) for x in load0],
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {"batch": args.batch, "repeats": args.repeats, "quick": args.quick},
        "wall_s": round(time.perf_counter() - t0, 1),
        "command": "python bench/bench_clip.py" + (" --quick" if args.quick else ""),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
