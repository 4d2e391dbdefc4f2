"""Robot profiles: one TOML file per robot (`robots/*.toml`) mapping ROS topics to a policy's
observation and the policy's action to ROS commands, with the safety settings of the control loop.

A profile says, in order, how the flat observation vector the policy was trained on is assembled
from topics (``[[observation]]`` segments: JointState fields picked by joint name, array entries,
points/poses, constants, or a copy of an earlier step's entries for frame-stacked observations), which
topics carry camera images (standing in for the task's cameras), how each action entry becomes a
command message (JointTrajectory, Float64MultiArray, Float64, Twist) with limits, a per-step rate
limit and a hold command, and the control rate, stale-observation timeout and e-stop topic.
The schema is documented field by field in docs/deploy.md; everything is validated on load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from embodied.tomlfile import load_model, workspace_dir


class ProfileError(ValueError):
    """A robot profile is missing, malformed, or does not fit the policy/task. One line, names file and field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


JOINT_STATE = "sensor_msgs/JointState"
IMAGE = "sensor_msgs/Image"
COMPRESSED_IMAGE = "sensor_msgs/CompressedImage"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
ARRAY_TYPES = ("std_msgs/Float64MultiArray", "std_msgs/Float32MultiArray")
SCALAR_TYPES = ("std_msgs/Float64", "std_msgs/Float32")
POINT_TYPES = (
    "geometry_msgs/Point",
    "geometry_msgs/PointStamped",
    "geometry_msgs/Vector3",
    "geometry_msgs/Vector3Stamped",
)
POSE_TYPES = ("geometry_msgs/Pose", "geometry_msgs/PoseStamped")
ODOMETRY = "nav_msgs/Odometry"
INPUT_TYPES = (JOINT_STATE, *IMAGE_TYPES, *ARRAY_TYPES, *SCALAR_TYPES, *POINT_TYPES, *POSE_TYPES, ODOMETRY)

JOINT_TRAJECTORY = "trajectory_msgs/JointTrajectory"
FLOAT64_ARRAY = "std_msgs/Float64MultiArray"
FLOAT64 = "std_msgs/Float64"
TWIST = "geometry_msgs/Twist"
COMMAND_TYPES = (JOINT_TRAJECTORY, FLOAT64_ARRAY, FLOAT64, TWIST)
TWIST_FIELDS = ("linear.x", "linear.y", "linear.z", "angular.x", "angular.y", "angular.z")

JOINT_FIELDS = ("position", "velocity", "effort")
POSE_FIELDS = {"pose": (0, 7), "position": (0, 3), "orientation": (3, 7), "twist": (7, 13)}
"""Slices of the decoded pose values [px, py, pz, qx, qy, qz, qw] (ROS order; `indices` can reorder them),
followed for nav_msgs/Odometry by the twist [vx, vy, vz, wx, wy, wz]."""


def canonical_type(name: str) -> str:
    """``pkg/msg/Type`` (ROS 2 spelling) -> ``pkg/Type``; rosbridge accepts both."""
    parts = name.strip().split("/")
    if len(parts) == 3 and parts[1] == "msg":
        return f"{parts[0]}/{parts[2]}"
    return name.strip()


Vec = float | tuple[float, ...]


def _expand(value: Vec | None, n: int, default: float) -> np.ndarray:
    """A scalar or per-entry list as a float64 [n] array (lengths are checked by validators)."""
    if value is None:
        return np.full(n, default)
    if isinstance(value, tuple):
        return np.asarray(value, dtype=np.float64)
    return np.full(n, float(value))


def _check_len(value: Vec | str | None, n: int, where: str) -> None:
    if isinstance(value, tuple) and len(value) != n:
        raise ValueError(f"{where} has {len(value)} entries but there are {n} values (give one number or {n})")


class TopicSpec(_Model):
    """A topic the robot publishes (input)."""

    topic: str = Field(description="ROS topic name, e.g. /joint_states")
    type: str = Field(description="message type; see INPUT_TYPES (ROS 2 'pkg/msg/Type' spelling accepted)")
    required: bool = Field(True, description="needed before the first command and watched by the stale-data watchdog")
    camera: str | None = Field(None, description="image topics: the task camera this stands in for (e.g. 'corner')")
    queue: int = Field(8, ge=1, le=10_000, description="messages kept for consumers that read every message")
    throttle_ms: int = Field(0, ge=0, description="rosbridge throttle_rate: minimum ms between messages")

    @field_validator("topic")
    @classmethod
    def _topic_name(cls, v: str) -> str:
        if not v.startswith("/") or " " in v:
            raise ValueError(f"topic name must start with '/' and have no spaces, got {v!r}")
        return v

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        if canonical_type(v) not in INPUT_TYPES:
            raise ValueError(f"unsupported input message type {v!r}; supported: {', '.join(INPUT_TYPES)}")
        return v

    @property
    def kind(self) -> str:
        return canonical_type(self.type)

    @property
    def is_image(self) -> bool:
        return self.kind in IMAGE_TYPES


class Segment(_Model):
    """One ``[[observation]]`` entry: the next values of the flat observation vector.

    Exactly one of `source` (a key of ``[topics]``), `constant` (fixed values) or `history`
    (``[start, stop)`` of the previous step's assembled vector, for frame-stacked observations such
    as Meta-World's; on the first step, and after every halt, it repeats the current values, as a
    simulator reset does). Values are ``offset + scale * raw``.
    """

    source: str | None = None
    field: str | None = Field(
        None, description="JointState: position|velocity|effort; Pose: pose|position|orientation; Odometry: +twist"
    )
    names: tuple[str, ...] | None = Field(None, description="JointState: joint names, in observation order")
    indices: tuple[int, ...] | None = Field(None, description="entries of the source's values, in observation order")
    constant: tuple[float, ...] | None = None
    history: tuple[int, int] | None = None
    scale: Vec = 1.0
    offset: Vec = 0.0
    view: str | None = Field(None, description="the task view these entries fill (checked against its expression)")

    @model_validator(mode="after")
    def _one_kind(self) -> Segment:
        kinds = [k for k in ("source", "constant", "history") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of 'source', 'constant', 'history' (got {kinds or 'none'})")
        if self.history is not None and not 0 <= self.history[0] < self.history[1]:
            raise ValueError(f"history must be [start, stop) with 0 <= start < stop, got {list(self.history)}")
        if self.constant is not None and not self.constant:
            raise ValueError("constant must not be empty")
        return self


class MeasuredSpec(_Model):
    """Where a command's current (measured) values come from: JointState positions by joint name."""

    source: str
    field: Literal["position", "velocity", "effort"] = "position"
    names: tuple[str, ...]


class CommandSpec(_Model):
    """One ``[[action.commands]]`` entry: some action entries -> one command message.

    Command values are ``offset + scale * action[indices]``, then clipped to [low, high] and changed by at
    most `max_delta` per control step (all in command units). `hold` is what the watchdog publishes:
    "zero" (velocity interfaces), "measured" (current joint positions, from `measured`), "last" (the
    last command sent) or explicit values.
    """

    topic: str
    type: str
    indices: tuple[int, ...] = Field(min_length=1)
    scale: Vec = 1.0
    offset: Vec = 0.0
    low: Vec | None = None
    high: Vec | None = None
    max_delta: Vec | None = Field(None, description="largest change per control step, command units")
    hold: Literal["zero", "measured", "last"] | tuple[float, ...] = "zero"
    measured: MeasuredSpec | None = None
    joint_names: tuple[str, ...] | None = Field(None, description="JointTrajectory: controlled joints, in order")
    fields: tuple[str, ...] | None = Field(None, description="Twist: fields to fill, default linear.x.. angular.z")
    time_from_start_s: float = Field(0.1, gt=0, description="JointTrajectory: time to reach the point")
    frame_id: str = ""

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str) -> str:
        if canonical_type(v) not in COMMAND_TYPES:
            raise ValueError(f"unsupported command message type {v!r}; supported: {', '.join(COMMAND_TYPES)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> CommandSpec:
        n = len(self.indices)
        for name in ("scale", "offset", "low", "high", "max_delta", "hold"):
            _check_len(getattr(self, name), n, name)
        low, high = _expand(self.low, n, -np.inf), _expand(self.high, n, np.inf)
        if np.any(low > high):
            raise ValueError(f"low {low.tolist()} exceeds high {high.tolist()}")
        if self.max_delta is not None and np.any(_expand(self.max_delta, n, 0) <= 0):
            raise ValueError("max_delta must be positive")
        kind = self.kind
        if kind == JOINT_TRAJECTORY and (self.joint_names is None or len(self.joint_names) != n):
            raise ValueError(f"a JointTrajectory command needs joint_names with {n} names (one per index)")
        if kind == FLOAT64 and n != 1:
            raise ValueError(f"a std_msgs/Float64 command carries one value, got {n} indices")
        if kind == TWIST:
            fields = self.fields or TWIST_FIELDS[:n]
            if len(fields) != n or any(f not in TWIST_FIELDS for f in fields) or len(set(fields)) != n:
                raise ValueError(
                    f"Twist fields must be {n} distinct names from {list(TWIST_FIELDS)}, got {list(fields)}"
                )
        elif self.fields is not None:
            raise ValueError("'fields' is only for geometry_msgs/Twist commands")
        if self.hold == "measured" and (self.measured is None or len(self.measured.names) != n):
            raise ValueError(f"hold = 'measured' needs a [measured] table with {n} joint names")
        return self

    @property
    def kind(self) -> str:
        return canonical_type(self.type)

    @property
    def twist_fields(self) -> tuple[str, ...]:
        return self.fields or TWIST_FIELDS[: len(self.indices)]


class ActionSpec(_Model):
    """The policy's action (`dim` entries, clipped to [low, high] in policy units) and its commands."""

    dim: int = Field(gt=0)
    low: Vec | None = None
    high: Vec | None = None
    commands: tuple[CommandSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _covered(self) -> ActionSpec:
        _check_len(self.low, self.dim, "low")
        _check_len(self.high, self.dim, "high")
        for i, cmd in enumerate(self.commands):
            bad = [j for j in cmd.indices if not 0 <= j < self.dim]
            if bad:
                raise ValueError(f"commands[{i}].indices {bad} are outside the action (dim = {self.dim})")
        used = {j for cmd in self.commands for j in cmd.indices}
        unused = sorted(set(range(self.dim)) - used)
        if unused:
            raise ValueError(f"action entries {unused} are not sent by any command (every entry must reach the robot)")
        return self


class ControlSpec(_Model):
    """Control loop and safety settings."""

    rate_hz: float = Field(gt=0, le=1000, description="policy steps per second")
    stale_timeout_s: float = Field(gt=0, description="hold when a required topic is older than this")
    startup_timeout_s: float = Field(5.0, gt=0, description="wait this long for the first message of every topic")
    sync: bool = Field(True, description="step as soon as the sync topic has a new message (lower latency)")
    sync_topic: str | None = Field(None, description="topic key to step on (default: first required camera/topic)")
    estop_topic: str | None = Field("/embodied/estop", description="std_msgs/Bool: true halts until false")
    status_topic: str | None = Field("/embodied/status", description="std_msgs/String: JSON state changes")
    reconnect_initial_s: float = Field(0.2, gt=0, description="first reconnect delay; grows x2 per failure")
    reconnect_max_s: float = Field(5.0, gt=0, description="largest reconnect delay")


class MonitorSpec(_Model):
    """Topics the reward monitor publishes (std_msgs/Float64, Float64, String, String)."""

    reward_topic: str = "/embodied/reward"
    progress_topic: str | None = "/embodied/progress"
    stage_topic: str | None = "/embodied/stage"
    components_topic: str | None = "/embodied/reward_components"


class RecordSpec(_Model):
    """Recording: the operator's annotation topic (std_msgs/String: start|next|success|fail|end|discard|quit)."""

    annotation_topic: str | None = "/embodied/annotation"


class RobotProfile(_Model):
    """A validated robot profile. See docs/deploy.md for the TOML schema."""

    name: str
    description: str = ""
    task: str | None = Field(None, description="the task this profile fits (checked against the run's task)")
    ros: Literal[1, 2] = Field(2, description="ROS version behind the bridge: time fields secs/nsecs vs sec/nanosec")
    control: ControlSpec
    topics: dict[str, TopicSpec] = Field(min_length=1)
    observation: tuple[Segment, ...] = ()
    action: ActionSpec | None = None
    monitor: MonitorSpec = MonitorSpec()
    record: RecordSpec = RecordSpec()
    source: str = ""

    @model_validator(mode="after")
    def _wiring(self) -> RobotProfile:
        start = 0
        for i, seg in enumerate(self.observation):
            where = f"observation[{i}]"
            if seg.source is not None:
                if seg.source not in self.topics:
                    raise ValueError(f"{where}.source: unknown topic key {seg.source!r}; topics: {sorted(self.topics)}")
                self._check_source(seg, self.topics[seg.source], where)
            if seg.history is not None and seg.history[1] > start:
                raise ValueError(
                    f"{where}.history {list(seg.history)} must copy entries before this segment (it starts at {start})"
                )
            size = self.segment_size(seg)
            _check_len(seg.scale, size, f"{where}.scale")
            _check_len(seg.offset, size, f"{where}.offset")
            start += size
        for key, spec in self.topics.items():
            if spec.is_image and not spec.camera:
                raise ValueError(f"topics.{key}: image topics need 'camera' (the task camera it stands in for)")
            if spec.camera and not spec.is_image:
                raise ValueError(f"topics.{key}: 'camera' is only for image topics")
        inputs = {spec.topic for spec in self.topics.values()}
        for name, topic in (("control.estop_topic", self.control.estop_topic),
                            ("record.annotation_topic", self.record.annotation_topic)):  # fmt: skip
            if topic in inputs:
                raise ValueError(f"{name} {topic!r} is also an input topic in [topics]")
        if self.control.sync_topic is not None:
            key = self.control.sync_topic
            if key not in self.topics or not self.topics[key].required:
                raise ValueError(f"control.sync_topic {key!r} must be a required key of [topics]")
        for i, cmd in enumerate(self.action.commands if self.action else ()):
            if cmd.measured is not None:
                src = self.topics.get(cmd.measured.source)
                if src is None or src.kind != JOINT_STATE:
                    raise ValueError(
                        f"action.commands[{i}].measured.source {cmd.measured.source!r} must be a JointState topic key"
                    )
        return self

    @staticmethod
    def _check_source(seg: Segment, spec: TopicSpec, where: str) -> None:
        kind = spec.kind
        if spec.is_image:
            raise ValueError(f"{where}.source: {seg.source!r} is an image topic; images are not part of the vector")
        if kind == JOINT_STATE:
            if (seg.field or "position") not in JOINT_FIELDS:
                raise ValueError(f"{where}.field: JointState fields are {list(JOINT_FIELDS)}, got {seg.field!r}")
            if seg.names is None and seg.indices is None:
                raise ValueError(f"{where}: a JointState segment needs 'names' (joint names) or 'indices'")
            return
        if seg.names is not None:
            raise ValueError(f"{where}.names: only JointState segments select by joint name")
        if kind in (*POSE_TYPES, ODOMETRY):
            fields = list(POSE_FIELDS) if kind == ODOMETRY else list(POSE_FIELDS)[:3]
            if (seg.field or "pose") not in fields:
                raise ValueError(f"{where}.field: {kind} fields are {fields}, got {seg.field!r}")
        elif seg.field not in (None, "data"):
            raise ValueError(f"{where}.field: {kind} has no field {seg.field!r}")
        if kind in ARRAY_TYPES and seg.indices is None:
            raise ValueError(f"{where}: an array segment needs 'indices' (which entries, in order)")
        width = RobotProfile.source_width(seg, spec)
        if width is not None and seg.indices is not None and any(not 0 <= j < width for j in seg.indices):
            raise ValueError(f"{where}.indices {list(seg.indices)} outside the {width} values of {kind}")

    @staticmethod
    def source_width(seg: Segment, spec: TopicSpec) -> int | None:
        """Number of raw values a fixed-size source gives (None for JointState and arrays)."""
        kind = spec.kind
        if kind in SCALAR_TYPES:
            return 1
        if kind in POINT_TYPES:
            return 3
        if kind in (*POSE_TYPES, ODOMETRY):
            a, b = POSE_FIELDS[seg.field or "pose"]
            return b - a
        return None

    def segment_size(self, seg: Segment) -> int:
        if seg.constant is not None:
            return len(seg.constant)
        if seg.history is not None:
            return seg.history[1] - seg.history[0]
        if seg.indices is not None:
            return len(seg.indices)
        if seg.names is not None:
            return len(seg.names)
        width = self.source_width(seg, self.topics[seg.source or ""])
        assert width is not None
        return width

    def segment_slices(self) -> list[tuple[int, int]]:
        """[start, stop) of every observation segment in the flat vector."""
        out, start = [], 0
        for seg in self.observation:
            size = self.segment_size(seg)
            out.append((start, start + size))
            start += size
        return out

    @property
    def obs_dim(self) -> int:
        """Length of the assembled observation vector."""
        return sum(self.segment_size(s) for s in self.observation)

    def cameras(self) -> dict[str, str]:
        """Task camera name -> topic key."""
        return {spec.camera: key for key, spec in self.topics.items() if spec.camera}

    def required_keys(self) -> list[str]:
        return [key for key, spec in self.topics.items() if spec.required]

    def sync_key(self) -> str | None:
        """The topic key control steps synchronise to (None when `control.sync` is off)."""
        if not self.control.sync:
            return None
        if self.control.sync_topic:
            return self.control.sync_topic
        required = self.required_keys()
        cams = [k for k in required if self.topics[k].is_image]
        return (cams or required or [None])[0]

    # -- checks against a policy / task ------------------------------------------------------
    def where(self, field: str) -> str:
        return f"{self.source or self.name}: {field}"

    def check_policy(self, observation_space: Any, action_space: Any, run: str) -> None:
        """Raise ProfileError (one line) unless the profile produces the policy's observation and
        consumes its action: Box spaces, the same observation length, the same action length."""
        import gymnasium as gym

        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
            raise ProfileError(
                f"{self.where('observation')}: run {run!r} expects observations {observation_space}; "
                "deployment assembles flat vectors (Box of shape (D,)) only"
            )
        if not self.observation:
            raise ProfileError(f"{self.where('observation')}: the profile has no [[observation]] segments")
        if self.obs_dim != observation_space.shape[0]:
            raise ProfileError(
                f"{self.where('observation')}: the profile assembles {self.obs_dim} values but run {run!r} "
                f"expects observations of shape {observation_space.shape}"
            )
        if not isinstance(action_space, gym.spaces.Box) or len(action_space.shape) != 1:
            raise ProfileError(
                f"{self.where('action')}: run {run!r} has action space {action_space}; only continuous (Box) "
                "actions can become robot commands"
            )
        if self.action is None:
            raise ProfileError(f"{self.where('action')}: the profile has no [action] table, so it cannot deploy")
        if self.action.dim != action_space.shape[0]:
            raise ProfileError(
                f"{self.where('action.dim')}: profile has {self.action.dim} action entries but run {run!r} "
                f"outputs {action_space.shape[0]}"
            )

    def check_task(self, task: Any, what: str = "task") -> None:
        """Raise ProfileError unless the profile fits `task` (a TaskSpec): its name when the profile
        names one, and every entry a segment's `view` reads lies inside that segment."""
        import gymnasium as gym

        from embodied.tasks.spec import TaskError
        from embodied.tasks.views import ViewError, make_getter

        if self.task is not None and self.task != task.name:
            raise ProfileError(
                f"{self.where('task')}: the profile is for task {self.task!r}, but the {what} is {task.name!r}"
            )
        space = gym.spaces.Box(-np.inf, np.inf, (max(self.obs_dim, 1),), np.float64)
        probe = np.arange(self.obs_dim)
        for i, (seg, (a, b)) in enumerate(zip(self.observation, self.segment_slices(), strict=True)):
            if seg.view is None:
                continue
            if seg.view not in task.views:
                raise ProfileError(
                    f"{self.where(f'observation[{i}].view')}: task {task.name!r} has no view {seg.view!r}"
                )
            try:
                getter, _ = make_getter(task.views[seg.view].expr, f"task {task.name} view {seg.view}", space)
            except (ViewError, TaskError) as exc:
                raise ProfileError(f"{self.where(f'observation[{i}].view')}: {exc}") from None
            reads = np.atleast_1d(getter(probe)).tolist()
            if not reads or not all(a <= j < b for j in reads):
                raise ProfileError(
                    f"{self.where(f'observation[{i}].view')}: view {seg.view!r} = {task.views[seg.view].expr} reads "
                    f"entries {_span(reads)} but this segment fills {_span(list(range(a, b)))}"
                )


def _span(idx: list[int]) -> str:
    if idx and idx == list(range(idx[0], idx[-1] + 1)):
        return f"[{idx[0]}:{idx[-1] + 1}]"
    return str(idx)


def robots_dir() -> Path:
    """The profile folder: `$EMBODIED_ROBOTS`, else `./robots`, else the repository's `robots/`."""
    return workspace_dir("robots", "EMBODIED_ROBOTS")


def load_profile(profile: str | Path | RobotProfile) -> RobotProfile:
    """Load and validate a robot profile by name (`robots/<name>.toml`) or path.

    Raises:
        ProfileError: unknown profile, malformed TOML, or an invalid field (named, one line).
    """
    if isinstance(profile, RobotProfile):
        return profile
    path = Path(profile)
    if path.suffix != ".toml":
        candidate = robots_dir() / f"{profile}.toml"
        if not candidate.is_file():
            names = sorted(p.stem for p in robots_dir().glob("*.toml"))
            raise ProfileError(
                f"unknown robot profile {str(profile)!r}; known: {', '.join(names) or 'none'} (in {robots_dir()})"
            )
        path = candidate
    if not path.is_file():
        raise ProfileError(f"{path}: no such robot profile")
    return load_model(path, RobotProfile, ProfileError, defaults={"name": path.stem}, overrides={"source": str(path)})
