"""Fixtures for deployment tests: the loopback rosbridge server, a scripted robot, test profiles.

Every test here must leave no thread behind: `no_leftover_threads` checks the bridge loop, the server,
the robot and the key reader threads are gone after each test.
"""

from __future__ import annotations

import copy
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomli_w

from embodied.deploy.profile import RobotProfile, load_profile
from tests.deploy.robot import FakeRobot
from tests.deploy.rosbridge_server import RosbridgeServer

REPO = Path(__file__).resolve().parents[2]
REACH_PROFILE = REPO / "robots" / "metaworld-reach.toml"
OUR_THREADS = ("roslibpy-asyncio", "rosbridge-test-server", "fake-robot", "embodied-record-keys")


@pytest.fixture(autouse=True)
def no_leftover_threads() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 2.0
    while True:
        left = [t.name for t in threading.enumerate() if t.name in OUR_THREADS and t.is_alive()]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert not left, f"threads left behind: {left}"


@pytest.fixture
def server() -> Iterator[RosbridgeServer]:
    srv = RosbridgeServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def robot(server: RosbridgeServer) -> Iterator[FakeRobot]:
    bot = FakeRobot(server).start()
    try:
        yield bot
    finally:
        bot.stop()


def merge(base: dict, update: dict) -> dict:
    """Deep-merge `update` into a copy of `base` (tables merge, other values replace)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def reach_data(**update: Any) -> dict:
    """The shipped reach profile as a dict, with fast test timings and `update` merged in."""
    data = tomllib.loads(REACH_PROFILE.read_text())
    fast = {
        "control": {"rate_hz": 50.0, "stale_timeout_s": 0.15, "startup_timeout_s": 1.0, "reconnect_initial_s": 0.05}
    }
    return merge(merge(data, fast), update)


@pytest.fixture
def reach_profile(tmp_path: Path) -> Callable[..., Path]:
    """Write a reach profile with overrides to a temp file; returns its path."""

    def make(name: str = "reach-test", **update: Any) -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(tomli_w.dumps(reach_data(**update)))
        return path

    return make


class ConstantPolicy:
    """A policy with Meta-World's spaces that always outputs `action` (counts its calls, keeps observations)."""

    def __init__(self, action: list[float], obs_dim: int = 39) -> None:
        import gymnasium as gym

        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float64)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (len(action),), np.float32)
        self.action = np.asarray(action, np.float64)
        self.observations: list[np.ndarray] = []

    def act(self, obs: np.ndarray) -> np.ndarray:
        self.observations.append(obs)
        return self.action.copy()


@pytest.fixture
def profile_obj(reach_profile: Callable[..., Path]) -> RobotProfile:
    return load_profile(reach_profile())
