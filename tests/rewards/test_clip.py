"""ClipReward with an injected, seeded, randomly initialised open_clip model: formulas, batching, specs, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from embodied.rewards.base import TransitionBatch
from embodied.rewards.clip import (
    ClipError,
    ClipReward,
    absolute_spec,
    from_spec,
    load_open_clip,
    localize_spec,
    parse_clip_spec,
)
from embodied.rewards.clip_adapt import save_adapted, small_clip
from embodied.rewards.frames import FrameError
from embodied.tasks import load_task

TINY = {
    "image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "embed_dim": 16, "text_width": 32, "text_layers": 1,
    "context_length": 16,
}  # fmt: skip


@pytest.fixture(scope="module")
def tiny() -> tuple[Any, Any, Any]:
    return small_clip(seed=0, **TINY)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (6, 40, 48, 3), dtype=np.uint8)


def reward(tiny: tuple[Any, Any, Any], goal: Any = "a robot arm at the goal", **kw: Any) -> ClipReward:
    return ClipReward(goal, clip=tiny, device="cpu", verbose=False, **kw)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_projection_formula_matches_numpy(tiny: Any, frames: np.ndarray, alpha: float) -> None:
    r = reward(tiny, baseline="a robot arm", alpha=alpha)
    x = r.embed_images(frames)
    g, b = r.embed_text(["a robot arm at the goal"])[0], r.embed_text(["a robot arm"])[0]
    d = g - b
    P = alpha * np.outer(d, d) / (d @ d) + (1 - alpha) * np.eye(d.size)
    direct = 1 - 0.5 * np.linalg.norm((x - g) @ P, axis=1) ** 2
    np.testing.assert_allclose(r.score(frames), direct, atol=1e-9)
    np.testing.assert_allclose(r.projection, P, atol=1e-12)


def test_alpha_edge_cases(tiny: Any, frames: np.ndarray) -> None:
    x = reward(tiny).embed_images(frames)
    g = reward(tiny).embed_text(["a robot arm at the goal"])[0]
    # α = 0, one prompt: cosine similarity (unit vectors: 1 − ½‖x − g‖² = x·g)
    np.testing.assert_allclose(reward(tiny).score(frames), x @ g, atol=1e-9)
    # α = 1: only the goal-baseline direction counts
    r1 = reward(tiny, baseline="a robot arm", alpha=1.0)
    assert r1.direction is not None
    np.testing.assert_allclose(r1.score(frames), 1 - 0.5 * ((x - g) @ r1.direction) ** 2, atol=1e-9)
    assert np.all(r1.score(frames) <= 1.0)


def test_prompt_ensembles_average_normalised_embeddings(tiny: Any, frames: np.ndarray) -> None:
    prompts = ["a robot arm at the goal", "the gripper touches the red point", "goal reached"]
    r = reward(tiny, goal=prompts, baseline=["a robot arm", "a table"], alpha=0.5)
    each = r.embed_text(prompts)
    np.testing.assert_allclose(np.linalg.norm(each, axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(r.goal_embedding, each.mean(axis=0), atol=1e-12)
    x = r.embed_images(frames)
    P = r.projection
    np.testing.assert_allclose(r.score(frames), 1 - 0.5 * np.sum(((x - each.mean(0)) @ P) ** 2, axis=1), atol=1e-9)


def test_softmax_against_negatives(tiny: Any, frames: np.ndarray) -> None:
    r = reward(tiny, baseline="a robot arm", form="softmax", negatives=["a table", "a robot arm far away"])
    x = r.embed_images(frames)
    classes = np.concatenate(
        [r.embed_text(["a robot arm at the goal"]), r.embed_text(["a table", "a robot arm far away"])]
    )
    logits = r.temperature * x @ classes.T
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(r.score(frames), p[:, 0], atol=1e-9)
    default = reward(tiny, baseline="a robot arm", form="softmax", temperature=10.0)
    assert default.negative_prompts == ["a robot arm"] and default.temperature == 10.0


def test_batching_across_envs_and_cameras_equals_per_frame(tiny: Any, frames: np.ndarray) -> None:
    cams = ("corner", "topview")
    views = {"corner": frames, "topview": frames[::-1].copy()}
    per_frame = {c: np.array([reward(tiny).score(views[c][i : i + 1])[0] for i in range(6)]) for c in cams}
    for fusion, combine in (
        ("mean", lambda a, b: (a + b) / 2),
        ("min", np.minimum),
        ("weights", lambda a, b: 0.25 * a + 0.75 * b),
    ):
        r = reward(tiny, cameras=cams, fusion=fusion, camera_weights={"corner": 1.0, "topview": 3.0}, batch_size=64)
        fused, per = r.score_views(views)
        for c in cams:
            np.testing.assert_allclose(per[c], per_frame[c], atol=1e-6)
        np.testing.assert_allclose(fused, combine(per_frame["corner"], per_frame["topview"]), atol=1e-6)
    small = reward(tiny, cameras=cams, batch_size=4)  # 12 frames in passes of 4
    np.testing.assert_allclose(small.score_views(views)[0], reward(tiny, cameras=cams).score_views(views)[0], atol=1e-6)


def test_one_forward_pass_per_step_and_cached_text(tiny: Any, frames: np.ndarray) -> None:
    model = tiny[0]
    calls = {"image": 0, "text": 0}
    orig_image, orig_text = model.encode_image, model.encode_text

    def count_image(x: Any, *a: Any, **k: Any) -> Any:
        calls["image"] += 1
        return orig_image(x, *a, **k)

    def count_text(x: Any, *a: Any, **k: Any) -> Any:
        calls["text"] += 1
        return orig_text(x, *a, **k)

    model.encode_image, model.encode_text = count_image, count_text
    try:
        r = reward(tiny, baseline="a robot arm", alpha=0.5, cameras=("corner", "topview"))
        assert calls["text"] == 2  # goal, baseline
        r.score_views({"corner": frames, "topview": frames})
        r.embed_text(["a robot arm at the goal", "a robot arm"])
        assert calls == {"image": 1, "text": 2}
    finally:
        del model.encode_image, model.encode_text


def test_reward_protocol_requires_and_potential(tiny: Any, frames: np.ndarray) -> None:
    r = reward(tiny, cameras=("corner", "topview"))
    assert r.state_only and r.requires.cameras == ("corner", "topview") and r.requires.frame_size == (32, 32)
    n = frames.shape[0]
    views = {"corner": frames, "topview": frames[::-1].copy()}
    batch = TransitionBatch(
        obs=np.zeros((n, 39)), action=np.zeros((n, 4)), next_obs=np.zeros((n, 39)), terminated=np.zeros(n, bool),
        truncated=np.zeros(n, bool), env_reward=np.zeros(n), frames=views,
    )  # fmt: skip
    out = r(batch)
    np.testing.assert_allclose(out.reward, r.potential(np.zeros((n, 39)), views))
    assert set(out.components) == {"clip/corner", "clip/topview"}
    with pytest.raises(ClipError, match="needs frames"):
        r.potential(np.zeros((n, 39)), None)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"goal": ""}, "empty prompt"),
        ({"goal": []}, "empty prompt list"),
        ({"goal": "x", "baseline": ["ok", "  "]}, "empty prompt"),
        ({"alpha": -0.1, "baseline": "b"}, r"alpha must be in \[0, 1\]"),
        ({"alpha": 1.5, "baseline": "b"}, r"alpha must be in \[0, 1\]"),
        ({"alpha": "high"}, "alpha must be a number"),
        ({"alpha": 0.5}, "needs a baseline"),
        ({"goal": "a robot", "baseline": "a robot"}, "d = g − b = 0"),
        ({"form": "cosine"}, "form must be"),
        ({"form": "softmax"}, "needs negative prompts"),
        ({"fusion": "weights", "cameras": ("a",)}, "needs camera weights"),
        ({"fusion": "max"}, "fusion must be"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_configuration_is_one_line(tiny: Any, kwargs: dict[str, Any], needle: str) -> None:
    kwargs = {"goal": "a robot arm at the goal", **kwargs}
    with pytest.raises(ClipError, match=needle) as info:
        ClipReward(clip=tiny, device="cpu", verbose=False, **kwargs)
    assert "\n" not in str(info.value)


def test_bad_frames_and_baseline_embedding_equal_to_goal(tiny: Any, frames: np.ndarray) -> None:
    r = reward(tiny)
    with pytest.raises(FrameError, match="channels-first"):
        r.score(frames.transpose(0, 3, 1, 2))
    with pytest.raises(FrameError, match="uint8"):
        r.score(frames.astype(np.float32) / 255)
    # different strings, same tokens after open_clip's lower-casing and cleaning: d = 0 after embedding
    with pytest.raises(ClipError, match="embeds to the goal"):
        reward(tiny, goal="A robot arm", baseline="a robot arm ", alpha=0.5)


def test_unknown_model_and_missing_checkpoint() -> None:
    with pytest.raises(ClipError, match="unknown open_clip model 'ViT-B-33'; did you mean ViT-B-32") as info:
        ClipReward("goal", model="ViT-B-33", device="cpu", verbose=False)
    assert "\n" not in str(info.value)
    with pytest.raises(ClipError, match=r"checkpoint file /nonexistent/clip\.bin does not exist"):
        ClipReward("goal", model="ViT-B-32", checkpoint="/nonexistent/clip.bin", device="cpu", verbose=False)
    with pytest.raises(ClipError, match=r"unknown pretrained tag 'laion9b'.*laion2b_s34b_b79k"):
        load_open_clip("ViT-B-32", "laion9b")


def test_weights_that_cannot_be_fetched_say_how_to_get_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast instead of retrying
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent/hf-cache")
    with pytest.raises(ClipError) as info:
        ClipReward("goal", model="ViT-B-32", pretrained="laion2b_s34b_b79k", device="cpu", verbose=False)
    msg = str(info.value)
    assert "\n" not in msg
    assert "cannot fetch open_clip weights ViT-B-32/laion2b_s34b_b79k" in msg
    assert "Hugging Face cache (/nonexistent/hf-cache)" in msg and "checkpoint=" in msg


def test_local_checkpoint_through_open_clip_factory(tmp_path: Path, frames: np.ndarray) -> None:
    import open_clip
    import torch

    from embodied.rewards.clip_adapt import small_clip_config

    (tmp_path / "embodied-test-tiny.json").write_text(json.dumps(small_clip_config(**TINY)))
    open_clip.add_model_config(tmp_path / "embodied-test-tiny.json")
    torch.manual_seed(1)
    model, _, preprocess = open_clip.create_model_and_transforms("embodied-test-tiny", pretrained=None)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    injected = ClipReward(
        "goal", clip=(model, preprocess, open_clip.get_tokenizer("embodied-test-tiny")), verbose=False
    )
    loaded = ClipReward("goal", model="embodied-test-tiny", checkpoint=tmp_path / "weights.pt", verbose=False)
    assert loaded.name == f"clip:embodied-test-tiny/{tmp_path / 'weights.pt'}"
    np.testing.assert_allclose(loaded.score(frames), injected.score(frames), atol=1e-6)


def test_spec_parsing() -> None:
    assert parse_clip_spec("") == {}
    assert parse_clip_spec("reward_models/x/clip-adapted/,alpha=0.5,cameras=a+b") == {
        "checkpoint": "reward_models/x/clip-adapted/", "alpha": "0.5", "cameras": "a+b",
    }  # fmt: skip
    with pytest.raises(ClipError, match="unknown key 'alfa'"):
        parse_clip_spec("alfa=0.5")
    with pytest.raises(ClipError, match="given twice"):
        parse_clip_spec("alpha=0.5,alpha=1")
    with pytest.raises(ClipError, match="not key=value"):
        parse_clip_spec("model=ViT-B-32,somewhere")


def test_spec_defaults_from_task_and_adapted_folder(tiny: Any, tmp_path: Path) -> None:
    task = load_task("metaworld-drawer-open")
    model = tiny[0]
    folder = save_adapted(
        model, tmp_path / "clip-adapted",
        {
            "task": "metaworld-drawer-open", "model_cfg": model.embodied_model_cfg,
            "preprocess_cfg": dict(model.visual.preprocess_cfg), "goal": ["open the drawer"],
            "baseline": ["a closed drawer"], "alpha": 0.25, "cameras": ["corner", "topview"], "fusion": "mean",
        },
    )  # fmt: skip
    r = from_spec(f"{folder}", task)
    assert (r.goal_prompts, r.baseline_prompts, r.alpha) == (["open the drawer"], ["a closed drawer"], 0.25)
    assert r.cameras == ("corner", "topview") and r.requires.frame_size == (32, 32)
    r2 = from_spec(f"{folder},alpha=1,cameras=corner3,goal=drawer open|an open drawer,form=softmax", task)
    assert r2.alpha == 1.0 and r2.cameras == ("corner3",) and r2.goal_prompts == ["drawer open", "an open drawer"]
    assert r2.negative_prompts == ["a closed drawer"]
    with pytest.raises(ClipError, match="not in task 'metaworld-drawer-open' cameras"):
        from_spec(f"{folder},cameras=left", task)
    with pytest.raises(ClipError, match="no adapted model folder or checkpoint file at nowhere/clip-adapted"):
        from_spec("nowhere/clip-adapted", task)
    with pytest.raises(ClipError, match="alpha='much' is not a number"):
        from_spec(f"{folder},alpha=much", task)
    with pytest.raises(ClipError, match="lists no cameras"):
        from_spec(f"{folder}", load_task("minihack-room"))
    with pytest.raises(ClipError, match=r"camera\(s\) \['corner', 'topview'\] not in task 'humanoid-kneel'"):
        from_spec(f"{folder}", load_task("humanoid-kneel"))  # the folder's cameras do not exist there
    assert from_spec(f"{folder},cameras=track", load_task("humanoid-kneel")).cameras == ("track",)


def test_startup_line_reports_devices(tiny: Any, capsys: pytest.CaptureFixture[str]) -> None:
    r = ClipReward("the startup line goal", clip=tiny, device="cpu", name="tiny-startup")
    line = capsys.readouterr().err.strip()
    assert line == r.startup_line()
    assert line.startswith("clip: scoring on cpu (") and ", fp32, tiny-startup; frames rendered by MUJOCO_GL=" in line
    with pytest.raises(ClipError, match="unknown device"):
        ClipReward("goal", clip=tiny, device="tpu:0", verbose=False)
    if not torch.cuda.is_available():
        with pytest.raises(ClipError, match="torch sees no CUDA GPU"):
            ClipReward("goal", clip=tiny, device="cuda", verbose=False)


def test_run_folder_hooks_copy_adapted_folders_not_weights_files(tiny: Any, tmp_path: Path) -> None:
    model = tiny[0]
    cfg = {"model_cfg": model.embodied_model_cfg, "preprocess_cfg": dict(model.visual.preprocess_cfg), "goal": ["x"]}
    folder = save_adapted(model, tmp_path / "metaworld-reach" / "clip-adapted", cfg)
    run = tmp_path / "run"
    run.mkdir()
    local = localize_spec(f"{folder},alpha=0.5", None, run)
    assert local == "clip/metaworld-reach-clip-adapted,alpha=0.5"
    assert (run / "clip" / "metaworld-reach-clip-adapted" / "model.safetensors").is_file()
    assert absolute_spec(local, run) == f"{run}/clip/metaworld-reach-clip-adapted,alpha=0.5"
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"0")
    assert localize_spec("model=ViT-B-32,checkpoint=w.bin", None, run) == "model=ViT-B-32,checkpoint=w.bin"  # cwd
    assert localize_spec(f"model=ViT-B-32,checkpoint={weights}", None, run) == f"model=ViT-B-32,checkpoint={weights}"
    assert localize_spec("model=ViT-L-14,alpha=1", None, run) == "model=ViT-L-14,alpha=1"
