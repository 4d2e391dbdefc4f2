"""BC and RA-BC: weights on hand-made deltas, run folders `embodied eval` loads, RA-BC ignoring regressions."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from embodied.demos.collect import Degradation, collect
from embodied.demos.dataset import DemoError
from embodied.policies.bc import BCConfig, BCError, normalize_weights, progress_deltas, rabc_weights, train_bc
from embodied.rewards.progress import ProgressConfig, ProgressModel, train_progress
from embodied.tasks.spec import load_task
from embodied.train.evaluate import evaluate, load_policy


def test_rabc_weights_by_hand() -> None:
    r = np.array([-0.1, 0.0, 0.02, 0.04, 0.2, 0.3])
    # μ = 0.46/6 = 0.07667, σ = 0.13337: soft(r) = (r − (μ − 2σ)) / (4σ + ε) = (r + 0.19008) / 0.53350
    w = rabc_weights(r, kappa=0.05)
    np.testing.assert_allclose(w, [0.0, 0.35629, 0.39378, 0.43127, 1.0, 1.0], atol=1e-5)
    np.testing.assert_allclose(normalize_weights(w), w / w.sum())
    # a negative mean is clipped to μ = 0: soft(0.01) = (0.01 + 2·0.12872) / (4·0.12872)
    np.testing.assert_allclose(rabc_weights(np.array([-0.3, -0.1, 0.01, 0.02]), 0.015), [0, 0, 0.51942, 1], atol=1e-5)
    # equal deltas: σ = ε, every soft weight is 2ε/5ε
    np.testing.assert_allclose(rabc_weights(np.full(4, 0.01), 0.05), [0.4] * 4)
    np.testing.assert_allclose(normalize_weights(rabc_weights(np.full(4, 0.01), 0.05)), [0.25] * 4)
    assert normalize_weights(rabc_weights(np.array([-1.0, -2.0]), 0.05)).tolist() == [0.0, 0.0]
    assert rabc_weights(np.array([0.06]), 0.05).tolist() == [1.0]


def test_progress_deltas_over_a_chunk() -> None:
    np.testing.assert_allclose(progress_deltas(np.array([0, 0.1, 0.3, 0.35, 0.2]), 2), [0.3, 0.25, -0.1, -0.15, 0])
    with pytest.raises(BCError, match="option --delta"):
        progress_deltas(np.zeros(3), 0)


@pytest.fixture(scope="module")
def reach_sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bc")
    task = load_task("metaworld-reach")
    clean = collect(task, 8, root / "clean", seed=0, progress=False)
    bad = collect(task, 8, root / "bad", degradation=Degradation(regress=1.0), seed=100, max_steps=40, progress=False)
    train_progress(clean, task, ProgressConfig(steps=300, val_fraction=0), out=root / "progress", progress=False)
    return {"root": root, "clean": clean.root, "bad": bad.root, "progress": root / "progress"}


def _alignment(run: Path, states: np.ndarray, actions: np.ndarray) -> float:
    """Mean cosine between the policy's and the expert's xyz motion where the expert moves (|a_xyz| > 0.3)."""
    moving = np.linalg.norm(actions[:, :3], axis=1) > 0.3
    states, actions = states[moving], actions[moving]
    pred, _ = load_policy(run).predict(states, deterministic=True)
    cos = (pred[:, :3] * actions[:, :3]).sum(1) / (
        np.linalg.norm(pred[:, :3], axis=1) * np.linalg.norm(actions[:, :3], axis=1) + 1e-9
    )
    return float(cos.mean())


def test_bc_run_folder_loads_like_a_trained_run(reach_sets: dict[str, Path], tmp_path: Path) -> None:
    from embodied.demos.dataset import DemoDataset

    run = train_bc(DemoDataset(reach_sets["clean"]), "metaworld-reach", BCConfig(steps=40), root=tmp_path,
                   progress=False)  # fmt: skip
    assert run == tmp_path / "metaworld-reach-bc-none-s0"
    cfg = tomllib.loads((run / "config.toml").read_text())
    assert cfg["algo"] == "ppo" and cfg["reward"] == "env" and cfg["task"]["name"] == "metaworld-reach"
    info = json.loads((run / "bc.json").read_text())
    assert info["episodes"] == 8 and info["weighting"] == "none"
    result = evaluate(run.name, episodes=1, root=tmp_path)
    assert result["episodes"] == 1 and 0.0 <= result["success_rate"] <= 1.0


def test_rabc_clones_progress_and_drops_regressions(reach_sets: dict[str, Path], tmp_path: Path) -> None:
    from embodied.demos.dataset import DemoDataset

    mixed = [DemoDataset(reach_sets["clean"]), DemoDataset(reach_sets["bad"])]
    plain = train_bc(mixed, "metaworld-reach", BCConfig(steps=400, seed=1), run="plain", root=tmp_path, progress=False)
    cfg = BCConfig(steps=400, seed=1, weighting="rabc", progress=str(reach_sets["progress"]), delta=5)
    rabc = train_bc(mixed, "metaworld-reach", cfg, run="rabc", root=tmp_path, progress=False)
    info = json.loads((rabc / "bc.json").read_text())
    assert info["weighting"] == "rabc" and set(info["weights"]) == {"zero", "one", "soft"}
    # weights with the dataset's statistics: regressions (progress falls, or stays at 0 far from the goal) get
    # weight 0 or a small soft weight; the expert's frames mostly weight 1
    model = ProgressModel.load(reach_sets["progress"], load_task("metaworld-reach"))
    deltas = [np.concatenate([progress_deltas(model.score(ep).progress, 5) for ep in ds.episodes(())]) for ds in mixed]
    w = rabc_weights(np.concatenate(deltas), cfg.kappa)
    w_clean, w_bad = w[: deltas[0].size], w[deltas[0].size :]
    assert w_clean.mean() > 0.7 and w_bad.mean() < 0.2
    assert w_bad.max() < 0.5  # no regression frame is cloned at full weight
    held = collect("metaworld-reach", 3, tmp_path / "held", seed=500, progress=False)
    states = np.concatenate([held.load(i, ()).states for i in range(3)])
    actions = np.concatenate([held.load(i, ()).actions for i in range(3)])
    a_rabc, a_plain = _alignment(rabc, states, actions), _alignment(plain, states, actions)
    print(f"alignment with the expert: rabc {a_rabc:.3f}, plain {a_plain:.3f}")
    assert a_rabc > 0.9  # close to cloning the clean demos alone (~0.96 here)
    assert a_rabc > a_plain + 0.2  # plain BC averages the expert with its reversal


def test_bad_configuration_is_refused(reach_sets: dict[str, Path], tmp_path: Path) -> None:
    from embodied.demos.dataset import DemoDataset

    ds = DemoDataset(reach_sets["clean"])
    with pytest.raises(BCError, match="option --progress-model: --weighting rabc needs a progress model"):
        train_bc(ds, "metaworld-reach", BCConfig(weighting="rabc"), root=tmp_path, progress=False)
    with pytest.raises(BCError, match="option --weighting"):
        train_bc(ds, "metaworld-reach", BCConfig(weighting="awr"), root=tmp_path, progress=False)  # type: ignore[arg-type]
    with pytest.raises(DemoError, match=r"field 'states': demos have 39-dim states, task 'chain' observes 2"):
        train_bc(ds, Path(__file__).parents[1] / "data" / "chain.toml", BCConfig(steps=1), root=tmp_path,
                 progress=False)  # fmt: skip
    assert not any(tmp_path.iterdir())  # nothing half-written
