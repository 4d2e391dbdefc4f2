"""The live reward monitor: reward programs and frame-based models scored on the robot's stream."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from embodied.deploy.bridge import Bridge, Inputs
from embodied.deploy.monitor import RewardMonitor, check_monitor_profile
from embodied.deploy.profile import ProfileError, RobotProfile
from embodied.rewards.base import Requirements, RewardModel, RewardOutput, TransitionBatch
from embodied.rewards.program import ProgramReward
from embodied.tasks.spec import TaskSpec, load_task
from tests.deploy.conftest import REPO, reach_data
from tests.deploy.robot import EE, GRIPPER, TWIST, FakeRobot
from tests.deploy.rosbridge_server import RosbridgeServer

SPACE = gym.spaces.Box(-np.inf, np.inf, (39,), np.float64)
REWARD, PROGRESS, STAGE, COMPONENTS = (
    "/embodied/reward",
    "/embodied/progress",
    "/embodied/stage",
    "/embodied/reward_components",
)


def reach(**update: object) -> RobotProfile:
    return RobotProfile.model_validate({**reach_data(**update), "name": "reach-test"})


@contextlib.contextmanager
def monitoring(
    server: RosbridgeServer, profile: RobotProfile, task: TaskSpec, reward: RewardModel
) -> Iterator[RewardMonitor]:
    bridge = Bridge(server.url, 0.05).connect(2)
    stop = threading.Event()
    thread = None
    try:
        mon = RewardMonitor(bridge, Inputs(bridge, profile), profile, task, reward, SPACE)
        thread = threading.Thread(target=mon.run, args=(10.0, stop), name="monitor")
        thread.start()
        yield mon
    finally:
        stop.set()
        if thread is not None:
            thread.join(5)
        bridge.close()


def values(server: RosbridgeServer, topic: str) -> list:
    return [m["data"] for m in server.messages(topic)]


def test_expert_program_scored_on_robot_state_with_actions_from_commands(
    server: RosbridgeServer, robot: FakeRobot
) -> None:
    task = load_task("metaworld-reach")
    reward = ProgramReward(REPO / "reward_models" / "metaworld-reach" / "expert.py", task, SPACE)
    with monitoring(server, reach(), task, reward) as mon:
        # hand at z 0.2 -> fingertips at 0.155; goal at 0.055: 0.1 m away, no bonus, no action yet
        assert server.wait(lambda: len(server.messages(REWARD)) >= 3, 3.0)
        assert values(server, REWARD)[0] == pytest.approx(-0.1)
        assert json.loads(values(server, COMPONENTS)[0]) == pytest.approx(
            {"reach": -0.1, "success_bonus": 0.0, "ctrl": 0.0}
        )
        assert server.messages(PROGRESS) == [] and server.messages(STAGE) == []  # reach's stage rule needs sim info
        # a command heard on the wire: Twist x 0.05 m/s = action 0.5 -> ctrl -0.01 * 0.25
        server.publish(TWIST, {"linear": {"x": 0.05, "y": 0.0, "z": 0.0}, "angular": {"x": 0.0, "y": 0.0, "z": 0.0}})
        server.publish(GRIPPER, {"data": 0.02})
        assert server.wait(lambda: values(server, REWARD)[-1] == pytest.approx(-0.1025), 2.0)
        assert mon.action.tolist() == pytest.approx([0.5, 0.0, 0.0, 0.5])
        robot.goal = np.array([0.1, 0.6, 0.16])  # 5 mm from the fingertips: success bonus
        assert server.wait(lambda: values(server, REWARD)[-1] == pytest.approx(-0.005 + 1.0 - 0.0025), 2.0)
    assert mon.stats.skipped == 0 and all(ms < 50 for ms in mon.stats.score_ms)


def test_progress_and_stage_from_model_components_and_from_view_rules(
    server: RosbridgeServer, robot: FakeRobot, tmp_path: Path
) -> None:
    program = tmp_path / "prog.py"
    program.write_text(
        "def compute_reward(view, action):\n"
        "    z = float(view.hand_pos[2])\n"
        "    return -z, {'progress': 0.25, 'stage': 0.0}\n"
    )
    task = load_task("metaworld-reach")
    with monitoring(server, reach(), task, ProgramReward(program, task, SPACE)):
        assert server.wait(lambda: len(server.messages(PROGRESS)) >= 2, 3.0)
    assert values(server, REWARD)[0] == pytest.approx(-0.2)
    assert set(values(server, PROGRESS)) == {0.25} and set(values(server, STAGE)) == {"reach"}

    # a task whose stage rules read views only: approach (z < 0.3) is done, descend (z < 0.1) is not
    rules = task.model_copy(
        update={
            "name": "reach-rules",
            "stages": (
                task.stages[0].model_copy(update={"name": "approach", "done": "hand_pos[2] < 0.3"}),
                task.stages[0].model_copy(update={"name": "descend", "done": "hand_pos[2] < 0.1"}),
            ),
        }
    )
    plain = tmp_path / "plain.py"
    plain.write_text("def compute_reward(view, action):\n    return 1.0, {}\n")
    n = len(server.messages(PROGRESS))
    with monitoring(server, reach(task=None), rules, ProgramReward(plain, rules, SPACE)):
        assert server.wait(lambda: len(server.messages(PROGRESS)) >= n + 2, 3.0)
        robot.ee = np.array([0.1, 0.6, 0.05])
        assert server.wait(lambda: values(server, PROGRESS)[-1] == 1.0, 2.0)
    assert values(server, PROGRESS)[n] == 0.5 and values(server, STAGE)[n] == "descend"
    assert values(server, STAGE)[-1] == "descend"  # every stage done: the last one


class MeanPixel(RewardModel):
    """Mean pixel value of the corner camera at 8x8: a frame-only reward with an exact answer."""

    name = "mean-pixel"
    requires = Requirements(cameras=("corner",), frame_size=(8, 8))

    def compute_reward(self, batch: TransitionBatch) -> RewardOutput:
        assert batch.frames is not None and batch.frames["corner"].shape == (1, 8, 8, 3)
        return RewardOutput(batch.frames["corner"].astype(float).mean(axis=(1, 2, 3)))


def test_frame_based_reward_gets_preprocessed_camera_frames(server: RosbridgeServer, robot: FakeRobot) -> None:
    task = load_task("metaworld-reach")
    with monitoring(server, reach(), task, MeanPixel()) as mon:
        assert server.wait(lambda: len(server.messages(REWARD)) >= 2, 3.0)
        robot.paused.add(EE)  # a required topic goes stale: ticks are skipped, not scored on old data
        assert server.wait(lambda: mon.stats.skipped >= 2, 2.0)
    assert set(values(server, REWARD)) == {80.0}  # colour (10, 200, 30)


def test_monitor_profile_checks(tmp_path: Path) -> None:
    task = load_task("metaworld-reach")
    short = gym.spaces.Box(-1, 1, (12,), np.float64)
    with pytest.raises(
        ProfileError, match=r"assembles 39 values but task 'metaworld-reach' observations have shape \(12,\)"
    ):
        check_monitor_profile(reach(), task, short, MeanPixel())
    frames_only = reach(observation=[], task=None)
    check_monitor_profile(frames_only, task, SPACE, MeanPixel())  # vision rewards need no state
    with pytest.raises(ProfileError, match="needs camera"):
        RewardMonitor(_NoBridge(), None, reach(topics={"corner": {"camera": "wrist"}}), task, MeanPixel(), SPACE)  # type: ignore[arg-type]


class _NoBridge:
    def subscribe(self, *args: object, **kw: object) -> None:
        raise AssertionError("the camera check comes first")
