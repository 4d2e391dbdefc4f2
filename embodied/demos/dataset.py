"""The demonstration dataset: episodes with frames per camera, states, actions, success and subtask annotations.

Layout of a dataset folder (format ``embodied-demos/1``)::

    DIR/dataset.json                         task, instruction, fps, cameras, frame size, stage names, counts
    DIR/episodes.jsonl                       one line per episode: index, length, success, annotations, info
    DIR/data/episode_000000.npz              states float32 [T, D], actions float32 [T, A],
                                             rewards float32 [T], success_flags bool [T]
    DIR/videos/<camera>/episode_000000.mp4   T frames, uint8 RGB (mp4v; lossy, ~3/255 mean abs error)

Conventions (the same as LeRobot's): row t holds the observation o_t and the action a_t taken there; an
episode of T rows therefore ends with the final observation and the action the demonstrator would take
there. ``rewards[t]`` is the reward received on arriving at row t (0 at t = 0); ``success_flags[t]`` is
the task's success rule at row t.

Subtask annotations are named sets of stages (``"dense"``: the task's stages; ``"sparse"``: coarse
stages, by default one ``"task"`` stage). A stage covers frames ``start..end`` inclusive; consecutive
stages may share their boundary frame (``end_k == start_{k+1}``); ``start == end`` is a zero-length
stage; frames between stages are gaps. A failed episode annotates only the stages it completed.

Bad input raises `DemoError` with one line naming the dataset, the episode and the field.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "embodied-demos/1"
ANNOTATION_SETS = ("dense", "sparse")


class DemoError(ValueError):
    """A demonstration dataset or episode is invalid; the message names the episode and field."""


@dataclass(frozen=True)
class Stage:
    """One annotated subtask: frames ``start..end`` (inclusive) of an episode."""

    name: str
    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "start": int(self.start), "end": int(self.end)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Stage:
        return cls(str(d["name"]), int(d["start"]), int(d["end"]))


@dataclass
class Episode:
    """One demonstration.

    Attributes:
        states: float32 [T, D], the observation at each row.
        actions: float32 [T, A], the action taken at each row.
        success: whether the episode achieved the task.
        frames: camera -> uint8 [T, H, W, 3]; empty when not loaded or not recorded.
        annotations: annotation set name ("dense", "sparse") -> stages in order.
        rewards: float32 [T], reward received on arriving at row t (0 at t = 0).
        success_flags: bool [T], the task's success rule at each row.
        task: the language instruction.
        index: position in its dataset (-1 before it is added).
        info: free-form metadata (seed, degradations, ...), JSON-serialisable.
    """

    states: np.ndarray
    actions: np.ndarray
    success: bool
    frames: dict[str, np.ndarray] = field(default_factory=dict)
    annotations: dict[str, list[Stage]] = field(default_factory=dict)
    rewards: np.ndarray | None = None
    success_flags: np.ndarray | None = None
    task: str = ""
    index: int = -1
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def length(self) -> int:
        """Number of rows T."""
        return int(np.asarray(self.states).shape[0])

    def first_success(self) -> int | None:
        """The first row where the success rule held, or None."""
        if self.success_flags is None:
            return None
        hits = np.flatnonzero(np.asarray(self.success_flags, dtype=bool))
        return int(hits[0]) if hits.size else None


def validate_stages(stages: Sequence[Stage], length: int, where: str, names: Sequence[str] | None = None) -> None:
    """Check one annotation set: inside the episode, each stage ordered, stages in order, known names.

    Args:
        stages: the stages, in order.
        length: episode length T (valid frames are 0..T-1).
        where: error prefix, e.g. ``"demos/x: episode 3: field 'annotations.dense'"``.
        names: the dataset's stage names for this set (in order); None skips the name checks.
    """
    prev_end = -1
    prev_name = None
    order = {n: i for i, n in enumerate(names)} if names is not None else None
    last_rank = -1
    for k, st in enumerate(stages):
        if not 0 <= st.start <= length - 1 or not 0 <= st.end <= length - 1:
            raise DemoError(
                f"{where}[{k}]: stage {st.name!r} spans frames {st.start}..{st.end}, "
                f"outside the episode (frames 0..{length - 1})"
            )
        if st.end < st.start:
            raise DemoError(f"{where}[{k}]: stage {st.name!r} ends (frame {st.end}) before it starts ({st.start})")
        if st.start < prev_end:
            raise DemoError(
                f"{where}[{k}]: stage {st.name!r} starts at frame {st.start}, before stage {prev_name!r} "
                f"ends at frame {prev_end} (annotations out of order)"
            )
        if order is not None:
            if st.name not in order:
                raise DemoError(f"{where}[{k}]: unknown stage {st.name!r}; the dataset's stages: {list(names or [])}")
            if order[st.name] <= last_rank:
                raise DemoError(
                    f"{where}[{k}]: stage {st.name!r} comes after {prev_name!r}, but the dataset orders the stages "
                    f"{list(names or [])} (annotations out of order)"
                )
            last_rank = order[st.name]
        prev_end, prev_name = st.end, st.name


def validate_episode(
    ep: Episode,
    where: str,
    cameras: Sequence[str] = (),
    stage_names: Mapping[str, Sequence[str]] | None = None,
    state_dim: int | None = None,
    action_dim: int | None = None,
) -> None:
    """Check an episode's arrays, frames and annotations; raises `DemoError` naming the field."""
    states, actions = np.asarray(ep.states), np.asarray(ep.actions)
    if states.ndim != 2 or states.shape[0] < 1:
        raise DemoError(f"{where}: field 'states': expected [T, D] with T >= 1, got shape {states.shape}")
    t = states.shape[0]
    if state_dim is not None and states.shape[1] != state_dim:
        raise DemoError(f"{where}: field 'states': dimension {states.shape[1]}, the dataset's is {state_dim}")
    if actions.ndim != 2 or actions.shape[0] != t:
        raise DemoError(f"{where}: field 'actions': expected [{t}, A], got shape {actions.shape}")
    if action_dim is not None and actions.shape[1] != action_dim:
        raise DemoError(f"{where}: field 'actions': dimension {actions.shape[1]}, the dataset's is {action_dim}")
    if not np.all(np.isfinite(states)):
        raise DemoError(f"{where}: field 'states': contains NaN or inf")
    if not np.all(np.isfinite(actions)):
        raise DemoError(f"{where}: field 'actions': contains NaN or inf")
    for name, arr in (("rewards", ep.rewards), ("success_flags", ep.success_flags)):
        if arr is not None and np.asarray(arr).shape != (t,):
            raise DemoError(f"{where}: field {name!r}: expected shape ({t},), got {np.asarray(arr).shape}")
    for cam in cameras:
        if cam not in ep.frames:
            raise DemoError(
                f"{where}: field 'frames.{cam}': missing camera {cam!r} (episode has {sorted(ep.frames) or 'none'})"
            )
    for cam, frames in ep.frames.items():
        f = np.asarray(frames)
        if f.ndim != 4 or f.shape[0] != t or f.shape[3] != 3 or f.dtype != np.uint8:
            raise DemoError(
                f"{where}: field 'frames.{cam}': expected uint8 [{t}, H, W, 3], got {f.dtype} {tuple(f.shape)}"
            )
    for set_name, stages in ep.annotations.items():
        names = None if stage_names is None else stage_names.get(set_name)
        if stage_names is not None and names is None:
            raise DemoError(
                f"{where}: field 'annotations.{set_name}': unknown annotation set (dataset has {sorted(stage_names)})"
            )
        validate_stages(stages, t, f"{where}: field 'annotations.{set_name}'", names)


def write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    """Write uint8 RGB frames [T, H, W, 3] to an mp4 (mp4v), via a temp name then rename."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.mp4")
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
    if not writer.isOpened():
        raise DemoError(f"{path}: cannot open an mp4 writer")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    tmp.replace(path)


def read_video(path: Path, start: int = 0, count: int | None = None) -> np.ndarray:
    """Frames ``start .. start+count-1`` of an mp4 as uint8 RGB [count, H, W, 3] (all frames if count is None)."""
    import cv2

    if not path.is_file():
        raise DemoError(f"{path}: video file missing")
    cap = cv2.VideoCapture(str(path))
    out: list[np.ndarray] = []
    try:
        if start:
            cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        while count is None or len(out) < count:
            ok, frame = cap.read()
            if not ok:
                break
            out.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if count is not None and len(out) != count:
        raise DemoError(f"{path}: expected {count} frames from frame {start}, the video has {len(out)}")
    if not out:
        raise DemoError(f"{path}: no frames could be decoded")
    return np.stack(out)


def _annotations_to_json(ann: Mapping[str, Sequence[Stage]]) -> dict[str, list[dict[str, Any]]]:
    return {k: [s.to_dict() for s in v] for k, v in ann.items()}


def _annotations_from_json(d: Mapping[str, Any], where: str) -> dict[str, list[Stage]]:
    try:
        return {k: [Stage.from_dict(s) for s in v] for k, v in d.items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise DemoError(f"{where}: field 'annotations': malformed stage entry ({exc!r})") from None


class DemoDataset:
    """A demonstration dataset folder, opened read-only; episodes load on access.

    Args:
        root: the dataset folder (see the module docstring for the layout).

    Attributes:
        meta: the contents of ``dataset.json``.
        records: per-episode metadata (``episodes.jsonl``), one dict per episode.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        meta_path = self.root / "dataset.json"
        if not meta_path.is_file():
            raise DemoError(f"{self.root}: not a demonstration dataset (no dataset.json)")
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise DemoError(f"{meta_path}: malformed JSON: {exc}") from None
        if self.meta.get("format") != FORMAT:
            raise DemoError(f"{meta_path}: field 'format': expected {FORMAT!r}, got {self.meta.get('format')!r}")
        self.records: list[dict[str, Any]] = []
        lines = (
            (self.root / "episodes.jsonl").read_text().splitlines() if (self.root / "episodes.jsonl").is_file() else []
        )
        for k, line in enumerate(x for x in lines if x.strip()):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DemoError(f"{self.root}/episodes.jsonl: line {k + 1}: malformed JSON: {exc}") from None
            self.records.append(rec)
        for i, rec in enumerate(self.records):
            where = self._where(i)
            ann = _annotations_from_json(rec.get("annotations", {}), where)
            for set_name, stages in ann.items():
                names = self.stage_names.get(set_name)
                if names is None:
                    raise DemoError(
                        f"{where}: field 'annotations.{set_name}': unknown annotation set "
                        f"(dataset has {sorted(self.stage_names)})"
                    )
                validate_stages(stages, int(rec["length"]), f"{where}: field 'annotations.{set_name}'", names)
            for cam in self.cameras:
                if not self.video_path(i, cam).is_file():
                    raise DemoError(
                        f"{where}: field 'frames.{cam}': missing camera {cam!r} (no {self.video_path(i, cam)})"
                    )

    # -- metadata -------------------------------------------------------------------------------------------
    def _where(self, i: int) -> str:
        return f"{self.root}: episode {i}"

    @property
    def task(self) -> str:
        """The task name the demos were recorded on (may be empty for imported data)."""
        return str(self.meta.get("task", ""))

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(self.meta.get("cameras", ()))

    @property
    def fps(self) -> float:
        return float(self.meta.get("fps", 30))

    @property
    def stage_names(self) -> dict[str, list[str]]:
        """Annotation set -> ordered stage names."""
        return {k: list(v) for k, v in self.meta.get("stages", {}).items()}

    @property
    def successes(self) -> list[bool]:
        return [bool(r["success"]) for r in self.records]

    @property
    def lengths(self) -> list[int]:
        return [int(r["length"]) for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def data_path(self, i: int) -> Path:
        return self.root / "data" / f"episode_{i:06d}.npz"

    def video_path(self, i: int, camera: str) -> Path:
        return self.root / "videos" / camera / f"episode_{i:06d}.mp4"

    # -- episodes -------------------------------------------------------------------------------------------
    def load(self, i: int, cameras: Sequence[str] | None = None) -> Episode:
        """Episode `i` with frames of `cameras` (None: all the dataset's cameras; ``()``: no frames)."""
        if not -len(self) <= i < len(self):
            raise DemoError(f"{self.root}: no episode {i} (the dataset has {len(self)})")
        i = i % len(self)
        rec, where = self.records[i], self._where(i)
        cams = self.cameras if cameras is None else tuple(cameras)
        for cam in cams:
            if cam not in self.cameras:
                raise DemoError(
                    f"{where}: field 'frames.{cam}': missing camera {cam!r} (dataset cameras: {list(self.cameras)})"
                )
        path = self.data_path(i)
        if not path.is_file():
            raise DemoError(f"{where}: field 'states': data file {path} missing")
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        t = int(rec["length"])
        frames = {cam: read_video(self.video_path(i, cam), 0, t) for cam in cams}
        ep = Episode(
            states=arrays["states"],
            actions=arrays["actions"],
            success=bool(rec["success"]),
            frames=frames,
            annotations=_annotations_from_json(rec.get("annotations", {}), where),
            rewards=arrays.get("rewards"),
            success_flags=arrays.get("success_flags"),
            task=str(rec.get("task", self.meta.get("instruction", ""))),
            index=i,
            info=dict(rec.get("info", {})),
        )
        if ep.length != t:
            raise DemoError(f"{where}: field 'states': {ep.length} rows, episodes.jsonl says length {t}")
        validate_episode(ep, where, cams, self.stage_names, self.meta.get("state_dim"), self.meta.get("action_dim"))
        return ep

    def __getitem__(self, i: int) -> Episode:
        return self.load(i)

    def episodes(self, cameras: Sequence[str] | None = None, indices: Sequence[int] | None = None) -> Iterator[Episode]:
        """Iterate episodes (optionally a subset), loading frames of `cameras`."""
        for i in range(len(self)) if indices is None else indices:
            yield self.load(i, cameras)

    def validate(self, require_success: bool = False, cameras: Sequence[str] = ()) -> None:
        """Dataset-level checks: not empty, `cameras` recorded, and (optionally) at least one success."""
        if len(self) == 0:
            raise DemoError(f"{self.root}: the dataset has no episodes")
        missing = [c for c in cameras if c not in self.cameras]
        if missing:
            raise DemoError(
                f"{self.root}: field 'cameras': missing camera(s) {missing} (dataset cameras: {list(self.cameras)})"
            )
        if require_success and not any(self.successes):
            raise DemoError(
                f"{self.root}: field 'success': no successful episode (0 of {len(self)}); "
                "progress labels and behaviour cloning need at least one"
            )

    def summary(self) -> dict[str, Any]:
        """Counts for display: episodes, frames, successes, cameras, stages, mean length."""
        lengths = self.lengths
        return {
            "path": str(self.root),
            "task": self.task,
            "episodes": len(self),
            "frames": int(sum(lengths)),
            "successes": int(sum(self.successes)),
            "mean_length": float(np.mean(lengths)) if lengths else 0.0,
            "cameras": list(self.cameras),
            "frame_size": self.meta.get("frame_size"),
            "stages": self.stage_names,
        }


class DemoWriter:
    """Writes a dataset folder: episodes are added one by one, videos are encoded on background threads.

    The folder is written as ``.<name>.partial`` next to `root` and renamed by `close()`, so an interrupted
    collection never looks complete. Use as a context manager.

    Args:
        root: the dataset folder to create (must not exist unless `overwrite`).
        task: task name the demos belong to.
        instruction: the language instruction.
        fps: frame rate of the videos.
        cameras: cameras every episode records (may be empty: state-only demos).
        frame_size: (H, W) of the frames, or None without cameras.
        stages: annotation set -> ordered stage names.
        state_dim, action_dim: row sizes (checked for every episode).
        source: how the data was made (a command line), stored in dataset.json.
        overwrite: replace an existing folder.
        video_threads: encoder threads (OpenCV releases the GIL while encoding).
    """

    def __init__(
        self,
        root: str | Path,
        *,
        task: str,
        instruction: str,
        fps: float,
        cameras: Sequence[str],
        frame_size: tuple[int, int] | None,
        stages: Mapping[str, Sequence[str]],
        state_dim: int,
        action_dim: int,
        source: str = "",
        overwrite: bool = False,
        video_threads: int = 2,
    ) -> None:
        self.root = Path(root)
        if self.root.exists() and any(self.root.iterdir()) and not overwrite:
            raise DemoError(f"{self.root}: folder exists and is not empty; pick another --out or pass --overwrite")
        self.tmp = self.root.with_name(f".{self.root.name}.partial")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        (self.tmp / "data").mkdir(parents=True)
        self.meta: dict[str, Any] = {
            "format": FORMAT,
            "task": task,
            "instruction": instruction,
            "fps": fps,
            "cameras": list(cameras),
            "frame_size": list(frame_size) if frame_size else None,
            "stages": {k: list(v) for k, v in stages.items()},
            "state_dim": int(state_dim),
            "action_dim": int(action_dim),
            "source": source,
        }
        self.records: list[dict[str, Any]] = []
        self._pool = ThreadPoolExecutor(max_workers=max(1, video_threads))
        self._jobs: list[Future[None]] = []
        self._closed = False

    def add(self, ep: Episode) -> int:
        """Validate and write one episode; returns its index."""
        i = len(self.records)
        where = f"{self.root}: episode {i}"
        validate_episode(
            ep, where, self.meta["cameras"], self.meta["stages"], self.meta["state_dim"], self.meta["action_dim"]
        )
        t = ep.length
        rewards = np.zeros(t, np.float32) if ep.rewards is None else np.asarray(ep.rewards, np.float32)
        flags = np.zeros(t, bool) if ep.success_flags is None else np.asarray(ep.success_flags, bool)
        np.savez_compressed(
            self.tmp / "data" / f"episode_{i:06d}.npz",
            states=np.asarray(ep.states, np.float32),
            actions=np.asarray(ep.actions, np.float32),
            rewards=rewards,
            success_flags=flags,
        )
        for cam in self.meta["cameras"]:
            frames = np.ascontiguousarray(ep.frames[cam])
            path = self.tmp / "videos" / cam / f"episode_{i:06d}.mp4"
            self._jobs.append(self._pool.submit(write_video, path, frames, self.meta["fps"]))
        self.records.append(
            {
                "index": i,
                "length": t,
                "success": bool(ep.success),
                "task": ep.task or self.meta["instruction"],
                "annotations": _annotations_to_json(ep.annotations),
                "info": ep.info,
            }
        )
        # Bound memory: do not let more than a few episodes of frames queue up behind the encoders.
        while sum(not j.done() for j in self._jobs) > 4 * max(1, len(self.meta["cameras"])):
            next(j for j in self._jobs if not j.done()).result()
        return i

    def close(self) -> DemoDataset:
        """Finish the videos, write the metadata and publish the folder; returns the opened dataset."""
        if self._closed:
            return DemoDataset(self.root)
        self._closed = True
        try:
            for job in self._jobs:
                job.result()
        finally:
            self._pool.shutdown(wait=True)
        lengths = [r["length"] for r in self.records]
        self.meta.update(
            episodes=len(self.records),
            frames=int(sum(lengths)),
            successes=int(sum(r["success"] for r in self.records)),
        )
        (self.tmp / "dataset.json").write_text(json.dumps(self.meta, indent=1))
        with (self.tmp / "episodes.jsonl").open("w") as fh:
            for rec in self.records:
                fh.write(json.dumps(rec) + "\n")
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.parent.mkdir(parents=True, exist_ok=True)
        self.tmp.rename(self.root)
        return DemoDataset(self.root)

    def abort(self) -> None:
        """Drop the partial folder."""
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> DemoWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_dataset(
    root: str | Path,
    episodes: Sequence[Episode],
    *,
    task: str = "",
    instruction: str = "",
    fps: float = 30.0,
    stages: Mapping[str, Sequence[str]] | None = None,
    overwrite: bool = False,
    source: str = "",
) -> DemoDataset:
    """Write in-memory episodes as a dataset (cameras, sizes and stage names inferred from the episodes)."""
    if not episodes:
        raise DemoError(f"{root}: no episodes to write")
    first = episodes[0]
    cams = sorted(first.frames)
    size = tuple(first.frames[cams[0]].shape[1:3]) if cams else None
    if stages is None:
        stages = {}
        for ep in episodes:
            for set_name, sts in ep.annotations.items():
                known = stages.setdefault(set_name, [])
                for st in sts:
                    if st.name not in known:
                        known.append(st.name)
    with DemoWriter(
        root,
        task=task,
        instruction=instruction or first.task,
        fps=fps,
        cameras=cams,
        frame_size=size,  # type: ignore[arg-type]
        stages=stages,
        state_dim=first.states.shape[1],
        action_dim=first.actions.shape[1],
        source=source,
        overwrite=overwrite,
    ) as writer:
        for ep in episodes:
            writer.add(ep)
    return DemoDataset(root)
