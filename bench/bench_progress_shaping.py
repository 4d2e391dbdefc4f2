"""Sparse success reward + progress-potential shaping vs sparse alone, drawer-open, 300 training episodes each.

Targets (issue 5): shaped ≥ 80 % success within 300 training episodes, sparse alone < 20 % at the same budget.

Setup. Progress model: state-based SARM (task views + pairwise relative positions, W = 1), trained on
30 clean, 30 noisy (σ = 0.3) and 30 failed (σ = 0.3, demonstrator heads elsewhere) scripted demos, failures
labelled with the stages they completed (`include_failures`); it is frozen before RL starts. Sparse reward:
a reward program returning 1 while the handle is within the env's 3 cm success radius of its open
position, else 0 (`info['success']` as a reward). Shaping: F = γ·c·Φ(s') − c·Φ(s), Φ = normalised progress,
γ = 0.99 (the learner's), Φ kept on truncation (Meta-World episodes end by time limit). Budget: 300
episodes × 200 steps = 60 000 env steps, 4 envs, seed(s) given. Success is measured on 20 held-out
seeds with `embodied.train.evaluate.evaluate` (Meta-World's "success at any step"), and the learning
curve is the training success rate per rollout (SB3 logs, `metrics.json`).

    MUJOCO_GL=egl .venv/bin/python bench/bench_progress_shaping.py [--algo ppo|sac] [--scale C] [--seeds 0 1]

PPO runs take ~1 min each here; SAC ~6 min each (2 shared cores). Writes
bench/results/progress_shaping[_<algo>].json and .png.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from embodied.demos.collect import Degradation, collect  # noqa: E402
from embodied.rewards.progress import ProgressConfig, evaluate_progress, train_progress  # noqa: E402
from embodied.tasks.spec import load_task  # noqa: E402
from embodied.train import sb3  # noqa: E402
from embodied.train.config import TrainConfig  # noqa: E402
from embodied.train.evaluate import evaluate  # noqa: E402

TASK = "metaworld-drawer-open"
EXPERT = "reward_models/{task}/expert.py"
EPISODES = 300
SPARSE = '''import numpy as np


def compute_reward(view, action):
    """1 while the drawer handle is within the env's 3 cm success radius of its open position."""
    ok = 1.0 if float(np.linalg.norm(view.handle_pos - view.goal_pos)) <= 0.03 else 0.0
    return ok, {"success": ok}
'''


def curve(run: Path, episode_steps: int, key: str = "ep_success_mean") -> list[list[float]]:
    """[[training episodes so far, mean of `key` over the last 100 finished episodes], ...] from metrics.json."""
    hist = json.loads((run / "metrics.json").read_text())["history"]
    return [[h["timesteps"] / episode_steps, round(h[key], 4)] for h in hist if key in h]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", choices=["ppo", "sac"], default="ppo")
    parser.add_argument("--scale", type=float, default=100.0, help="constant c multiplying Φ")
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--episodes", type=int, default=EPISODES)
    parser.add_argument(
        "--potential", choices=["progress", "expert"], default="progress",
        help="Φ: the learned progress model, or (reference) the hand-written expert program of the task",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = (
        args.out or ROOT / "bench" / "results" / f"progress_shaping{'' if args.algo == 'ppo' else '_' + args.algo}.json"
    )
    task = load_task(TASK)
    steps = args.episodes * task.max_episode_steps
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sets = [
            collect(task, 30, work / "clean", seed=0, progress=False),
            collect(task, 30, work / "noisy", seed=100, degradation=Degradation(noise=0.3), progress=False),
            collect(task, 30, work / "fail", seed=200, degradation=Degradation(noise=0.3, fail=1.0), progress=False),
        ]
        held = collect(task, 10, work / "held", seed=10_000, progress=False)
        pm_dir = work / "progress-state"
        model, _ = train_progress(
            sets, task, ProgressConfig(steps=2000, include_failures=True, val_fraction=0.0), out=pm_dir, progress=False
        )
        pm_quality = evaluate_progress(model, list(held.episodes(())))
        program = work / "sparse.py"
        program.write_text(SPARSE)
        root = work / "policies"
        shaped = f"sparse+{args.potential}"
        runs: dict[str, list[dict]] = {"sparse": [], shaped: []}
        for seed in args.seeds:
            potential = (
                f"progress:{pm_dir}" if args.potential == "progress" else f"program:{ROOT / EXPERT.format(task=TASK)}"
            )
            for label, shaping in (("sparse", None), (shaped, potential)):
                cfg = TrainConfig(
                    run=f"{label.replace('+', '-')}-s{seed}", task=task, reward=f"program:{program}", shaping=shaping,
                    shaping_scale=args.scale, algo=args.algo, steps=steps, seed=seed, envs=4, gamma=task.gamma,
                    checkpoint_every=10**9,
                )  # fmt: skip
                t_run = time.perf_counter()
                run = sb3.train(cfg, root, progress=False)
                train_s = time.perf_counter() - t_run
                res = evaluate(run.name, episodes=20, root=root)
                row = {
                    "seed": seed,
                    "eval_success_rate": res["success_rate"],
                    "eval_env_return": round(res["env_return"], 1),
                    "train_success_last": curve(run, task.max_episode_steps)[-1][1],
                    "train_s": round(train_s, 1),
                    "curve": curve(run, task.max_episode_steps),
                    "curve_env_return": curve(run, task.max_episode_steps, "ep_env_return_mean"),
                }
                runs[label].append(row)
                print(label, json.dumps({k: v for k, v in row.items() if not k.startswith("curve")}), flush=True)
    summary = {k: float(np.mean([r["eval_success_rate"] for r in v])) for k, v in runs.items()}
    result = {
        "benchmark": "progress_shaping",
        "command": f"MUJOCO_GL=egl .venv/bin/python bench/bench_progress_shaping.py --algo {args.algo} "
        f"--scale {args.scale:g} --seeds {' '.join(map(str, args.seeds))} --episodes {args.episodes} "
        f"--potential {args.potential}",
        "task": TASK,
        "algo": args.algo,
        "budget": {"episodes": args.episodes, "env_steps": steps, "envs": 4},
        "shaping_scale": args.scale,
        "potential": "learned progress model" if args.potential == "progress" else f"expert program {EXPERT}",
        "progress_model_held_out": {k: pm_quality[k] for k in ("voc_mean", "stage_accuracy", "progress_mae")},
        "targets": {shaped: ">= 0.8", "sparse": "< 0.2"},
        "eval_success_rate_mean": summary,
        "meets_targets": summary[shaped] >= 0.8 and summary["sparse"] < 0.2,
        "runs": runs,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')} in {result['wall_s']} s")


def plot(result: dict, path: Path) -> None:
    """Learning curves: training success rate and Meta-World's own (dense) return, per training episode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    has_env = any(row.get("curve_env_return") for rows in result["runs"].values() for row in rows)
    fig, axes = plt.subplots(1, 2 if has_env else 1, figsize=(11 if has_env else 6, 4), squeeze=False)
    axes = list(axes[0]) + ([None] if not has_env else [])
    for (label, rows), color in zip(result["runs"].items(), ("tab:gray", "tab:blue"), strict=True):
        for i, row in enumerate(rows):
            for ax, key in zip(axes, ("curve", "curve_env_return"), strict=True):
                if ax is None or not row.get(key):
                    continue
                xs, ys = zip(*row[key], strict=True)
                name = f"{label} (eval success {row['eval_success_rate']:.0%})" if i == 0 else None
                ax.plot(xs, ys, color=color, alpha=0.8, lw=2 if label == "sparse" else 1.2, label=name)
    axes[0].axhline(0.8, color="tab:green", ls="--", lw=0.8, label="target 80 %")
    axes[0].set_ylim(-0.02, 1.02)
    axes[0].set_ylabel("training success rate (last 100 episodes)")
    if axes[1] is not None:
        axes[1].set_ylabel("Meta-World dense return (gauge only)")
    for ax in (a for a in axes if a is not None):
        ax.set_xlabel("training episodes")
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"{result['task']}: {result['algo'].upper()}, shaping scale c = {result['shaping_scale']:g}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
