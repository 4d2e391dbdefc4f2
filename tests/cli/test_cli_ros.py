"""`embodied deploy / monitor / record` end to end through the loopback rosbridge, with a policy trained
here by `embodied train` (tiny scale), and their one-line errors for bad input."""

from __future__ import annotations

import json
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from typer.testing import CliRunner

from embodied.cli.main import app
from tests.deploy.conftest import REPO, no_leftover_threads, reach_data  # noqa: F401 (autouse fixture)
from tests.deploy.robot import CAMERA, GRIPPER, TWIST, FakeRobot
from tests.deploy.rosbridge_server import RosbridgeServer

runner = CliRunner()
EXPERT = REPO / "reward_models" / "metaworld-reach" / "expert.py"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PPO policy on metaworld-reach after 256 steps (one update): enough to have weights to deploy."""
    root = tmp_path_factory.mktemp("policies")
    args = ["train", "metaworld-reach", "--steps", "256", "--envs", "1", "--run", "tiny", "--root", str(root)]
    result = runner.invoke(app, [*args, "--checkpoint-every", "100000", "--no-progress"])
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def server() -> Iterator[RosbridgeServer]:
    srv = RosbridgeServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def robot(server: RosbridgeServer) -> Iterator[FakeRobot]:
    with FakeRobot(server) as bot:
        yield bot


def invoke(args: list[str]) -> object:
    return runner.invoke(app, args)


def client_ops(server: RosbridgeServer) -> set[str]:
    return set(server.op_names())


@pytest.mark.parametrize("command", ["deploy", "monitor", "record"])
def test_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "--rosbridge" in result.output and "--robot" in result.output


def test_deploy_runs_the_trained_policy_safely(
    server: RosbridgeServer, robot: FakeRobot, trained: Path, tmp_path: Path
) -> None:
    log = tmp_path / "steps.jsonl"
    args = ["deploy", "tiny", "--root", str(trained), "--rosbridge", server.url, "--robot", "metaworld-reach"]
    result = invoke([*args, "--max-seconds", "1.0", "--log", str(log)])
    assert result.exit_code == 0, result.output
    assert "deploy finished:" in result.output and "0 holds" in result.output
    twists = np.array([[m["linear"]["x"], m["linear"]["y"], m["linear"]["z"]] for m in server.messages(TWIST)])
    grips = np.array([m["data"] for m in server.messages(GRIPPER)])
    assert 15 <= len(twists) <= 24  # 20 Hz for 1 s, plus the hold at the end
    assert np.abs(twists).max() <= 0.1 + 1e-12 and np.all((grips >= 0) & (grips <= 0.08))
    steps_between = np.abs(np.diff(twists[:-1], axis=0))
    assert steps_between.max() <= 0.02 + 1e-9  # the rate limit
    assert twists[-1].tolist() == [0.0, 0.0, 0.0]  # hold when the run ends

    # the commands come from the trained policy on the observation assembled from the robot's topics
    from embodied.train.evaluate import load_policy

    model = load_policy(trained / "tiny")
    cur = [0.1, 0.6, 0.2, 0.5, 0.0, 0.7, 0.02, 1.0, 0.0, 0.0, 0.0] + [0.0] * 7
    expected, _ = model.predict(np.array(cur + cur + [0.1, 0.6, 0.055]), deterministic=True)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    actions = [r["action"] for r in rows if "step" in r]
    assert actions[-1] == pytest.approx(np.clip(expected, -1, 1).tolist(), abs=1e-6)


def test_deploy_dry_run_publishes_nothing(server: RosbridgeServer, robot: FakeRobot, trained: Path) -> None:
    args = ["deploy", "tiny", "--root", str(trained), "--rosbridge", server.url, "--robot", "metaworld-reach"]
    result = invoke([*args, "--dry-run", "--max-seconds", "0.5"])
    assert result.exit_code == 0, result.output
    assert "deploy (dry run) finished:" in result.output and "0 messages published" in result.output
    assert "dry-run: /servo/delta_twist_cmds" in result.output
    assert client_ops(server) == {"subscribe"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_deploy_bad_input_is_one_line_before_anything_is_published(
    server: RosbridgeServer, trained: Path, tmp_path: Path
) -> None:
    base = ["deploy", "tiny", "--root", str(trained), "--rosbridge", server.url]
    short = reach_data()
    short["observation"][-1]["indices"] = [0, 1]  # goal x, y only: 38 values
    bad_profile = tmp_path / "short.toml"
    bad_profile.write_text(tomli_w.dumps(short))
    result = invoke([*base, "--robot", str(bad_profile)])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {bad_profile}: observation: the profile assembles 38 values but run 'tiny' expects observations "
        "of shape (39,)"
    )
    result = invoke(["deploy", "nope", "--root", str(trained), "--rosbridge", server.url, "--robot", "metaworld-reach"])
    assert result.exit_code == 2 and result.output.startswith("error: no completed run 'nope'")
    assert server.connections == 0  # both refused before contacting the bridge

    url = f"ws://127.0.0.1:{free_port()}"
    result = invoke(["deploy", "tiny", "--root", str(trained), "--rosbridge", url, "--robot", "metaworld-reach",
                     "--connect-timeout", "0.3"])  # fmt: skip
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert result.output.startswith(f"error: cannot reach rosbridge at {url} within 0.3 s")

    needs_camera = tmp_path / "camera.toml"
    needs_camera.write_text(
        tomli_w.dumps(reach_data(topics={"corner": {"required": True}}, control={"startup_timeout_s": 1.0}))
    )
    with FakeRobot(server, encoding="yuv422"):
        result = invoke([*base, "--robot", str(needs_camera)])
    assert result.exit_code == 2
    last = result.output.strip().splitlines()[-1]
    assert last == (
        f"error: {CAMERA}: sensor_msgs/Image encoding 'yuv422' is not supported; use one of rgb8, bgr8, mono8, "
        "rgba8, bgra8 or sensor_msgs/CompressedImage (jpeg/png)"
    )
    assert not {"advertise", "publish"} & client_ops(server)


def test_monitor_publishes_the_expert_reward(server: RosbridgeServer, robot: FakeRobot, tmp_path: Path) -> None:
    log = tmp_path / "scores.jsonl"
    args = ["monitor", "--rosbridge", server.url, "--robot", "metaworld-reach", "--task", "metaworld-reach"]
    result = invoke([*args, "--reward", f"program:{EXPERT}", "--max-seconds", "0.6", "--log", str(log)])
    assert result.exit_code == 0, result.output
    rewards = [m["data"] for m in server.messages("/embodied/reward")]
    assert len(rewards) >= 8 and rewards == pytest.approx([-0.1] * len(rewards))
    assert "mean reward -0.1000" in result.output
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert rows[0]["components"] == pytest.approx({"reach": -0.1, "success_bonus": 0.0, "ctrl": 0.0})
    bad = invoke([*args, "--reward", "clip-ish:x", "--max-seconds", "0.1"])
    assert bad.exit_code == 2 and "unknown reward kind 'clip-ish'" in bad.output


def test_record_writes_a_dataset(server: RosbridgeServer, robot: FakeRobot, tmp_path: Path) -> None:
    out = tmp_path / "demos"
    timer = threading.Timer(0.4, lambda: server.publish("/embodied/annotation", {"data": "success"}))
    timer.start()
    args = ["record", "--rosbridge", server.url, "--robot", "metaworld-reach", "--out", str(out)]
    result = invoke([*args, "--frame-size", "16", "--no-keys", "--max-seconds", "0.8"])
    timer.join()
    assert result.exit_code == 0, result.output
    assert f"recorded 1 episode(s) to {out}" in result.output  # after 'success' it waits for 'start'
    from embodied.demos.dataset import DemoDataset

    ds = DemoDataset(out)
    assert ds.successes == [True] and ds.stage_names["dense"] == ["reach"] and ds.task == "metaworld-reach"
    ep = ds.load(0)
    assert ep.annotations["dense"][0].name == "reach" and ep.frames["corner"].shape[1:] == (16, 16, 3)
    again = invoke([*args, "--no-keys", "--max-seconds", "0.1"])
    assert again.exit_code == 2 and "folder exists and is not empty" in again.output


def test_run_policy_applies_saved_normalisation(trained: Path, tmp_path: Path) -> None:
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    from embodied.deploy.control import RunPolicy

    run = tmp_path / "normed"
    shutil.copytree(trained / "tiny", run)
    obs = np.linspace(-1, 1, 39)

    class Flat(gym.Env):
        observation_space = gym.spaces.Box(-np.inf, np.inf, (39,), np.float64)
        action_space = gym.spaces.Box(-1, 1, (4,), np.float32)

    norm = VecNormalize(DummyVecEnv([Flat]), norm_reward=False)
    norm.obs_rms.mean, norm.obs_rms.var = obs.copy(), np.full(39, 4.0)
    norm.save(run / "vecnormalize.pkl")
    policy = RunPolicy(run)
    expected, _ = policy.model.predict((obs + 2.0 - obs) / np.sqrt(4.0 + norm.epsilon), deterministic=True)
    assert policy.act(obs + 2.0).tolist() == pytest.approx(expected.tolist(), abs=1e-6)
    assert RunPolicy(trained / "tiny").normalizer is None
