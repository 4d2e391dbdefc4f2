"""Wall time of the exact tabular metrics as |S| grows (|A| = 8, γ = 0.95).

Two dynamics: ``sparse`` (4 successors per (s, a), the usual gridworld-like case; scipy.sparse
paths) and ``dense`` (Dirichlet rows over all states). Each timing is the median of `--repeats`
runs of one `*_distance(R1, R2, ...)` call including input validation. Writes
bench/results/compare_scaling.json.

    .venv/bin/python bench/bench_compare_scaling.py [--sizes 100,250,500,1000,2000] [--max-dense 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from embodied.compare.tabular import dard_distance, epic_distance, starc_distance

N_A, GAMMA = 8, 0.95
OUT = Path(__file__).parent / "results"
METRICS = {
    "epic": lambda R1, R2, P: epic_distance(R1, R2, GAMMA),
    "starc-val": lambda R1, R2, P: starc_distance(R1, R2, P, GAMMA, "val"),
    "starc-minimal": lambda R1, R2, P: starc_distance(R1, R2, P, GAMMA, "minimal"),
    "dard": lambda R1, R2, P: dard_distance(R1, R2, P, GAMMA),
}


def transitions(rng: np.random.Generator, n_s: int, kind: str) -> np.ndarray:
    if kind == "dense":
        return rng.dirichlet(np.ones(n_s), size=(n_s, N_A))
    P = np.zeros((n_s, N_A, n_s))
    nxt = np.stack([rng.choice(n_s, size=4, replace=False) for _ in range(n_s * N_A)]).reshape(n_s, N_A, 4)
    np.put_along_axis(P, nxt, rng.dirichlet(np.ones(4), size=(n_s, N_A)), axis=2)
    return P


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,250,500,1000,2000")
    parser.add_argument("--max-dense", type=int, default=1000, help="largest |S| for dense P (DARD is O(A·S³))")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = np.random.default_rng(args.seed)
    rows = []
    for kind in ("sparse", "dense"):
        for n_s in sizes:
            if kind == "dense" and n_s > args.max_dense:
                continue
            P = transitions(rng, n_s, kind)
            R1, R2 = rng.normal(size=P.shape), rng.normal(size=P.shape)
            row: dict = {"dynamics": kind, "states": n_s, "actions": N_A, "entries": int(R1.size)}
            for name, fn in METRICS.items():
                times = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    d = fn(R1, R2, P)
                    times.append(time.perf_counter() - t0)
                row[f"{name}_s"] = round(float(np.median(times)), 4)
                row[f"{name}_value"] = round(d, 4)
            rows.append(row)
            print({k: v for k, v in row.items() if not k.endswith("_value")}, flush=True)
            del P, R1, R2
    out = {
        "settings": {
            "actions": N_A,
            "gamma": GAMMA,
            "repeats": args.repeats,
            "statistic": "median wall time (s)",
            "sparse": "4 successors per (s, a)",
            "dense": "Dirichlet(1) rows over all states",
        },
        "rows": rows,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible (shared), numpy {np.__version__}",
        "command": f".venv/bin/python bench/bench_compare_scaling.py --sizes {args.sizes} --max-dense {args.max_dense} "
        f"--repeats {args.repeats}",
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "compare_scaling.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"-> {OUT / 'compare_scaling.json'}")


if __name__ == "__main__":
    main()
