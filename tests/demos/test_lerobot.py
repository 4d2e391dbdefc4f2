"""LeRobotDataset v3 export/import: the layout, the SARM annotation columns, and exact round trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from embodied.demos.dataset import DemoDataset, DemoError
from embodied.demos.lerobot import export_lerobot, import_lerobot


def test_export_writes_the_v3_layout(tmp_path: Path, dataset: DemoDataset) -> None:
    out = export_lerobot(dataset.root, tmp_path / "lr")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "data/chunk-000/file-000.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        "meta/info.json",
        "meta/stats.json",
        "meta/tasks.parquet",
        "meta/temporal_proportions_dense.json",
        "meta/temporal_proportions_sparse.json",
        "videos/observation.images.corner/chunk-000/file-000.mp4",
    ]
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert (info["total_episodes"], info["total_frames"], info["fps"]) == (3, 36, 10.0)
    assert info["features"]["observation.state"] == {"dtype": "float32", "shape": [5], "names": None}
    assert info["features"]["observation.images.corner"]["dtype"] == "video"
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"

    data = pq.read_table(out / "data/chunk-000/file-000.parquet").to_pandas()
    assert len(data) == 36
    assert data["index"].tolist() == list(range(36))
    assert data["episode_index"].tolist() == [0] * 12 + [1] * 9 + [2] * 15
    assert data["frame_index"].tolist()[10:14] == [10, 11, 0, 1]
    np.testing.assert_allclose(data["timestamp"].to_numpy()[12:15], [0.0, 0.1, 0.2], atol=1e-6)
    assert data["next.done"].sum() == 3

    eps = pd.read_parquet(out / "meta/episodes/chunk-000/file-000.parquet")
    row = eps.iloc[2]
    assert (row["dataset_from_index"], row["dataset_to_index"], row["length"]) == (21, 36, 15)
    assert row["videos/observation.images.corner/from_timestamp"] == pytest.approx(2.1)
    assert row["videos/observation.images.corner/to_timestamp"] == pytest.approx(3.6)
    assert list(row["dense_subtask_names"]) == ["reach", "pull"]
    assert list(row["dense_subtask_start_frames"]) == [0, 7]
    assert list(row["dense_subtask_end_frames"]) == [7, 12]
    assert list(row["dense_subtask_end_times"]) == pytest.approx([0.7, 1.2])
    assert list(row["sparse_subtask_names"]) == ["task"]
    assert list(eps["success"]) == [True, False, True]
    assert list(eps.iloc[1]["dense_subtask_names"]) == ["reach"]  # the failure completed one stage

    tasks = pd.read_parquet(out / "meta/tasks.parquet")
    assert tasks.index.tolist() == ["open the drawer"] and tasks["task_index"].tolist() == [0]
    stats = json.loads((out / "meta/stats.json").read_text())
    assert stats["observation.state"]["count"] == [36]
    assert np.asarray(stats["observation.images.corner"]["mean"]).shape == (3, 1, 1)
    # ᾱ from the two successes: reach 6/11 and 7/14, pull 3/11 and 5/14 of each episode, renormalised
    props = json.loads((out / "meta/temporal_proportions_dense.json").read_text())
    reach, pull = (6 / 11 + 7 / 14) / 2, (3 / 11 + 5 / 14) / 2
    assert props == pytest.approx({"reach": reach / (reach + pull), "pull": pull / (reach + pull)})


def test_export_import_round_trip(tmp_path: Path, dataset: DemoDataset) -> None:
    export_lerobot(dataset.root, tmp_path / "lr")
    back = import_lerobot(tmp_path / "lr", tmp_path / "back")
    assert back.task == "metaworld-drawer-open"
    assert back.stage_names == dataset.stage_names and back.fps == dataset.fps and back.cameras == ("corner",)
    for i in range(len(dataset)):
        a, b = dataset[i], back[i]
        np.testing.assert_array_equal(a.states, b.states)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.rewards, b.rewards)
        np.testing.assert_array_equal(a.success_flags, b.success_flags)
        assert a.annotations == b.annotations and a.success == b.success and a.task == b.task
        assert np.abs(a.frames["corner"].astype(int) - b.frames["corner"]).mean() < 8  # mp4 re-encoded once more


def test_import_reads_legacy_columns_and_infers_success(tmp_path: Path, dataset: DemoDataset) -> None:
    out = export_lerobot(dataset.root, tmp_path / "lr")
    path = out / "meta/episodes/chunk-000/file-000.parquet"
    eps = pd.read_parquet(path).drop(columns=["success"])
    eps = eps.rename(columns={c: c.removeprefix("dense_") for c in eps.columns if c.startswith("dense_")})
    eps.to_parquet(path, index=False)
    info = json.loads((out / "meta/info.json").read_text())
    del info["embodied"]
    (out / "meta/info.json").write_text(json.dumps(info))
    back = import_lerobot(out, tmp_path / "back", task="metaworld-drawer-open", cameras=[])
    assert back.successes == [True, False, True]  # from next.success
    assert back.cameras == ()
    assert back[2].annotations["dense"] == dataset[2].annotations["dense"]
    assert back.stage_names["dense"] == ["reach", "pull"]  # from temporal_proportions_dense.json


def test_import_errors_name_the_field(tmp_path: Path, dataset: DemoDataset) -> None:
    with pytest.raises(DemoError, match="not a LeRobot dataset"):
        import_lerobot(tmp_path, tmp_path / "x")
    out = export_lerobot(dataset.root, tmp_path / "lr")
    with pytest.raises(DemoError, match=r"field 'features': missing camera 'wrist'"):
        import_lerobot(out, tmp_path / "x", cameras=["wrist"])
    with pytest.raises(DemoError, match=r"field 'features': no state feature 'observation.joints'"):
        import_lerobot(out, tmp_path / "x", state_key="observation.joints")
    path = out / "meta/episodes/chunk-000/file-000.parquet"
    eps = pd.read_parquet(path)
    eps.at[0, "dense_subtask_end_frames"] = np.array([3, 2])
    eps.to_parquet(path, index=False)
    with pytest.raises(DemoError, match=r"episode 0: field 'annotations.dense'\[1\]: stage 'pull' ends \(frame 2\)"):
        import_lerobot(out, tmp_path / "x")
    info = json.loads((out / "meta/info.json").read_text())
    info["codebase_version"] = "v2.1"
    (out / "meta/info.json").write_text(json.dumps(info))
    with pytest.raises(DemoError, match="only LeRobotDataset v3"):
        import_lerobot(out, tmp_path / "x")
