"""Policies learned from demonstrations: behaviour cloning and reward-aligned behaviour cloning (RA-BC).

`embodied.policies.bc`: `rabc_weights`, `progress_deltas`, `BCConfig`, `train_bc` (writes a run folder that
`embodied eval` and `embodied video` load). Imported on use (it needs torch and Stable-Baselines3).
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "BCConfig": "embodied.policies.bc",
    "train_bc": "embodied.policies.bc",
    "rabc_weights": "embodied.policies.bc",
    "progress_deltas": "embodied.policies.bc",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'embodied.policies' has no attribute {name!r}")


__all__ = sorted(_LAZY)
