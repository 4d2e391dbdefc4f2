"""Live reward monitor: score the robot's camera/state stream with any reward spec of this platform.

Each tick (the profile's control rate) the monitor assembles the observation exactly as the control loop
does, preprocesses the camera frames the reward model asks for to the task's frame size (centre crop +
resize, as simulation frames), recovers the action from the command topics it overhears (inverting the
profile's mapping; zeros until a command is seen), and scores the transition (previous obs -> current
obs) with the reward model from `embodied.rewards.registry.make_reward` (reward programs, CLIP and
progress models where those modules exist). It publishes:

  * reward (std_msgs/Float64) and its components (std_msgs/String, JSON);
  * progress (std_msgs/Float64, in [0, 1]): the model's ``progress`` component when it has one, else the
    fraction of the task's stages whose ``done`` rule holds (when the rules can be evaluated on robot data);
  * stage (std_msgs/String): the model's ``stage`` component (an index into the task's stages) or the first
    stage whose rule does not hold yet.
Ticks where a required topic is stale are skipped (logged), never scored on old data.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embodied.deploy.bridge import Bridge, Inputs, preprocess_frame
from embodied.deploy.control import ActionMapper, ObservationAssembler, command_values
from embodied.deploy.profile import ProfileError, RobotProfile, load_profile

LOG = logging.getLogger("embodied.deploy")


@dataclass
class Score:
    """One scored tick."""

    wall: float
    reward: float
    components: dict[str, float]
    progress: float | None
    stage: str | None


@dataclass
class MonitorStats:
    ticks: int = 0
    skipped: int = 0
    scores: list[Score] = field(default_factory=list)
    score_ms: list[float] = field(default_factory=list)


class StageRules:
    """The task's stage `done` rules evaluated on robot observations (views only; no simulator `info`).

    `usable` is False when a rule needs `info` (e.g. Meta-World's success flag), which a robot lacks.
    """

    def __init__(self, task: Any, space: Any) -> None:
        from embodied.envs.wrappers import compile_rule, view_getters

        self.names = [s.name for s in task.stages]
        self.getters = view_getters(task, space)
        self.rules = []
        self.usable = bool(task.stages)
        for i, stage in enumerate(task.stages):
            if stage.done is None:
                self.usable = False
                break
            fn, used = compile_rule(task, stage.done, f"stages[{i}].done")
            if "info" in used:
                self.usable = False
                break
            self.rules.append((fn, sorted(used)))

    def evaluate(self, obs: np.ndarray) -> tuple[int, float] | None:
        """(index of the first stage not done, fraction of stages done) or None when unusable."""
        if not self.usable:
            return None
        done = 0
        for fn, used in self.rules:
            scope = {name: self.getters[name](obs) for name in used}
            scope["info"] = {}
            if not bool(np.all(fn(scope))):
                break
            done += 1
        n = len(self.rules)
        return min(done, n - 1), done / n


class RewardMonitor:
    """Scores the robot's stream with `reward` and publishes reward, progress and stage.

    Args:
        bridge, inputs: connection and subscribed topics of `profile`.
        profile: robot profile (checked against the task: observation length and views).
        task: the TaskSpec whose reward is computed.
        reward: any `RewardModel` (see `embodied.rewards.registry.make_reward`).
        space: the task's observation space (views and reward programs index into it).
        publish: False logs only.
        step_log: optional callback receiving one JSON-able dict per scored tick.
    """

    def __init__(
        self,
        bridge: Bridge,
        inputs: Inputs,
        profile: RobotProfile,
        task: Any,
        reward: Any,
        space: Any,
        publish: bool = True,
        step_log: Callable[[dict], None] | None = None,
        log_every_s: float = 1.0,
    ) -> None:
        self.bridge, self.inputs, self.profile, self.task, self.reward = bridge, inputs, profile, task, reward
        self.publish, self.step_log, self.log_every_s = publish, step_log, log_every_s
        self.space = space
        self.assembler = ObservationAssembler(profile, getattr(space, "dtype", np.float64))
        self.stages = StageRules(task, space)
        self.stats = MonitorStats()
        self.cameras = profile.cameras()
        req = reward.requires
        missing = [c for c in req.cameras if c not in self.cameras]
        if missing:
            raise ProfileError(
                f"{profile.where('topics')}: reward {reward.name!r} needs camera(s) {missing}, but the profile maps "
                f"{sorted(self.cameras) or 'no cameras'} (give an image topic camera = {missing[0]!r})"
            )
        self.frame_size = tuple(req.frame_size or task.frame_size)
        self.mapper = ActionMapper(profile) if profile.action else None
        self.action = np.zeros(profile.action.dim if profile.action else 1)
        self._cmd_seen: dict[int, float] = {}
        if self.mapper is not None:
            for i, cmd in enumerate(self.mapper.commands_spec):
                bridge.subscribe(cmd.topic, cmd.type, self._command_handler(i), queue_length=1)
        self._prev_obs: np.ndarray | None = None
        self._log_unusable = True

    def _command_handler(self, i: int) -> Callable[[dict], None]:
        cmd = self.mapper.commands_spec[i] if self.mapper else None

        def handle(msg: dict) -> None:
            values = command_values(cmd, msg) if isinstance(msg, dict) else None
            if values is None:
                LOG.warning("ignored a malformed command on %s", cmd.topic if cmd else "?")
                return
            idx, act = self.mapper.to_action(i, values)  # type: ignore[union-attr]
            self.action[idx] = np.nan_to_num(act)
            self._cmd_seen[i] = time.monotonic()

        return handle

    def _stale(self, now: float) -> list[str]:
        timeout = self.profile.control.stale_timeout_s
        keys = list(self.profile.required_keys()) + [self.cameras[c] for c in self.reward.requires.cameras]
        out = []
        for key in dict.fromkeys(keys):
            s = self.inputs.latest(key)
            if s is None or now - s.received > timeout:
                out.append(self.profile.topics[key].topic)
        return out

    def score_once(self) -> Score:
        """Score the current state (transition from the previous tick's observation)."""
        from embodied.rewards.base import TransitionBatch, checked

        samples = {k: self.inputs.latest(k) for k in self.inputs.keys}
        obs = self.assembler.assemble(samples) if self.profile.obs_dim else np.zeros(self.space.shape, self.space.dtype)
        prev = self._prev_obs if self._prev_obs is not None else obs
        frames = None
        if self.reward.requires.cameras:
            frames = {}
            for cam in self.reward.requires.cameras:
                sample = samples[self.cameras[cam]]
                assert sample is not None
                frames[cam] = preprocess_frame(sample.value, self.frame_size)[None]
        batch = TransitionBatch(
            obs=prev[None],
            action=self.action.astype(np.float32)[None],
            next_obs=obs[None],
            terminated=np.array([False]),
            truncated=np.array([False]),
            env_reward=np.zeros(1),
            infos=[{}],
            frames=frames,
        )
        out = checked(self.reward.compute_reward(batch), 1, self.reward.name)
        comps = {k: float(v[0]) for k, v in out.components.items()}
        progress: float | None = comps.get("progress")
        stage: str | None = None
        if "stage" in comps and self.stages.names:
            stage = self.stages.names[int(np.clip(round(comps["stage"]), 0, len(self.stages.names) - 1))]
        rules = self.stages.evaluate(obs)
        if rules is not None:
            stage = stage or self.stages.names[rules[0]]
            progress = rules[1] if progress is None else progress
        elif self._log_unusable and self.stages.names and progress is None:
            self._log_unusable = False
            LOG.info(
                "task %s: stage rules need simulator info; progress/stage come from the reward model only",
                self.task.name,
            )
        self._prev_obs = obs
        return Score(time.time(), float(out.reward[0]), comps, progress, stage)

    def _publish(self, score: Score) -> None:
        mon = self.profile.monitor
        self.bridge.publish(mon.reward_topic, {"data": score.reward})
        if mon.progress_topic and score.progress is not None:
            self.bridge.publish(mon.progress_topic, {"data": float(score.progress)})
        if mon.stage_topic and score.stage is not None:
            self.bridge.publish(mon.stage_topic, {"data": score.stage})
        if mon.components_topic:
            self.bridge.publish(mon.components_topic, {"data": json.dumps(score.components)})

    def run(self, max_seconds: float | None = None, stop: threading.Event | None = None) -> MonitorStats:
        """Score at the profile's rate until `max_seconds`, `stop` or Ctrl-C."""
        stop = stop or threading.Event()
        ctl = self.profile.control
        needed = list(
            dict.fromkeys(self.profile.required_keys() + [self.cameras[c] for c in self.reward.requires.cameras])
        )
        self.inputs.wait_ready(needed, ctl.startup_timeout_s)
        mon = self.profile.monitor
        if self.publish:
            self.bridge.advertise(mon.reward_topic, "std_msgs/Float64")
            for topic, kind in ((mon.progress_topic, "std_msgs/Float64"), (mon.stage_topic, "std_msgs/String"),
                                (mon.components_topic, "std_msgs/String")):  # fmt: skip
                if topic:
                    self.bridge.advertise(topic, kind)
        period = 1.0 / ctl.rate_hz
        start = time.monotonic()
        end = start + max_seconds if max_seconds is not None else np.inf
        next_tick, next_log = start, start + self.log_every_s
        paused = False
        LOG.info("monitoring %s with %s at %g Hz", self.task.name, self.reward.name, ctl.rate_hz)
        try:
            while not stop.is_set() and time.monotonic() < end:
                stop.wait(max(0.0, min(next_tick, end) - time.monotonic()))
                now = time.monotonic()
                if now >= end or stop.is_set():
                    break
                next_tick = max(next_tick + period, now)  # fixed rate; never a burst after a stall
                self.stats.ticks += 1
                stale = self._stale(now) if self.bridge.connected else ["(connection lost)"]
                if stale:
                    self.stats.skipped += 1
                    if not paused:
                        LOG.warning("monitor paused: stale %s", ", ".join(stale))
                    paused = True
                    self.assembler.reset()
                    self._prev_obs = None
                    continue
                if paused:
                    LOG.warning("monitor resumed")
                    paused = False
                t0 = time.perf_counter()
                score = self.score_once()
                self.stats.score_ms.append((time.perf_counter() - t0) * 1e3)
                self.stats.scores.append(score)
                if len(self.stats.scores) > 100_000:
                    del self.stats.scores[:50_000]
                if self.publish:
                    self._publish(score)
                if self.step_log:
                    self.step_log(score.__dict__)
                if now >= next_log:
                    next_log = now + self.log_every_s
                    parts = ", ".join(f"{k} {v:.3f}" for k, v in score.components.items())
                    LOG.info(
                        "reward %.4f (%s) progress %s stage %s", score.reward, parts,
                        "-" if score.progress is None else f"{score.progress:.3f}", score.stage or "-",
                    )  # fmt: skip
        except KeyboardInterrupt:
            LOG.warning("interrupted")
        return self.stats


def check_monitor_profile(profile: RobotProfile, task: Any, space: Any, reward: Any) -> None:
    """One-line ProfileError unless the profile can feed `reward` on `task`: the observation length
    matches (a profile without [[observation]] is allowed only for rewards that read frames alone,
    which then see zeros for the state) and segment views fit the task."""
    shape = getattr(space, "shape", None)
    if profile.obs_dim == 0 and reward.requires.cameras:
        LOG.info("profile %s has no [[observation]]: %s sees zero state vectors", profile.name, reward.name)
    elif shape is None or len(shape) != 1 or profile.obs_dim != shape[0]:
        raise ProfileError(
            f"{profile.where('observation')}: the profile assembles {profile.obs_dim} values but task "
            f"{task.name!r} observations have shape {shape}"
        )
    profile.check_task(task)


def task_space(task: Any) -> Any:
    """The task's observation space (builds the simulator env once, as reward programs do)."""
    from embodied.envs.make import make

    env = make(task)
    try:
        return env.observation_space
    finally:
        env.close()


def run_monitor(
    rosbridge: str,
    robot: str,
    task: str,
    reward: str,
    max_seconds: float | None = None,
    connect_timeout: float = 5.0,
    publish: bool = True,
    log_file: Any = None,
    stop: threading.Event | None = None,
) -> MonitorStats:
    """`embodied monitor`: profile, task and reward are built and checked before the bridge is contacted."""
    from embodied.rewards.registry import make_reward
    from embodied.tasks.spec import load_task

    profile = load_profile(robot)
    spec = load_task(task)
    model = make_reward(reward, spec)
    space = task_space(spec)
    check_monitor_profile(profile, spec, space, model)
    bridge = Bridge(rosbridge, profile.control.reconnect_initial_s, profile.control.reconnect_max_s)
    bridge.connect(connect_timeout)
    fh = open(log_file, "a") if log_file else None
    try:
        inputs = Inputs(bridge, profile)
        monitor = RewardMonitor(
            bridge, inputs, profile, spec, model, space, publish,
            step_log=(lambda row: fh.write(json.dumps(row) + "\n")) if fh else None,
        )  # fmt: skip
        return monitor.run(max_seconds, stop)
    finally:
        bridge.close()
        if fh:
            fh.close()
