"""CALM benchmark: PPO on MiniHack KeyRoom-S5 — sparse env reward vs + subgoal shaping from the oracle judge.

Conditions (same PPO hyper-parameters, seeds and step budget):

* ``sparse``          — ``--reward env`` (MiniHack: +1 on the stairs, −0.01 for actions that take no time);
* ``oracle_shaping``  — ``--reward env --shaping subgoals:judge=oracle``: Φ = key held + door open, exact
  detectors, so this is the upper bound of what a judge can add;
* ``llm_shaping``     — ``--shaping subgoals:judge=llm`` with the endpoint in EMBODIED_LLM_BASE_URL /
  EMBODIED_LLM_MODEL (/ EMBODIED_LLM_KEY_ENV); skipped with a message when none is configured.

Reported: the training success rate (stochastic policy, last 100 episodes) vs environment steps per
condition (mean and range over seeds, PNG), the held-out success rate of the final deterministic and
stochastic policies, and judge quality (precision/recall/F1 against the oracle) of the offline
judges: the oracle's own state detectors, the recorded rule-based stand-in of
tests/rewards/data/calm (not an LLM), and the LLM when an endpoint is configured.

    .venv/bin/python bench/bench_calm.py [--steps 30000] [--seeds 0 1 2] [--envs 4] [--episodes 30]

Writes bench/results/calm.json and bench/results/calm.png. PPO runs use one torch thread (tiny MLPs
on shared cores run several times faster that way).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

OUT = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]
STAND_IN = REPO / "tests" / "rewards" / "data" / "calm" / "judge_keyroom.jsonl"
TASK = "minihack-keyroom"
HYPER = {"n_steps": 256, "batch_size": 256, "n_epochs": 10, "learning_rate": 3e-4, "ent_coef": 0.01}


def judge_quality(endpoint: bool) -> dict[str, Any]:
    """F1 of the judges that can run here, on the balanced sets `embodied calm eval` uses (seed 0)."""
    from embodied.llm.client import make_client
    from embodied.llm.replay import ReplayClient
    from embodied.llm.text_view import text_view_for
    from embodied.rewards.subgoal_oracle import OracleJudge, evaluate_judge, evaluation_set, oracle_subgoals
    from embodied.rewards.subgoals import LLMJudge
    from embodied.tasks.spec import load_task

    task = load_task(TASK)
    out: dict[str, Any] = {}
    for question in ("transition", "state"):
        chosen = evaluation_set(task, 300, question, seed=0)
        out[f"oracle/{question}/n300"] = evaluate_judge(OracleJudge(task), chosen, question, task)
        small = evaluation_set(task, 60, question, seed=0)
        stand_in = LLMJudge(ReplayClient(STAND_IN), oracle_subgoals(task), text_view_for(task), workers=1)
        out[f"stand_in/{question}/n60"] = evaluate_judge(stand_in, small, question, task)
        if endpoint:
            client = make_client(replay=OUT / "calm_llm_recording.jsonl", record=True)
            judge = LLMJudge(client, oracle_subgoals(task), text_view_for(task))
            out[f"llm/{question}/n60"] = {**evaluate_judge(judge, small, question, task), "model": judge.model}
    return out


def random_policy_success(episodes: int) -> float:
    """Success rate of the uniformly random policy on the held-out seeds (the floor PPO starts from)."""
    from embodied.envs.make import make

    env = make(TASK)
    rng = np.random.default_rng(0)
    wins = 0
    for e in range(episodes):
        env.reset(seed=1_000_000 + e)
        done = success = False
        while not done:
            _, _, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
            success, done = success or bool(info["success"]), terminated or truncated
        wins += int(success)
    env.close()
    return wins / episodes


def train_one(condition: str, shaping: str | None, seed: int, steps: int, envs: int, root: Path, episodes: int) -> dict:
    from embodied.cli.main import build_config
    from embodied.train import sb3
    from embodied.train.config import load_config
    from embodied.train.evaluate import evaluate, load_policy, reward_env, rollout

    cfg = build_config(TASK, "env", shaping, 1.0, "ppo", steps, seed, envs, None, 10**9, f"{condition}-s{seed}")
    cfg = cfg.model_copy(update={"hyperparams": HYPER})
    t0 = time.perf_counter()
    run = sb3.train(cfg, root, progress=False)
    wall = time.perf_counter() - t0
    metrics = json.loads((run / "metrics.json").read_text())
    curve = [(int(h["timesteps"]), float(h.get("ep_success_mean", float("nan")))) for h in metrics["history"]]
    deterministic = evaluate(run.name, episodes, 1_000_000, root)
    # The stochastic policy (what the training curve measures) on the same held-out seeds.
    model, cfg_run = load_policy(run), load_config(run / "config.toml")
    env = reward_env(cfg_run, run)
    wins = 0
    for e in range(episodes):
        steps_ = list(rollout(model, env, 1_000_000 + e, deterministic=False))
        wins += int(any(s.success for s in steps_))
    env.close()
    return {
        "condition": condition,
        "seed": seed,
        "wall_s": round(wall, 1),
        "steps_per_s": metrics["steps_per_s"],
        "curve": curve,
        "final_train_success": curve[-1][1] if curve else None,
        "heldout_success_deterministic": deterministic["success_rate"],
        "heldout_success_stochastic": wins / episodes,
        "final_shaping_residual_max_abs": metrics["final"].get("shaping_residual_max_abs"),
    }


def plot(runs: list[dict], random_success: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for condition in dict.fromkeys(r["condition"] for r in runs):
        curves = [r["curve"] for r in runs if r["condition"] == condition]
        n = min(len(c) for c in curves)
        x = np.array([p[0] for p in curves[0][:n]])
        y = np.array([[p[1] for p in c[:n]] for c in curves])
        ax.plot(x, y.mean(0), label=f"{condition} ({len(curves)} seeds)")
        ax.fill_between(x, y.min(0), y.max(0), alpha=0.2)
    ax.axhline(random_success, color="grey", linestyle="--", label=f"uniform random policy ({random_success:.0%})")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("training success rate (last 100 episodes)")
    ax.set_title("PPO on MiniHack KeyRoom-S5: sparse vs subgoal shaping")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--envs", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=30, help="held-out evaluation episodes per run")
    args = parser.parse_args()

    import torch
    from tqdm import tqdm

    torch.set_num_threads(1)
    endpoint = bool(os.environ.get("EMBODIED_LLM_BASE_URL") and os.environ.get("EMBODIED_LLM_MODEL"))
    t_start = time.perf_counter()
    quality = judge_quality(endpoint)
    random_success = random_policy_success(200)
    conditions: dict[str, str | None] = {"sparse": None, "oracle_shaping": "subgoals:judge=oracle"}
    llm_note = None
    if endpoint:
        conditions["llm_shaping"] = f"subgoals:judge=llm,cache={OUT / 'calm_llm_judgments.jsonl'}"
    else:
        llm_note = (
            "skipped: no LLM endpoint configured (set EMBODIED_LLM_BASE_URL and EMBODIED_LLM_MODEL, and "
            "EMBODIED_LLM_KEY_ENV if the server needs a key)"
        )
        print(f"llm_shaping {llm_note}")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [(c, s) for c in conditions for s in args.seeds]
        for condition, seed in tqdm(jobs, desc="PPO runs"):
            runs.append(
                train_one(condition, conditions[condition], seed, args.steps, args.envs, Path(tmp), args.episodes)
            )
    summary = {}
    for condition in conditions:
        mine = [r for r in runs if r["condition"] == condition]
        summary[condition] = {
            k: {"mean": round(float(np.mean([r[k] for r in mine])), 3), "per_seed": [r[k] for r in mine]}
            for k in ("final_train_success", "heldout_success_deterministic", "heldout_success_stochastic")
        }
        # Area under the training success curve (mean success over all rollouts): sample efficiency.
        summary[condition]["auc_train_success"] = round(
            float(np.mean([np.nanmean([p[1] for p in r["curve"]]) for r in mine])), 3
        )
    result = {
        "task": TASK,
        "steps": args.steps,
        "seeds": args.seeds,
        "envs": args.envs,
        "heldout_episodes": args.episodes,
        "ppo": HYPER,
        "conditions": {k: v or "none" for k, v in conditions.items()},
        "llm": llm_note or "ran",
        "random_policy_heldout_success_200_episodes": random_success,
        "summary": summary,
        "judge_quality": quality,
        "runs": runs,
        "wall_s": round(time.perf_counter() - t_start, 1),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared), torch threads 1",
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "calm.json").write_text(json.dumps(result, indent=1))
    plot(runs, random_success, OUT / "calm.png")
    print(json.dumps({"summary": summary, "wall_s": result["wall_s"]}, indent=1))


if __name__ == "__main__":
    main()
