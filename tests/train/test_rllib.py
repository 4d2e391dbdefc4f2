"""RLlib backend on a local two-node Ray cluster (1 CPU per node): PPO through the CLI with eval and video,
identical rewards to the SB3 adapter, APPO resumed after a driver crash, an EnvRunner killed mid-run
(reward path served by the shared actor), SAC, bad input."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from embodied.cli.main import app, build_config
from embodied.train import rllib
from embodied.train.config import load_config

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]

CHAIN_PROGRAM = (
    "def compute_reward(view, action):\n"
    "    d = abs(4.0 - float(view.position))\n"
    "    return -0.1 * d, {'distance': -d}\n"
)


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """Two Ray nodes on this machine, 1 CPU each; the test process is connected as the driver."""
    import ray
    from ray.cluster_utils import Cluster

    os.environ.setdefault("MUJOCO_GL", "egl")
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    ray.init(address=c.address, logging_level=logging.ERROR, log_to_driver=False)
    try:
        yield c.address
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture
def reach_short(tmp_path: Path) -> Path:
    """Meta-World reach with 25-step episodes (episodes end inside a tiny training budget)."""
    text = (REPO / "envs" / "metaworld-reach.toml").read_text()
    text = text.replace('name = "metaworld-reach"', 'name = "reach-short"')
    text = re.sub(r"max_episode_steps = \d+", "max_episode_steps = 25", text)
    path = tmp_path / "reach-short.toml"
    path.write_text(text)
    return path


@pytest.fixture
def chain_program(tmp_path: Path) -> Path:
    path = tmp_path / "chain_prog.py"
    path.write_text(CHAIN_PROGRAM)
    return path


def test_cli_train_eval_video_on_two_nodes(
    cluster: str, tmp_path: Path, reach_short: Path, reach_program: Path
) -> None:
    root = str(tmp_path / "policies")
    spec = f"program:{reach_program}"
    code, out = invoke(
        "train", str(reach_short), "--reward", spec, "--shaping", spec, "--steps", "256", "--envs", "2",
        "--checkpoint-every", "128", "--run", "r1", "--root", root, "--no-progress",
        "--backend", "rllib", "--env-runners", "2", "--address", cluster,
    )  # fmt: skip
    assert code == 0, out
    assert "joined the Ray cluster" in out and "2 node(s), 2 CPUs" in out
    assert "reward: in-runner in 2 EnvRunner(s), scoring on cpu" in out
    run = tmp_path / "policies" / "r1"
    layout = {"config.toml", "model.zip", "metrics.json", "checkpoints", "tb", "programs"}
    assert {p.name for p in run.iterdir()} >= layout
    assert not list((tmp_path / "policies").glob(".*partial"))
    cfg = load_config(run / "config.toml")
    assert (cfg.backend, cfg.algo, cfg.env_runners, cfg.reward) == ("rllib", "ppo", 2, "program:programs/reach.py")
    metrics = json.loads((run / "metrics.json").read_text())
    # 2 runners × 2 envs; a quarter of the budget per iteration: 4 iterations of 64 steps.
    assert metrics["timesteps"] == 256 and len(metrics["history"]) == 4
    assert [row["timesteps"] for row in metrics["history"]] == [64, 128, 192, 256]
    final = metrics["final"]
    assert "component/distance" in final and final["ep_length_mean"] == 25.0
    assert abs(final["shaping_residual_max_abs"]) < 1e-9
    assert 0.0 <= final["ep_success_mean"] <= 1.0 and final["ep_env_return_mean"] > 0
    assert metrics["reward_service"] == {"mode": "in-runner", "device": "cpu"}
    assert (run / "checkpoints" / "step_128").is_dir() and (run / "checkpoints" / "step_256").is_dir()
    assert json.loads((run / "checkpoints" / "latest.json").read_text()) == {"steps": 256, "model": "step_256"}
    assert list((run / "tb").glob("events.out.tfevents.*"))

    code, out = invoke("eval", "r1", "--episodes", "2", "--json", "--root", root)
    assert code == 0, out
    result = json.loads(out[out.index("{") :])
    assert result["episodes"] == 2 and result["length"] == 25.0 and result["env_return"] > 0

    video = tmp_path / "v.mp4"
    code, out = invoke("video", "r1", "--out", str(video), "--size", "64", "--root", root)
    assert code == 0, out
    assert video.stat().st_size > 5_000


def test_rllib_env_gives_the_sb3_adapters_rewards(reach_short: Path, reach_program: Path) -> None:
    """Same seeds and actions: the EnvRunner's vector env (next-step autoreset) and SB3's VecEnv (reset
    inside step) produce the same shaped rewards, components and episode returns, step for step."""
    from embodied.train import sb3
    from embodied.train.reward_service import RewardSetup

    spec = f"program:{reach_program}"
    cfg = build_config(str(reach_short), spec, spec, 2.0, "ppo", 100, 7, 2, None, 100, "eq", backend="rllib")
    venv = sb3.build_vec_env(cfg)
    env = rllib.build_vector_env(RewardSetup.from_config(cfg), num_envs=2, seed=cfg.seed)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, size=(60, 2, 4)).astype(np.float32)
    sb3_obs = venv.reset()
    obs, _ = env.reset(seed=cfg.seed + 1)  # what RLlib passes to EnvRunner 1
    np.testing.assert_array_equal(obs, sb3_obs)
    sb3_rewards, rl_rewards, sb3_eps = [], [], []
    for t in range(60):
        venv.step_async(actions[t])
        _, r_sb3, dones, infos = venv.step_wait()
        sb3_rewards.append(r_sb3)
        sb3_eps += [info["reward_episode"] for info in infos if "reward_episode" in info]
        _, r, term, trunc, rl_infos = env.step(actions[t])
        rl_rewards.append(r)
        assert list(term | trunc) == list(dones)
        if dones.any():  # RLlib's next step is the autoreset step: reward 0, not scored, not shaped
            _, r_reset, *_ = env.step(actions[t])
            assert list(r_reset) == [0.0, 0.0]
            assert "reward_episode" in rl_infos and list(rl_infos["_reward_episode"]) == [True, True]
    np.testing.assert_allclose(np.array(rl_rewards), np.array(sb3_rewards), rtol=0, atol=1e-6)  # SB3 casts to f32
    rl_eps, comps = rllib.find_wrapper(env, rllib.RLlibInfos).drain()
    assert len(rl_eps) == len(sb3_eps) == 4  # 60 steps, 25-step episodes, 2 envs
    for mine, theirs in zip(rl_eps, sb3_eps, strict=True):
        for key in ("return", "shaping_return", "shaping_residual", "length"):
            assert mine[key] == pytest.approx(theirs[key], abs=1e-12), key
        assert mine["env_return"] == pytest.approx(theirs["env_return"], rel=1e-6)  # SB3 keeps env rewards in f32
    assert len(comps["distance"]) == 120
    venv.close()
    env.close()


def test_resume_after_driver_crash(
    cluster: str, tmp_path: Path, chain_task: Path, chain_program: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "policies"
    original = rllib.save_checkpoint
    calls = {"n": 0}

    def crash_after_first(algo, ckpt_dir, steps):
        original(algo, ckpt_dir, steps)
        calls["n"] += 1
        raise KeyboardInterrupt  # the driver is killed right after its first checkpoint

    monkeypatch.setattr(rllib, "save_checkpoint", crash_after_first)
    args = [
        "train", str(chain_task), "--reward", f"program:{chain_program}", "--steps", "256", "--envs", "2",
        "--env-runners", "1", "--checkpoint-every", "64", "--run", "k", "--root", str(root), "--no-progress",
        "--backend", "rllib", "--algo", "appo", "--address", cluster,
    ]  # fmt: skip
    code, out = invoke(*args)
    assert code == 130 and calls["n"] == 1, out
    partial = root / ".k.partial"
    assert partial.is_dir() and not (root / "k").exists()
    first = json.loads((partial / "checkpoints" / "latest.json").read_text())["steps"]
    assert 64 <= first < 256  # APPO samples asynchronously: at least a quarter of the budget per iteration

    code, out = invoke("eval", "k", "--root", str(root))
    assert code == 2 and "--resume k" in out

    monkeypatch.setattr(rllib, "save_checkpoint", original)
    code, out = invoke("train", "--resume", "k", "--root", str(root), "--no-progress", "--address", cluster)
    assert code == 0, out
    assert f"resumed 'k' from step_{first} ({first} steps)" in out
    metrics = json.loads((root / "k" / "metrics.json").read_text())
    assert metrics["timesteps"] >= 256 and metrics["algo"] == "appo" and not partial.exists()
    steps = [row["timesteps"] for row in metrics["history"]]
    assert steps[0] == first and steps == sorted(steps) and len(steps) >= 2  # history kept across the crash
    code, out = invoke("eval", "k", "--episodes", "1", "--json", "--root", str(root))
    assert code == 0, out
    assert json.loads(out[out.index("{") :])["episodes"] == 1


def test_killed_env_runner_is_restarted_and_training_goes_on(
    cluster: str, tmp_path: Path, chain_task: Path, chain_program: Path
) -> None:
    """SIGKILL one EnvRunner after the first iteration: Ray restarts its process, RLlib re-syncs it and the
    run completes. The reward path is served by the shared actor, which batches both runners' requests."""
    spec = f"program:{chain_program}"
    cfg = build_config(
        str(chain_task), spec, spec, 1.0, "ppo", 320, 0, 2, None, 1000, "kill",
        backend="rllib", env_runners=2, reward_service="actor",
    )  # fmt: skip
    cfg = cfg.model_copy(update={"hyperparams": {"train_batch_size_per_learner": 64}})  # 5 iterations
    killed: list[int] = []
    alive: list[int] = []

    def pids(algo, **kwargs) -> list[int]:
        return algo.env_runner_group.foreach_env_runner(lambda r: os.getpid(), local_env_runner=False, **kwargs)

    def kill_runner(algo, result, steps):
        if result["training_iteration"] == 1:
            killed.append(pids(algo)[0])
            os.kill(killed[0], signal.SIGKILL)
        elif result["training_iteration"] == 2:  # wait for Ray to bring the process back (imports take a while)
            deadline = time.monotonic() + 120
            while len(alive) < 2 and time.monotonic() < deadline:
                alive[:] = pids(algo, healthy_only=False, timeout_seconds=5)
                time.sleep(0.2)

    lines: list[str] = []
    out = rllib.train(cfg, tmp_path, progress=False, address=cluster, on_iteration=kill_runner, log=lines.append)
    assert len(alive) == 2 and killed[0] not in alive
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["env_runner_restarts"] == 1 and metrics["timesteps"] >= 320
    service = metrics["reward_service"]
    assert service["mode"] == "actor" and service["device"] == "cpu" and service["restarts"] == 0
    assert service["stats"]["max_requests_per_flush"] >= 2  # requests from both runners, merged
    assert service["stats"]["mean_requests_per_flush"] > 1.0
    assert any("shared actor 'embodied-reward-kill-" in line and "scoring on cpu" in line for line in lines)


def test_sac_trains_and_evaluates(cluster: str, tmp_path: Path, chain_task: Path) -> None:
    root = str(tmp_path)
    code, out = invoke(
        "train", str(chain_task), "--algo", "sac", "--steps", "32", "--envs", "1", "--run", "s", "--root", root,
        "--no-progress", "--backend", "rllib", "--env-runners", "1", "--address", cluster,
    )  # fmt: skip
    assert code == 0, out
    metrics = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert 32 <= metrics["timesteps"] < 48 and metrics["algo"] == "sac"  # SAC may overshoot by a few steps
    code, out = invoke("eval", "s", "--episodes", "1", "--json", "--root", root)
    assert code == 0, out
    assert json.loads(out[out.index("{") :])["length"] > 0


def test_bad_input_is_one_line(cluster: str, tmp_path: Path, chain_task: Path) -> None:
    root = str(tmp_path / "policies")
    base = ["train", str(chain_task), "--root", root, "--no-progress", "--run", "b"]
    code, out = invoke(*base, "--backend", "rllib", "--address", "127.0.0.1:1")
    assert code == 2 and "cannot reach a Ray cluster at '127.0.0.1:1'" in out and out.count("\n") == 1
    code, out = invoke(*base, "--backend", "rllib", "--env-runners", "3", "--address", cluster)
    assert code == 2 and "--env-runners 3 need 3 CPUs but the Ray cluster has 2" in out, out
    code, out = invoke(*base, "--backend", "rllib", "--algo", "dqn")
    assert code == 2 and "--algo" in out and "'appo'" in out
    code, out = invoke(*base, "--algo", "appo")
    assert code == 2 and "algo 'appo' needs --backend rllib" in out
    code, out = invoke(*base, "--env-runners", "4")
    assert code == 2 and "--env-runners: only for --backend rllib" in out
    code, out = invoke(*base, "--backend", "spark")
    assert code == 2 and "unknown backend 'spark'" in out
    code, out = invoke(*base, "--backend", "rllib", "--reward-service", "gpu")
    assert code == 2 and "--reward-service" in out
    code, out = invoke(*base, "--backend", "rllib", "--reward", "magic:1", "--address", cluster)
    assert code == 2 and "unknown reward kind 'magic'" in out and "ray:" not in out  # checked before Ray
    assert not (tmp_path / "policies").exists() or not list((tmp_path / "policies").iterdir())
