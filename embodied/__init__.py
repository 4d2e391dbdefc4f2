"""embodied: the reward side of embodied reinforcement learning.

Public entry points (imported lazily so the CLI starts instantly):
    make(task, **overrides) -> gymnasium.Env
    make_vec(task, num_envs, **overrides) -> gymnasium.vector.VectorEnv
    shape(env, potential, gamma, scale=1.0) -> wrapped env with potential-based shaping
"""

from __future__ import annotations

import os
from typing import Any

# Headless MuJoCo rendering unless the user chose a backend; must precede any mujoco import.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault(
    "PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"] if os.environ["MUJOCO_GL"] in ("egl", "osmesa") else ""
)
if not os.environ["PYOPENGL_PLATFORM"]:
    del os.environ["PYOPENGL_PLATFORM"]

__version__ = "0.1.0"

_LAZY = {
    "make": "embodied.envs.make",
    "make_vec": "embodied.envs.make",
    "shape": "embodied.rewards.adapters",
    "load_task": "embodied.tasks.spec",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'embodied' has no attribute {name!r}")


__all__ = ["__version__", "load_task", "make", "make_vec", "shape"]
