"""Real-robot deployment through a rosbridge (ROS 1 and ROS 2): policy control loop, live reward
monitor and demonstration recording.

Modules:
    profile: the robot profile TOML schema (`load_profile`, `RobotProfile`).
    bridge: rosbridge connection (roslibpy), message decoding, bounded mailboxes (`Bridge`).
    control: the safe control loop (`Controller`, `run_deploy`).
    monitor: score the robot's stream with any reward spec and publish it (`RewardMonitor`).
    record: record annotated episodes for training progress models (`Recorder`).

roslibpy, torch and stable-baselines3 are imported lazily, only when a command runs.
"""

from __future__ import annotations

from embodied.deploy.profile import ProfileError, RobotProfile, load_profile

__all__ = ["ProfileError", "RobotProfile", "load_profile"]
