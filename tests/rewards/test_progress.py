"""Stage-aware progress models: labels by hand, ᾱ, normalisation, causal windows, training, the `progress:` spec."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from embodied.demos.dataset import DemoDataset, DemoError, Episode, Stage, write_dataset
from embodied.rewards.base import RewardError, TransitionBatch
from embodied.rewards.progress import (
    ProgressConfig,
    ProgressError,
    ProgressModel,
    ProgressReward,
    ProgressScorer,
    causal_window,
    denormalize_progress,
    evaluate_progress,
    from_spec,
    normalize_progress,
    rewind_window,
    single_stage_labels,
    stage_labels,
    stage_proportions,
    train_progress,
)
from embodied.rewards.registry import make_potential, make_reward
from embodied.tasks.spec import TaskSpec, load_task

# --------------------------------------------------------------------------------------------------------------
# Labels, ᾱ, normalisation, windows: hand-computed values
# --------------------------------------------------------------------------------------------------------------


def test_labels_with_gap_zero_length_stage_and_tail() -> None:
    # a: frames 0..4; gap at 5; b: zero-length at 6; c: 6..9; frame 10 after the last stage.
    stages = [Stage("a", 0, 4), Stage("b", 6, 6), Stage("c", 6, 9)]
    stage, tau = stage_labels(stages, 11, ["a", "b", "c"])
    assert stage.tolist() == [0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2]
    np.testing.assert_allclose(tau, [0, 0.25, 0.5, 0.75, 1, 1, 0, 1 / 3, 2 / 3, 1, 1])
    y = stage + tau  # the regression target y = k + τ
    np.testing.assert_allclose(y[[0, 4, 5, 6, 9, 10]], [0, 1, 1, 2, 3, 3])


def test_tau_at_shared_boundaries_and_before_the_first_stage() -> None:
    stage, tau = stage_labels([Stage("reach", 2, 6), Stage("pull", 6, 10)], 11, ["reach", "pull"])
    assert stage.tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1]  # frame 6 is shared: the later stage, τ = 0
    np.testing.assert_allclose(tau, [0, 0, 0, 0.25, 0.5, 0.75, 0, 0.25, 0.5, 0.75, 1])
    stage, tau = stage_labels([Stage("a", 0, 3), Stage("b", 3, 3)], 5, ["a", "b"])  # zero-length last stage
    assert stage.tolist() == [0, 0, 0, 1, 1] and tau.tolist() == [0, 1 / 3, 2 / 3, 1, 1]


def test_partial_annotations_of_a_failure_and_no_annotations() -> None:
    stage, tau = stage_labels([Stage("reach", 0, 4)], 8, ["reach", "pull"])
    assert stage.tolist() == [0] * 8 and tau.tolist() == [0, 0.25, 0.5, 0.75, 1, 1, 1, 1]
    stage, tau = stage_labels([], 3, ["reach", "pull"])
    assert stage.tolist() == [0, 0, 0] and tau.tolist() == [0, 0, 0]
    with pytest.raises(ProgressError, match="stage 'grasp' is not one of"):
        stage_labels([Stage("grasp", 0, 1)], 3, ["reach"])
    s, t = single_stage_labels(5)
    assert s.tolist() == [0] * 5 and t.tolist() == [0, 0.25, 0.5, 0.75, 1]


def test_stage_proportions_by_hand() -> None:
    ep1 = ([Stage("a", 0, 4), Stage("b", 4, 10)], 11)  # 4/10 and 6/10
    ep2 = ([Stage("a", 0, 5), Stage("b", 5, 15)], 21)  # 5/20 and 10/20 (frames 16..20 follow the last stage)
    alpha = stage_proportions([ep1, ep2], ["a", "b"])
    np.testing.assert_allclose(alpha, [0.325 / 0.875, 0.55 / 0.875])
    # a zero-length stage gets weight only from the episodes where it lasts; a missing one contributes 0
    ep3 = ([Stage("a", 0, 2), Stage("b", 2, 2), Stage("c", 2, 4)], 5)  # 2/4, 0, 2/4
    ep4 = ([Stage("a", 0, 1), Stage("b", 1, 3), Stage("c", 3, 4)], 5)  # 1/4, 2/4, 1/4
    np.testing.assert_allclose(stage_proportions([ep3, ep4], ["a", "b", "c"]), [0.375, 0.25, 0.375])
    np.testing.assert_allclose(stage_proportions([([], 5)], ["a", "b"]), [0.5, 0.5])


def test_normalisation_round_trips() -> None:
    alpha = np.array([0.2, 0.0, 0.5, 0.3])  # stage 1 has no mass
    stage = np.array([0, 0, 2, 2, 3, 3])
    tau = np.array([0.0, 0.5, 0.1, 0.9, 0.25, 0.999])
    p = normalize_progress(stage, tau, alpha)
    np.testing.assert_allclose(p, [0.0, 0.1, 0.25, 0.65, 0.775, 0.9997])
    s2, t2 = denormalize_progress(p, alpha)
    assert s2.tolist() == stage.tolist()
    np.testing.assert_allclose(t2, tau)
    np.testing.assert_allclose(normalize_progress(s2, t2, alpha), p)
    # a boundary maps to the next weighted stage with τ = 0 (y = k+1, τ = 0 is y = k, τ = 1); P = 1 to the end
    s3, t3 = denormalize_progress(np.array([0.2, 1.0]), alpha)
    assert s3.tolist() == [2, 3] and t3.tolist() == [0.0, 1.0]
    assert normalize_progress(np.array([0]), np.array([1.0]), alpha)[0] == pytest.approx(0.2)


def test_causal_and_rewind_windows() -> None:
    np.testing.assert_array_equal(causal_window(np.array([0, 3, 7]), 3, 2), [[0, 0, 0], [0, 1, 3], [3, 5, 7]])
    np.testing.assert_array_equal(causal_window(5, 1), [5])
    idx, target = rewind_window(10, 2, window=4, stride=1)
    assert idx.tolist() == [9, 10, 9, 8] and target == 8
    idx, target = rewind_window(3, 3, window=3, stride=2)
    assert idx.tolist() == [1, 0, 0] and target == 0  # forward 0, 1, 3 then back 1, 0, 0 (clamped)
    for t in range(12):
        for w in (1, 3):
            for r in (1, 3):
                assert rewind_window(t, r, w, 2)[0].max() <= t
    with pytest.raises(ProgressError, match="window and stride must be >= 1"):
        causal_window(3, 0)


# --------------------------------------------------------------------------------------------------------------
# A synthetic 2-stage task: state [x, y] moves 0 -> 1 along x, then 0 -> 1 along y
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture
def two_stage_task(chain_task: Path) -> TaskSpec:
    base = load_task(chain_task)
    return base.model_validate(
        {
            **base.model_dump(),
            "name": "two-stage",
            "views": {
                "x": {"expr": "obs[0]", "meaning": "first coordinate"},
                "y": {"expr": "obs[1]", "meaning": "second coordinate"},
            },
            "stages": [
                {"name": "slide", "description": "x to 1", "done": "x >= 1"},
                {"name": "lift", "description": "y to 1", "done": "y >= 1"},
            ],
            "cameras": ["cam0", "cam1"],
            "camera_weights": {"cam0": 3.0, "cam1": 1.0},
        }
    )


def _two_stage_episode(seed: int, success: bool = True, cameras: tuple[str, ...] = ()) -> Episode:
    rng = np.random.default_rng(seed)
    n1, n2 = int(rng.integers(6, 12)), int(rng.integers(10, 16))
    x = np.concatenate([np.linspace(0, 1, n1), np.ones(n2)])
    y = np.concatenate([np.zeros(n1), np.linspace(0, 1, n2)])
    if not success:
        x, y = x * 0.4, np.zeros_like(y)  # stalls a third of the way through the first stage
    t = x.size
    states = np.stack([x, y], 1).astype(np.float32)
    frames = {}
    for c, cam in enumerate(cameras):
        img = np.zeros((t, 16, 16, 3), np.uint8)
        img[..., 0] = (x * 255).astype(np.uint8)[:, None, None]
        img[..., 1] = (y * 255).astype(np.uint8)[:, None, None]
        img[..., 2] = 40 * c
        frames[cam] = img
    ann = {"dense": [Stage("slide", 0, n1 - 1), Stage("lift", n1 - 1, t - 1)] if success else []}
    return Episode(states, np.zeros((t, 1), np.float32), success, frames=frames, annotations=ann, task="two stages")


def _write(path: Path, eps: list[Episode]) -> DemoDataset:
    return write_dataset(path, eps, task="two-stage", stages={"dense": ["slide", "lift"]})


@pytest.fixture
def two_stage_demos(tmp_path: Path) -> DemoDataset:
    return _write(tmp_path / "demos", [_two_stage_episode(s) for s in range(8)])


def _fast(**kw: object) -> ProgressConfig:
    base = {"steps": 300, "batch_size": 64, "val_fraction": 0.0, "hidden": 32}
    return ProgressConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_state_model_learns_stage_aware_progress(tmp_path: Path, two_stage_task: TaskSpec, two_stage_demos) -> None:
    model, metrics = train_progress(
        two_stage_demos, two_stage_task, _fast(steps=600, val_fraction=0.25), out=tmp_path / "m", progress=False
    )
    assert metrics["train_episodes"] == 6 and metrics["held_out_episodes"] == 2
    held = metrics["held_out"]
    assert held["voc_mean"] > 0.95 and held["stage_accuracy"] > 0.9
    assert model.names == ["slide", "lift"] and model.alpha[1] > model.alpha[0]  # lift lasts longer in every episode
    eps = [two_stage_demos.load(i, ()) for i in range(8)]
    fails = _write(tmp_path / "fails", [_two_stage_episode(s, success=False) for s in range(3)])
    res = evaluate_progress(model, eps[:3] + [fails.load(i, ()) for i in range(3)])
    assert res["separation_auc"] == 1.0 and res["failure_final"] < 0.3 < 0.9 < res["success_final"]


def test_save_load_round_trip_and_view_checks(tmp_path: Path, two_stage_task: TaskSpec, two_stage_demos) -> None:
    model, _ = train_progress(two_stage_demos, two_stage_task, _fast(steps=20), out=tmp_path / "m", progress=False)
    eps = [two_stage_demos.load(i, ()) for i in range(8)]
    alpha = stage_proportions([(e.annotations["dense"], e.length) for e in eps], ["slide", "lift"])
    np.testing.assert_allclose(model.alpha, alpha)  # ᾱ of the training episodes, stored with the model
    loaded = ProgressModel.load(tmp_path / "m", two_stage_task)
    np.testing.assert_allclose(loaded.alpha, alpha)
    ep = two_stage_demos.load(0, ())
    np.testing.assert_array_equal(loaded.score(ep).progress, model.score(ep).progress)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "metrics.json", "model.pt"]
    other = two_stage_task.model_validate(
        {**two_stage_task.model_dump(), "name": "moved", "views": {"x": {"expr": "obs[1]", "meaning": "m"}}}
    )
    with pytest.raises(ProgressError, match=r"field 'views.x'.*reads 'x' = 'obs\[0\]'; task 'moved' defines it as"):
        ProgressModel.load(tmp_path / "m", other)
    with pytest.raises(RewardError, match=r"field 'views.x'.*task 'metaworld-reach' has no such view"):
        from_spec(str(tmp_path / "m"), load_task("metaworld-reach"))
    with pytest.raises(ProgressError, match="model folder exists"):
        model.save(tmp_path / "m")


def test_causal_window_never_reads_a_future_frame(tmp_path: Path, two_stage_task: TaskSpec, two_stage_demos) -> None:
    cfg = _fast(steps=30, window=3, stride=2, encoder="cnn", cameras=("cam0",), with_state=True, frame_size=(16, 16))
    demos = _write(tmp_path / "cams", [_two_stage_episode(s, cameras=("cam0",)) for s in range(3)])
    model, _ = train_progress(demos, two_stage_task, cfg, progress=False)
    ep = demos.load(0)
    base = model.score(ep).progress
    for t in (0, 4, ep.length - 2):
        states, frames = ep.states.copy(), {"cam0": ep.frames["cam0"].copy()}
        states[t + 1 :] = 5.0  # every later state and frame replaced
        frames["cam0"][t + 1 :] = 255
        out = model.score_episode(states, frames).progress
        np.testing.assert_array_equal(out[: t + 1], base[: t + 1])
        assert not np.allclose(out[t + 1 :], base[t + 1 :])  # the change is visible from t+1 on


def test_online_scorer_matches_offline_windows(tmp_path: Path, two_stage_task: TaskSpec, two_stage_demos) -> None:
    model, _ = train_progress(two_stage_demos, two_stage_task, _fast(steps=30, window=4, stride=2), progress=False)
    a, b = two_stage_demos.load(0, ()), two_stage_demos.load(1, ())
    scorer = ProgressScorer(model, num_envs=2)
    online = [scorer.reset([0, 1], np.stack([a.states[0], b.states[0]]))]
    for t in range(1, 6):
        online.append(scorer.step([0, 1], np.stack([a.states[t], b.states[t]])))
    online_arr = np.stack(online)  # [6, 2]
    np.testing.assert_allclose(online_arr[:, 0], model.score(a).progress[:6], atol=1e-6)
    np.testing.assert_allclose(online_arr[:, 1], model.score(b).progress[:6], atol=1e-6)
    with pytest.raises(ProgressError, match="reads a causal window of 4 frames"):
        model.predict(a.states[:2])


def test_frame_models_late_fusion_and_equal_mass(tmp_path: Path, two_stage_task: TaskSpec) -> None:
    demos = _write(tmp_path / "cams", [_two_stage_episode(s, cameras=("cam0", "cam1")) for s in range(3)])
    cfg = _fast(steps=10, encoder="cnn", cameras=("cam0", "cam1"), fusion="mean", stage_weights="equal",
                frame_size=(16, 16))  # fmt: skip
    model, _ = train_progress(demos, two_stage_task, cfg, out=tmp_path / "m", progress=False)
    assert model.alpha.tolist() == [0.5, 0.5] and model.cameras == ("cam0", "cam1")
    ep = demos.load(1)
    pred = model.score(ep)
    assert pred.per_camera is not None and pred.per_camera.shape == (ep.length, 2)
    np.testing.assert_allclose(pred.progress, (3 * pred.per_camera[:, 0] + pred.per_camera[:, 1]) / 4, atol=1e-6)
    reward = from_spec(str(tmp_path / "m"), two_stage_task)
    assert reward.requires.cameras == ("cam0", "cam1") and reward.requires.frame_size == (16, 16)
    phi = reward.potential(ep.states[:4], {c: ep.frames[c][:4] for c in ("cam0", "cam1")})
    np.testing.assert_allclose(phi, pred.progress[:4], atol=1e-6)
    with pytest.raises(RewardError, match="missing camera 'cam1'"):
        reward.potential(ep.states[:4], {"cam0": ep.frames["cam0"][:4]})
    with pytest.raises(DemoError, match=r"field 'cameras': missing camera\(s\) \['cam1'\]"):
        train_progress(_write(tmp_path / "one", [_two_stage_episode(0, cameras=("cam0",))]), two_stage_task, cfg,
                       progress=False)  # fmt: skip


def test_frozen_clip_encoder_from_a_local_folder(tmp_path: Path, two_stage_task: TaskSpec) -> None:
    from embodied.rewards.clip_adapt import save_adapted, small_clip

    net = small_clip(seed=0, image_size=32, patch_size=8, width=32, layers=1, embed_dim=16, text_width=32,
                     text_layers=1, context_length=16)[0]  # fmt: skip
    folder = save_adapted(
        net, tmp_path / "clip", {"task": "two-stage", "model_cfg": net.embodied_model_cfg,
                                 "preprocess_cfg": dict(net.visual.preprocess_cfg), "goal": ["g"]},
    )  # fmt: skip
    demos = _write(tmp_path / "cams", [_two_stage_episode(s, cameras=("cam0",)) for s in range(3)])
    cfg = _fast(steps=20, encoder="clip", cameras=("cam0",), clip_checkpoint=str(folder), frame_size=(16, 16))
    model, _ = train_progress(demos, two_stage_task, cfg, out=tmp_path / "m", progress=False)
    assert model.config["clip_dim"] == 16 and model.config["clip_checkpoint"] == str(folder)
    ep = demos.load(0)
    reloaded = from_spec(str(tmp_path / "m"), two_stage_task)  # loads the CLIP from the folder again
    phi = reloaded.potential(ep.states, {"cam0": ep.frames["cam0"]})
    np.testing.assert_allclose(phi, model.score(ep).progress, atol=1e-5)


def test_modes_single_stage_sparse_and_errors(tmp_path: Path, two_stage_task: TaskSpec, two_stage_demos) -> None:
    model, _ = train_progress(two_stage_demos, two_stage_task, _fast(steps=10, mode="single_stage"), progress=False)
    assert model.names == ["task"] and model.alpha.tolist() == [1.0]
    with pytest.raises(ProgressError, match=r"field 'stages.sparse': no sparse annotations"):
        train_progress(two_stage_demos, two_stage_task, _fast(mode="sparse"), progress=False)
    fails = _write(tmp_path / "f", [_two_stage_episode(s, success=False) for s in range(2)])
    with pytest.raises(DemoError, match="no successful episode"):
        train_progress(fails, two_stage_task, _fast(), progress=False)
    with pytest.raises(ProgressError, match="option --encoder"):
        ProgressConfig(encoder="vit").check()  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------------------
# The `progress:` spec as potential and as (non-invariant) reward
# --------------------------------------------------------------------------------------------------------------


def _batch(obs: np.ndarray, next_obs: np.ndarray, terminated: list[bool]) -> TransitionBatch:
    n = len(obs)
    return TransitionBatch(obs, np.zeros((n, 1)), next_obs, np.array(terminated), np.zeros(n, bool), np.zeros(n))


def test_spec_potential_and_non_invariant_modes(tmp_path: Path, two_stage_task: TaskSpec, two_stage_demos) -> None:
    train_progress(two_stage_demos, two_stage_task, _fast(steps=50), out=tmp_path / "m", progress=False)
    spec = f"progress:{tmp_path / 'm'}"
    phi = make_potential(spec, two_stage_task)
    obs = np.array([[0.0, 0.0], [0.5, 0.0], [1.0, 0.5], [1.0, 1.0]])
    batched = phi.potential(obs)
    rows = np.concatenate([phi.potential(obs[i : i + 1]) for i in range(4)])
    np.testing.assert_allclose(batched, rows, atol=1e-6)
    assert np.all((batched >= 0) & (batched <= 1))
    with pytest.raises(RewardError, match="not policy-invariant; use it as Φ"):
        phi.compute_reward(_batch(obs[:2], obs[2:], [False, False]))
    with pytest.warns(UserWarning, match="NOT policy-invariant"):
        raw = make_reward(spec + ",mode=raw_progress_not_invariant", two_stage_task)
    with pytest.warns(UserWarning, match="NOT policy-invariant"):
        delta = make_reward(spec + ",mode=progress_delta_not_invariant,readout=expected", two_stage_task)
    out = raw.compute_reward(_batch(obs[:2], obs[2:], [False, True]))
    np.testing.assert_allclose(out.reward, phi.potential(obs[2:]), atol=1e-6)
    p_exp = delta.model.predict(obs).progress
    out = delta.compute_reward(_batch(obs[:2], obs[2:], [False, True]))
    np.testing.assert_allclose(out.reward, p_exp[2:] - p_exp[:2], atol=1e-6)
    with pytest.raises(RewardError, match="option 'scale=2'"):
        from_spec(str(tmp_path / "m") + ",scale=2", two_stage_task)
    with pytest.raises(RewardError, match="mode='potential_delta'"):
        from_spec(str(tmp_path / "m") + ",mode=potential_delta", two_stage_task)
    with pytest.raises(RewardError, match=r"progress model 'nope' not found.*models for two-stage: none"):
        from_spec("nope", two_stage_task)
    with pytest.raises(RewardError, match="needs a model"):
        from_spec("", two_stage_task)


def test_spec_resolves_a_model_name_under_reward_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, two_stage_task: TaskSpec, two_stage_demos: DemoDataset
) -> None:
    monkeypatch.chdir(tmp_path)
    train_progress(two_stage_demos, two_stage_task, _fast(steps=5), out="reward_models/two-stage/progress-a",
                   progress=False)  # fmt: skip
    assert make_potential("progress:progress-a", two_stage_task).model.path == Path(
        "reward_models/two-stage/progress-a"
    )
    with pytest.raises(RewardError, match=r"models for two-stage: \['progress-a'\]"):
        from_spec("progress-b", two_stage_task)


def test_windowed_model_is_refused_online(tmp_path: Path, two_stage_task: TaskSpec, two_stage_demos) -> None:
    train_progress(two_stage_demos, two_stage_task, _fast(steps=5, window=3), out=tmp_path / "w", progress=False)
    with pytest.raises(RewardError, match=r"field 'window': the model reads a 3-frame window"):
        from_spec(str(tmp_path / "w"), two_stage_task)


def test_spa_contributions_sum_to_outcomes_and_are_no_potential(
    tmp_path: Path, two_stage_task: TaskSpec, two_stage_demos: DemoDataset
) -> None:
    with pytest.raises(ProgressError, match="objective spa: needs both successful and failed episodes"):
        train_progress(two_stage_demos, two_stage_task, _fast(objective="spa"), progress=False)
    mixed = _write(tmp_path / "mixed", [_two_stage_episode(s, success=s % 2 == 0) for s in range(6)])
    model, _ = train_progress(mixed, two_stage_task, _fast(objective="spa", steps=400, lr=3e-3), out=tmp_path / "s",
                              progress=False)  # fmt: skip
    sums = np.array([model.score(mixed.load(i, ())).progress.sum() for i in range(6)])
    np.testing.assert_allclose(sums, [1, 0, 1, 0, 1, 0], atol=0.15)
    reward = from_spec(str(tmp_path / "s"), two_stage_task)
    assert not reward.state_only
    obs = mixed.load(0, ()).states[:3]
    out = reward.compute_reward(_batch(obs, obs, [False] * 3))
    np.testing.assert_allclose(out.components["contribution"], model.predict(obs).progress, atol=1e-6)
    with pytest.raises(RewardError, match="cannot be a shaping potential"):
        make_potential(f"progress:{tmp_path / 's'}", two_stage_task)


def test_evaluate_metrics_by_hand() -> None:
    eps = [
        Episode(np.zeros((4, 1)), np.zeros((4, 1)), True, annotations={"dense": [Stage("a", 0, 3)]}),
        Episode(np.zeros((3, 1)), np.zeros((3, 1)), True, annotations={"dense": [Stage("a", 0, 2)]}),
        Episode(np.zeros((3, 1)), np.zeros((3, 1)), False),
    ]
    preds = iter([[0.0, 0.2, 0.9, 0.7], [0.1, 0.5, 1.0], [0.3, 0.6, 0.8]])

    def score(ep: Episode) -> SimpleNamespace:
        p = np.array(next(preds))
        return SimpleNamespace(progress=p, stage=np.zeros(len(p), np.int64))

    fake = SimpleNamespace(score=score, config={"annotation_set": "dense"}, names=["a"], alpha=np.ones(1),
                           objective="sarm")  # fmt: skip
    res = evaluate_progress(fake, eps)  # type: ignore[arg-type]
    assert res["voc"] == [0.8, 1.0]  # Spearman of [0, .2, .9, .7] with time: 1 − 6·2/(4·15)
    assert res["stage_accuracy"] == 1.0
    # labels: τ = [0, 1/3, 2/3, 1] and [0, 1/2, 1]
    mae = np.mean(np.abs(np.array([0, 0.2, 0.9, 0.7, 0.1, 0.5, 1.0]) - np.array([0, 1 / 3, 2 / 3, 1, 0, 0.5, 1])))
    assert res["progress_mae"] == pytest.approx(mae)
    assert res["success_final"] == pytest.approx(0.85) and res["failure_final"] == pytest.approx(0.8)
    assert res["separation_auc"] == 0.5  # 0.7 < 0.8 < 1.0


def test_progress_spec_is_registered() -> None:
    from embodied.rewards.registry import BUILTIN

    assert BUILTIN["progress"] == "embodied.rewards.progress:from_spec"
    assert ProgressReward.__mro__[1].__name__ == "RewardModel"
