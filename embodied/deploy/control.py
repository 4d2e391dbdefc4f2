"""The real-robot control loop: observations from ROS topics -> trained policy -> command messages.

Observations are assembled exactly as the simulator laid them out for the run's task (the profile's
``[[observation]]`` segments, checked against the task's views; frame-stacked entries repeat the current
values after a start or halt, like a reset), the policy runs at the profile's rate, and actions become
commands through the profile's mapping.

Safety, in the order it is applied:
  * actions are clipped to the action limits (policy units), mapped, clipped to each command's limits
    and changed by at most `max_delta` per step (rate limit); a non-finite action halts;
  * the watchdog publishes each command's hold value as soon as a required topic is older than
    `stale_timeout_s`, the connection drops (the hold is sent first when the link returns; commands are
    never queued while it is down), or the e-stop topic says true; control resumes only after every
    required topic has a message received after the halt (and the e-stop is cleared);
  * ending the run (time limit, Ctrl-C) publishes the hold too.
Per step, the latency from the sync observation's arrival to the command's publication is logged.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from embodied.deploy.bridge import Bridge, Inputs, JointValues, Sample, ros_time, segment_values
from embodied.deploy.profile import (
    FLOAT64,
    FLOAT64_ARRAY,
    JOINT_TRAJECTORY,
    TWIST,
    CommandSpec,
    ProfileError,
    RobotProfile,
    _expand,
    load_profile,
)

LOG = logging.getLogger("embodied.deploy")

BURST, EARLY = 1.5, 0.25
"""Sync pacing: steps a loop may bank (absorbs sensor jitter) and how early (in periods) a step may meet a message."""


# -- observations ----------------------------------------------------------------------------------
class ObservationAssembler:
    """Builds the flat observation vector from the latest samples, following the profile's segments.

    Args:
        profile: the robot profile.
        dtype: dtype of the policy's observation space.
    """

    def __init__(self, profile: RobotProfile, dtype: Any = np.float64) -> None:
        self.profile, self.dtype = profile, np.dtype(dtype)
        self.slices = profile.segment_slices()
        self.dim = profile.obs_dim
        self._scale = [_expand(s.scale, b - a, 1.0) for s, (a, b) in zip(profile.observation, self.slices, strict=True)]
        self._offset = [
            _expand(s.offset, b - a, 0.0) for s, (a, b) in zip(profile.observation, self.slices, strict=True)
        ]
        self._prev: np.ndarray | None = None
        self._warned: set[str] = set()

    def reset(self) -> None:
        """Forget the previous step: history segments repeat the current values next time (as after a reset)."""
        self._prev = None

    def assemble(self, samples: dict[str, Sample | None]) -> np.ndarray:
        """float [D] in the policy's dtype. Optional topics without a message yet contribute `offset`."""
        out = np.zeros(self.dim, dtype=np.float64)
        for seg, (a, b), scale, offset in zip(
            self.profile.observation, self.slices, self._scale, self._offset, strict=True
        ):
            if seg.constant is not None:
                out[a:b] = np.asarray(seg.constant) * scale + offset
            elif seg.source is not None:
                sample = samples.get(seg.source)
                if sample is None:
                    if seg.source not in self._warned:
                        self._warned.add(seg.source)
                        topic = self.profile.topics[seg.source].topic
                        LOG.warning(
                            "no message on optional topic %s yet; its observation entries are %s", topic, offset
                        )
                    out[a:b] = offset
                else:
                    kind = self.profile.topics[seg.source].kind
                    out[a:b] = segment_values(seg, sample.value, kind) * scale + offset
        for seg, (a, b), scale, offset in zip(
            self.profile.observation, self.slices, self._scale, self._offset, strict=True
        ):
            if seg.history is not None:
                base = self._prev if self._prev is not None else out
                out[a:b] = base[seg.history[0] : seg.history[1]] * scale + offset
        self._prev = out.copy()
        return out.astype(self.dtype)


# -- actions -> commands ---------------------------------------------------------------------------
class ActionMapper:
    """Policy action -> command values -> ROS messages, with limits and per-step rate limits.

    Args:
        profile: the robot profile (its `action` table).
        low, high: the policy's action-space bounds; the profile's own action limits tighten them.
    """

    def __init__(self, profile: RobotProfile, low: np.ndarray | None = None, high: np.ndarray | None = None) -> None:
        if profile.action is None:
            raise ProfileError(f"{profile.where('action')}: the profile has no [action] table")
        self.profile, spec = profile, profile.action
        n = spec.dim
        self.low = _expand(spec.low, n, -np.inf)
        self.high = _expand(spec.high, n, np.inf)
        if low is not None:
            self.low = np.maximum(self.low, np.broadcast_to(np.asarray(low, np.float64), n))
        if high is not None:
            self.high = np.minimum(self.high, np.broadcast_to(np.asarray(high, np.float64), n))
        self.commands_spec = spec.commands
        self._idx = [np.asarray(c.indices) for c in spec.commands]
        self._scale = [_expand(c.scale, len(c.indices), 1.0) for c in spec.commands]
        self._offset = [_expand(c.offset, len(c.indices), 0.0) for c in spec.commands]
        self._low = [_expand(c.low, len(c.indices), -np.inf) for c in spec.commands]
        self._high = [_expand(c.high, len(c.indices), np.inf) for c in spec.commands]
        self._delta = [None if c.max_delta is None else _expand(c.max_delta, len(c.indices), 0) for c in spec.commands]
        self.last: list[np.ndarray | None] = [None] * len(spec.commands)

    def reset(self, reference: list[np.ndarray | None]) -> None:
        """Rate limits count from `reference` (the hold values) after a start or a halt."""
        self.last = [None if r is None else np.asarray(r, np.float64).copy() for r in reference]

    def clip_action(self, action: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(action, np.float64).reshape(-1), self.low, self.high)

    def values(self, action: np.ndarray) -> list[np.ndarray]:
        """Command values for one action: clip, map, clip to command limits, rate-limit; remembers them."""
        a = self.clip_action(action)
        out = []
        for i in range(len(self.commands_spec)):
            v = np.clip(self._offset[i] + self._scale[i] * a[self._idx[i]], self._low[i], self._high[i])
            if self._delta[i] is not None and self.last[i] is not None:
                v = np.clip(v, self.last[i] - self._delta[i], self.last[i] + self._delta[i])
            self.last[i] = v
            out.append(v)
        return out

    def hold_values(self, measured: dict[str, Sample | None]) -> list[np.ndarray | None]:
        """What each command holds at: zeros, measured joint positions, the last command, or fixed values.
        None where it cannot be known (no measurement / nothing sent yet): that command is not sent."""
        out: list[np.ndarray | None] = []
        for i, cmd in enumerate(self.commands_spec):
            n = len(cmd.indices)
            if isinstance(cmd.hold, tuple):
                out.append(np.asarray(cmd.hold, np.float64))
            elif cmd.hold == "zero":
                out.append(np.zeros(n))
            elif cmd.hold == "last":
                out.append(None if self.last[i] is None else self.last[i].copy())
            else:
                assert cmd.measured is not None
                sample = measured.get(cmd.measured.source)
                if sample is None or not isinstance(sample.value, JointValues):
                    out.append(None)
                else:
                    out.append(sample.value.pick(cmd.measured.field, cmd.measured.names, None).astype(np.float64))
        return out

    def message(self, i: int, values: np.ndarray) -> dict:
        """The ROS message (rosbridge JSON dict) of command `i` carrying `values`."""
        return command_message(self.commands_spec[i], values, self.profile.ros)

    def to_action(self, i: int, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Invert command `i`'s mapping: (action indices, action values) for observed command values."""
        scale = np.where(self._scale[i] == 0, np.nan, self._scale[i])
        return self._idx[i], (np.asarray(values, np.float64) - self._offset[i]) / scale


def command_message(cmd: CommandSpec, values: np.ndarray, ros: int) -> dict:
    """Command values as the profile's message type (plain JSON types only)."""
    vals = [float(v) for v in np.asarray(values).reshape(-1)]
    kind = cmd.kind
    if kind == TWIST:
        msg: dict[str, Any] = {"linear": {"x": 0.0, "y": 0.0, "z": 0.0}, "angular": {"x": 0.0, "y": 0.0, "z": 0.0}}
        for name, v in zip(cmd.twist_fields, vals, strict=True):
            part, axis = name.split(".")
            msg[part][axis] = v
        return msg
    if kind == FLOAT64:
        return {"data": vals[0]}
    if kind == FLOAT64_ARRAY:
        return {"layout": {"dim": [], "data_offset": 0}, "data": vals}
    assert kind == JOINT_TRAJECTORY and cmd.joint_names is not None
    header: dict[str, Any] = {"stamp": ros_time(0.0, ros), "frame_id": cmd.frame_id}  # stamp 0: start now
    if ros == 1:
        header["seq"] = 0
    return {
        "header": header,
        "joint_names": list(cmd.joint_names),
        "points": [
            {
                "positions": vals,
                "velocities": [],
                "accelerations": [],
                "effort": [],
                "time_from_start": ros_time(cmd.time_from_start_s, ros),
            }
        ],
    }


def command_values(cmd: CommandSpec, msg: dict) -> np.ndarray | None:
    """Values carried by an observed command message (inverse of `command_message`); None if malformed."""
    try:
        kind = cmd.kind
        if kind == TWIST:
            return np.array([float(msg[name.split(".")[0]][name.split(".")[1]]) for name in cmd.twist_fields])
        if kind == FLOAT64:
            return np.array([float(msg["data"])])
        if kind == FLOAT64_ARRAY:
            vals = np.asarray(msg["data"], np.float64).reshape(-1)
            return vals if len(vals) == len(cmd.indices) else None
        names = list(msg["joint_names"])
        positions = msg["points"][-1]["positions"]
        by_name = dict(zip(names, positions, strict=True))
        return np.array([float(by_name[n]) for n in cmd.joint_names or ()])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


# -- policies --------------------------------------------------------------------------------------
class Policy(Protocol):
    """What the control loop runs: Box spaces and a deterministic `act(obs [D]) -> action [A]`."""

    observation_space: Any
    action_space: Any

    def act(self, obs: np.ndarray) -> np.ndarray: ...


class RunPolicy:
    """A trained run's policy (`policies/<run>/model.zip`) on CPU, deterministic.

    Observations get the run's normalisation when the run folder has one (`vecnormalize.pkl`, SB3's
    VecNormalize statistics); runs written by `embodied train` feed raw observations, as SB3's MLP
    policies do, so nothing is applied for them.
    """

    def __init__(self, run: str | Path, root: Path = Path("policies")) -> None:
        from embodied.train.config import load_config
        from embodied.train.evaluate import load_policy
        from embodied.train.runs import find_run

        self.run_dir = find_run(run, root)
        self.cfg = load_config(self.run_dir / "config.toml")
        self.task = self.cfg.task
        self.name = self.cfg.run
        self.model = load_policy(self.run_dir, self.cfg)
        self.observation_space = self.model.observation_space
        self.action_space = self.model.action_space
        self.normalizer: Any = None
        norm = self.run_dir / "vecnormalize.pkl"
        if norm.is_file():
            import pickle

            with norm.open("rb") as fh:
                self.normalizer = pickle.load(fh)  # the run's own file, written by SB3

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.normalizer is not None:
            obs = self.normalizer.normalize_obs(obs[None])[0]
        action, _ = self.model.predict(obs, deterministic=True)
        return np.asarray(action, np.float64).reshape(-1)


# -- the loop --------------------------------------------------------------------------------------
@dataclass
class StepRecord:
    """One control step: when, which sync message it answered, the action and command values sent."""

    t: float
    wall: float
    latency_ms: float
    sync_stamp: float | None
    sync_wall: float | None
    action: list[float]
    commands: list[list[float]]


@dataclass
class ControlStats:
    """What happened during a run (bounded: the last 100k steps are kept)."""

    steps: int = 0
    skipped: int = 0
    """sync messages not answered because the loop was at its rate limit"""
    holds: int = 0
    published: int = 0
    dropped: int = 0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    records: deque[StepRecord] = field(default_factory=lambda: deque(maxlen=100_000))
    events: list[tuple[float, str, str]] = field(default_factory=list)
    """(monotonic time, state 'running'|'halted'|'stopped', reason)"""
    started: float = 0.0
    ended: float = 0.0

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms)
        dur = max(self.ended - self.started, 1e-9)
        return {
            "steps": self.steps,
            "seconds": round(dur, 3),
            "rate_hz": round(self.steps / dur, 2),
            "holds": self.holds,
            "skipped_sync_messages": self.skipped,
            "published": self.published,
            "dropped_while_disconnected": self.dropped,
            "latency_ms_p50": round(float(np.percentile(lat, 50)), 3) if len(lat) else None,
            "latency_ms_p99": round(float(np.percentile(lat, 99)), 3) if len(lat) else None,
            "latency_ms_max": round(float(lat.max()), 3) if len(lat) else None,
        }


class Controller:
    """Runs a policy on the robot behind `bridge` with the profile's safety rules.

    Args:
        bridge: a connected `Bridge`.
        inputs: the profile's subscribed `Inputs` on that bridge.
        profile: the robot profile (already checked against the policy).
        policy: anything with Box spaces and `act(obs) -> action`.
        dry_run: log commands instead of publishing them (holds too); nothing is advertised.
        step_log: optional callback receiving one JSON-able dict per step and per state change.
        log_every_s: period of the INFO summary line (steps, rate, latency p50/p99, holds).
    """

    def __init__(
        self,
        bridge: Bridge,
        inputs: Inputs,
        profile: RobotProfile,
        policy: Policy,
        dry_run: bool = False,
        step_log: Callable[[dict], None] | None = None,
        log_every_s: float = 5.0,
    ) -> None:
        self.bridge, self.inputs, self.profile, self.policy = bridge, inputs, profile, policy
        self.dry_run, self.step_log, self.log_every_s = dry_run, step_log, log_every_s
        space = policy.observation_space
        self.assembler = ObservationAssembler(profile, getattr(space, "dtype", np.float64))
        act = policy.action_space
        self.mapper = ActionMapper(profile, getattr(act, "low", None), getattr(act, "high", None))
        self.stats = ControlStats()
        self.required = profile.required_keys()
        self.sync = profile.sync_key()
        self.period = 1.0 / profile.control.rate_hz
        self.timeout = profile.control.stale_timeout_s
        self.state = "starting"
        self.reason = ""
        self.halt_since = 0.0
        self.estop = False
        self._policy_fault: str | None = None
        if profile.control.estop_topic:
            bridge.subscribe(profile.control.estop_topic, "std_msgs/Bool", self._on_estop, queue_length=1)

    # e-stop
    def _on_estop(self, msg: dict) -> None:
        value = msg.get("data") if isinstance(msg, dict) else None
        if not isinstance(value, bool):
            LOG.warning("ignored a malformed e-stop message %r (want std_msgs/Bool)", msg)
            return
        if value != self.estop:
            LOG.warning("e-stop %s", "ENGAGED" if value else "cleared")
        self.estop = value
        with self.inputs.cond:
            self.inputs.cond.notify_all()

    # safety
    def _unsafe(self, now: float) -> str | None:
        if self.estop:
            return "e-stop engaged"
        if not self.bridge.connected:
            return "connection to rosbridge lost"
        if self._policy_fault:
            return self._policy_fault
        stale = []
        for key in self.required:
            sample = self.inputs.latest(key)
            if sample is None or now - sample.received > self.timeout:
                age = "never" if sample is None else f"{now - sample.received:.3f} s old"
                stale.append(f"{self.profile.topics[key].topic} ({age})")
        if stale:
            return f"stale observation: {', '.join(stale)} (timeout {self.timeout:g} s)"
        return None

    def _fresh_since(self, t: float) -> bool:
        for key in self.required:
            sample = self.inputs.latest(key)
            if sample is None or sample.received <= t:
                return False
        return True

    def _next_stale(self) -> float:
        times = [s.received + self.timeout for k in self.required if (s := self.inputs.latest(k)) is not None]
        return min(times, default=np.inf)

    def _event(self, state: str, reason: str) -> None:
        now = time.monotonic()
        self.state, self.reason = state, reason
        self.stats.events.append((now, state, reason))
        row = {"event": state, "reason": reason, "wall": time.time()}
        if self.step_log:
            self.step_log(row)
        topic = self.profile.control.status_topic
        if topic and not self.dry_run and self.bridge.connected:
            self.bridge.publish(topic, {"data": json.dumps(row)})

    def _publish_hold(self, why: str) -> None:
        samples = {k: self.inputs.latest(k) for k in self.inputs.keys}
        hold = self.mapper.hold_values(samples)
        for i, values in enumerate(hold):
            if values is None:
                continue
            cmd = self.mapper.commands_spec[i]
            msg = self.mapper.message(i, values)
            if self.dry_run:
                LOG.info("dry-run: would publish hold on %s: %s", cmd.topic, json.dumps(msg))
            elif self.bridge.connected and self.bridge.publish(cmd.topic, msg):
                self.stats.published += 1
            else:
                self.bridge.publish_on_reconnect(cmd.topic, msg)  # first thing the robot hears when the link returns
        self.mapper.reset(hold)
        LOG.warning("HOLD (%s): %s", why, "logged only (dry run)" if self.dry_run else "hold command sent")

    def _halt(self, reason: str, now: float) -> None:
        self.stats.holds += 1
        self.halt_since = now
        self._policy_fault = None  # reported by this halt; fresh data decides whether to try again
        self._publish_hold(reason)
        self._event("halted", reason)

    def _resume(self) -> None:
        self.assembler.reset()
        LOG.warning("resumed: fresh data on every required topic")
        self._event("running", "fresh data")

    # one step
    def _step(self, now: float) -> None:
        samples = {k: self.inputs.latest(k) for k in self.inputs.keys}
        obs = self.assembler.assemble(samples)
        action = np.asarray(self.policy.act(obs), np.float64).reshape(-1)
        if not np.all(np.isfinite(action)):
            self._policy_fault = f"policy output is not finite: {action.tolist()}"
            return
        values = self.mapper.values(action)
        for i, v in enumerate(values):
            cmd = self.mapper.commands_spec[i]
            msg = self.mapper.message(i, v)
            if self.dry_run:
                LOG.info("dry-run: %s %s", cmd.topic, json.dumps(msg))
            elif self.bridge.publish(cmd.topic, msg):
                self.stats.published += 1
            else:
                self.stats.dropped += 1
        t_pub = time.monotonic()
        trigger = (
            samples.get(self.sync)
            if self.sync
            else max(
                (s for k in self.required if (s := samples.get(k)) is not None), key=lambda s: s.received, default=None
            )
        )
        latency = (t_pub - trigger.received) * 1e3 if trigger is not None else 0.0
        self.stats.steps += 1
        self.stats.latencies_ms.append(latency)
        record = StepRecord(
            t_pub,
            time.time(),
            latency,
            trigger.stamp if trigger else None,
            trigger.wall if trigger else None,
            self.mapper.clip_action(action).tolist(),
            [v.tolist() for v in values],
        )
        self.stats.records.append(record)
        LOG.debug("step %d: latency %.2f ms, action %s", self.stats.steps, latency, record.action)
        if self.step_log:
            self.step_log({"step": self.stats.steps, **record.__dict__})

    def _summary_line(self) -> None:
        s = self.stats.summary()
        LOG.info(
            "%d steps (%.1f Hz), latency p50 %s ms p99 %s ms, %d holds, state %s",
            s["steps"], s["rate_hz"], s["latency_ms_p50"], s["latency_ms_p99"], s["holds"], self.state,
        )  # fmt: skip

    # the loop
    def run(self, max_seconds: float | None = None, stop: threading.Event | None = None) -> ControlStats:
        """Wait for every required topic, then control until `max_seconds`, `stop` or Ctrl-C.

        Raises (before anything is published): BridgeError for silent topics, UnsupportedEncoding for an
        image encoding that cannot be decoded.
        """
        stop = stop or threading.Event()
        ctl = self.profile.control
        self.inputs.wait_ready(self.required, ctl.startup_timeout_s)
        if not self.dry_run:
            for cmd in self.mapper.commands_spec:
                self.bridge.advertise(cmd.topic, cmd.type)
            if ctl.status_topic:
                self.bridge.advertise(ctl.status_topic, "std_msgs/String")
        samples = {k: self.inputs.latest(k) for k in self.inputs.keys}
        self.mapper.reset(self.mapper.hold_values(samples))
        start = time.monotonic()
        self.stats.started = start
        end = start + max_seconds if max_seconds is not None else np.inf
        self._event("running", "started")
        LOG.info(
            "controlling at %g Hz (%s), sync on %s, stale timeout %g s%s",
            ctl.rate_hz, self.profile.name, self.profile.topics[self.sync].topic if self.sync else "clock",
            self.timeout, " [DRY RUN: nothing is published]" if self.dry_run else "",
        )  # fmt: skip
        # Pacing. Without a sync topic, steps follow a fixed grid (one per period; missed ticks are skipped,
        # never made up in a burst). With one, each new sync message is answered at once, paced by a token
        # bucket: a token accrues per period (at most BURST banked); a message that finds at least 1 - EARLY
        # tokens triggers a step (the balance may dip to -EARLY), one that finds fewer is skipped and the next
        # one is answered. Waiting for tokens instead would hold every message by the same delay forever (the
        # loop would lock onto a phase behind the sensor's); skipping one message re-locks onto the sensor's
        # phase. The balance bounds keep the long-run rate at most rate_hz. Without a new sync message for 1.5
        # periods, the step uses the latest (still fresh) data.
        period = self.period
        grid, tokens, t_tokens, last_step = start, 1.0, start, start
        used_seq = -1
        next_log = start + self.log_every_s
        cond = self.inputs.cond
        try:
            while not stop.is_set():
                with cond:
                    now = time.monotonic()
                    if now >= end:
                        break
                    reason = self._unsafe(now)
                    if reason and self.state == "running":
                        self._halt(reason, now)
                    elif reason and reason.split(":")[0] != self.reason.split(":")[0]:
                        self._event("halted", reason)
                    elif not reason and self.state == "halted" and self._fresh_since(self.halt_since):
                        self._resume()
                        grid, tokens, t_tokens, last_step, used_seq = now, 1.0, now, now, -1
                    tokens, t_tokens = min(BURST, tokens + (now - t_tokens) / period), now
                    step_now = False
                    wake = now + period
                    if self.state == "running" and self.sync:
                        seq = self.inputs.latest(self.sync).seq
                        new = seq != used_seq
                        if (new and tokens >= 1.0 - EARLY) or (tokens >= 1.0 and now >= last_step + 1.5 * period):
                            step_now = True
                        elif new:
                            self.stats.skipped += 1
                        used_seq = seq
                        if not step_now:
                            wake = max(last_step + 1.5 * period, now + (1.0 - tokens) * period)  # or a new message
                    elif self.state == "running":
                        if now >= grid:
                            step_now = True
                        else:
                            wake = grid
                    if not step_now:
                        stale_at = self._next_stale() + 1e-4
                        wake = min(wake, stale_at if stale_at > now else wake, end, next_log)
                        cond.wait(max(0.0, wake - time.monotonic()))
                if step_now:
                    tokens -= 1.0
                    last_step = now
                    grid += period
                    if grid <= now:  # fell behind (slow policy, long pause): skip missed ticks, never burst
                        grid = now + period
                    self._step(now)
                if time.monotonic() >= next_log:
                    next_log += self.log_every_s
                    self._summary_line()
        except KeyboardInterrupt:
            LOG.warning("interrupted")
        finally:
            self.stats.ended = time.monotonic()
            if self.state != "starting":
                self._publish_hold("control ended")
                self._event("stopped", "control ended")
            self._summary_line()
        return self.stats


def run_deploy(
    run: str | Path,
    rosbridge: str,
    robot: str | Path,
    dry_run: bool = False,
    max_seconds: float | None = None,
    root: Path = Path("policies"),
    connect_timeout: float = 5.0,
    log_file: Path | None = None,
    stop: threading.Event | None = None,
    policy: Policy | None = None,
) -> ControlStats:
    """`embodied deploy`: every check (profile, run, profile vs policy and task) happens before the
    bridge is contacted; the first command goes out only after every required topic has spoken."""
    profile = load_profile(robot)
    if policy is None:
        policy = RunPolicy(run, root)
    profile.check_policy(policy.observation_space, policy.action_space, str(run))
    task = getattr(policy, "task", None)
    if task is not None:
        profile.check_task(task, f"task of run {str(run)!r}")
    bridge = Bridge(rosbridge, profile.control.reconnect_initial_s, profile.control.reconnect_max_s)
    bridge.connect(connect_timeout)
    log_fh = log_file.open("a") if log_file else None
    try:
        inputs = Inputs(bridge, profile)
        controller = Controller(
            bridge,
            inputs,
            profile,
            policy,
            dry_run=dry_run,
            step_log=(lambda row: log_fh.write(json.dumps(row) + "\n")) if log_fh else None,
        )
        return controller.run(max_seconds, stop)
    finally:
        bridge.close()
        if log_fh:
            log_fh.close()
