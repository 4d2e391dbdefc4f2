"""Fixtures for the demonstration tests: small synthetic episodes (no simulator) and their datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embodied.demos.dataset import DemoDataset, Episode, Stage, write_dataset


def synthetic_episode(length: int, success: bool, seed: int, cameras: tuple[str, ...] = ("corner",)) -> Episode:
    """A T-row episode: states [T, 5], actions [T, 2], smooth 32x32 frames, two dense stages when successful."""
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float32)
    states = np.stack([t / length, np.sin(t / 5), rng.normal(size=length), np.full(length, seed), t], 1)
    actions = rng.uniform(-1, 1, size=(length, 2)).astype(np.float32)
    yy, xx = np.mgrid[0:32, 0:32]
    frames = {
        cam: np.stack(
            [
                np.stack([xx * 8 % 256, yy * 8 % 256, np.full_like(xx, (k * 9 + c * 40) % 256)], -1)
                for k in range(length)
            ]
        ).astype(np.uint8)
        for c, cam in enumerate(cameras)
    }
    mid = length // 2
    dense = [Stage("reach", 0, mid), Stage("pull", mid, length - 3)] if success else [Stage("reach", 0, mid)]
    sparse = [Stage("task", 0, length - 3)] if success else []
    flags = np.zeros(length, bool)
    if success:
        flags[length - 3 :] = True
    return Episode(
        states=states.astype(np.float32),
        actions=actions,
        success=success,
        frames=frames,
        annotations={"dense": dense, "sparse": sparse},
        rewards=rng.normal(size=length).astype(np.float32) * (t > 0),
        success_flags=flags,
        task="open the drawer",
        info={"seed": seed},
    )


@pytest.fixture
def episodes() -> list[Episode]:
    return [synthetic_episode(12, True, 0), synthetic_episode(9, False, 1), synthetic_episode(15, True, 2)]


@pytest.fixture
def dataset(tmp_path: Path, episodes: list[Episode]) -> DemoDataset:
    return write_dataset(
        tmp_path / "demos",
        episodes,
        task="metaworld-drawer-open",
        fps=10.0,
        stages={"dense": ["reach", "pull"], "sparse": ["task"]},
    )
