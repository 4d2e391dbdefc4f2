"""Which reward distance predicts regret? EPIC, DARD and STARC on random tabular MDPs.

For random MDPs (32 states, 4 actions, γ = 0.95) and random rewards R1, R2, the rewards
R_t = (1 − t)·R1 + t·R2 for t in a grid are compared with R1 by every metric. The "truth" is the
normalised regret of the policy optimal for one reward, evaluated under the other:

    regret(π; R) = (J*(R) − J^π(R)) / (J*(R) − J_min(R))  in [0, 1],  J = E_{s0 ~ uniform} V(s0),

averaged over both directions (π*_t under R1 and π*_1 under R_t). Two conditions:

* ``interpolation``: the pairs as they are;
* ``interpolation+shaping+redistribution``: R_t additionally gets a random potential shaping,
  a random positive scale and a random S'-redistribution (same E_{S'~P} R) — none of which change
  any policy's regret, so a good metric should not move.

Reported per metric: Pearson and Spearman correlation between distance and regret over all
(MDP, t) pairs, with 95 % cluster-bootstrap CIs (MDPs resampled). Writes
bench/results/compare_regret.json and compare_regret.png.

    .venv/bin/python bench/bench_compare_regret.py [--mdps 200] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import scipy.stats

from embodied.compare.tabular import dard_distance, epic_distance, starc_distance

N_S, N_A, GAMMA = 32, 4, 0.95
TS = np.linspace(0.0, 1.0, 11)
METRICS = {
    "epic": lambda a, b, P: epic_distance(a, b, GAMMA),
    "dard": lambda a, b, P: dard_distance(a, b, P, GAMMA),
    "starc-val-l2": lambda a, b, P: starc_distance(a, b, P, GAMMA, "val", "l2"),
    "starc-val-l1": lambda a, b, P: starc_distance(a, b, P, GAMMA, "val", "l1"),
    "starc-val-linf": lambda a, b, P: starc_distance(a, b, P, GAMMA, "val", "linf"),
    "starc-minimal-l2": lambda a, b, P: starc_distance(a, b, P, GAMMA, "minimal", "l2"),
}
OUT = Path(__file__).parent / "results"


def random_mdp(rng: np.random.Generator, successors: int = 4) -> np.ndarray:
    """P [S, A, S]: each (s, a) reaches `successors` random states with Dirichlet(1) probabilities."""
    P = np.zeros((N_S, N_A, N_S))
    for s in range(N_S):
        for a in range(N_A):
            nxt = rng.choice(N_S, size=successors, replace=False)
            P[s, a, nxt] = rng.dirichlet(np.ones(successors))
    return P


def optimal_policy(R: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Deterministic optimal policy [S] by policy iteration (exact: linear solves)."""
    rbar = np.einsum("sax,sax->sa", P, R)
    pi = np.zeros(N_S, dtype=int)
    for _ in range(200):
        V = policy_value(rbar, P, pi)
        Q = rbar + GAMMA * P @ V
        new = Q.argmax(axis=1)
        # keep the current action on ties so the iteration terminates
        new = np.where(Q[np.arange(N_S), pi] >= Q[np.arange(N_S), new] - 1e-12, pi, new)
        if np.array_equal(new, pi):
            break
        pi = new
    return pi


def policy_value(rbar: np.ndarray, P: np.ndarray, pi: np.ndarray) -> np.ndarray:
    idx = np.arange(N_S)
    return np.linalg.solve(np.eye(N_S) - GAMMA * P[idx, pi], rbar[idx, pi])


def normalised_regret(pi: np.ndarray, R: np.ndarray, P: np.ndarray) -> float:
    rbar = np.einsum("sax,sax->sa", P, R)
    j = policy_value(rbar, P, pi).mean()
    j_best = policy_value(rbar, P, optimal_policy(R, P)).mean()
    j_worst = policy_value(rbar, P, optimal_policy(-R, P)).mean()
    span = j_best - j_worst
    return float((j_best - j) / span) if span > 1e-12 else 0.0


def regret_preserving(R: np.ndarray, P: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random positive scale, potential shaping and S'-redistribution: same regret for every policy."""
    phi = rng.normal(size=N_S) * 2.0 * R.std()
    D = rng.normal(size=R.shape) * 2.0 * R.std()
    D -= np.einsum("sax,sax->sa", P, D)[:, :, None]  # E_{S'~P} D = 0 on every row
    return rng.uniform(0.2, 5.0) * R + GAMMA * phi[None, None, :] - phi[:, None, None] + D


def run(n_mdps: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    conditions = ("interpolation", "interpolation+shaping+redistribution")
    dist = {c: {m: np.zeros((n_mdps, len(TS))) for m in METRICS} for c in conditions}
    regret = np.zeros((n_mdps, len(TS)))
    t0 = time.perf_counter()
    for i in range(n_mdps):
        P = random_mdp(rng)
        R1, R2 = rng.normal(size=P.shape), rng.normal(size=P.shape)
        pi1 = optimal_policy(R1, P)
        for j, t in enumerate(TS):
            Rt = (1 - t) * R1 + t * R2
            pit = optimal_policy(Rt, P)
            regret[i, j] = 0.5 * (normalised_regret(pit, R1, P) + normalised_regret(pi1, Rt, P))
            Rt_hidden = regret_preserving(Rt, P, rng)
            for m, fn in METRICS.items():
                dist["interpolation"][m][i, j] = fn(R1, Rt, P)
                dist["interpolation+shaping+redistribution"][m][i, j] = fn(R1, Rt_hidden, P)
    elapsed = time.perf_counter() - t0

    boot = np.random.default_rng(seed + 1)
    reps = [boot.integers(0, n_mdps, size=n_mdps) for _ in range(1000)]
    results: dict = {}
    for c in conditions:
        results[c] = {}
        for m in METRICS:
            d = dist[c][m]
            stats = {}
            for name, corr in (("pearson", _pearson), ("spearman", _spearman)):
                point = corr(d.ravel(), regret.ravel())
                samples = np.array([corr(d[r].ravel(), regret[r].ravel()) for r in reps])
                lo, hi = np.quantile(samples, [0.025, 0.975])
                stats[name] = {"r": round(point, 4), "ci95": [round(float(lo), 4), round(float(hi), 4)]}
            stats["mean_distance_at_t0"] = round(float(d[:, 0].mean()), 4)
            results[c][m] = stats
    return {
        "settings": {
            "states": N_S,
            "actions": N_A,
            "gamma": GAMMA,
            "successors_per_state_action": 4,
            "mdps": n_mdps,
            "t_grid": TS.round(3).tolist(),
            "seed": seed,
            "bootstrap": 1000,
            "regret": "normalised, mean of both directions",
            "initial_state_distribution": "uniform",
        },
        "results": results,
        "mean_regret_by_t": regret.mean(axis=0).round(4).tolist(),
        "runtime_s": round(elapsed, 1),
        "machine": f"{platform.machine()} {platform.python_version()}",
        "command": f".venv/bin/python bench/bench_compare_regret.py --mdps {n_mdps} --seed {seed}",
        "_raw": {"dist": dist, "regret": regret},
    }


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(x, y)[0, 1])


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    return float(scipy.stats.spearmanr(x, y).statistic)


def plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    raw = out["_raw"]
    conds = list(raw["dist"])
    fig, axes = plt.subplots(len(conds), len(METRICS), figsize=(3.0 * len(METRICS), 3.0 * len(conds)), squeeze=False)
    for r, c in enumerate(conds):
        for k, m in enumerate(METRICS):
            ax = axes[r, k]
            ax.scatter(raw["dist"][c][m].ravel(), raw["regret"].ravel(), s=3, alpha=0.3)
            rho = out["results"][c][m]["spearman"]["r"]
            ax.set_title(f"{m}\n{c}\nSpearman {rho:.2f}", fontsize=7)
            ax.set_xlim(0, 1)
            ax.set_xlabel("distance", fontsize=7)
            if k == 0:
                ax.set_ylabel("normalised regret", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mdps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = run(args.mdps, args.seed)
    OUT.mkdir(parents=True, exist_ok=True)
    plot(out, OUT / "compare_regret.png")
    raw = out.pop("_raw")
    del raw
    (OUT / "compare_regret.json").write_text(json.dumps(out, indent=1) + "\n")
    for c, per in out["results"].items():
        print(c)
        for m, s in per.items():
            print(
                f"  {m:18s} pearson {s['pearson']['r']:.3f} {s['pearson']['ci95']}  "
                f"spearman {s['spearman']['r']:.3f} {s['spearman']['ci95']}"
            )
    print(f"runtime {out['runtime_s']} s -> {OUT / 'compare_regret.json'}")


if __name__ == "__main__":
    main()
