"""RA-BC vs vanilla BC on a mixed-quality demonstration set (target: RA-BC success ≥ 2× vanilla BC).

Per task, one mixed set of 40 scripted demos (fixed before any result was seen):
  10 clean expert demos;
  10 noisy demos (Gaussian action noise σ = 0.2);
  10 hesitant demos (σ = 0.1, a pause starts with p = 0.03 per step, a regression with p = 0.03);
  10 failures (σ = 0.1, after 0-40 expert steps the demonstrator heads to a wrong place and stays there).
The progress model (state-based SARM, W = 1) is trained on the *successful* episodes of that same set,
with their rule-derived stage annotations. Policies (all trained on every frame of the set, 3000 steps):
vanilla BC; RA-BC (Δ = 10 frames, κ = 0.05); and, as a reference, BC on the successful episodes only
(filtered BC, which needs success labels but no progress model). Each is evaluated on 20 held-out seeds with
`embodied.train.evaluate.evaluate` (the same code as `embodied eval`).

    MUJOCO_GL=egl .venv/bin/python bench/bench_rabc.py [--quick]

Writes bench/results/rabc.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from embodied.demos.collect import Degradation, collect  # noqa: E402
from embodied.policies.bc import BCConfig, train_bc  # noqa: E402
from embodied.rewards.progress import ProgressConfig, train_progress  # noqa: E402
from embodied.tasks.spec import load_task  # noqa: E402
from embodied.train.evaluate import evaluate  # noqa: E402

TASKS = ["metaworld-drawer-open", "metaworld-push", "metaworld-pick-place"]
MIXTURE = {
    "clean": Degradation(),
    "noisy": Degradation(noise=0.2),
    "hesitant": Degradation(noise=0.1, pause=0.03, regress=0.03),
    "failed": Degradation(noise=0.1, fail=1.0),
}


def run_task(name: str, work: Path, per_kind: int, bc_steps: int, pm_steps: int, episodes: int) -> dict:
    task = load_task(name)
    sets = [
        collect(task, per_kind, work / f"{name}-{kind}", degradation=deg, seed=1000 * k, progress=False)
        for k, (kind, deg) in enumerate(MIXTURE.items())
    ]
    composition = {
        kind: {"episodes": len(ds), "successes": sum(ds.successes), "frames": sum(ds.lengths)}
        for kind, ds in zip(MIXTURE, sets, strict=True)
    }
    print(name, json.dumps(composition), flush=True)
    pm_dir = work / f"{name}-progress"
    _, pm_metrics = train_progress(
        sets, task, ProgressConfig(steps=pm_steps, val_fraction=0.0), out=pm_dir, progress=False
    )
    root = work / "policies"
    runs = {
        "bc": BCConfig(weighting="none", steps=bc_steps),
        "rabc": BCConfig(weighting="rabc", progress=str(pm_dir), delta=10, kappa=0.05, steps=bc_steps),
        "filtered_bc": BCConfig(weighting="none", successes_only=True, steps=bc_steps),
    }
    out: dict = {"task": name, "composition": composition, "progress_train_s": pm_metrics["train_seconds"]}
    for label, cfg in runs.items():
        t0 = time.perf_counter()
        run = train_bc(sets, task, cfg, run=f"{name}-{label}", root=root, progress=False)
        train_s = time.perf_counter() - t0
        res = evaluate(run.name, episodes=episodes, root=root)
        info = json.loads((run / "bc.json").read_text())
        out[label] = {
            "success_rate": res["success_rate"],
            "env_return": round(res["env_return"], 1),
            "train_s": round(train_s, 1),
            "frames": info["frames"],
            **({"dataset_weights": info["dataset_weights"]} if "dataset_weights" in info else {}),
        }
        print(name, label, json.dumps(out[label]), flush=True)
    bc, rabc = out["bc"]["success_rate"], out["rabc"]["success_rate"]
    out["ratio_rabc_over_bc"] = None if bc == 0 else round(rabc / bc, 2)
    out["meets_2x"] = rabc >= 2 * bc and rabc > 0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer demos, steps and episodes (smoke run)")
    parser.add_argument("--tasks", nargs="*", default=TASKS)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "rabc.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    q = args.quick
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run_task(t, Path(tmp), 3 if q else 10, 300 if q else 3000, 200 if q else 2000, 3 if q else 20)
                for t in args.tasks]  # fmt: skip
    result = {
        "benchmark": "rabc",
        "command": "MUJOCO_GL=egl .venv/bin/python bench/bench_rabc.py" + (" --quick" if q else ""),
        "target": "RA-BC success >= 2x vanilla BC on a mixed-quality demo set of >= 2 tasks",
        "mixture": {k: v.__dict__ for k, v in MIXTURE.items()},
        "eval_episodes": 3 if q else 20,
        "tasks": rows,
        "tasks_meeting_target": sum(r["meets_2x"] for r in rows),
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=list))
    print(f"wrote {args.out} in {result['wall_s']} s")


if __name__ == "__main__":
    main()
