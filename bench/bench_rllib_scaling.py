"""RLlib scaling and reward-service throughput (issue 7), on whatever machine runs it.

1. Env steps/s vs number of EnvRunners (default 1, 2): Meta-World reach, 4 envs per runner, the task's
   expert reward program as reward AND shaping potential, computed inside each EnvRunner. Sampling is
   timed on all runners at once (`EnvRunner.sample`, the policy's forward pass included); scaling
   efficiency = rate(k) / (k × rate(1)). One full PPO iteration (sampling + learning) is timed too, and
   the same vector env stepped in-process (no Ray) gives the per-core ceiling.
2. Reward-service throughput (frames/s) under 1, 2, 4 concurrent clients vs in-runner scoring: each
   client is a Ray actor that sends batches of 224×224 RGB frames (8 envs × 1 camera) to be scored by a
   small conv net (a stand-in for CLIP: no weights can be downloaded here); "in-runner" gives every
   client its own copy of the model instead. The bare model on the same batch is the ceiling.

Repeats are interleaved and medians reported: this machine is shared and noisy (the load average at
the start is recorded). Usage: python bench/bench_rllib_scaling.py [--quick]; writes
bench/results/rllib.json and bench/results/rllib.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import embodied  # noqa: E402,F401  (MUJOCO_GL=egl before MuJoCo)
from embodied.rewards.base import Requirements, RewardModel, RewardOutput, TransitionBatch  # noqa: E402

OUT = ROOT / "bench" / "results" / "rllib.json"


# --------------------------------------------------------------------------------------------------
# 1. Env steps/s vs EnvRunners.


def timed_sample(runner: Any, steps: int) -> tuple[int, float, float]:
    """(env steps, CPU seconds of this runner process, wall seconds) of one `sample()` call."""
    c0, t0 = time.process_time(), time.perf_counter()
    n = sum(len(e) for e in runner.sample(num_timesteps=steps))
    return n, time.process_time() - c0, time.perf_counter() - t0


def sampling_rates(task: str, runners: int, envs: int, steps: int, repeats: int) -> dict[str, Any]:
    from embodied.cli.main import build_config
    from embodied.train.reward_service import RewardSetup, plan_placement
    from embodied.train.rllib import algo_config

    expert = f"program:{ROOT / 'reward_models' / task / 'expert.py'}"
    cfg = build_config(
        task, expert, expert, 1.0, "ppo", 4 * 256 * runners * envs, 0, envs, None, 10**9, "bench",
        backend="rllib", env_runners=runners,
    )  # fmt: skip
    setup = RewardSetup.from_config(cfg)
    algo = algo_config(cfg, setup, plan_placement("in-runner", setup, 0, runners), None).build_algo()
    group = algo.env_runner_group
    algo.train()  # warm-up: env creation, first forward passes, first update
    t0 = time.perf_counter()
    result = algo.train()  # one PPO iteration: 256 steps per env sampled, then 10 epochs of updates
    train_dt = time.perf_counter() - t0
    trained = int(result["env_runners"]["num_env_steps_sampled"])
    rates, cpu_rates = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        parts = group.foreach_env_runner(lambda r: timed_sample(r, steps), local_env_runner=False)
        wall = time.perf_counter() - t0
        rates.append(sum(n for n, _, _ in parts) / wall)
        cpu_rates.append(statistics.mean(n / c for n, c, _ in parts))
    algo.stop()
    return {
        "runners": runners,
        "envs_per_runner": envs,
        "steps_per_s": statistics.median(rates),
        "steps_per_s_all": rates,
        "steps_per_cpu_s_per_runner": statistics.median(cpu_rates),
        "ppo_iteration_steps": trained,
        "ppo_iteration_steps_per_s": trained / train_dt,
    }


def in_process_rate(task: str, envs: int, steps: int) -> float:
    """The same vector env + reward path stepped in this process with random actions (no Ray, no policy)."""
    from embodied.cli.main import build_config
    from embodied.train.reward_service import RewardSetup
    from embodied.train.rllib import build_vector_env

    expert = f"program:{ROOT / 'reward_models' / task / 'expert.py'}"
    cfg = build_config(task, expert, expert, 1.0, "ppo", 1000, 0, envs, None, 1000, "b", backend="rllib")
    env = build_vector_env(RewardSetup.from_config(cfg), envs, 0)
    env.reset(seed=0)
    actions = np.random.default_rng(0).uniform(-1, 1, size=(steps // envs, envs, 4)).astype(np.float32)
    t0 = time.perf_counter()
    for a in actions:
        env.step(a)
    dt = time.perf_counter() - t0
    env.close()
    return actions.shape[0] * envs / dt


# --------------------------------------------------------------------------------------------------
# 2. Reward-service throughput.


class ConvScorer(RewardModel):
    """A small conv net over one camera's frames (≈ 30 MFLOPs/frame): a stand-in for a CLIP potential."""

    name = "conv-scorer"
    state_only = True
    requires = Requirements(("corner",))

    def __init__(self) -> None:
        import torch

        torch.manual_seed(0)
        self.torch = torch
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 8, stride=4),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 4, stride=2),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(32, 1),
        ).eval()
        self.device = "cpu"

    def to(self, device: str) -> ConvScorer:
        self.net, self.device = self.net.to(device), device
        return self

    def potential(self, obs: Any, frames: dict[str, np.ndarray] | None = None) -> np.ndarray:
        torch = self.torch
        x = torch.as_tensor(frames["corner"], device=self.device).permute(0, 3, 1, 2).float().div_(255.0)
        with torch.inference_mode():
            return self.net(x).squeeze(1).double().cpu().numpy()

    def compute_reward(self, batch: TransitionBatch) -> RewardOutput:
        return RewardOutput(self.potential(batch.next_obs, batch.frames))


def scorer_factory() -> tuple[None, ConvScorer]:
    return None, ConvScorer()


def make_frames(n: int, seed: int) -> dict[str, np.ndarray]:
    return {"corner": np.random.default_rng(seed).integers(0, 256, size=(n, 224, 224, 3), dtype=np.uint8)}


class Client:
    """One EnvRunner's worth of reward requests: `requests` batches of `batch` frames."""

    def __init__(self, seed: int, batch: int, service: str | None) -> None:
        import torch

        torch.set_num_threads(1)  # an EnvRunner holds one CPU
        self.frames, self.obs = make_frames(batch, seed), np.zeros((batch, 39))
        if service is None:
            self.model = ConvScorer()
        else:
            from embodied.train.reward_service import ServiceClient

            self.client = ServiceClient(service)

    def run(self, requests: int, start_at: float) -> tuple[float, float]:
        while time.time() < start_at:  # all clients start together
            time.sleep(0.001)
        t0 = time.time()
        for _ in range(requests):
            if hasattr(self, "model"):
                self.model.potential(self.obs, self.frames)
            else:
                self.client.call("phi", self.obs, self.frames)
        return t0, time.time()


def service_rates(clients: int, batch: int, requests: int, mode: str) -> dict[str, Any]:
    import ray

    from embodied.train.reward_service import start_service

    handle = None
    name = None
    if mode == "actor":
        name = f"bench-{clients}-{time.time_ns()}"
        handle = start_service(scorer_factory, name, expected_clients=clients, max_wait_s=0.005)
    actors = [ray.remote(num_cpus=0)(Client).remote(k, batch, name) for k in range(clients)]
    ray.get([a.run.remote(1, 0.0) for a in actors])  # warm-up
    start_at = time.time() + 1.0
    spans = ray.get([a.run.remote(requests, start_at) for a in actors])
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    row: dict[str, Any] = {
        "mode": mode,
        "clients": clients,
        "batch": batch,
        "frames_per_s": clients * requests * batch / wall,
    }
    if handle is not None:
        stats = handle.stats()
        row.update(
            mean_requests_per_flush=stats["mean_requests_per_flush"],
            mean_frames_per_flush=stats["mean_rows_per_flush"],
            service_busy_fraction=stats["busy_s"] / wall,
        )
        handle.stop()
    for a in actors:
        ray.kill(a)
    return row


def bare_model_rate(batch: int, repeats: int = 20) -> float:
    import torch

    torch.set_num_threads(1)
    model, frames = ConvScorer(), make_frames(batch, 0)
    model.potential(None, frames)
    t0 = time.perf_counter()
    for _ in range(repeats):
        model.potential(None, frames)
    return repeats * batch / (time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------------


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    rows = result["sampling"]
    ks = [r["runners"] for r in rows]
    a.plot(ks, [r["steps_per_s"] for r in rows], "o-", label="measured")
    a.plot(ks, [rows[0]["steps_per_s"] * k for k in ks], "--", color="gray", label="linear")
    a.set(
        xlabel="EnvRunners",
        ylabel="env steps/s",
        title=f"{result['task']}: sampling ({rows[0]['envs_per_runner']} envs/runner)",
    )
    a.set_xticks(ks)
    a.set_ylim(bottom=0)
    a.legend()
    for mode in ("actor", "in-runner"):
        pts = [r for r in result["service"] if r["mode"] == mode]
        b.plot([r["clients"] for r in pts], [r["frames_per_s"] for r in pts], "o-", label=mode)
    b.set(xlabel="concurrent clients (EnvRunners)", ylabel="frames/s", title="reward scoring (conv net, CPU)")
    b.set_xticks(sorted({r["clients"] for r in result["service"]}))
    b.set_ylim(bottom=0)
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="metaworld-reach")
    parser.add_argument("--runners", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--envs-per-runner", type=int, default=4)
    parser.add_argument("--steps-per-runner", type=int, default=2000)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--batch", type=int, default=8, help="frames per request (envs per runner × cameras)")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--address", default=None, help="Ray cluster to join (default: a local one)")
    parser.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.quick:
        args.steps_per_runner, args.requests, args.repeats = 400, 10, 1

    import ray

    from embodied.train.rllib import connect

    load = os.getloadavg()
    session = connect(args.address)
    print(session.describe(), flush=True)
    logging.getLogger("ray").setLevel(logging.ERROR)
    result: dict[str, Any] = {
        "task": args.task,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg_1m_at_start": load[0]},
        "cluster": {"cpus": session.cpus, "gpus": session.gpus, "nodes": session.nodes},
        "command": "python bench/bench_rllib_scaling.py" + (" --quick" if args.quick else ""),
    }
    try:
        result["in_process_steps_per_s"] = in_process_rate(args.task, args.envs_per_runner, args.steps_per_runner)
        print(f"in-process vector env: {result['in_process_steps_per_s']:.0f} steps/s", flush=True)
        rows = []
        for k in args.runners:
            row = sampling_rates(args.task, k, args.envs_per_runner, args.steps_per_runner, args.repeats)
            rows.append(row)
            print(f"{k} runner(s): {row['steps_per_s']:.0f} steps/s sampling "
                  f"({row['steps_per_cpu_s_per_runner']:.0f} per CPU-s per runner), "
                  f"{row['ppo_iteration_steps_per_s']:.0f} steps/s PPO iteration", flush=True)  # fmt: skip
        base = rows[0]["steps_per_s"] / rows[0]["runners"]
        cpu_base = rows[0]["steps_per_cpu_s_per_runner"]
        for row in rows:
            row["scaling_efficiency"] = row["steps_per_s"] / (row["runners"] * base)
            # Load-independent: env steps per CPU-second inside each runner, relative to one runner.
            row["cpu_efficiency"] = row["steps_per_cpu_s_per_runner"] / cpu_base
        result["sampling"] = rows
        result["bare_model_frames_per_s"] = bare_model_rate(args.batch)
        print(f"bare conv scorer: {result['bare_model_frames_per_s']:.0f} frames/s (batch {args.batch})", flush=True)
        service = []
        for c in args.clients:
            for mode in ("actor", "in-runner"):
                row = service_rates(c, args.batch, args.requests, mode)
                service.append(row)
                print(f"{mode:9s} {c} client(s): {row['frames_per_s']:.0f} frames/s", flush=True)
        result["service"] = service
    finally:
        session.close()
        if ray.is_initialized():
            ray.shutdown()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    plot(result, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
