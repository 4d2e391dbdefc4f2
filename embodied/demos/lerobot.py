"""Import and export of the LeRobotDataset v3 layout, with SARM-style subtask annotation columns.

Layout written by `export_lerobot` (and read by `import_lerobot`)::

    meta/info.json                              codebase_version "v3.0", fps, features, path templates
    meta/stats.json                             min/max/mean/std/count per feature (images: per channel in [0, 1])
    meta/tasks.parquet                          task string (index "task") -> task_index
    meta/episodes/chunk-000/file-000.parquet    one row per episode: length, tasks, file pointers, frame ranges,
                                                video timestamps, `success`, and the annotation list columns
                                                {dense,sparse}_subtask_{names,start_frames,end_frames,start_times,end_times}
    meta/temporal_proportions_{dense,sparse}.json   dataset stage proportions (SARM reads these)
    data/chunk-000/file-000.parquet             one row per frame: observation.state, action, timestamp,
                                                frame_index, episode_index, index, task_index, next.reward,
                                                next.done, next.success
    videos/observation.images.<camera>/chunk-000/file-000.mp4   all episodes of a camera, back to back

Import accepts any v3 dataset with `observation.state` and `action` features (other names via arguments),
video features ``observation.images.<camera>``, and annotations in ``dense_subtask_*``, ``subtask_*``
(read as dense) or ``sparse_subtask_*`` columns. Episode success comes from an episodes ``success``
column, else from ``next.success`` in the data, else episodes count as successful (demonstrations).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embodied.demos.dataset import DemoDataset, DemoError, DemoWriter, Episode, Stage, read_video, write_video

CODEBASE_VERSION = "v3.0"
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_PATH = "meta/episodes/" + CHUNK_FILE + ".parquet"
IMAGE_PREFIX = "observation.images."


def _stats(x: np.ndarray) -> dict[str, list[float]]:
    x = np.asarray(x, np.float64)
    return {
        "min": x.min(0).tolist(),
        "max": x.max(0).tolist(),
        "mean": x.mean(0).tolist(),
        "std": x.std(0).tolist(),
        "count": [int(x.shape[0])],
    }


def _image_stats(frames: np.ndarray) -> dict[str, Any]:
    """Per-channel stats of uint8 frames [N, H, W, 3] scaled to [0, 1], shaped (3, 1, 1) as LeRobot stores them."""
    x = frames.reshape(-1, 3).astype(np.float64) / 255.0
    out = {}
    for key, val in (("min", x.min(0)), ("max", x.max(0)), ("mean", x.mean(0)), ("std", x.std(0))):
        out[key] = [[[float(v)]] for v in val]
    out["count"] = [int(frames.shape[0])]
    return out


def _proportions(ds: DemoDataset, set_name: str) -> dict[str, float]:
    names = ds.stage_names.get(set_name, [])
    total = np.zeros(len(names))
    count = 0
    for rec in ds.records:
        stages = rec.get("annotations", {}).get(set_name, [])
        if not rec["success"] or not stages:
            continue
        t = max(int(rec["length"]) - 1, 1)
        for st in stages:
            total[names.index(st["name"])] += (st["end"] - st["start"]) / t
        count += 1
    if count == 0 or total.sum() <= 0:
        return {}
    total = total / total.sum()
    return {n: float(p) for n, p in zip(names, total, strict=True)}


def export_lerobot(src: str | Path, dst: str | Path, overwrite: bool = False, robot_type: str = "sawyer") -> Path:
    """Write the demonstration dataset `src` as a LeRobotDataset v3 folder `dst`; returns `dst`."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    ds = DemoDataset(src)
    ds.validate()
    dst = Path(dst)
    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise DemoError(f"{dst}: folder exists and is not empty; pick another --out or pass --overwrite")
    fps = ds.fps
    cams = list(ds.cameras)
    video_keys = [IMAGE_PREFIX + c for c in cams]
    tasks: list[str] = []
    cols: dict[str, list[Any]] = {
        k: []
        for k in (
            "observation.state",
            "action",
            "timestamp",
            "frame_index",
            "episode_index",
            "index",
            "task_index",
            "next.reward",
            "next.done",
            "next.success",
        )
    }
    ep_rows: list[dict[str, Any]] = []
    all_states, all_actions = [], []
    video_frames: dict[str, list[np.ndarray]] = {c: [] for c in cams}
    offset = 0
    for ep in ds.episodes():
        t = ep.length
        if ep.task not in tasks:
            tasks.append(ep.task)
        task_index = tasks.index(ep.task)
        rewards = ep.rewards if ep.rewards is not None else np.zeros(t, np.float32)
        flags = ep.success_flags if ep.success_flags is not None else np.zeros(t, bool)
        # LeRobot's next.* columns describe the transition that leaves row t: reward and flags of row t+1.
        next_reward = np.append(rewards[1:], 0.0).astype(np.float32)
        next_success = np.append(flags[1:], flags[-1]).astype(bool)
        next_done = np.zeros(t, bool)
        next_done[-1] = True
        cols["observation.state"] += list(np.asarray(ep.states, np.float32))
        cols["action"] += list(np.asarray(ep.actions, np.float32))
        cols["timestamp"] += list((np.arange(t) / fps).astype(np.float32))
        cols["frame_index"] += list(range(t))
        cols["episode_index"] += [ep.index] * t
        cols["index"] += list(range(offset, offset + t))
        cols["task_index"] += [task_index] * t
        cols["next.reward"] += list(next_reward)
        cols["next.done"] += list(next_done)
        cols["next.success"] += list(next_success)
        all_states.append(ep.states)
        all_actions.append(ep.actions)
        row: dict[str, Any] = {
            "episode_index": ep.index,
            "tasks": [ep.task],
            "length": t,
            "success": bool(ep.success),
            "data/chunk_index": 0,
            "data/file_index": 0,
            "dataset_from_index": offset,
            "dataset_to_index": offset + t,
            "meta/episodes/chunk_index": 0,
            "meta/episodes/file_index": 0,
        }
        start_frame = sum(len(v) for v in video_frames[cams[0]]) if cams else 0
        for cam, key in zip(cams, video_keys, strict=True):
            video_frames[cam].append(ep.frames[cam])
            row[f"videos/{key}/chunk_index"] = 0
            row[f"videos/{key}/file_index"] = 0
            row[f"videos/{key}/from_timestamp"] = start_frame / fps
            row[f"videos/{key}/to_timestamp"] = (start_frame + t) / fps
        for set_name in ds.stage_names:
            stages = ep.annotations.get(set_name, [])
            row[f"{set_name}_subtask_names"] = [s.name for s in stages]
            row[f"{set_name}_subtask_start_frames"] = [int(s.start) for s in stages]
            row[f"{set_name}_subtask_end_frames"] = [int(s.end) for s in stages]
            row[f"{set_name}_subtask_start_times"] = [s.start / fps for s in stages]
            row[f"{set_name}_subtask_end_times"] = [s.end / fps for s in stages]
        for key, arr in (("observation.state", ep.states), ("action", ep.actions)):
            for stat, val in _stats(arr).items():
                row[f"stats/{key}/{stat}"] = val
        ep_rows.append(row)
        offset += t

    tmp = dst.with_name(f".{dst.name}.partial")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    (tmp / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (tmp / "data" / "chunk-000").mkdir(parents=True)
    state_dim = int(np.asarray(all_states[0]).shape[1])
    action_dim = int(np.asarray(all_actions[0]).shape[1])
    table = pa.table(
        {
            "observation.state": pa.array(cols["observation.state"], type=pa.list_(pa.float32(), state_dim)),
            "action": pa.array(cols["action"], type=pa.list_(pa.float32(), action_dim)),
            "timestamp": pa.array(cols["timestamp"], type=pa.float32()),
            "frame_index": pa.array(cols["frame_index"], type=pa.int64()),
            "episode_index": pa.array(cols["episode_index"], type=pa.int64()),
            "index": pa.array(cols["index"], type=pa.int64()),
            "task_index": pa.array(cols["task_index"], type=pa.int64()),
            "next.reward": pa.array(cols["next.reward"], type=pa.float32()),
            "next.done": pa.array(cols["next.done"], type=pa.bool_()),
            "next.success": pa.array(cols["next.success"], type=pa.bool_()),
        }
    )
    pq.write_table(table, tmp / DATA_PATH.format(chunk_index=0, file_index=0))
    pd.DataFrame(ep_rows).to_parquet(tmp / EPISODES_PATH.format(chunk_index=0, file_index=0), index=False)
    pd.DataFrame({"task_index": list(range(len(tasks)))}, index=pd.Index(tasks, name="task")).to_parquet(
        tmp / "meta" / "tasks.parquet"
    )
    size = ds.meta.get("frame_size") or [0, 0]
    features: dict[str, Any] = {
        "observation.state": {"dtype": "float32", "shape": [state_dim], "names": None},
        "action": {"dtype": "float32", "shape": [action_dim], "names": None},
    }
    stats: dict[str, Any] = {
        "observation.state": _stats(np.concatenate(all_states)),
        "action": _stats(np.concatenate(all_actions)),
    }
    for cam, key in zip(cams, video_keys, strict=True):
        frames = np.concatenate(video_frames[cam])
        write_video(tmp / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0), frames, fps)
        features[key] = {
            "dtype": "video",
            "shape": [int(size[0]), int(size[1]), 3],
            "names": ["height", "width", "channels"],
            "info": {"video.fps": fps, "video.codec": "mpeg4", "video.pix_fmt": "yuv420p", "has_audio": False},
        }
        stats[key] = _image_stats(frames[:: max(1, len(frames) // 2000)])
    for key, dtype in (
        ("timestamp", "float32"),
        ("frame_index", "int64"),
        ("episode_index", "int64"),
        ("index", "int64"),
        ("task_index", "int64"),
        ("next.reward", "float32"),
        ("next.done", "bool"),
        ("next.success", "bool"),
    ):
        features[key] = {"dtype": dtype, "shape": [1], "names": None}
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": len(ds),
        "total_frames": offset,
        "total_tasks": len(tasks),
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 500,
        "fps": fps,
        "splits": {"train": f"0:{len(ds)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if cams else None,
        "features": features,
        "embodied": {"task": ds.task, "stages": ds.stage_names, "source": str(ds.root)},
    }
    (tmp / "meta" / "info.json").write_text(json.dumps(info, indent=1))
    (tmp / "meta" / "stats.json").write_text(json.dumps(stats, indent=1))
    for set_name in ds.stage_names:
        props = _proportions(ds, set_name)
        if props:
            (tmp / "meta" / f"temporal_proportions_{set_name}.json").write_text(json.dumps(props, indent=1))
    if dst.exists():
        import shutil

        shutil.rmtree(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(dst)
    return dst


def _as_list(value: Any) -> list[Any] | None:
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    return [v.item() if hasattr(v, "item") else v for v in list(value)]


def _read_annotations(row: Any, columns: Sequence[str], where: str) -> dict[str, list[Stage]]:
    """Annotation sets from the SARM list columns of one episodes-table row."""
    out: dict[str, list[Stage]] = {}
    for set_name, prefix in (("dense", "dense_"), ("dense", ""), ("sparse", "sparse_")):
        if set_name in out or f"{prefix}subtask_names" not in columns:
            continue
        names = _as_list(row[f"{prefix}subtask_names"])
        if names is None:
            continue
        starts = _as_list(row.get(f"{prefix}subtask_start_frames"))
        ends = _as_list(row.get(f"{prefix}subtask_end_frames"))
        if starts is None or ends is None or not len(starts) == len(ends) == len(names):
            raise DemoError(
                f"{where}: field '{prefix}subtask_start_frames/end_frames': need one start and end frame per name "
                f"({len(names)} names)"
            )
        out[set_name] = [Stage(str(n), int(s), int(e)) for n, s, e in zip(names, starts, ends, strict=True)]
    return out


def import_lerobot(
    src: str | Path,
    dst: str | Path,
    *,
    task: str = "",
    state_key: str = "observation.state",
    action_key: str = "action",
    cameras: Sequence[str] | None = None,
    overwrite: bool = False,
) -> DemoDataset:
    """Convert the LeRobotDataset v3 folder `src` into a demonstration dataset at `dst`.

    Args:
        src: the LeRobot dataset root (holding meta/info.json).
        dst: the dataset folder to create.
        task: the embodied task name the data belongs to (kept in dataset.json; default: from the export).
        state_key, action_key: the features holding states and actions.
        cameras: cameras to import (names after ``observation.images.``); None imports all video features.
        overwrite: replace an existing `dst`.
    """
    import pandas as pd
    import pyarrow.parquet as pq

    src = Path(src)
    info_path = src / "meta" / "info.json"
    if not info_path.is_file():
        raise DemoError(f"{src}: not a LeRobot dataset (no meta/info.json)")
    info = json.loads(info_path.read_text())
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3"):
        raise DemoError(f"{info_path}: field 'codebase_version': {version!r}; only LeRobotDataset v3 is supported")
    features = info.get("features", {})
    for key, what in ((state_key, "state"), (action_key, "action")):
        if key not in features:
            raise DemoError(f"{info_path}: field 'features': no {what} feature {key!r} (features: {sorted(features)})")
    video_keys = [k for k, f in features.items() if f.get("dtype") == "video"]
    available = [k.removeprefix(IMAGE_PREFIX) for k in video_keys]
    cams = available if cameras is None else list(cameras)
    for cam in cams:
        if cam not in available:
            raise DemoError(f"{info_path}: field 'features': missing camera {cam!r} (video features: {video_keys})")
    fps = float(info.get("fps", 30))
    ep_files = sorted((src / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not ep_files:
        raise DemoError(f"{src}: no meta/episodes/chunk-*/file-*.parquet")
    episodes = pd.concat([pd.read_parquet(f) for f in ep_files], ignore_index=True).sort_values("episode_index")
    columns = list(episodes.columns)
    data_path = str(info.get("data_path", DATA_PATH))
    video_path = str(info.get("video_path") or VIDEO_PATH)
    tasks_file = src / "meta" / "tasks.parquet"
    task_names: dict[int, str] = {}
    if tasks_file.is_file():
        tdf = pd.read_parquet(tasks_file)
        names = tdf["task"].tolist() if "task" in tdf.columns else [str(x) for x in tdf.index]
        task_names = {int(i): str(n) for i, n in zip(tdf["task_index"].tolist(), names, strict=True)}
    props: dict[str, list[str]] = {}
    for set_name in ("dense", "sparse"):
        p = src / "meta" / f"temporal_proportions_{set_name}.json"
        if p.is_file():
            props[set_name] = list(json.loads(p.read_text()))
    data_cache: dict[tuple[int, int], Any] = {}

    def data_table(chunk: int, file: int) -> Any:
        if (chunk, file) not in data_cache:
            path = src / data_path.format(chunk_index=chunk, file_index=file)
            if not path.is_file():
                raise DemoError(f"{path}: data file missing")
            data_cache.clear()  # one file at a time keeps memory flat
            data_cache[(chunk, file)] = pq.read_table(path).to_pandas()
        return data_cache[(chunk, file)]

    parsed: list[Episode] = []
    # Stage order: an embodied export says it; else SARM's proportions files; else order of first appearance.
    exported = info.get("embodied", {}).get("stages", {})
    stage_order: dict[str, list[str]] = {k: list(v) for k, v in {**props, **exported}.items()}
    for _, row in episodes.iterrows():
        e = int(row["episode_index"])
        where = f"{src}: episode {e}"
        chunk = int(row.get("data/chunk_index", 0))
        file = int(row.get("data/file_index", 0))
        df = data_table(chunk, file)
        rows = df[df["episode_index"] == e].sort_values("frame_index")
        if rows.empty:
            raise DemoError(f"{where}: field 'data': no rows in {data_path.format(chunk_index=chunk, file_index=file)}")
        t = len(rows)
        if "length" in row and int(row["length"]) != t:
            raise DemoError(f"{where}: field 'length': {int(row['length'])}, but the data has {t} rows")
        states = np.stack(rows[state_key].to_numpy()).astype(np.float32)
        actions = np.stack(rows[action_key].to_numpy()).astype(np.float32)
        frames = {}
        for cam in cams:
            key = IMAGE_PREFIX + cam
            for col in (f"videos/{key}/chunk_index", f"videos/{key}/file_index", f"videos/{key}/from_timestamp"):
                if col not in columns:
                    raise DemoError(f"{where}: field {col!r}: missing camera {cam!r} pointer in the episodes table")
            vpath = src / video_path.format(
                video_key=key,
                chunk_index=int(row[f"videos/{key}/chunk_index"]),
                file_index=int(row[f"videos/{key}/file_index"]),
            )
            start = round(float(row[f"videos/{key}/from_timestamp"]) * fps)
            frames[cam] = read_video(vpath, start, t)
        if "success" in columns and row["success"] is not None:
            success = bool(row["success"])
        elif "next.success" in rows.columns:
            success = bool(rows["next.success"].any())
        else:
            success = True
        flags = None
        if "next.success" in rows.columns:
            ns = rows["next.success"].to_numpy(bool)
            flags = np.concatenate([[False], ns[:-1]]) if t > 1 else np.zeros(1, bool)
        rewards = None
        if "next.reward" in rows.columns:
            nr = rows["next.reward"].to_numpy(np.float32)
            rewards = np.concatenate([[0.0], nr[:-1]]).astype(np.float32)
        ann = _read_annotations(row, columns, where)
        for set_name, stages in ann.items():
            known = stage_order.setdefault(set_name, [])
            for st in stages:
                if st.name not in known:
                    known.append(st.name)
        tasks = _as_list(row.get("tasks")) if "tasks" in columns else None
        text = (
            str(tasks[0])
            if tasks
            else task_names.get(int(rows["task_index"].iloc[0]), "")
            if "task_index" in rows
            else ""
        )
        parsed.append(
            Episode(
                states=states,
                actions=actions,
                success=success,
                frames=frames,
                annotations=ann,
                rewards=rewards,
                success_flags=flags,
                task=text,
                info={"lerobot_episode_index": e},
            )
        )
    if not parsed:
        raise DemoError(f"{src}: the dataset has no episodes")
    size = tuple(parsed[0].frames[cams[0]].shape[1:3]) if cams else None
    emb = info.get("embodied", {})
    with DemoWriter(
        dst,
        task=task or str(emb.get("task", "")),
        instruction=parsed[0].task,
        fps=fps,
        cameras=cams,
        frame_size=size,  # type: ignore[arg-type]
        stages=stage_order,
        state_dim=parsed[0].states.shape[1],
        action_dim=parsed[0].actions.shape[1],
        source=f"import_lerobot {src}",
        overwrite=overwrite,
    ) as writer:
        for ep in parsed:
            writer.add(ep)
    return DemoDataset(dst)
