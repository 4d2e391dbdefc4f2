"""CLIP domain adaptation: captions, soft labels, loss, save/load, tiny end-to-end runs, the shipped scorers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from embodied.rewards.clip import ClipReward
from embodied.rewards.clip_adapt import (
    AdaptConfig,
    AdaptError,
    adapt,
    caption_ladder,
    contrastive_loss,
    load_adapted,
    read_config,
    save_adapted,
    small_clip,
    soft_labels,
)
from embodied.rewards.quality import collect_rollouts, spearman
from embodied.tasks import load_task

REPO = Path(__file__).resolve().parents[2]
SHIPPED = ("metaworld-reach", "metaworld-drawer-open")
TINY = {
    "image_size": 32,
    "patch_size": 8,
    "width": 32,
    "layers": 1,
    "embed_dim": 16,
    "text_width": 32,
    "text_layers": 1,
}


def test_caption_ladder_from_task_file() -> None:
    levels = caption_ladder(load_task("metaworld-drawer-open"))
    assert [round(lv.position, 3) for lv in levels] == [0.0, 0.125, 0.25, 0.375, 0.625, 0.75, 0.875, 1.0]
    assert levels[0].prompts == (
        "a robot arm and a chest of drawers on a table",
        "a robot arm: a robot arm and a chest of drawers on a table",
    )
    assert levels[1].prompts[0] == "move the gripper to the drawer handle: just started"
    assert levels[-1].prompts == ("open the drawer", "a robot arm: open the drawer")


def test_soft_labels_are_gaussians_in_progress() -> None:
    levels = caption_ladder(load_task("metaworld-reach"))  # positions 0, .25, .5, .75, 1
    y = soft_labels(np.array([0.0, 0.5, 0.625, 1.0]), levels)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-6)
    assert list(y.argmax(axis=1)) == [0, 2, 2, 4]
    np.testing.assert_allclose(y[2, 2], y[2, 3], atol=1e-6)  # halfway between two rungs: split evenly
    # σ = 0.6 x spacing 0.25 = 0.15: exp(−½(0.5/0.15)²) / (1 + 2 exp(−½(0.25/0.15)²) + 2 exp(−½(0.5/0.15)²))
    assert y[1, 0] == pytest.approx(0.0025663, abs=1e-6)


def test_contrastive_loss_hand_case() -> None:
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    targets = torch.eye(2)
    scale = torch.tensor(0.0)  # logit scale 1: logits = cosine
    p = 1 / (1 + np.exp(-1.0))  # softmax of (1, 0)
    assert float(contrastive_loss(img, txt, targets, scale)) == pytest.approx(-np.log(p), abs=1e-6)
    swapped = contrastive_loss(img, txt.flip(0), targets, scale)
    assert float(swapped) == pytest.approx(-np.log(1 - p), abs=1e-6)


def test_save_load_roundtrip_keeps_only_caption_tokens(tmp_path: Path) -> None:
    model, preprocess, tokenizer = small_clip(seed=3, **TINY)
    levels = caption_ladder(load_task("metaworld-reach"))
    prompts = [p for lv in levels for p in lv.prompts]
    rows = sorted({int(t) for t in tokenizer(prompts).flatten().tolist()})
    cfg = {"model_cfg": model.embodied_model_cfg, "preprocess_cfg": dict(model.visual.preprocess_cfg), "goal": ["x"]}
    path = save_adapted(model, tmp_path / "m", cfg, rows)
    assert sorted(p.name for p in path.iterdir()) == ["clip_config.json", "model.safetensors"]
    assert (path / "model.safetensors").stat().st_size < 300_000  # a dense 49408-row table alone is 3.2 MB here
    cfg2 = load_adapted(path)[3]
    assert cfg2["token_embedding"] == "sparse" and cfg2["dtype"] == "float16"
    frames = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    a = ClipReward(prompts[:3], clip=(model, preprocess, tokenizer), verbose=False)
    b = ClipReward(prompts[:3], checkpoint=path, verbose=False)
    np.testing.assert_allclose(b.score(frames), a.score(frames), atol=2e-3)  # fp16 weights
    np.testing.assert_allclose(b.embed_text(prompts), a.embed_text(prompts), atol=3e-3)
    with pytest.raises(AdaptError, match="not an adapted CLIP folder"):
        read_config(tmp_path)
    (path / "clip_config.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(AdaptError, match="field 'format' is 'other'"):
        read_config(path)


def test_adapt_tiny_from_scratch_and_fine_tune(tmp_path: Path) -> None:
    cfg = AdaptConfig(
        policies=("expert", "random"), episodes=2, val_episodes=1, episode_steps=12, epochs=2, batch_size=16,
        alphas=(0.0, 1.0), **TINY,
    )  # fmt: skip
    lines: list[str] = []
    res = adapt("metaworld-reach", tmp_path / "scratch", cfg, progress=False, log=lines.append)
    c = res.config
    assert c["cameras"] == ["corner"] and c["frame_size"] == [32, 32] and c["alpha"] in (0.0, 1.0)
    assert c["goal"] == [
        "move the robot gripper to the red goal point",
        "a robot arm: move the robot gripper to the red goal point",
    ]
    assert c["training"]["train_episodes"] == 2 and c["training"]["val_episodes"] == 2
    assert len(c["training"]["loss_per_epoch"]) == 2 and set(c["validation"]["alpha"]) == {"0", "1"}
    assert any(line.startswith("wrote ") for line in lines)
    r = ClipReward.from_adapted(res.path, device="cpu", verbose=False)
    assert r.requires.cameras == ("corner",) and r.requires.frame_size == (32, 32)
    # fine-tuning a loaded CLIP (here a random small one standing in for real weights): full vocabulary kept
    init = small_clip(seed=5, **TINY)
    res2 = adapt("metaworld-reach", tmp_path / "tuned", cfg, init=init, progress=False)
    assert read_config(res2.path)["token_embedding"] == "dense"
    assert "fine-tuned from" in res2.config["source"]
    with pytest.raises(AdaptError, match="must exceed val_episodes"):
        adapt("metaworld-reach", tmp_path / "x", AdaptConfig(episodes=1, val_episodes=1))
    with pytest.raises(AdaptError, match=r"cameras \['left'\] are not cameras"):
        adapt("metaworld-reach", tmp_path / "x", AdaptConfig(cameras=("left",)))


@pytest.mark.parametrize("task", SHIPPED)
def test_shipped_scorer_ranks_late_stage_frames_above_early_on_held_out_demos(task: str) -> None:
    folder = REPO / "reward_models" / task / "clip-adapted"
    for f in folder.iterdir():
        assert f.stat().st_size <= 4 * 1024 * 1024, f"{f} is over 4 MB"
    r = ClipReward.from_adapted(folder, device="cpu", verbose=False)
    cfg = read_config(folder)
    held_out = 10_000  # training used seeds 0..episodes-1
    assert held_out > cfg["training"]["seed"] + cfg["training"]["episodes"]
    rolls = collect_rollouts(task, ("expert",), 2, held_out, r.cameras, r.requires.frame_size, "fast", after_success=5)
    for roll in rolls:
        score = r.score_views(roll.frames)[0]
        t = roll.length + 1
        early, late = score[: t // 4].mean(), score[-(t // 4) :].mean()
        assert late > early, (task, roll.seed, early, late)
        rho = spearman(score, roll.progress)
        assert rho is not None and rho > 0.6, (task, roll.seed, rho)
