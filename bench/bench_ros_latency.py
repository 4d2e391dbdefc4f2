"""Observation-to-command latency of `embodied deploy` at 20 Hz: MLP policy on CPU, one 224x224 camera,
through the loopback rosbridge v2 server (JSON over WebSocket on 127.0.0.1).

A scripted robot (its own process, with the loopback rosbridge server, as the robot computer would be)
publishes the `robots/metaworld-reach.toml` topics at 20 Hz, its 224x224 rgb8 camera (base64, ~200 KB of
JSON per frame) made required and the sync topic, so every control step answers a camera frame. The
controller runs an SB3 PPO MLP policy ([64, 64], Meta-World's 39-D obs, 4-D action; fresh weights unless
--run names a trained run: the compute is the same) and publishes Twist + Float64.

Two latencies per step:
  client      camera message received by the bridge -> command handed to the socket (what `deploy` logs);
  end_to_end  camera message stamped by the robot -> command received by the rosbridge server
              (adds JSON encoding on the robot side and both WebSocket hops).
Writes bench/results/ros_latency.json and ros_latency.png (latency histograms). Target: p99 < 50 ms.

    .venv/bin/python bench/bench_ros_latency.py [--seconds 30] [--rate 20] [--size 224] [--run RUN --root policies]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from embodied.deploy.bridge import Bridge, Inputs  # noqa: E402
from embodied.deploy.control import Controller  # noqa: E402
from embodied.deploy.profile import RobotProfile  # noqa: E402
from tests.deploy.conftest import merge  # noqa: E402
from tests.deploy.robot import TWIST, FakeRobot  # noqa: E402
from tests.deploy.rosbridge_server import RosbridgeServer  # noqa: E402

OUT = REPO / "bench" / "results"


class MlpPolicy:
    """SB3 PPO's default MLP policy on Meta-World's spaces (or a trained run's), deterministic, CPU."""

    def __init__(self, run: str | None, root: Path) -> None:
        if run:
            from embodied.deploy.control import RunPolicy

            inner = RunPolicy(run, root)
            self.model, self.name = inner.model, f"run {run}"
        else:
            import gymnasium as gym
            from stable_baselines3 import PPO

            class Spaces(gym.Env):
                observation_space = gym.spaces.Box(-np.inf, np.inf, (39,), np.float64)
                action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)

            self.model = PPO("MlpPolicy", Spaces(), device="cpu", seed=0)
            self.name = "SB3 PPO MlpPolicy [64, 64], fresh weights"
        self.observation_space, self.action_space = self.model.observation_space, self.model.action_space

    def act(self, obs: np.ndarray) -> np.ndarray:
        action, _ = self.model.predict(obs, deterministic=True)
        return np.asarray(action, np.float64)


def stats(ms: np.ndarray) -> dict[str, float]:
    return {
        "p50": round(float(np.percentile(ms, 50)), 3),
        "p90": round(float(np.percentile(ms, 90)), 3),
        "p99": round(float(np.percentile(ms, 99)), 3),
        "max": round(float(ms.max()), 3),
        "mean": round(float(ms.mean()), 3),
    }


def serve(args: argparse.Namespace) -> None:
    """Robot side (a separate process, as on a real robot): loopback rosbridge + scripted robot at `rate`.
    Prints the port, runs until stdin closes, then writes command arrival times to `args.serve`."""
    with RosbridgeServer() as server, FakeRobot(server, rate_hz=args.rate, image_size=(args.size, args.size)) as robot:
        print(server.port, flush=True)
        sys.stdin.read()  # the client closes it when done
        server.sync()
        out = {
            "arrivals": [t for t, _ in server.timed_messages(TWIST)],
            "frames": robot.sent,
            "image_json_kb": round(len(json.dumps(robot.messages()["/camera/color/image_raw"])) / 1024, 1),
        }
    Path(args.serve).write_text(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=20.0, help="control and camera rate, Hz")
    parser.add_argument("--size", type=int, default=224, help="camera height and width, pixels")
    parser.add_argument("--run", default=None, help="a trained run to deploy instead of a fresh MLP")
    parser.add_argument("--root", type=Path, default=Path("policies"))
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)  # internal: the robot-side process
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return

    import subprocess
    import tempfile
    import tomllib

    data = tomllib.loads((REPO / "robots" / "metaworld-reach.toml").read_text())
    sync_camera = {"control": {"rate_hz": args.rate, "sync_topic": "corner"}, "topics": {"corner": {"required": True}}}
    data = merge(data, sync_camera)
    profile = RobotProfile.model_validate(data)
    policy = MlpPolicy(args.run, args.root)
    side = Path(tempfile.mkdtemp()) / "robot.json"
    cmd = [sys.executable, __file__, "--serve", str(side), "--rate", str(args.rate), "--size", str(args.size)]
    robot = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        port = int(robot.stdout.readline())  # type: ignore[union-attr]
        bridge = Bridge(f"ws://127.0.0.1:{port}", 0.1).connect(5)
        try:
            controller = Controller(bridge, Inputs(bridge, profile), profile, policy, log_every_s=10.0)
            t0 = time.perf_counter()
            result = controller.run(args.seconds)
            wall = time.perf_counter() - t0
            time.sleep(0.2)  # let the last commands arrive
        finally:
            bridge.close()
    finally:
        robot.communicate("", timeout=10)
    robot_side = json.loads(side.read_text())
    side.unlink()
    side.parent.rmdir()
    records = list(result.records)
    summary = result.summary()
    if summary["holds"]:
        print(f"warning: {summary['holds']} holds; end-to-end pairs only cover steps before the first", file=sys.stderr)
        first_halt = next(t for t, s, _ in result.events if s == "halted")
        records = [r for r in records if r.t < first_halt]
    # one Twist per step, in order (the final hold comes last)
    e2e = np.array([(arr - r.sync_stamp) * 1e3 for r, arr in zip(records, robot_side["arrivals"], strict=False)])
    client = np.array(result.latencies_ms)
    out = {
        "rate_hz": args.rate,
        "camera": [args.size, args.size],
        "image_json_kb": robot_side["image_json_kb"],
        "policy": policy.name,
        "topology": "robot + loopback rosbridge in one process, deploy client in another, same host",
        "seconds": round(wall, 2),
        "steps": summary["steps"],
        "achieved_rate_hz": summary["rate_hz"],
        "camera_frames_sent": robot_side["frames"],
        "skipped_sync_messages": summary["skipped_sync_messages"],
        "holds": summary["holds"],
        "latency_ms": {"client": stats(client), "end_to_end": stats(e2e)},
        "target_p99_ms": 50.0,
        "meets_target": bool(np.percentile(e2e, 99) < 50.0),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "command": "python bench/bench_ros_latency.py " + " ".join(sys.argv[1:]),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "ros_latency.json").write_text(json.dumps(out, indent=1))
    plot(client, e2e, args)
    print(json.dumps(out, indent=1))


def plot(client: np.ndarray, e2e: np.ndarray, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    bins = np.linspace(0, max(60.0, float(e2e.max()) + 1), 61)
    ax.hist(client, bins=bins, alpha=0.6, label=f"client (p99 {np.percentile(client, 99):.1f} ms)")
    ax.hist(e2e, bins=bins, alpha=0.6, label=f"end to end (p99 {np.percentile(e2e, 99):.1f} ms)")
    ax.axvline(50, color="k", ls="--", lw=1, label="target p99 50 ms")
    ax.set_xlabel("observation -> command latency (ms)")
    ax.set_ylabel("steps")
    ax.set_title(f"deploy at {args.rate:g} Hz, {args.size}² camera, MLP on CPU")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "ros_latency.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
