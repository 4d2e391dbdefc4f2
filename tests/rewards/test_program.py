"""Reward programs as reward models: per-transition and batched forms, potentials, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import embodied
from embodied.rewards.base import RewardError, TransitionBatch
from embodied.rewards.program import ProgramReward
from embodied.rewards.registry import make_potential, make_reward
from embodied.tasks import load_task

PER_ROW = """
import numpy as np

def compute_reward(view, action):
    d = float(np.linalg.norm(view.hand_pos - view.goal_pos))
    ctrl = 0.0 if action is None else -0.1 * float(np.sum(np.square(action)))
    return -d + ctrl, {"dist": -d, "ctrl": ctrl}
"""

BATCHED = (
    PER_ROW
    + """
def compute_reward_batch(view, action):
    d = np.linalg.norm(view.hand_pos - view.goal_pos, axis=-1)
    ctrl = 0.0 * d if action is None else -0.1 * np.sum(np.square(action), axis=-1)
    return -d + ctrl, {"dist": -d, "ctrl": ctrl}
"""
)

WRONG_BATCH = (
    PER_ROW
    + """
def compute_reward_batch(view, action):
    d = np.linalg.norm(view.hand_pos - view.goal_pos)  # forgot axis=-1: norm of the whole batch
    zero = 0.0 * view.hand_pos[..., 0]
    return -d + zero, {"dist": -d + zero, "ctrl": zero}
"""
)


def _batch(n: int = 5) -> TransitionBatch:
    env = embodied.make("metaworld-reach")
    obs, _ = env.reset(seed=0)
    rows, actions = [], []
    for _ in range(n):
        a = env.action_space.sample()
        obs, *_ = env.step(a)
        rows.append(obs)
        actions.append(a)
    next_obs = np.stack(rows)
    return TransitionBatch(next_obs, np.stack(actions), next_obs, np.zeros(n, bool), np.zeros(n, bool), np.zeros(n))


def test_batched_and_per_row_programs_agree(tmp_path: Path) -> None:
    task = load_task("metaworld-reach")
    (tmp_path / "a.py").write_text(PER_ROW)
    (tmp_path / "b.py").write_text(BATCHED)
    per_row, batched = ProgramReward(tmp_path / "a.py", task), ProgramReward(tmp_path / "b.py", task)
    assert per_row.batch_fn is None and batched.batch_fn is not None
    batch = _batch()
    a, b = per_row.compute_reward(batch), batched.compute_reward(batch)
    np.testing.assert_allclose(a.reward, b.reward, rtol=1e-6)  # float32 actions: summation order
    np.testing.assert_allclose(a.components["ctrl"], b.components["ctrl"], rtol=1e-6)
    expected = -np.linalg.norm(batch.next_obs[:, 0:3] - batch.next_obs[:, 36:39], axis=1) - 0.1 * np.sum(
        batch.action**2, axis=1
    )
    np.testing.assert_allclose(a.reward, expected, rtol=1e-6)
    # State-only: usable as a potential; the action term drops out.
    np.testing.assert_allclose(batched.potential(batch.next_obs), a.components["dist"], rtol=1e-12)


def test_batch_form_that_disagrees_is_refused(tmp_path: Path) -> None:
    (tmp_path / "w.py").write_text(WRONG_BATCH)
    with pytest.raises(RewardError, match="compute_reward_batch disagrees with compute_reward"):
        ProgramReward(tmp_path / "w.py", load_task("metaworld-reach"))


def test_action_dependent_program_is_not_a_potential(tmp_path: Path) -> None:
    path = tmp_path / "act.py"
    path.write_text("def compute_reward(view, action):\n    return float(action[0]), {}\n")
    model = make_reward(f"program:{path}", load_task("metaworld-reach"))
    assert not model.state_only
    with pytest.raises(RewardError, match="cannot be a shaping potential"):
        make_potential(f"program:{path}", load_task("metaworld-reach"))


def test_programs_cannot_write_into_observations(tmp_path: Path) -> None:
    path = tmp_path / "mut.py"
    path.write_text("def compute_reward(view, action):\n    v = view.hand_pos\n    v[0] = 0.0\n    return 0.0, {}\n")
    model = ProgramReward(path, load_task("metaworld-reach"))
    batch = _batch(2)
    before = batch.next_obs.copy()
    with pytest.raises(ValueError, match="read-only"):
        model.compute_reward(batch)
    np.testing.assert_array_equal(batch.next_obs, before)


def test_missing_and_invalid_program_files(tmp_path: Path) -> None:
    task = load_task("metaworld-reach")
    with pytest.raises(RewardError, match="does not exist"):
        make_reward(f"program:{tmp_path / 'nope.py'}", task)
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\ndef compute_reward(view, action):\n    return 0.0, {}\n")
    with pytest.raises(RewardError, match=str(bad)):
        make_reward(f"program:{bad}", task)
    with pytest.raises(RewardError, match="needs a path"):
        make_reward("program", task)


def test_split_specs_keeps_options_with_their_spec() -> None:
    from embodied.rewards.registry import split_specs

    text = "env, program:a.py,progress:m,mode=raw_progress_not_invariant,clip:x,alpha=0.5,goal=open: the drawer"
    assert split_specs(text) == [
        "env",
        "program:a.py",
        "progress:m,mode=raw_progress_not_invariant",
        "clip:x,alpha=0.5,goal=open: the drawer",
    ]
