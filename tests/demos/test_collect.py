"""Scripted collection: stage boundaries from the task's rules, degradations, determinism, frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embodied.demos.collect import Degradation, collect
from embodied.demos.dataset import DemoError, Stage
from embodied.tasks.spec import load_task


def test_clean_drawer_demos_are_annotated_from_the_stage_rules(tmp_path: Path) -> None:
    ds = collect("metaworld-drawer-open", 2, tmp_path / "d", tail=3, progress=False)
    assert ds.task == "metaworld-drawer-open" and ds.stage_names == {"dense": ["reach", "pull"], "sparse": ["task"]}
    assert ds.successes == [True, True]
    for ep in ds.episodes(()):
        hand, handle = ep.states[:, 0:3].astype(np.float64), ep.states[:, 4:7].astype(np.float64)
        near = np.linalg.norm(hand - handle, axis=1) < 0.07  # the task's reach rule
        reach_end = int(np.flatnonzero(near)[0])
        success = ep.first_success()
        assert success is not None
        assert ep.annotations["dense"] == [Stage("reach", 0, reach_end), Stage("pull", reach_end, success)]
        assert ep.annotations["sparse"] == [Stage("task", 0, success)]
        assert ep.length == success + 3 + 1  # `tail` rows after the first success
        assert ep.actions.shape == (ep.length, 4) and np.all(np.abs(ep.actions) <= 1)
        assert ep.rewards[0] == 0 and ep.info["steps"]["expert"] == ep.length


def test_collection_is_deterministic_and_noise_changes_actions(tmp_path: Path) -> None:
    noisy = Degradation(noise=0.3)
    a = collect("metaworld-reach", 2, tmp_path / "a", degradation=noisy, seed=5, progress=False)
    b = collect("metaworld-reach", 2, tmp_path / "b", degradation=noisy, seed=5, progress=False)
    c = collect("metaworld-reach", 2, tmp_path / "c", seed=5, progress=False)
    np.testing.assert_array_equal(a[1].actions, b[1].actions)
    np.testing.assert_array_equal(a[1].states, b[1].states)
    assert a[0].info["seed"] == 5 and a[1].info["seed"] == 6
    np.testing.assert_array_equal(a[0].states[0], c[0].states[0])  # same layout
    assert not np.allclose(a[0].actions[:5], c[0].actions[:5])


def test_pauses_hold_still_and_regressions_reverse_the_expert(tmp_path: Path) -> None:
    paused = collect(
        "metaworld-reach", 1, tmp_path / "p", degradation=Degradation(pause=1.0), max_steps=20, progress=False
    )[0]
    assert not paused.success and paused.length == 21
    np.testing.assert_array_equal(paused.actions[:, :3], 0.0)
    assert paused.info["steps"]["pause"] == 21 and paused.annotations["dense"] == []

    from metaworld.policies import ENV_POLICY_MAP

    expert = ENV_POLICY_MAP["reach-v3"]()
    back = collect(
        "metaworld-reach", 1, tmp_path / "r", degradation=Degradation(regress=1.0), max_steps=5, progress=False
    )[0]
    first = np.clip(expert.get_action(back.states[0].astype(np.float64)), -1, 1)
    np.testing.assert_allclose(back.actions[0, :3], -first[:3], atol=1e-4)
    assert back.info["steps"]["regress"] == back.length


def test_failures_head_elsewhere_and_keep_only_completed_stages(tmp_path: Path) -> None:
    ds = collect(
        "metaworld-drawer-open", 2, tmp_path / "f", degradation=Degradation(fail=1.0), max_steps=60, progress=False
    )
    for ep in ds.episodes(()):
        assert not ep.success and ep.length == 61
        assert ep.info["failure_injected_at"] is not None and ep.info["steps"]["fail"] > 0
        assert ep.annotations["sparse"] == []
        assert [s.name for s in ep.annotations["dense"]] in ([], ["reach"])


def test_frames_are_recorded_per_camera(tmp_path: Path) -> None:
    ds = collect(
        "metaworld-reach",
        1,
        tmp_path / "v",
        cameras=["corner", "topview"],
        frame_size=(32, 32),
        max_steps=4,
        progress=False,
    )
    ep = ds[0]
    assert ds.cameras == ("corner", "topview") and ds.meta["frame_size"] == [32, 32]
    assert ep.frames["corner"].shape == (5, 32, 32, 3) and ep.frames["topview"].shape == (5, 32, 32, 3)
    assert ep.frames["corner"].std() > 5  # a rendered scene, not a blank frame


def test_bad_requests_are_one_line_errors(tmp_path: Path, chain_task: Path) -> None:
    with pytest.raises(DemoError, match=r"field 'suite': scripted experts exist only for Meta-World tasks"):
        collect(chain_task, 1, tmp_path / "x", progress=False)
    with pytest.raises(DemoError, match=r"option --camera: unknown camera\(s\) \['wrist'\]"):
        collect("metaworld-reach", 1, tmp_path / "x", cameras=["wrist"], progress=False)
    with pytest.raises(DemoError, match=r"option --pause: must be a probability"):
        Degradation(pause=1.5)
    with pytest.raises(DemoError, match=r"option -n"):
        collect("metaworld-reach", 0, tmp_path / "x", progress=False)
    spec = load_task("metaworld-pick-place")
    bad = spec.model_copy(update={"stages": (spec.stages[0].model_copy(update={"done": None}), *spec.stages[1:])})
    with pytest.raises(DemoError, match=r"field 'stages\[0\].done': stage 'reach' has no done rule"):
        collect(bad, 1, tmp_path / "x", progress=False)
