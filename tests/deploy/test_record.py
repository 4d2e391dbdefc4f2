"""Recording real-robot episodes into the demonstration dataset format, with operator annotations."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from embodied.demos.dataset import DemoDataset, Stage
from embodied.deploy.bridge import Bridge, Inputs
from embodied.deploy.profile import RobotProfile
from embodied.deploy.record import KeyReader, Recorder, parse_command
from tests.deploy.conftest import reach_data
from tests.deploy.robot import GRIPPER, TWIST, FakeRobot
from tests.deploy.rosbridge_server import RosbridgeServer

ANNOTATION = "/embodied/annotation"


def reach() -> RobotProfile:
    return RobotProfile.model_validate({**reach_data(), "name": "reach-test"})


def test_parse_command_letters_and_words() -> None:
    assert [parse_command(x) for x in ("s", " N\n", "success", "F", "e", "discard", "q", "x", "")] == [
        "start", "next", "success", "fail", "end", "discard", "quit", None, None,
    ]  # fmt: skip


def test_key_reader_reads_a_stream_and_stops(caplog: pytest.LogCaptureFixture) -> None:
    read_fd, write_fd = os.pipe()
    got: list[str] = []
    with os.fdopen(read_fd) as stream:
        reader = KeyReader(stream, got.append).start()
        os.write(write_fd, b"n\nbogus\ny\n")
        deadline = threading.Event()
        for _ in range(100):
            if len(got) == 2:
                break
            deadline.wait(0.01)
        reader.stop()
        os.close(write_fd)
    assert got == ["next", "success"]
    assert "unknown key 'bogus'" in caplog.text


def test_records_annotated_episodes_with_actions_from_commands(
    server: RosbridgeServer, robot: FakeRobot, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="embodied.deploy")
    out = tmp_path / "demos"
    prof = reach()
    bridge = Bridge(server.url, 0.05).connect(2)
    try:
        rec = Recorder(bridge, Inputs(bridge, prof), prof, out, None, ["approach", "lift"], (16, 16))
        thread = threading.Thread(target=rec.run, kwargs={"max_seconds": 10.0}, name="recorder")
        thread.start()
        rows = lambda: rec.episode.rows if rec.episode else -1  # noqa: E731
        assert server.wait(lambda: rows() >= 4, 3.0)
        server.publish(ANNOTATION, {"data": "next"})
        assert server.wait(lambda: rec.episode is not None and len(rec.episode.boundaries) == 2, 2.0)
        boundary = rec.episode.boundaries[1]
        server.publish(ANNOTATION, {"data": "next"})  # no third stage: ignored with a warning
        server.publish(TWIST, {"linear": {"x": 0.05, "y": 0.0, "z": -0.1}, "angular": {"x": 0.0, "y": 0.0, "z": 0.0}})
        server.publish(GRIPPER, {"data": 0.02})
        start = rows()
        assert server.wait(lambda: rows() >= start + 4, 2.0)
        server.publish(ANNOTATION, {"data": "success"})
        assert server.wait(lambda: rec.saved == [0], 2.0)
        server.publish(ANNOTATION, {"data": "s"})
        assert server.wait(lambda: rows() >= 3, 2.0)
        server.publish(ANNOTATION, {"data": "fail"})
        assert server.wait(lambda: rec.saved == [0, 1], 2.0)
        server.publish(ANNOTATION, {"data": "start"})
        assert server.wait(lambda: rows() >= 1, 2.0)
        server.publish(ANNOTATION, {"data": "d"})
        assert server.wait(lambda: rec.discarded == 1, 2.0)
        server.publish(ANNOTATION, {"data": "quit"})
        thread.join(5)
        assert not thread.is_alive()
    finally:
        bridge.close()

    ds = DemoDataset(out)
    assert len(ds) == 2 and ds.successes == [True, False]
    assert ds.cameras == ("corner",) and ds.meta["frame_size"] == [16, 16] and ds.fps == 50.0
    assert ds.stage_names == {"dense": ["approach", "lift"], "sparse": ["task"]}
    ep0, ep1 = ds.load(0), ds.load(1)
    t0 = ep0.length
    assert ep0.annotations["dense"] == [Stage("approach", 0, boundary), Stage("lift", boundary, t0 - 1)]
    assert ep0.annotations["sparse"] == [Stage("task", 0, t0 - 1)]
    assert ep1.annotations == {"dense": [], "sparse": []}  # a failure keeps only the stages the operator closed
    assert ep0.states.shape == (t0, 39) and ep0.states[0, 36:39].tolist() == pytest.approx([0.1, 0.6, 0.055])
    assert np.abs(ep0.frames["corner"].astype(int) - [10, 200, 30]).max() <= 4  # mp4 is lossy
    # actions recovered from the commands heard: Twist / 0.1 m/s per unit; gripper (0.02 - 0.04) / -0.04
    assert ep0.actions[0].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert ep0.actions[-1].tolist() == pytest.approx([0.5, 0.0, -1.0, 0.5])
    assert ep0.info["success_labelled"] and ep0.info["robot"] == "reach-test"
    side = np.load(out / "ros" / "episode_000000.npz")
    assert side["time"].shape == (t0,) and np.all(np.diff(side["time"]) > 0)
    assert side["commands"].shape == (t0, 4) and np.isnan(side["commands"][0]).all()
    assert side["action_seen"][-1] and not side["action_seen"][0]
    assert np.all(side["received_ee"] <= side["time"]) and np.isfinite(side["stamp_ee"]).all()
    assert "'next' ignored: already in the last stage 'lift'" in caplog.text


def test_stale_ticks_are_skipped_and_nothing_written_without_episodes(
    server: RosbridgeServer, robot: FakeRobot, tmp_path: Path
) -> None:
    prof = reach()
    bridge = Bridge(server.url, 0.05).connect(2)
    try:
        rec = Recorder(bridge, Inputs(bridge, prof), prof, tmp_path / "gaps", None, None, (8, 8))
        assert rec.stage_names == ["task"]
        thread = threading.Thread(target=rec.run, kwargs={"max_seconds": 10.0}, name="recorder")
        thread.start()
        assert server.wait(lambda: rec.episode is not None and rec.episode.rows >= 3, 3.0)
        robot.paused.add("/embodied/goal")
        assert server.wait(lambda: rec.episode.gaps >= 3, 2.0)
        rows = rec.episode.rows
        assert server.wait(lambda: rec.episode.gaps >= 6, 2.0) and rec.episode.rows == rows
        rec.command("q")
        thread.join(5)
    finally:
        bridge.close()
    ep = DemoDataset(tmp_path / "gaps").load(0)
    assert ep.length == rows and not ep.success and ep.info["skipped_stale_ticks"] >= 6
    assert ep.annotations == {"dense": [], "sparse": []}
    with Bridge(server.url, 0.05).connect(2) as bridge:
        idle = Recorder(bridge, Inputs(bridge, prof), prof, tmp_path / "none", None, None, (8, 8), auto_start=False)
        robot.paused.clear()
        idle.run(max_seconds=0.2)  # nobody pressed start
    assert not (tmp_path / "none").exists() and not (tmp_path / ".none.partial").exists()
