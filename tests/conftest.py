"""Shared fixtures: the scripted chain task, a Meta-World task with short episodes, temp run roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: longer end-to-end runs (deselected by default; run with -m slow)")


@pytest.fixture
def chain_task() -> Path:
    """Scripted 1-D chain: start 0, goal 4 (reward 1, terminated), trap -2 (terminated), 10-step limit, γ = 0.9."""
    return DATA / "chain.toml"


@pytest.fixture
def reach_program(tmp_path: Path) -> Path:
    """A state-only Meta-World reach program (usable as reward and as potential)."""
    path = tmp_path / "reach.py"
    path.write_text(
        "import numpy as np\n\n"
        "def compute_reward(view, action):\n"
        "    d = float(np.linalg.norm(view.hand_pos - view.goal_pos))\n"
        "    bonus = 1.0 if d < 0.05 else 0.0\n"
        "    return -d + bonus, {'distance': -d, 'bonus': bonus}\n"
    )
    return path


@pytest.fixture
def in_tmp_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a temp folder that still sees the repository's envs/ and reward_models/."""
    (tmp_path / "envs").symlink_to(REPO / "envs")
    (tmp_path / "reward_models").symlink_to(REPO / "reward_models")
    monkeypatch.chdir(tmp_path)
    return tmp_path
