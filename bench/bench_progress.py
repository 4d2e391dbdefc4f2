"""Progress models: value-order correlation on held-out scripted demos (≥ 3 Meta-World tasks) and scoring throughput.

For each task a state-based SARM model (task views + pairwise relative positions, W = 1) is trained with
the recipe the shipped models use: 30 clean scripted demos (seeds 0..29), 30 noisy ones (σ = 0.3) and 30
failures (σ = 0.3; the demonstrator heads elsewhere after 0-40 expert steps; labelled with the stages
they completed). 20 held-out clean demos (seeds 10_000..) give the value-order correlation (Spearman of
predicted progress vs time, target ≥ 0.9) and stage accuracy; 10 held-out failures (seeds 20_000..) the
success/failure separation. `--ship` copies each model to reward_models/<task>/progress-state/.
One frame-based model (small CNN from scratch, corner camera, 64x64)
is measured on metaworld-reach with fewer demos, because software rendering costs ~0.15 s per frame here.
Throughput: frames/s for a batch of 64 states/frames in one call vs one call per frame.

    MUJOCO_GL=egl .venv/bin/python bench/bench_progress.py [--quick]

Writes bench/results/progress.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from embodied.demos.collect import Degradation, collect  # noqa: E402
from embodied.rewards.progress import ProgressConfig, ProgressModel, evaluate_progress, train_progress  # noqa: E402
from embodied.tasks.spec import load_task  # noqa: E402

RECIPE = "30 clean (seeds 0..29) + 30 noisy σ=0.3 (seeds 100..) + 30 failed σ=0.3 (seeds 200..) scripted demos"
STATE_TASKS = ["metaworld-drawer-open", "metaworld-pick-place", "metaworld-push", "metaworld-door-open"]


def state_task(name: str, work: Path, n_train: int, n_test: int, n_fail: int, steps: int, ship: bool) -> dict:
    task = load_task(name)
    t0 = time.perf_counter()
    train = [
        collect(task, n_train, work / f"{name}-clean", seed=0, progress=False),
        collect(task, n_train, work / f"{name}-noisy", seed=100, degradation=Degradation(noise=0.3), progress=False),
        collect(task, n_train, work / f"{name}-failed", seed=200, degradation=Degradation(noise=0.3, fail=1.0),
                progress=False),
    ]  # fmt: skip
    test = collect(task, n_test, work / f"{name}-test", seed=10_000, progress=False)
    fails = collect(task, n_fail, work / f"{name}-fail", seed=20_000, degradation=Degradation(fail=1.0), progress=False)
    collect_s = time.perf_counter() - t0
    cfg = ProgressConfig(encoder="state", steps=steps, val_fraction=0.0, include_failures=True)
    model, metrics = train_progress(train, task, cfg, out=work / f"{name}-model", progress=False)
    if ship:
        # the temp demo folders are gone after the run: record how to regenerate them instead
        model.config["demos"] = [f"bench/bench_progress.py --ship: {RECIPE}"]
        model.save(ROOT / "reward_models" / name / "progress-state", metrics, overwrite=True)
    held = evaluate_progress(model, list(test.episodes(())) + list(fails.episodes(())))
    size = sum(p.stat().st_size for p in (work / f"{name}-model").iterdir())
    row = {
        "task": name,
        "encoder": "state",
        "train_demos": f"{n_train} clean + {n_train} noisy + {n_train} failed",
        "held_out_demos": n_test,
        "failures": n_fail,
        "held_out_successes": held["successes"],
        "failure_demos_that_failed": held["failures"],
        "stages": model.names,
        "alpha": [round(float(a), 4) for a in model.alpha],
        "voc_mean": held["voc_mean"],
        "voc_min": held["voc_min"],
        "stage_accuracy": held["stage_accuracy"],
        "progress_mae": held["progress_mae"],
        "success_final": held["success_final"],
        "failure_final": held["failure_final"],
        "separation_auc": held["separation_auc"],
        "collect_s": round(collect_s, 1),
        "train_s": metrics["train_seconds"],
        "model_bytes": size,
    }
    print(json.dumps({k: v for k, v in row.items() if k != "alpha"}), flush=True)
    return row


def cnn_task(name: str, work: Path, n_train: int, n_test: int, steps: int) -> tuple[dict, ProgressModel]:
    task = load_task(name)
    t0 = time.perf_counter()
    train = collect(task, n_train, work / f"{name}-cnn-train", seed=0, cameras=["corner"], progress=False)
    test = collect(task, n_test, work / f"{name}-cnn-test", seed=10_000, cameras=["corner"], progress=False)
    collect_s = time.perf_counter() - t0
    cfg = ProgressConfig(encoder="cnn", cameras=("corner",), steps=steps, batch_size=64, lr=3e-4, val_fraction=0.0)
    model, metrics = train_progress(train, task, cfg, out=work / f"{name}-cnn-model", progress=False)
    held = evaluate_progress(model, list(test.episodes()))
    size = sum(p.stat().st_size for p in (work / f"{name}-cnn-model").iterdir())
    frames = sum(train.lengths) + sum(test.lengths)
    row = {
        "task": name,
        "encoder": "cnn (corner, 64x64, from scratch)",
        "train_demos": n_train,
        "held_out_demos": n_test,
        "voc_mean": held["voc_mean"],
        "voc_min": held["voc_min"],
        "stage_accuracy": held["stage_accuracy"],
        "progress_mae": held["progress_mae"],
        "collect_s": round(collect_s, 1),
        "render_s_per_frame": round(collect_s / frames, 4),
        "train_s": metrics["train_seconds"],
        "model_bytes": size,
    }
    print(json.dumps(row), flush=True)
    return row, model


def throughput(model: ProgressModel, obs: np.ndarray, frames: dict | None, repeats: int = 5) -> dict:
    """frames/s scoring a batch of N in one call vs N calls of one."""
    n = obs.shape[0]
    with torch.no_grad():
        model.predict(obs, frames)  # warm-up
        t0 = time.perf_counter()
        for _ in range(repeats):
            model.predict(obs, frames)
        batched = repeats * n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i in range(n):
            model.predict(obs[i : i + 1], None if frames is None else {k: v[i : i + 1] for k, v in frames.items()})
        single = n / (time.perf_counter() - t0)
    return {"batch": n, "batched_per_s": round(batched, 1), "per_frame_per_s": round(single, 1),
            "speedup": round(batched / single, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer demos and steps (smoke run)")
    parser.add_argument("--ship", action="store_true", help="copy the state models to reward_models/<task>/")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "progress.json")
    args = parser.parse_args()
    torch.set_num_threads(1)  # shared 2-core machine: one thread is fastest for these small nets
    q = args.quick
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows = [
            state_task(t, work, 8 if q else 30, 4 if q else 20, 3 if q else 10, 200 if q else 2000, args.ship and not q)
            for t in STATE_TASKS
        ]
        cnn_row, cnn_model = cnn_task("metaworld-reach", work, 3 if q else 8, 2 if q else 3, 30 if q else 1500)
        state_model = ProgressModel.load(work / "metaworld-drawer-open-model", load_task("metaworld-drawer-open"))
        test = collect("metaworld-drawer-open", 1, work / "tp", seed=777, cameras=["corner"], max_steps=63,
                       progress=False)  # fmt: skip
        ep = test[0]
        obs = np.repeat(ep.states, 1, axis=0)[:64].astype(np.float64)
        reach_obs = np.zeros((64, 39))
        tp = {
            "state (drawer-open)": throughput(state_model, obs, None),
            "cnn 64x64 (reach)": throughput(cnn_model, reach_obs, {"corner": ep.frames["corner"][:64]}),
        }
        print(json.dumps(tp), flush=True)
    result = {
        "benchmark": "progress",
        "command": "MUJOCO_GL=egl .venv/bin/python bench/bench_progress.py"
        + (" --quick" if q else "")
        + (" --ship" if args.ship else ""),
        "machine": f"{platform.processor() or platform.machine()}, torch threads 1, shared 2-core CPU",
        "target": "value-order correlation >= 0.9 on held-out scripted demos for >= 3 Meta-World tasks",
        "state_models": rows,
        "cnn_model": cnn_row,
        "throughput_frames_per_s": tp,
        "tasks_meeting_target": sum(1 for r in rows if (r["voc_mean"] or 0) >= 0.9),
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out} in {result['wall_s']} s")


if __name__ == "__main__":
    main()
