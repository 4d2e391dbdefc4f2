"""Robot profiles: shipped examples, layout arithmetic, validation errors, checks against policy and task."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import tomli_w

from embodied.deploy.profile import ProfileError, RobotProfile, canonical_type, load_profile
from embodied.tasks.spec import load_task
from tests.deploy.conftest import REPO, reach_data


def test_shipped_profiles_load_with_their_dimensions() -> None:
    dims = {}
    for path in sorted((REPO / "robots").glob("*.toml")):
        p = load_profile(path)
        dims[p.name] = (p.obs_dim, p.action.dim if p.action else None, p.ros)
    assert dims == {"arm7dof": (21, 8, 1), "metaworld-reach": (39, 4, 2), "mobile_base": (16, 2, 2)}


def test_reach_profile_layout_matches_metaworld() -> None:
    p = load_profile("metaworld-reach")
    assert p.segment_slices() == [(0, 3), (3, 4), (4, 11), (11, 18), (18, 36), (36, 39)]
    assert p.cameras() == {"corner": "corner"}
    assert p.required_keys() == ["ee", "joints", "goal"]
    assert p.sync_key() == "ee"  # no required camera: the first required topic
    p.check_task(load_task("metaworld-reach"))  # every view lies inside its segment


def test_profile_lookup_by_name_and_unknown_name() -> None:
    assert load_profile("arm7dof").source.endswith("robots/arm7dof.toml")
    with pytest.raises(
        ProfileError, match=r"unknown robot profile 'ur5'; known: arm7dof, metaworld-reach, mobile_base"
    ):
        load_profile("ur5")


def load_profile_from(data: dict, folder: Path) -> RobotProfile:
    path = folder / "p.toml"
    path.write_text(tomli_w.dumps(data))
    return load_profile(path)


def test_ros2_type_spelling_is_accepted(tmp_path: Path) -> None:
    assert canonical_type("sensor_msgs/msg/JointState") == "sensor_msgs/JointState"
    p = load_profile_from(reach_data(topics={"joints": {"type": "sensor_msgs/msg/JointState"}}), tmp_path)
    assert p.topics["joints"].kind == "sensor_msgs/JointState"


CMD = {"topic": "/a", "type": "std_msgs/Float64MultiArray"}
BAD = [
    ({"topics": {"ee": {"type": "sensor_msgs/LaserScan"}}}, "field 'topics.ee.type': unsupported input message type"),
    ({"observation": [{"source": "joints"}]}, "observation[0]: a JointState segment needs 'names'"),
    ({"observation": [{"source": "nope"}]}, "observation[0].source: unknown topic key 'nope'"),
    ({"observation": [{"source": "ee", "constant": [1.0]}]}, "give exactly one of 'source', 'constant', 'history'"),
    ({"observation": [{"constant": [1.0], "history": [0, 5]}]}, "give exactly one of"),
    (
        {"observation": [{"constant": [1.0, 2.0]}, {"history": [0, 3]}]},
        "observation[1].history [0, 3] must copy entries before this segment (it starts at 2)",
    ),
    ({"observation": [{"source": "corner"}]}, "'corner' is an image topic"),
    ({"observation": [{"source": "ee", "indices": [3]}]}, "observation[0].indices [3] outside the 3 values"),
    ({"observation": [{"source": "ee", "scale": [1.0, 2.0]}]}, "observation[0].scale has 2 entries but there are 3"),
    ({"action": {"commands": [{**CMD, "indices": [0, 1, 2, 3, 4]}]}}, "commands[0].indices [4] are outside the action"),
    ({"action": {"commands": [{**CMD, "indices": [0, 1, 2]}]}}, "action entries [3] are not sent by any command"),
    (
        {"action": {"commands": [{**CMD, "indices": [0, 1, 2, 3], "low": 1.0, "high": 0.0}]}},
        "low [1.0, 1.0, 1.0, 1.0] exceeds",
    ),
    ({"action": {"commands": [{**CMD, "indices": [0, 1, 2, 3], "max_delta": 0.0}]}}, "max_delta must be positive"),
    (
        {"action": {"commands": [{"topic": "/t", "type": "trajectory_msgs/JointTrajectory", "indices": [0, 1, 2, 3]}]}},
        "JointTrajectory command needs joint_names with 4 names",
    ),
    (
        {"action": {"commands": [{**CMD, "indices": [0, 1, 2, 3], "hold": "measured"}]}},
        "hold = 'measured' needs a [measured] table with 4 joint names",
    ),
    (
        {"action": {"commands": [{"topic": "/f", "type": "std_msgs/Float64", "indices": [0, 1, 2, 3]}]}},
        "carries one value",
    ),
    (
        {
            "action": {
                "commands": [
                    {
                        "topic": "/v",
                        "type": "geometry_msgs/Twist",
                        "indices": [0, 1, 2, 3],
                        "fields": ["linear.x", "linear.q", "angular.z", "angular.y"],
                    }
                ]
            }
        },
        "Twist fields must be 4 distinct names",
    ),
    (
        {"action": {"commands": [{**CMD, "type": "std_msgs/String", "indices": [0]}]}},
        "unsupported command message type",
    ),
    ({"control": {"rate_hz": -1}}, "field 'control.rate_hz': Input should be greater than 0"),
    ({"control": {"rate": 5}}, "field 'control.rate': Extra inputs are not permitted"),
    ({"control": {"sync_topic": "object"}}, "control.sync_topic 'object' must be a required key"),
    ({"topics": {"ee": {"topic": "ee"}}}, "field 'topics.ee.topic': Value error, topic name must start with '/'"),
]


@pytest.mark.parametrize(("update", "message"), BAD, ids=[m[:40] for _, m in BAD])
def test_invalid_profiles_are_one_line_errors_naming_file_and_field(tmp_path: Path, update: dict, message: str) -> None:
    data = reach_data(**update)
    path = tmp_path / "bad.toml"
    path.write_text(tomli_w.dumps(data))
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and "\n" not in text
    assert message.replace("Value error, ", "") in text


def test_image_topic_without_camera_and_malformed_toml(tmp_path: Path) -> None:
    data = reach_data()
    del data["topics"]["corner"]["camera"]
    path = tmp_path / "nocam.toml"
    path.write_text(tomli_w.dumps(data))
    with pytest.raises(ProfileError, match=r"topics\.corner: image topics need 'camera'"):
        load_profile(path)
    bad = tmp_path / "broken.toml"
    bad.write_text("name = [")
    with pytest.raises(ProfileError, match=r"broken.toml: malformed TOML"):
        load_profile(bad)


def box(n: int) -> gym.spaces.Box:
    return gym.spaces.Box(-1.0, 1.0, (n,), np.float32)


def test_check_policy_names_the_mismatch() -> None:
    p = load_profile("metaworld-reach")
    p.check_policy(box(39), box(4), "r")
    with pytest.raises(
        ProfileError, match=r"the profile assembles 39 values but run 'r' expects observations of shape \(38,\)"
    ):
        p.check_policy(box(38), box(4), "r")
    with pytest.raises(ProfileError, match=r"action.dim: profile has 4 action entries but run 'r' outputs 7"):
        p.check_policy(box(39), box(7), "r")
    with pytest.raises(ProfileError, match=r"only continuous \(Box\) actions"):
        p.check_policy(box(39), gym.spaces.Discrete(2), "r")
    with pytest.raises(ProfileError, match=r"flat vectors"):
        p.check_policy(gym.spaces.Dict({"a": box(3)}), box(4), "r")


def test_check_task_catches_shifted_views_and_wrong_task(tmp_path: Path) -> None:
    reach = load_task("metaworld-reach")
    # gripper first, hand after: the hand_pos view (obs[0:3]) no longer lies in the 'ee' segment
    data = reach_data()
    data["observation"][0], data["observation"][1] = data["observation"][1], data["observation"][0]
    shifted = load_profile_from(data, tmp_path)
    with pytest.raises(
        ProfileError,
        match=r"observation\[0\].view: view 'gripper' = obs\[3\] reads entries \[3:4\] but this segment fills \[0:1\]",
    ):
        shifted.check_task(reach)
    with pytest.raises(
        ProfileError, match=r"the profile is for task 'metaworld-reach', but the task is 'metaworld-push'"
    ):
        load_profile("metaworld-reach").check_task(load_task("metaworld-push"))
    with pytest.raises(ProfileError, match=r"task 'metaworld-reach' has no view 'elbow'"):
        load_profile_from(reach_data(observation=[{"source": "ee", "view": "elbow"}]), tmp_path).check_task(reach)
