"""Reward programs: fast-path call cost, validation time, and a search's wall-time split.

1. Per call: the same program called (a) as plain Python (compiled with real builtins and numpy,
   no guard) and (b) as a validated `RewardProgram` (restricted namespace + finiteness guard), on
   the same `View` objects. Median of `--repeats` timings of `--calls` calls each. Two programs: the
   shipped Meta-World reach expert (numpy) and a math-only one (where the guard's share is largest).
2. Validation per program: static checks only, and static + sandboxed dry run on 32 transitions.
3. A search (K x I on the scripted chain task, responses replayed so LLM time is only replay cost,
   real SB3 PPO training): wall time split into LLM, validation, training and re-evaluation.

Writes bench/results/reward_code.json.

    .venv/bin/python bench/bench_reward_code.py [--calls 20000] [--repeats 5] [--search-steps 256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embodied.llm.client import Completion, Message
from embodied.llm.search import SB3Trainer, SearchConfig, search
from embodied.rewards.code import load_program, task_samples
from embodied.tasks.views import View, make_getter

REPO = Path(__file__).resolve().parents[1]
OUT = Path(__file__).parent / "results"
MATH_ONLY = """
import math

def compute_reward(view, action):
    d = math.sqrt(sum((a - b) ** 2 for a, b in zip(view.hand_pos, view.goal_pos)))
    bonus = 1.0 if d < 0.05 else 0.0
    return -d + bonus, {"reach": -d, "bonus": bonus}
"""


def plain(source: str) -> Callable[[Any, Any], Any]:
    """The program as ordinary Python: real builtins and modules, no checks, no guard."""
    namespace: dict[str, Any] = {}
    exec(compile(source, "<plain>", "exec"), namespace)  # benchmark baseline: trusted source
    return namespace["compute_reward"]


def per_call(fn: Callable[[Any, Any], Any], views: Sequence[View], actions: Sequence[np.ndarray], calls: int,
             repeats: int) -> float:  # fmt: skip
    n = len(views)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(calls):
            fn(views[i % n], actions[i % n])
        times.append((time.perf_counter() - t0) / calls)
    return statistics.median(times)


def bench_calls(calls: int, repeats: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    getters = {
        "hand_pos": make_getter("obs[0:3]", "bench")[0],
        "goal_pos": make_getter("obs[36:39]", "bench")[0],
        "gripper": make_getter("obs[3]", "bench")[0],
    }
    views = [View(getters, rng.normal(size=39) * 0.1) for _ in range(256)]
    actions = [rng.uniform(-1, 1, size=4).astype(np.float32) for _ in range(256)]
    rows = []
    programs = {
        "metaworld-reach expert (numpy)": (REPO / "reward_models" / "metaworld-reach" / "expert.py").read_text(),
        "math-only reach": MATH_ONLY,
    }
    for name, source in programs.items():
        base = per_call(plain(source), views, actions, calls, repeats)
        fast = per_call(load_program(source, name=name), views, actions, calls, repeats)
        rows.append({"program": name, "plain_us": base * 1e6, "validated_us": fast * 1e6, "ratio": fast / base})
    return rows


def bench_validation(repeats: int) -> dict[str, Any]:
    source = (REPO / "reward_models" / "metaworld-reach" / "expert.py").read_text()
    samples = task_samples("metaworld-reach", n=32, seed=0)
    static, full = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        load_program(source)
        static.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        load_program(source, samples)
        full.append(time.perf_counter() - t0)
    return {
        "program": "metaworld-reach expert",
        "samples": len(samples),
        "static_ms": statistics.median(static) * 1e3,
        "static_plus_dry_run_ms": statistics.median(full) * 1e3,
    }


class _Replayed:
    """Answers every request with one of two recorded programs (LLM time ~ 0: what is left is ours)."""

    model = "replayed"
    TEXTS = (
        "```python\ndef compute_reward(view, action):\n    p = float(view.position) / 4.0\n"
        "    bonus = 1.0 if p >= 1.0 else 0.0\n    return p + bonus, {'progress': p, 'bonus': bonus}\n```",
        "```python\ndef compute_reward(view, action):\n    p = float(view.position)\n    return -p, {'left': -p}\n```",
    )

    def complete(self, messages: Sequence[Message], *, seed: int, temperature: float = 0.7,
                 max_tokens: int = 2048) -> Completion:  # fmt: skip
        return Completion(self.TEXTS[seed % 2], "stop", self.model)


def bench_search(samples: int, iterations: int, steps: int) -> dict[str, Any]:
    chain = REPO / "tests" / "data" / "chain.toml"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SearchConfig(samples=samples, iterations=iterations, steps=steps, validate_timeout_s=10)
        trainer = SB3Trainer(task=str(chain), root=str(Path(tmp) / "runs"), eval_episodes=5)
        t0 = time.perf_counter()
        result = search(str(chain), _Replayed(), cfg, trainer=trainer, root=Path(tmp), search_id="bench")
        wall = time.perf_counter() - t0
    return {
        "task": "chain (scripted)",
        "samples": samples,
        "iterations": iterations,
        "steps": steps,
        "wall_s": wall,
        **{f"{k}_s": v for k, v in result.timings.items()},
        "best_fitness": result.best_fitness,
        "reeval": result.reeval,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--search-samples", type=int, default=2)
    parser.add_argument("--search-iterations", type=int, default=2)
    parser.add_argument("--search-steps", type=int, default=256)
    args = parser.parse_args()
    result = {
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
        },
        "calls": bench_calls(args.calls, args.repeats),
        "validation": bench_validation(args.repeats),
        "search": bench_search(args.search_samples, args.search_iterations, args.search_steps),
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "reward_code.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
