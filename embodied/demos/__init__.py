"""Demonstrations: an episode dataset with subtask annotations, LeRobot v3 import/export, scripted collection.

- `embodied.demos.dataset`: `Episode`, `Stage`, `DemoDataset`, `DemoWriter`, validation (`DemoError`).
- `embodied.demos.lerobot`: `import_lerobot`, `export_lerobot` (LeRobotDataset v3 layout, SARM annotation columns).
- `embodied.demos.collect`: `collect` (Meta-World scripted experts, stage boundaries from the task's
  stage rules, degradations for mixed-quality sets).

Submodules are imported on use; importing this package is cheap.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "Episode": "embodied.demos.dataset",
    "Stage": "embodied.demos.dataset",
    "DemoDataset": "embodied.demos.dataset",
    "DemoWriter": "embodied.demos.dataset",
    "DemoError": "embodied.demos.dataset",
    "import_lerobot": "embodied.demos.lerobot",
    "export_lerobot": "embodied.demos.lerobot",
    "collect": "embodied.demos.collect",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'embodied.demos' has no attribute {name!r}")


__all__ = sorted(_LAZY)
