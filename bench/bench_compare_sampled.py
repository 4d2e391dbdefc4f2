"""Sampled reward comparison on a Meta-World task: wall time and values of EPIC / STARC / DARD.

Rewards: the env reward, the expert reward program in reward_models/<task>/expert.py and a sparse
success-only program (written to a temp folder), compared through the registry exactly as
`embodied compare` does. Also times the general EPIC path (rewards that read s as well as s',
2·N·M evaluations) with a vectorised numpy progress-delta reward on the same coverage.
Writes bench/results/compare_sampled.json.

    MUJOCO_GL=egl .venv/bin/python bench/bench_compare_sampled.py [--task metaworld-reach] [--n 4096]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from embodied.compare.sampled import compare_sampled
from embodied.compare.simulator import collect_coverage, make_sample_next, reward_callable

OUT = Path(__file__).parent / "results"
SPARSE = """import numpy as np


def compute_reward(view, action):
    d = float(np.linalg.norm(view.hand_pos + np.array([0.0, 0.0, -0.045]) - view.goal_pos))
    hit = 1.0 if d < 0.05 else 0.0
    return hit, {"success": hit}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="metaworld-reach")
    parser.add_argument("--n", type=int, default=4096, help="coverage transitions = EPIC samples")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--dard-n", type=int, default=1024, help="transitions for DARD (simulator steps 2·n·k)")
    args = parser.parse_args()

    from embodied.rewards.registry import make_reward
    from embodied.tasks import load_task

    task = load_task(args.task)
    rows: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        sparse = Path(tmp) / "sparse.py"
        sparse.write_text(SPARSE)
        specs = ["env", f"program:reward_models/{task.name}/expert.py", f"program:{sparse}"]
        names = ["env", "program:expert.py", "program:sparse.py"]
        models = [make_reward(s, task) for s in specs]

        t0 = time.perf_counter()
        sim = collect_coverage(task, ("random", "expert:0.5"), args.n, seed=0)
        rows["collect_s"] = round(time.perf_counter() - t0, 2)
        fns = {n: reward_callable(m, sim.table) for n, m in zip(names, models, strict=True)}
        common = {"obs_lookup": sim.table.numeric_obs, "paired_samples": True, "n_seeds": args.seeds}

        for metric, kw in (
            ("epic", {"n_transitions": args.n, "n_samples": args.n}),
            ("starc", {"n_transitions": args.n}),
            ("dard", {"n_transitions": args.dard_n, "dard_samples": 8, "sample_next": make_sample_next(sim)}),
        ):
            t0 = time.perf_counter()
            res = compare_sampled(fns, sim.coverage, task.gamma, metric, **common, **kw)
            rows[metric] = {
                "seconds": round(time.perf_counter() - t0, 2),
                "names": names,
                "distance": res.distance.round(4).tolist(),
                "ci_low": res.ci_low.round(4).tolist(),
                "ci_high": res.ci_high.round(4).tolist(),
                "settings": res.settings,
            }
            print(metric, rows[metric]["seconds"], "s", res.distance.round(3).tolist(), flush=True)

        # general path: a vectorised reward that reads s and s' (progress delta), 2·N·M evaluations
        def progress_delta(o: np.ndarray, a: np.ndarray, n: np.ndarray) -> np.ndarray:
            so, sn = sim.table.numeric_obs(o), sim.table.numeric_obs(n)
            dist = lambda x: np.linalg.norm(x[:, 0:3] - x[:, 36:39], axis=1)  # noqa: E731
            return dist(so) - dist(sn)

        t0 = time.perf_counter()
        res = compare_sampled(
            {"env": fns["env"], "progress_delta": progress_delta}, sim.coverage, task.gamma, "epic",
            n_transitions=args.n, n_samples=args.n, **common,
        )  # fmt: skip
        rows["epic_general_path"] = {
            "seconds": round(time.perf_counter() - t0, 2),
            "evaluations_per_seed": 2 * args.n * args.n + args.n,
            "distance_env_vs_progress_delta": round(float(res.distance[0, 1]), 4),
        }
        print("epic general path", rows["epic_general_path"], flush=True)
        sim.close()

    out = {
        "task": task.name,
        "coverage": {"policies": ["random", "expert:0.5"], "transitions": args.n},
        "results": rows,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible (shared), Python {platform.python_version()}",
        "command": f"MUJOCO_GL=egl .venv/bin/python bench/bench_compare_sampled.py --task {args.task} --n {args.n} "
        f"--seeds {args.seeds} --dard-n {args.dard_n}",
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "compare_sampled.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"-> {OUT / 'compare_sampled.json'}")


if __name__ == "__main__":
    main()
