"""The demonstration dataset: write/read round trip and one-line validation errors naming episode and field."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from embodied.demos.dataset import DemoDataset, DemoError, Episode, Stage, validate_stages, write_dataset

from .conftest import synthetic_episode


def test_round_trip_keeps_arrays_annotations_and_frames(dataset: DemoDataset, episodes: list[Episode]) -> None:
    assert len(dataset) == 3
    assert dataset.successes == [True, False, True]
    assert dataset.lengths == [12, 9, 15]
    assert dataset.cameras == ("corner",)
    assert dataset.stage_names == {"dense": ["reach", "pull"], "sparse": ["task"]}
    for i, src in enumerate(episodes):
        ep = dataset[i]
        assert ep.index == i
        np.testing.assert_array_equal(ep.states, src.states)
        np.testing.assert_array_equal(ep.actions, src.actions)
        np.testing.assert_array_equal(ep.rewards, src.rewards)
        np.testing.assert_array_equal(ep.success_flags, src.success_flags)
        assert ep.annotations == src.annotations
        assert ep.info == {"seed": i}
        assert ep.frames["corner"].shape == (src.length, 32, 32, 3)
        # mp4 is lossy: a few grey levels on average
        assert np.abs(ep.frames["corner"].astype(int) - src.frames["corner"]).mean() < 8
    assert dataset[1].first_success() is None and dataset[0].first_success() == 9
    assert dataset.load(0, ()).frames == {}


def test_summary_counts(dataset: DemoDataset) -> None:
    s = dataset.summary()
    assert (s["episodes"], s["frames"], s["successes"]) == (3, 36, 2)
    assert s["mean_length"] == 12.0


def test_writer_refuses_an_existing_folder(tmp_path: Path, episodes: list[Episode]) -> None:
    write_dataset(tmp_path / "d", episodes[:1])
    with pytest.raises(DemoError, match="exists and is not empty"):
        write_dataset(tmp_path / "d", episodes[:1])
    assert len(write_dataset(tmp_path / "d", episodes, overwrite=True)) == 3
    assert not (tmp_path / ".d.partial").exists()


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        (
            [Stage("reach", 0, 5), Stage("pull", 4, 9)],
            r"\[1\]: stage 'pull' starts at frame 4, before stage 'reach' ends",
        ),
        ([Stage("reach", 5, 3)], r"\[0\]: stage 'reach' ends \(frame 3\) before it starts \(5\)"),
        ([Stage("reach", 0, 12)], r"\[0\]: stage 'reach' spans frames 0..12, outside the episode \(frames 0..9\)"),
        ([Stage("reach", -1, 3)], r"outside the episode"),
        ([Stage("pull", 0, 3), Stage("reach", 3, 6)], r"\[1\]: stage 'reach' comes after 'pull'.*out of order"),
        ([Stage("grasp", 0, 3)], r"unknown stage 'grasp'"),
    ],
)
def test_bad_annotations_are_one_line_errors(stages: list[Stage], message: str) -> None:
    with pytest.raises(DemoError, match=message) as err:
        validate_stages(stages, 10, "demos/x: episode 3: field 'annotations.dense'", ["reach", "pull"])
    assert "\n" not in str(err.value) and str(err.value).startswith("demos/x: episode 3: field 'annotations.dense'")


def test_shared_boundaries_gaps_and_zero_length_stages_are_valid() -> None:
    validate_stages([Stage("a", 0, 4), Stage("b", 4, 4), Stage("c", 6, 9)], 10, "x", ["a", "b", "c"])


def test_writer_rejects_bad_episode_naming_it(tmp_path: Path, episodes: list[Episode]) -> None:
    bad = dataclasses.replace(episodes[2], annotations={"dense": [Stage("reach", 0, 20)]})
    with pytest.raises(DemoError, match=r"episode 1: field 'annotations.dense'\[0\].*outside the episode"):
        write_dataset(tmp_path / "d", [episodes[0], bad], stages={"dense": ["reach", "pull"], "sparse": ["task"]})
    assert not (tmp_path / "d").exists() and not (tmp_path / ".d.partial").exists()
    short = dataclasses.replace(episodes[0], actions=episodes[0].actions[:-1])
    with pytest.raises(DemoError, match=r"episode 0: field 'actions': expected \[12, A\]"):
        write_dataset(tmp_path / "e", [short])


def test_missing_camera_is_named(tmp_path: Path, dataset: DemoDataset) -> None:
    with pytest.raises(DemoError, match=r"episode 0: field 'frames.topview': missing camera 'topview'"):
        dataset.load(0, ["topview"])
    with pytest.raises(DemoError, match=r"field 'cameras': missing camera\(s\) \['wrist'\]"):
        dataset.validate(cameras=["wrist"])
    (dataset.root / "videos" / "corner" / "episode_000001.mp4").unlink()
    with pytest.raises(DemoError, match=r"episode 1: field 'frames.corner': missing camera 'corner'"):
        DemoDataset(dataset.root)
    eps = [synthetic_episode(6, True, 0, cameras=("corner",)), synthetic_episode(6, True, 1, cameras=())]
    with pytest.raises(DemoError, match=r"episode 1: field 'frames.corner': missing camera 'corner'"):
        write_dataset(tmp_path / "m", eps)


def test_dataset_without_success_is_refused_when_required(tmp_path: Path) -> None:
    ds = write_dataset(tmp_path / "f", [synthetic_episode(8, False, 0), synthetic_episode(8, False, 1)])
    ds.validate()
    with pytest.raises(DemoError, match=r"field 'success': no successful episode \(0 of 2\)"):
        ds.validate(require_success=True)


def test_edited_episode_index_with_bad_annotations_fails_on_open(dataset: DemoDataset) -> None:
    path = dataset.root / "episodes.jsonl"
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    recs[2]["annotations"]["dense"] = [{"name": "pull", "start": 0, "end": 3}, {"name": "reach", "start": 3, "end": 5}]
    path.write_text("\n".join(json.dumps(r) for r in recs))
    with pytest.raises(DemoError, match=r"episode 2: field 'annotations.dense'\[1\]: stage 'reach' comes after 'pull'"):
        DemoDataset(dataset.root)


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(DemoError, match="not a demonstration dataset"):
        DemoDataset(tmp_path)
