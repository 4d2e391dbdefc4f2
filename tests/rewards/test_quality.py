"""Reward-quality check: ground-truth progress, Spearman/AUC, EPIC to the env reward, plots, any reward spec."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from embodied.rewards.base import RewardModel, RewardOutput, TransitionBatch
from embodied.rewards.quality import (
    Rollout,
    auc,
    check_reward,
    collect_rollouts,
    evaluate_rollouts,
    progress_labels,
    slug,
    spearman,
    verdict,
)
from embodied.tasks import load_task


def test_spearman_and_auc_exact() -> None:
    assert spearman(np.array([1, 2, 3, 4]), np.array([10, 20, 30, 40])) == pytest.approx(1.0)
    assert spearman(np.array([1, 2, 3, 4]), np.array([4, 3, 2, 1])) == pytest.approx(-1.0)
    assert spearman(np.array([1, 2, 3]), np.array([5, 5, 5])) is None
    # ranks of x: [1, 2.5, 2.5, 4] vs [1, 2, 3, 4]: Pearson of ranks
    assert spearman(np.array([1, 2, 2, 3]), np.array([1, 2, 3, 4])) == pytest.approx(0.9486833, abs=1e-6)
    assert auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auc(np.array([1.0]), np.array([1.0])) == 0.5
    assert auc(np.array([2.0, 0.0]), np.array([1.0])) == 0.5
    assert auc(np.array([]), np.array([1.0])) is None


def test_progress_labels_drawer_stages_margins_and_regress() -> None:
    task = load_task("metaworld-drawer-open")
    space = gym.spaces.Box(-np.inf, np.inf, (39,), np.float64)
    dist = [0.27, 0.17, 0.05, 0.05, 0.05, 0.05]  # hand-to-handle distance; the reach stage ends below 0.07
    obs = np.zeros((6, 39))
    obs[:, 0] = dist
    infos = [{"success": False, "obj_to_target": d} for d in (0.2, 0.2, 0.2, 0.1, 0.15, 0.02)]
    infos[-1]["success"] = True
    # reach: τ = 1 − (d − 0.07)/0.20; pull: τ = 1 − obj_to_target/0.2 from its start (t = 2); success: 1
    np.testing.assert_allclose(progress_labels(task, obs, infos, space), [0.0, 0.25, 0.5, 0.75, 0.625, 1.0])
    # reach: one stage ruled by success only; the reset info has no distance, d_start is the first recorded one
    reach = load_task("metaworld-reach")
    infos = [{"success": False}] + [{"success": False, "obj_to_target": d} for d in (0.4, 0.3, 0.5, 0.1)]
    np.testing.assert_allclose(progress_labels(reach, obs[:5], infos, space), [0.0, 0.0, 0.25, 0.0, 0.75])


def test_progress_labels_chain_and_time_fallback() -> None:
    task = load_task(Path(__file__).parents[1] / "data" / "chain.toml")
    space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
    pos = np.array([0, 1, 2, 1, -1, 3, 4, 3], dtype=float)
    obs = np.stack([pos, np.ones_like(pos)], axis=1)
    infos = [{"success": bool(p >= 4)} for p in pos]
    # margin of "position >= 4" is 4 − position: τ = position / 4 (clipped at 0); success from t = 6 on ("any")
    np.testing.assert_allclose(progress_labels(task, obs, infos, space), [0, 0.25, 0.5, 0.25, 0, 0.75, 1, 1])
    # a stage whose rule has no distance (and no Meta-World info): elapsed fraction of the stage
    flat = task.model_copy(update={"stages": (task.stages[0].model_copy(update={"done": "info['at_goal'] > 0"}),)})
    infos2 = [{"success": t == 4, "at_goal": t == 4} for t in range(6)]
    np.testing.assert_allclose(progress_labels(flat, obs[:6], infos2, space), [0, 0.25, 0.5, 0.75, 1, 1])


def _rollout(policy: str, rewards: list[float], progress: list[float], success: list[bool]) -> Rollout:
    t = len(rewards)
    return Rollout(
        policy=policy, seed=0, obs=np.zeros((t + 1, 2)), actions=np.zeros((t, 1)), env_reward=np.asarray(rewards),
        terminated=np.zeros(t, bool), truncated=np.zeros(t, bool), success=np.array([False, *success]),
        progress=np.array([0.0, *progress]), infos=[{}] * (t + 1),
    )  # fmt: skip


def test_evaluate_rollouts_hand_case() -> None:
    rolls = [
        _rollout("expert", [0.1, 0.5, 0.9, 1.0, 1.0], [0.2, 0.4, 0.8, 1.0, 1.0], [False, False, False, True, True]),
        _rollout("expert", [0.3, 0.2, 0.35, 0.9, 0.95], [0.1, 0.3, 0.6, 1.0, 1.0], [False, False, False, True, True]),
        _rollout("random", [0.1, 0.0, 0.2, 0.1, 0.3], [0.0, 0.0, 0.1, 0.0, 0.1], [False] * 5),
    ]
    m = evaluate_rollouts(rolls, [r.env_reward for r in rolls])
    # episode score = mean of the last ceil(5/5) = 1 reward: 1.0, 0.95 (successes) vs 0.3: AUC 1
    assert m["auc_episode"] == 1.0
    # transitions into success states (1.0, 1.0, 0.9, 0.95) vs the other 11 (max 0.9): 3 wins + 1 tie of 4 x 11
    assert m["auc_transition"] == pytest.approx((4 * 11 - 0.5) / 44, abs=1e-4)
    # up to the first success: ranks (1, 2, 3, 4) vs (1, 2, 3, 4) and (2, 1, 3, 4) vs (1, 2, 3, 4): 1 − 6·2/60
    assert m["spearman_expert"] == pytest.approx(np.mean([1.0, 0.8]), abs=1e-4)
    assert m["policies"]["random"] == {
        "episodes": 1.0,
        "success_rate": 0.0,
        "mean_reward": 0.14,
        "final_score": 0.3,
        "spearman_within_episode": 0.8885,
    }
    assert verdict(m["spearman"], m["auc_episode"]).startswith("promising")
    assert verdict(0.1, 0.9).startswith("poor") and verdict(None, 1.0).startswith("inconclusive")


class PositionReward(RewardModel):
    """Reward = position of s' (chain task): tracks progress by construction."""

    name = "position"
    state_only = True

    def compute_reward(self, batch: TransitionBatch) -> RewardOutput:
        return RewardOutput(np.asarray(batch.next_obs)[:, 0].astype(float))


def test_check_any_reward_on_chain(tmp_path: Path, chain_task: Path) -> None:
    report = check_reward(chain_task, "env", episodes=6, seed=3, out_dir=tmp_path, epic_transitions=64, epic_samples=64)
    assert report.settings["policies"] == ["random"] and report.episodes == 6
    assert report.epic is not None and report.epic["distance"] == 0.0  # env vs itself
    data = json.loads((tmp_path / "env.json").read_text())
    assert data["transitions"] == report.transitions and (tmp_path / "env.png").stat().st_size > 10_000
    pos = check_reward(chain_task, PositionReward(), episodes=6, seed=3, epic=False)
    assert pos.spearman is not None and pos.spearman > 0.9 and pos.epic is None
    assert pos.transitions == report.transitions  # same seeds, same episodes
    assert slug("clip:reward_models/x/clip-adapted/,alpha=0.5") == "clip-reward_models-x-clip-adapted-alpha-0.5"


def test_collect_rollouts_shapes_and_paired_layouts() -> None:
    rolls = collect_rollouts(
        "metaworld-reach", ("expert", "random"), episodes=1, seed=7, cameras=("corner",), frame_size=(16, 16),
        episode_steps=6,
    )  # fmt: skip
    assert [r.policy for r in rolls] == ["expert", "random"] and [r.seed for r in rolls] == [7, 7]
    for r in rolls:
        assert r.length == 6 and r.obs.shape == (7, 39) and r.frames["corner"].shape == (7, 16, 16, 3)
        assert r.progress.shape == (7,) and r.progress[0] == 0.0 and not r.success[0]
    np.testing.assert_array_equal(rolls[0].obs[0], rolls[1].obs[0])  # same layout for both policies
    batch = rolls[0].transitions()
    np.testing.assert_array_equal(batch.next_obs, rolls[0].obs[1:])
    with pytest.raises(ValueError, match="'expert' needs a Meta-World task"):
        collect_rollouts(Path(__file__).parents[1] / "data" / "chain.toml", ("expert",))
