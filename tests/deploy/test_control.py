"""The control loop: observation assembly, action mapping and safety (limits, rate limits, watchdog,
e-stop, reconnection), dry runs and latency, against the loopback rosbridge and a scripted robot."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from embodied.deploy.bridge import Bridge, BridgeError, Inputs, Sample, UnsupportedEncoding, make_decoder
from embodied.deploy.control import (
    ActionMapper,
    Controller,
    ObservationAssembler,
    command_message,
    command_values,
    run_deploy,
)
from embodied.deploy.profile import RobotProfile, load_profile
from tests.deploy.conftest import ConstantPolicy, reach_data
from tests.deploy.robot import GOAL, GRIPPER, JOINTS, TWIST, FakeRobot
from tests.deploy.rosbridge_server import RosbridgeServer

ESTOP, STATUS = "/embodied/estop", "/embodied/status"
RAMP = [
    [0.02, -0.02, 0.02],
    [0.04, -0.04, 0.04],
    [0.06, -0.06, 0.05],
    [0.08, -0.08, 0.05],
    [0.1, -0.1, 0.05],
    [0.1, -0.1, 0.05],
]
"""Twist commands for action [>=1, -1, 0.5]: 0.1 m/s per unit, clipped to 0.1, at most 0.02 more per step."""


def reach(**update: object) -> RobotProfile:
    return RobotProfile.model_validate({**reach_data(**update), "name": "reach-test"})


def samples_from(profile: RobotProfile, robot: FakeRobot) -> dict[str, Sample]:
    out = {}
    for key, spec in profile.topics.items():
        value = make_decoder(key, spec, profile)(robot.messages()[spec.topic])
        out[key] = Sample(value, time.monotonic(), time.time(), None, 1)
    return out


# -- pure parts ------------------------------------------------------------------------------------
def test_observation_is_assembled_like_metaworld() -> None:
    prof = load_profile("metaworld-reach")
    bot = FakeRobot(None)
    asm = ObservationAssembler(prof)
    first = asm.assemble(samples_from(prof, bot))
    cur = [0.1, 0.6, 0.2, 0.5, 0.0, 0.7, 0.02, 1.0, 0.0, 0.0, 0.0] + [0.0] * 7
    assert first.tolist() == pytest.approx(cur + cur + [0.1, 0.6, 0.055])
    bot.ee = np.array([0.2, 0.5, 0.3])
    second = asm.assemble(samples_from(prof, bot))
    assert second[0:3].tolist() == pytest.approx([0.2, 0.5, 0.3])
    assert second[18:21].tolist() == pytest.approx([0.1, 0.6, 0.2])  # the previous step's hand
    asm.reset()  # after a halt the stack restarts like a simulator reset
    assert asm.assemble(samples_from(prof, bot))[18:21].tolist() == pytest.approx([0.2, 0.5, 0.3])
    del_optional = {k: v for k, v in samples_from(prof, bot).items() if k != "object"}
    assert asm.assemble(del_optional)[4:11].tolist() == [0.0] * 7  # optional topic not heard yet


def test_actions_are_clipped_mapped_and_rate_limited() -> None:
    mapper = ActionMapper(load_profile("metaworld-reach"), np.full(4, -1.0), np.full(4, 1.0))
    mapper.reset(mapper.hold_values({}))
    assert mapper.last[0].tolist() == [0.0, 0.0, 0.0] and mapper.last[1] is None
    ramp = [mapper.values(np.array([2.0, -1.0, 0.5, 1.0])) for _ in range(6)]
    np.testing.assert_allclose([v[0] for v in ramp], RAMP, atol=1e-12)
    assert [v[1].tolist() for v in ramp] == [[0.0]] * 6  # 0.04 - 0.04 * 1, no rate limit on the gripper
    assert mapper.values(np.array([0.0, 0.0, 0.0, -5.0]))[1].tolist() == pytest.approx([0.08])  # clipped to 1 first
    hold = mapper.hold_values({})
    assert hold[0].tolist() == [0.0, 0.0, 0.0] and hold[1].tolist() == pytest.approx([0.08])  # 'last'
    twist = mapper.message(0, np.array([0.1, -0.1, 0.05]))
    assert twist == {"linear": {"x": 0.1, "y": -0.1, "z": 0.05}, "angular": {"x": 0.0, "y": 0.0, "z": 0.0}}
    assert mapper.message(1, np.array([0.03])) == {"data": 0.03}
    idx, act = mapper.to_action(0, command_values(mapper.commands_spec[0], twist))
    assert idx.tolist() == [0, 1, 2] and act.tolist() == pytest.approx([1.0, -1.0, 0.5])


def test_joint_trajectory_commands_ros1_and_measured_hold() -> None:
    prof = load_profile("arm7dof")
    mapper = ActionMapper(prof)
    names = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1"]
    measured = make_decoder("joints", prof.topics["joints"], prof)(
        {"name": names, "position": [0.1, 0.2, 0.3, -1.0, 0.5, 1.5, 0.7, 0.02], "velocity": [0.0] * 8}
    )
    hold = mapper.hold_values({"joints": Sample(measured, 0.0, 0.0, None, 1)})
    assert hold[0].tolist() == [0.1, 0.2, 0.3, -1.0, 0.5, 1.5, 0.7] and hold[1] is None
    mapper.reset(hold)
    values = mapper.values(np.array([1.0, 0.2, 0.3, -1.0, 0.5, 1.5, 0.7, 0.5]))
    assert values[0].tolist() == pytest.approx([0.15, 0.2, 0.3, -1.0, 0.5, 1.5, 0.7])  # +0.05 rad per step at most
    assert values[1].tolist() == [0.08]  # clipped to the gripper's 8 cm; no reference yet, so no rate limit
    msg = mapper.message(0, values[0])
    assert msg["header"] == {"stamp": {"secs": 0, "nsecs": 0}, "frame_id": "", "seq": 0}
    assert msg["joint_names"] == names[:7]
    assert msg["points"][0]["time_from_start"] == {"secs": 0, "nsecs": 100_000_000}
    assert command_values(mapper.commands_spec[0], msg).tolist() == pytest.approx(values[0].tolist())
    array = command_message(mapper.commands_spec[1], np.array([0.04]), 1)
    assert array == {"layout": {"dim": [], "data_offset": 0}, "data": [0.04]}


# -- the loop over the wire ------------------------------------------------------------------------
class Running:
    """A controller running on a thread, with the bridge it owns."""

    def __init__(self, controller: Controller, thread: threading.Thread, stop: threading.Event) -> None:
        self.controller, self.thread, self.stop = controller, thread, stop
        self.error: BaseException | None = None

    def event_time(self, state: str, after: float = 0.0) -> float | None:
        return next((t for t, s, _ in self.controller.stats.events if s == state and t > after), None)


@contextlib.contextmanager
def controlling(server: RosbridgeServer, profile: RobotProfile, policy: object, **kw: object) -> Iterator[Running]:
    bridge = Bridge(server.url, 0.05, 0.2).connect(2)
    stop = threading.Event()
    try:
        controller = Controller(bridge, Inputs(bridge, profile), profile, policy, **kw)  # type: ignore[arg-type]
        box: list[Running] = []

        def target() -> None:
            try:
                controller.run(10.0, stop)
            except BaseException as exc:  # surfaced by the test
                box[0].error = exc

        thread = threading.Thread(target=target, name="controller")
        running = Running(controller, thread, stop)
        box.append(running)
        thread.start()
        yield running
    finally:
        stop.set()
        if box:
            box[0].thread.join(5)
        bridge.close()
    if running.error is not None:
        raise running.error


def twists(server: RosbridgeServer) -> list[list[float]]:
    return [[m["linear"]["x"], m["linear"]["y"], m["linear"]["z"]] for m in server.messages(TWIST)]


def test_commands_ramp_within_limits_and_status_is_published(server: RosbridgeServer, robot: FakeRobot) -> None:
    policy = ConstantPolicy([2.0, -1.0, 0.5, 1.0])
    with controlling(server, reach(), policy) as run:
        assert server.wait(lambda: len(server.messages(TWIST)) >= 6, 3.0)
    sent = twists(server)
    np.testing.assert_allclose(sent[:6], RAMP, atol=1e-12)
    assert sent[-1] == [0.0, 0.0, 0.0]  # hold when control ended
    assert all(m == {"data": 0.0} for m in server.messages(GRIPPER))
    status = [json.loads(m["data"]) for m in server.messages(STATUS)]
    assert [s["event"] for s in status] == ["running", "stopped"]
    assert policy.observations[0].shape == (39,) and policy.observations[0][36:39].tolist() == pytest.approx(
        [0.1, 0.6, 0.055]
    )
    stats = run.controller.stats
    assert stats.steps >= 6 and len(stats.latencies_ms) == stats.steps
    assert 0.0 <= float(np.median(stats.latencies_ms)) < 30.0
    assert server.op_names()[: len(reach().topics) + 1].count("subscribe") == len(reach().topics) + 1  # + e-stop


def test_watchdog_holds_on_stale_topic_and_resumes_only_on_fresh_data(
    server: RosbridgeServer, robot: FakeRobot
) -> None:
    prof = reach()
    with controlling(server, prof, ConstantPolicy([1.0, 1.0, 1.0, 0.0])) as run:
        assert server.wait(lambda: len(server.messages(TWIST)) >= 5, 3.0)
        robot.paused.add(JOINTS)
        assert server.wait(lambda: run.event_time("halted") is not None, 2.0)
        last_joint = run.controller.inputs.latest("joints").received
        fired = run.event_time("halted") - last_joint
        assert prof.control.stale_timeout_s <= fired < prof.control.stale_timeout_s + 0.1
        assert "stale observation: /joint_states" in run.controller.reason
        assert server.wait(lambda: twists(server)[-1] == [0.0, 0.0, 0.0], 1.0)  # the hold
        n_hold = len(server.messages(TWIST))
        time.sleep(0.25)
        assert len(server.messages(TWIST)) == n_hold  # nothing while the data is stale
        robot.paused.clear()
        assert server.wait(lambda: run.event_time("running", after=run.event_time("halted")) is not None, 2.0)
        assert server.wait(lambda: len(server.messages(TWIST)) > n_hold, 1.0)
        assert twists(server)[n_hold] == pytest.approx([0.02, 0.02, 0.02])  # rate limit restarts from the hold
    assert run.controller.stats.holds == 1


def test_watchdog_holds_when_the_connection_drops_and_sends_the_hold_first_on_reconnect(
    server: RosbridgeServer, robot: FakeRobot
) -> None:
    with controlling(server, reach(), ConstantPolicy([1.0, 1.0, 1.0, 0.0])) as run:
        assert server.wait(lambda: len(server.messages(TWIST)) >= 5, 3.0)
        server.refuse(True)
        t_drop = time.monotonic()
        server.drop_clients()
        assert server.wait(lambda: run.event_time("halted") is not None, 1.0)
        assert run.event_time("halted") - t_drop < 0.1
        assert run.controller.reason == "connection to rosbridge lost"
        n_before = len(server.messages(TWIST))
        time.sleep(0.2)
        server.refuse(False)
        assert server.wait(lambda: run.event_time("running", after=t_drop) is not None, 2.0)
        assert server.wait(lambda: len(server.messages(TWIST)) > n_before + 1, 1.0)
        after = twists(server)[n_before:]
        assert after[0] == [0.0, 0.0, 0.0]  # the hold goes out first when the link returns
        assert after[1] == pytest.approx([0.02, 0.02, 0.02])  # then control restarts from it
    assert run.controller.bridge.connects == 2


def test_estop_halts_until_cleared(server: RosbridgeServer, robot: FakeRobot) -> None:
    with controlling(server, reach(), ConstantPolicy([1.0, 0.0, 0.0, 0.0])) as run:
        assert server.wait(lambda: len(server.messages(TWIST)) >= 3, 3.0)
        server.publish(ESTOP, {"data": True})
        assert server.wait(lambda: run.controller.reason == "e-stop engaged", 1.0)
        assert server.wait(lambda: twists(server)[-1] == [0.0, 0.0, 0.0], 1.0)
        n = len(server.messages(TWIST))
        server.publish(ESTOP, {"data": "yes"})  # malformed: ignored, still engaged
        time.sleep(0.25)  # fresh sensor data keeps flowing, but the e-stop holds
        assert len(server.messages(TWIST)) == n and run.controller.state == "halted"
        server.publish(ESTOP, {"data": False})
        assert server.wait(lambda: len(server.messages(TWIST)) > n, 1.0)
        assert twists(server)[n] == pytest.approx([0.02, 0.0, 0.0])
    reasons = [r for _, s, r in run.controller.stats.events if s == "halted"]
    assert reasons == ["e-stop engaged"]


def test_non_finite_policy_output_halts(server: RosbridgeServer, robot: FakeRobot) -> None:
    with controlling(server, reach(), ConstantPolicy([np.nan, 0.0, 0.0, 0.0])) as run:
        assert server.wait(lambda: run.event_time("halted") is not None, 2.0)
    assert server.messages(TWIST)[0] == {
        "linear": {"x": 0.0, "y": 0.0, "z": 0.0},
        "angular": {"x": 0.0, "y": 0.0, "z": 0.0},
    }
    assert "policy output is not finite" in next(r for _, s, r in run.controller.stats.events if s == "halted")
    assert run.controller.stats.steps == 0 or all(t == [0.0, 0.0, 0.0] for t in twists(server))


def test_dry_run_publishes_nothing_and_logs_commands(
    server: RosbridgeServer, robot: FakeRobot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="embodied.deploy")
    with controlling(server, reach(), ConstantPolicy([1.0, 0.0, 0.0, 0.0]), dry_run=True) as run:
        assert server.wait(lambda: run.controller.stats.steps >= 5, 3.0)
    assert set(server.op_names()) == {"subscribe"}
    assert 'dry-run: /servo/delta_twist_cmds {"linear": {"x": 0.02, "y": 0.0, "z": 0.0}' in caplog.text
    assert "would publish hold on /servo/delta_twist_cmds" in caplog.text


def test_robot_clock_offset_does_not_make_data_stale(server: RosbridgeServer) -> None:
    with FakeRobot(server, clock_offset=-1000.0, ros=1):  # stamps far in the past: staleness uses arrival time
        with controlling(server, reach(), ConstantPolicy([0.0, 0.0, 0.0, 0.0])) as run:
            assert server.wait(lambda: run.controller.stats.steps >= 10, 3.0)
    assert run.controller.stats.holds == 0
    assert run.controller.stats.records[0].sync_stamp < time.time() - 900


def test_startup_errors_come_before_anything_is_published(server: RosbridgeServer) -> None:
    prof = reach(topics={"corner": {"required": True}}, control={"startup_timeout_s": 0.3})
    with (
        FakeRobot(server, encoding="16UC1"),
        pytest.raises(UnsupportedEncoding, match=r"/camera/color/image_raw: .*'16UC1' is not supported"),
    ):
        with controlling(server, prof, ConstantPolicy([0.0] * 4)):
            time.sleep(0.5)
    assert not {"advertise", "publish"} & set(server.op_names())
    robot = FakeRobot(server)
    robot.paused.add(GOAL)
    with (
        robot,
        pytest.raises(
            BridgeError, match=r"no usable message within 0.3 s on /embodied/goal \(geometry_msgs/PointStamped\)"
        ),
    ):
        with controlling(server, prof, ConstantPolicy([0.0] * 4)):
            time.sleep(0.5)
    assert not {"advertise", "publish"} & set(server.op_names())


def test_run_deploy_checks_policy_and_logs_steps(server: RosbridgeServer, robot: FakeRobot, tmp_path: Path) -> None:
    from embodied.deploy.profile import ProfileError

    prof_path = tmp_path / "reach.toml"
    import tomli_w

    prof_path.write_text(tomli_w.dumps(reach_data()))
    with pytest.raises(ProfileError, match=r"assembles 39 values but run 'fake' expects observations of shape \(12,\)"):
        run_deploy("fake", server.url, prof_path, policy=ConstantPolicy([0.0] * 4, obs_dim=12))
    assert server.connections == 0  # checked before the bridge was contacted
    log = tmp_path / "steps.jsonl"
    stats = run_deploy("fake", server.url, prof_path, max_seconds=0.4, log_file=log, policy=ConstantPolicy([0.5] * 4))
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    steps = [r for r in rows if "step" in r]
    assert [r["event"] for r in rows if "event" in r] == ["running", "stopped"]
    assert len(steps) == stats.steps >= 10 and all(r["latency_ms"] >= 0 for r in steps)
    assert steps[0]["action"] == [0.5, 0.5, 0.5, 0.5] and steps[0]["commands"] == [[0.02, 0.02, 0.02], [0.02]]
    assert 0.3 < stats.summary()["seconds"] < 0.6


@pytest.mark.parametrize(("rate", "sync"), [(20.0, True), (20.0, False)])
def test_rate_never_exceeds_the_profile_rate(
    server: RosbridgeServer, robot: FakeRobot, tmp_path: Path, rate: float, sync: bool
) -> None:
    import tomli_w

    path = tmp_path / "p.toml"
    path.write_text(tomli_w.dumps(reach_data(control={"rate_hz": rate, "sync": sync})))
    stats = run_deploy("fake", server.url, path, max_seconds=1.0, policy=ConstantPolicy([0.0] * 4))
    assert rate * 0.85 <= stats.steps <= rate + 1  # the robot publishes at 50 Hz
    if sync:
        assert stats.skipped >= 20  # sync messages beyond the rate are skipped, not queued
        assert float(np.median(stats.latencies_ms)) < 15.0  # answered when they arrive, not on a timer
