"""Record real-robot episodes as demonstrations (the `embodied.demos.dataset` format), with subtask
boundaries marked by the operator, so progress models can be trained on real data.

Every tick (the profile's control rate) while an episode is being recorded, one row is appended:
frames of every profile camera (centre-cropped and resized to the task's frame size, as simulation
frames), the observation vector assembled exactly as the control loop does (`states`), and the action
recovered from the command topics (`actions`, in policy units: the profile's command mapping inverted;
zeros until the first command is heard). Ticks where a needed topic is stale are skipped and counted.
Per-row timestamps and the raw command values go to ``ros/episode_NNNNNN.npz`` inside the dataset
folder: ``time`` (wall clock of the row, s), ``stamp_<key>`` (header stamp of each topic's message, s; NaN
when unstamped), ``received_<key>`` (wall clock of its arrival, s), ``commands`` (command values, the
profile's commands concatenated) and ``action_seen`` (every command heard within the stale timeout).

Operator commands, from the keyboard (one letter + Enter) or a std_msgs/String annotation topic:

    s / start     begin an episode            n / next      the current subtask ends here
    y / success   end, labelled success      f / fail      end, labelled failure
    e / end       end, no label (success = False, info.success_labelled = False)
    d / discard   drop the episode            q / quit      save the current episode (no label) and stop

Stage annotations follow the dataset's conventions: subtask k spans frames ``start..end`` inclusive and
neighbours share the boundary frame (the frame recorded when the operator said "next"); a successful
episode's last subtask ends at its last frame and gets the sparse ``task`` stage; a failed one keeps only
the subtasks the operator closed.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from embodied.deploy.bridge import Bridge, Inputs, preprocess_frame
from embodied.deploy.control import ActionMapper, ObservationAssembler, command_values
from embodied.deploy.profile import RobotProfile, load_profile

LOG = logging.getLogger("embodied.deploy")

KEYS = {
    "s": "start",
    "n": "next",
    "y": "success",
    "f": "fail",
    "e": "end",
    "d": "discard",
    "q": "quit",
}
WORDS = frozenset(KEYS.values())


def parse_command(text: str) -> str | None:
    """Operator input (a letter or a word, any case, surrounding space ignored) -> command word or None."""
    word = text.strip().lower()
    word = KEYS.get(word, word)
    return word if word in WORDS else None


class KeyReader:
    """Reads operator commands from a text stream (stdin) on a thread that stops when asked.

    Uses `select` with a short timeout, so `stop()` joins promptly even while nobody types.
    """

    def __init__(self, stream: IO[str], on_command: Callable[[str], None]) -> None:
        self.stream, self.on_command = stream, on_command
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="embodied-record-keys", daemon=True)

    def start(self) -> KeyReader:
        self._thread.start()
        return self

    def _run(self) -> None:
        # Raw reads on the descriptor: a buffered readline() would pull several lines into Python's buffer,
        # where select() cannot see them.
        fd = self.stream.fileno()
        pending = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.05)
            if not ready:
                continue
            chunk = os.read(fd, 1024)
            if not chunk:  # end of input
                return
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace")
                word = parse_command(line)
                if word is None:
                    LOG.warning("unknown key %r; use %s", line.strip(), ", ".join(f"{k}={v}" for k, v in KEYS.items()))
                else:
                    self.on_command(word)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(1.0)


@dataclass
class _Episode:
    rows: int = 0
    frames: dict[str, list[np.ndarray]] = field(default_factory=dict)
    states: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    action_seen: list[bool] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    stamps: dict[str, list[float]] = field(default_factory=dict)
    received: dict[str, list[float]] = field(default_factory=dict)
    commands: list[np.ndarray] = field(default_factory=list)
    boundaries: list[int] = field(default_factory=list)
    started: float = 0.0
    gaps: int = 0


class Recorder:
    """Records episodes from the robot behind `bridge` into a demonstration dataset folder.

    Args:
        bridge, inputs: connection and subscribed topics of `profile`.
        profile: the robot profile (cameras, observation segments, command mapping).
        out: the dataset folder to create.
        task: the TaskSpec being demonstrated (stage names, goal, frame size), or None.
        stage_names: subtask names when there is no task (default: one "task" stage).
        frame_size: (H, W) of recorded frames (default: the task's, else 224x224).
        auto_start: begin the first episode as soon as every needed topic has data.
        overwrite: replace an existing `out`.
    """

    def __init__(
        self,
        bridge: Bridge,
        inputs: Inputs,
        profile: RobotProfile,
        out: Path,
        task: Any = None,
        stage_names: list[str] | None = None,
        frame_size: tuple[int, int] | None = None,
        auto_start: bool = True,
        overwrite: bool = False,
    ) -> None:
        from embodied.demos.dataset import DemoWriter

        self.bridge, self.inputs, self.profile, self.task = bridge, inputs, profile, task
        self.out, self.auto_start = Path(out), auto_start
        names = [s.name for s in task.stages] if task is not None and task.stages else None
        self.stage_names = names or stage_names or ["task"]
        self.frame_size = tuple(frame_size or (task.frame_size if task is not None else (224, 224)))
        self.cameras = profile.cameras()
        self.assembler = ObservationAssembler(profile, np.float32)
        self.mapper = ActionMapper(profile) if profile.action else None
        self.action_dim = profile.action.dim if profile.action else 0
        self._action = np.zeros(self.action_dim)
        self._cmd_values = [
            np.full(len(c.indices), np.nan) for c in (profile.action.commands if profile.action else ())
        ]
        self._cmd_seen: dict[int, float] = {}
        self._commands: queue.Queue[str] = queue.Queue(maxsize=100)
        self.episode: _Episode | None = None
        self.saved: list[int] = []
        self.discarded = 0
        self._quit = False
        if self.mapper is not None:
            for i, cmd in enumerate(self.mapper.commands_spec):
                bridge.subscribe(cmd.topic, cmd.type, self._command_handler(i), queue_length=1)
        topic = profile.record.annotation_topic
        if topic:
            bridge.subscribe(topic, "std_msgs/String", self._on_annotation, queue_length=10)
        # Created last: the partial dataset folder appears only once everything else is set up.
        self.writer = DemoWriter(
            self.out,
            task=task.name if task is not None else profile.name,
            instruction=task.goal if task is not None else profile.description,
            fps=profile.control.rate_hz,
            cameras=sorted(self.cameras),
            frame_size=self.frame_size if self.cameras else None,  # type: ignore[arg-type]
            stages={"dense": self.stage_names, "sparse": ["task"]},
            state_dim=profile.obs_dim,
            action_dim=self.action_dim,
            source=f"embodied record --robot {profile.source or profile.name}",
            overwrite=overwrite,
        )

    # inputs from the operator and the wire
    def command(self, word: str) -> None:
        """Queue an operator command (thread-safe); applied at the next tick."""
        parsed = parse_command(word)
        if parsed is None:
            LOG.warning("unknown recording command %r; use one of %s", word, sorted(WORDS))
            return
        try:
            self._commands.put_nowait(parsed)
        except queue.Full:
            LOG.warning("too many queued recording commands; dropped %r", parsed)

    def _on_annotation(self, msg: dict) -> None:
        data = msg.get("data") if isinstance(msg, dict) else None
        if not isinstance(data, str):
            LOG.warning("ignored a malformed annotation message %r (want std_msgs/String)", msg)
            return
        self.command(data)

    def _command_handler(self, i: int) -> Callable[[dict], None]:
        assert self.mapper is not None
        cmd = self.mapper.commands_spec[i]

        def handle(msg: dict) -> None:
            values = command_values(cmd, msg) if isinstance(msg, dict) else None
            if values is None:
                LOG.warning("ignored a malformed command on %s", cmd.topic)
                return
            idx, act = self.mapper.to_action(i, values)  # type: ignore[union-attr]
            self._action[idx] = np.nan_to_num(act)
            self._cmd_values[i] = values
            self._cmd_seen[i] = time.monotonic()

        return handle

    # episode bookkeeping
    def _needed(self) -> list[str]:
        return list(dict.fromkeys(self.profile.required_keys() + list(self.cameras.values())))

    def _start(self) -> None:
        if self.episode is not None:
            return
        self.assembler.reset()
        self.episode = _Episode(started=time.time(), boundaries=[0])
        LOG.warning("recording episode %d (stages: %s)", len(self.saved), ", ".join(self.stage_names))

    def _next_stage(self) -> None:
        ep = self.episode
        if ep is None or ep.rows == 0:
            LOG.warning("'next' ignored: no frame recorded yet")
            return
        if len(ep.boundaries) >= len(self.stage_names):
            LOG.warning("'next' ignored: already in the last stage %r", self.stage_names[-1])
            return
        ep.boundaries.append(ep.rows - 1)
        LOG.warning("stage %r ends at frame %d", self.stage_names[len(ep.boundaries) - 2], ep.rows - 1)

    def _finish(self, label: str) -> None:
        ep = self.episode
        self.episode = None
        if ep is None:
            return
        if label == "discard" or ep.rows == 0:
            self.discarded += 1
            LOG.warning("episode discarded (%d frames)", ep.rows)
            return
        self.saved.append(self._write(ep, label))

    def _write(self, ep: _Episode, label: str) -> int:
        from embodied.demos.dataset import Episode, Stage

        success = label == "success"
        last = ep.rows - 1
        closed = len(ep.boundaries) - 1  # stages ended by "next"
        dense = [Stage(self.stage_names[k], ep.boundaries[k], ep.boundaries[k + 1]) for k in range(closed)]
        if success:
            dense.append(Stage(self.stage_names[closed], ep.boundaries[closed], last))
            if len(dense) < len(self.stage_names):
                LOG.warning(
                    "episode labelled success but only %d of %d stages were marked", len(dense), len(self.stage_names)
                )
        flags = np.zeros(ep.rows, bool)
        flags[-1] = success
        episode = Episode(
            states=np.asarray(ep.states, np.float32).reshape(ep.rows, self.profile.obs_dim),
            actions=np.asarray(ep.actions, np.float32).reshape(ep.rows, self.action_dim),
            success=success,
            frames={cam: np.stack(frames) for cam, frames in ep.frames.items()},
            annotations={"dense": dense, "sparse": [Stage("task", 0, last)] if success else []},
            rewards=np.zeros(ep.rows, np.float32),
            success_flags=flags,
            task=self.task.goal if self.task is not None else "",
            info={
                "source": "ros",
                "robot": self.profile.name,
                "success_labelled": label in ("success", "fail"),
                "started_wall": ep.started,
                "rows_without_command": int(ep.rows - sum(ep.action_seen)),
                "skipped_stale_ticks": ep.gaps,
            },
        )
        index = self.writer.add(episode)
        side = self.writer.tmp / "ros" / f"episode_{index:06d}.npz"
        side.parent.mkdir(exist_ok=True)
        arrays: dict[str, np.ndarray] = {
            "time": np.asarray(ep.times),
            "action_seen": np.asarray(ep.action_seen, bool),
            "commands": np.asarray(ep.commands, np.float64).reshape(ep.rows, -1),
        }
        for key in ep.stamps:
            arrays[f"stamp_{key}"] = np.asarray(ep.stamps[key])
            arrays[f"received_{key}"] = np.asarray(ep.received[key])
        np.savez_compressed(side, **arrays)
        LOG.warning(
            "saved episode %d: %d frames, %s, stages %s", index, ep.rows,
            "success" if success else "failure" if label == "fail" else "unlabelled", [s.name for s in dense],
        )  # fmt: skip
        return index

    def _row(self, now: float) -> None:
        ep = self.episode
        assert ep is not None
        timeout = self.profile.control.stale_timeout_s
        samples = {k: self.inputs.latest(k) for k in self.inputs.keys}
        stale = [k for k in self._needed() if samples[k] is None or now - samples[k].received > timeout]
        if stale:
            ep.gaps += 1
            if ep.gaps == 1 or ep.gaps % 100 == 0:
                LOG.warning("skipped %d tick(s): stale %s", ep.gaps, [self.profile.topics[k].topic for k in stale])
            return
        for cam, key in self.cameras.items():
            ep.frames.setdefault(cam, []).append(preprocess_frame(samples[key].value, self.frame_size))  # type: ignore[union-attr]
        ep.states.append(self.assembler.assemble(samples) if self.profile.obs_dim else np.zeros(0, np.float32))
        fresh = all(now - self._cmd_seen.get(i, -np.inf) <= timeout for i in range(len(self._cmd_values)))
        ep.actions.append(self._action.copy())
        ep.action_seen.append(bool(self._cmd_values) and fresh)
        ep.commands.append(np.concatenate(self._cmd_values) if self._cmd_values else np.zeros(0))
        ep.times.append(time.time())
        for key, s in samples.items():
            ep.stamps.setdefault(key, []).append(np.nan if s is None or s.stamp is None else s.stamp)
            ep.received.setdefault(key, []).append(np.nan if s is None else s.wall)
        ep.rows += 1

    # the loop
    def run(
        self, max_seconds: float | None = None, episodes: int | None = None, stop: threading.Event | None = None
    ) -> Path:
        """Record until `quit`, `episodes` saved, `max_seconds`, `stop` or Ctrl-C; returns the dataset folder.

        An episode still open at the end is saved unlabelled. With no saved episode the folder is not created.
        """
        stop = stop or threading.Event()
        ctl = self.profile.control
        try:
            self.inputs.wait_ready(self._needed(), ctl.startup_timeout_s)
            if self.auto_start:
                self._start()
            period = 1.0 / ctl.rate_hz
            start = time.monotonic()
            end = start + max_seconds if max_seconds is not None else np.inf
            next_tick = start
            while not stop.is_set() and not self._quit:
                stop.wait(max(0.0, min(next_tick, end) - time.monotonic()))
                now = time.monotonic()
                if now >= end or stop.is_set():
                    break
                next_tick = max(next_tick + period, now)
                while not self._commands.empty():
                    self._apply(self._commands.get_nowait())
                if self._quit or (episodes is not None and len(self.saved) >= episodes):
                    break
                if self.episode is not None:
                    self._row(now)
        except KeyboardInterrupt:
            LOG.warning("interrupted")
        except BaseException:
            self.writer.abort()
            raise
        if self.episode is not None:
            self._finish("end")
        if not self.saved:
            self.writer.abort()
            LOG.warning("no episode saved; %s not written", self.out)
            return self.out
        self.writer.close()
        return self.out

    def _apply(self, word: str) -> None:
        if word == "start":
            self._start()
        elif word == "next":
            self._next_stage()
        elif word in ("success", "fail", "end", "discard"):
            if self.episode is None:
                LOG.warning("%r ignored: no episode is being recorded (start with 's')", word)
            self._finish(word)
        elif word == "quit":
            self._finish("end")
            self._quit = True


def run_record(
    rosbridge: str,
    robot: str,
    out: Path,
    task: str | None = None,
    stages: list[str] | None = None,
    episodes: int | None = None,
    max_seconds: float | None = None,
    frame_size: tuple[int, int] | None = None,
    auto_start: bool = True,
    keys: IO[str] | None = None,
    connect_timeout: float = 5.0,
    overwrite: bool = False,
    stop: threading.Event | None = None,
) -> tuple[Path, list[int]]:
    """`embodied record`: returns (dataset folder, indices of the saved episodes)."""
    from embodied.demos.dataset import DemoError
    from embodied.tasks.spec import load_task

    profile = load_profile(robot)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DemoError(f"{out}: folder exists and is not empty; pick another --out or pass --overwrite")
    spec = load_task(task) if task else (load_task(profile.task) if profile.task else None)
    if spec is not None and profile.observation:
        profile.check_task(spec)
    bridge = Bridge(rosbridge, profile.control.reconnect_initial_s, profile.control.reconnect_max_s)
    bridge.connect(connect_timeout)
    reader = None
    try:
        inputs = Inputs(bridge, profile)
        recorder = Recorder(bridge, inputs, profile, out, spec, stages, frame_size, auto_start, overwrite)
        if keys is not None:
            reader = KeyReader(keys, recorder.command).start()
            LOG.warning("keys: %s (then Enter)", ", ".join(f"{k}={v}" for k, v in KEYS.items()))
        path = recorder.run(max_seconds, episodes, stop)
        return path, recorder.saved
    finally:
        if reader is not None:
            reader.stop()
        bridge.close()
