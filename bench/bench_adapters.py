"""Reward-path overhead benchmarks (issue 2).

1. Env steps/s of a gymnasium vector env of 8 (HalfCheetah, Meta-World reach): raw vs wrapped with
   the task's expert reward program as reward AND as shaping potential. Target overhead <= 5 %.
2. SB3 PPO env steps/s: plain SB3 (DummyVecEnv + Monitor, env reward) vs our `SB3RewardWrapper`
   (env reward, and expert program + shaping). Target ratio >= 0.95.

Arms are interleaved (A B A B ...) and the median of the repeats is reported, because this machine
is shared and noisy. Usage: python bench/bench_adapters.py [--quick]; writes bench/results/adapters.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

import embodied
from embodied.rewards.adapters import VectorRewardWrapper
from embodied.rewards.program import ProgramReward
from embodied.rewards.shaping import Shaper
from embodied.tasks import load_task

OUT = Path(__file__).parent / "results" / "adapters.json"


def vector_steps_per_s(task: str, wrapped: bool, steps: int, n: int = 8) -> float:
    spec = load_task(task)
    vec = embodied.make_vec(spec, n)
    if wrapped:
        program = Path("reward_models") / spec.name / "expert.py"
        model = ProgramReward(program, spec, vec.single_observation_space, vec.single_action_space)
        vec = VectorRewardWrapper(vec, model, Shaper(model, spec.gamma))
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(steps, n, *vec.single_action_space.shape)).astype(np.float32)
    vec.reset(seed=0)
    t0 = time.perf_counter()
    for t in range(steps):
        vec.step(actions[t])
    dt = time.perf_counter() - t0
    vec.close()
    return steps * n / dt


def sb3_steps_per_s(task: str, arm: str, steps: int) -> float:
    from stable_baselines3 import PPO
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from embodied.train.config import TrainConfig
    from embodied.train.sb3 import DEFAULTS, build_vec_env

    spec = load_task(task)
    if arm == "plain":
        venv = DummyVecEnv([lambda: Monitor(embodied.make(spec)) for _ in range(4)])
        venv.seed(0)
    else:
        program = f"program:reward_models/{spec.name}/expert.py"
        reward, shaping = ("env", None) if arm == "adapter-env" else (program, program)
        cfg = TrainConfig(run="bench", task=spec, reward=reward, shaping=shaping, steps=steps, envs=4, gamma=spec.gamma)
        venv = build_vec_env(cfg)
    model = PPO("MlpPolicy", venv, gamma=spec.gamma, seed=0, device="cpu", verbose=0, **DEFAULTS["ppo"])
    t0 = time.perf_counter()
    model.learn(total_timesteps=steps)
    dt = time.perf_counter() - t0
    venv.close()
    return model.num_timesteps / dt


def main() -> None:
    import torch

    torch.set_num_threads(1)  # as `embodied train` does; 2 threads on 2 busy cores slow PPO several-fold
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (smoke run)")
    args = parser.parse_args()
    repeats = 2 if args.quick else 5
    vec_steps = 100 if args.quick else 600
    sb3_steps = 2048 if args.quick else 8192
    results: dict = {"machine": platform.processor() or platform.machine(), "repeats": repeats, "vector": {}, "sb3": {}}
    for task in ("halfcheetah-run", "metaworld-reach"):
        raw, wrapped = [], []
        for _ in range(repeats):
            raw.append(vector_steps_per_s(task, False, vec_steps))
            wrapped.append(vector_steps_per_s(task, True, vec_steps))
        r, w = float(np.median(raw)), float(np.median(wrapped))
        results["vector"][task] = {
            "raw_steps_per_s": round(r, 1),
            "wrapped_steps_per_s": round(w, 1),
            "overhead": round(1 - w / r, 4),
            "target_overhead": 0.05,
            "num_envs": 8,
        }
        print(task, results["vector"][task])
    task = "metaworld-reach"
    arms: dict[str, list[float]] = {"plain": [], "adapter-env": [], "adapter-program-shaping": []}
    for _ in range(max(repeats - 2, 2)):
        for arm in arms:
            arms[arm].append(sb3_steps_per_s(task, arm, sb3_steps))
    med = {arm: float(np.median(v)) for arm, v in arms.items()}
    results["sb3"] = {
        "task": task,
        "steps": sb3_steps,
        "steps_per_s": {k: round(v, 1) for k, v in med.items()},
        "ratio_adapter_env": round(med["adapter-env"] / med["plain"], 4),
        "ratio_adapter_program_shaping": round(med["adapter-program-shaping"] / med["plain"], 4),
        "target_ratio": 0.95,
    }
    print(results["sb3"])
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=1))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
