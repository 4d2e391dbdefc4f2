"""CLIP scoring throughput on a GPU: bf16 autocast, large batches, fraction of the device's peak.

Run on a machine with an NVIDIA GPU (no weights needed: random initialisation has the same FLOPs):

    .venv/bin/python bench/gpu_clip.py                       # ViT-B-32 and ViT-L-14, batches 256/1024/2048
    .venv/bin/python bench/gpu_clip.py --models ViT-bigG-14 --batches 256,512
    .venv/bin/python bench/gpu_clip.py --device cpu --models ViT-B-32 --batches 4 --precision fp32 --iters 1  # smoke

For every model and batch it measures frames/s of

* ``bare``: ``encode_image`` on a preprocessed tensor already on the device, under autocast;
* ``pipeline``: ``ClipReward.score`` on uint8 host frames [B, 224, 224, 3] (pinned copy to the GPU as
  uint8, normalise, encode, score), i.e. what one vector step costs;

and the fraction of peak = frames/s x FLOPs per image / peak FLOP/s. FLOPs per image are counted with
``torch.utils.flop_counter`` (matmuls and convolutions; a multiply-add is 2 FLOPs). The peak is looked up
from the device name (dense bf16 tensor-core TFLOP/s; override with ``--peak-tflops``). It also
records which renderer MuJoCo would use in this process (NVIDIA EGL vs Mesa software).
Writes bench/results/clip_gpu.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' data sheets
PEAK_BF16_TFLOPS = {
    "H200": 989.0, "H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 756.0, "GH200": 989.0,
    "A100": 312.0, "A800": 312.0, "L40S": 362.0, "L40": 181.0, "L4": 121.0, "A10G": 70.0, "A10": 125.0,
    "RTX 4090": 165.0, "RTX 3090": 71.0, "V100": 125.0,
}  # fmt: skip


def peak_tflops(name: str) -> float | None:
    """Peak for a device name such as 'NVIDIA H100 80GB HBM3' (longest matching key wins)."""
    hits = [k for k in PEAK_BF16_TFLOPS if k.lower() in name.lower()]
    if "H100" in name and "HBM3" in name:
        return PEAK_BF16_TFLOPS["H100 SXM"]
    return PEAK_BF16_TFLOPS[max(hits, key=len)] if hits else None


def flops_per_image(model, size: int, device) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, size, size, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model.encode_image(x)
    return float(counter.get_total_flops())


def timed(fn, iters: int, sync) -> float:
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - t0) / iters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="ViT-B-32,ViT-L-14")
    ap.add_argument("--batches", default="256,1024,2048")
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--iters", type=int, default=10, help="timed iterations per measurement (after a warm-up)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="device peak for --precision, TFLOP/s")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "clip_gpu.json")
    args = ap.parse_args()

    import open_clip
    import torch

    from embodied.rewards.clip import ClipReward, render_backend
    from embodied.rewards.frames import to_tensor

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU visible to torch; run on a GPU machine or pass --device cpu for a smoke test")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_tflops or (peak_tflops(name) if device.type == "cuda" else None)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[args.precision]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    rows = []
    for model_name in args.models.split(","):
        torch.manual_seed(0)
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None, device=device)
        model.eval()
        tok = open_clip.get_tokenizer(model_name)
        reward = ClipReward(
            "a humanoid robot kneeling", "a humanoid robot", 0.5, clip=(model, preprocess, tok), device=str(device),
            precision=args.precision, batch_size=max(int(b) for b in args.batches.split(",")), verbose=False,
        )  # fmt: skip
        size = reward.frame_spec.size[0]
        gflops = flops_per_image(model, size, device) / 1e9
        for batch in (int(b) for b in args.batches.split(",")):
            frames = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
            pre = to_tensor(frames, reward.frame_spec, device)

            def bare(pre=pre, model=model) -> None:
                with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    model.encode_image(pre)

            def pipeline(frames=frames, reward=reward) -> None:
                reward.score(frames)

            try:
                t_bare, t_pipe = timed(bare, args.iters, sync), timed(pipeline, args.iters, sync)
            except torch.OutOfMemoryError:
                print(f"{model_name} batch {batch}: out of memory, skipped", flush=True)
                torch.cuda.empty_cache()
                continue
            row = {
                "model": model_name, "batch": batch, "precision": args.precision, "image_size": size,
                "gflops_per_image": round(gflops, 2), "fps_bare": round(batch / t_bare, 1),
                "fps_pipeline": round(batch / t_pipe, 1), "pipeline_over_bare": round(t_bare / t_pipe, 3),
                "fraction_of_peak_bare": round(batch / t_bare * gflops / 1e3 / peak, 4) if peak else None,
                "fraction_of_peak_pipeline": round(batch / t_pipe * gflops / 1e3 / peak, 4) if peak else None,
            }  # fmt: skip
            if device.type == "cuda":
                row["max_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
            print(json.dumps(row), flush=True)
            rows.append(row)
        del model, reward
        if device.type == "cuda":
            torch.cuda.empty_cache()
    result = {
        "device": name, "peak_tflops": peak, "precision": args.precision, "renderer": render_backend(),
        "torch": torch.__version__, "rows": rows, "command": "python bench/gpu_clip.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("out",) and v is not None
        ),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
