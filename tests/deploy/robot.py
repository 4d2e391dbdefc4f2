"""A scripted robot behind the loopback rosbridge: publishes the `robots/metaworld-reach.toml` topics.

`FakeRobot` publishes, at `rate_hz` on its own thread: the end-effector and goal points
(geometry_msgs/PointStamped), the gripper joint (sensor_msgs/JointState), the object pose
(geometry_msgs/PoseStamped) and a solid-colour camera image (sensor_msgs/Image, base64). Topics can be
paused (to make them stale) and values changed while it runs. `stop()` joins the thread.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from embodied.deploy.bridge import encode_image, ros_time
from tests.deploy.rosbridge_server import RosbridgeServer

EE, JOINTS, GOAL, OBJECT, CAMERA = (
    "/embodied/ee_position",
    "/joint_states",
    "/embodied/goal",
    "/embodied/object_pose",
    "/camera/color/image_raw",
)
TWIST, GRIPPER = "/servo/delta_twist_cmds", "/gripper/command"


class FakeRobot:
    """Publishes the reach profile's sensor topics through `server` at `rate_hz` (ROS 2 stamps by default)."""

    def __init__(
        self,
        server: RosbridgeServer | None,
        rate_hz: float = 50.0,
        ros: int = 2,
        image_size: tuple[int, int] = (32, 32),
        color: tuple[int, int, int] = (10, 200, 30),
        encoding: str = "rgb8",
        clock_offset: float = 0.0,
    ) -> None:
        self.server, self.period, self.ros = server, 1.0 / rate_hz, ros
        self.clock_offset = clock_offset  # the robot's clock minus ours (header stamps only)
        self.ee = np.array([0.1, 0.6, 0.2])
        self.goal = np.array([0.1, 0.6, 0.055])
        self.finger = 0.04  # m; profile scale 12.5 -> gripper view 0.5
        self.paused: set[str] = set()
        self.image = np.zeros((*image_size, 3), np.uint8)
        self.image[:] = color
        self.encoding = encoding
        self.sent = 0
        self._image_msg = encode_image(self.image, encoding if encoding in ("rgb8", "bgr8", "mono8") else "rgb8", ros)
        if encoding not in ("rgb8", "bgr8", "mono8"):
            self._image_msg["encoding"] = encoding  # an encoding the bridge must refuse
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-robot", daemon=True)

    def start(self) -> FakeRobot:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)

    def __enter__(self) -> FakeRobot:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def header(self, t: float | None = None) -> dict:
        stamp = (time.time() if t is None else t) + self.clock_offset
        return {"stamp": ros_time(stamp, self.ros), "frame_id": "world"}

    def messages(self) -> dict[str, dict]:
        h = self.header()
        point = lambda p: {"header": h, "point": {"x": float(p[0]), "y": float(p[1]), "z": float(p[2])}}  # noqa: E731
        return {
            EE: point(self.ee),
            GOAL: point(self.goal),
            JOINTS: {
                "header": h,
                "name": ["joint_1", "gripper_finger_joint"],
                "position": [0.3, self.finger],
                "velocity": [0.0, 0.0],
                "effort": [],
            },
            OBJECT: {
                "header": h,
                "pose": {
                    "position": {"x": 0.0, "y": 0.7, "z": 0.02},
                    "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0},
                },
            },
            CAMERA: {**self._image_msg, "header": h},
        }

    def publish_once(self) -> None:
        assert self.server is not None
        for topic, msg in self.messages().items():
            if topic not in self.paused:
                self.server.publish(topic, msg)
        self.sent += 1

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            self.publish_once()
            next_t += self.period
            self._stop.wait(max(0.0, next_t - time.monotonic()))
