"""`embodied clip adapt|info`, `embodied reward check`, and the clip: spec end to end through `embodied train`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embodied.cli.main import app

runner = CliRunner()
TINY = [
    "--image-size", "32", "--patch-size", "8", "--width", "32", "--layers", "1", "--embed-dim", "16",
    "--text-width", "32", "--text-layers", "1",
]  # fmt: skip


@pytest.mark.parametrize("command", [["clip"], ["clip", "adapt"], ["clip", "info"], ["reward", "check"]])
def test_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.fixture(scope="module")
def adapted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny adapted scorer for metaworld-reach, made through the CLI."""
    out = tmp_path_factory.mktemp("clip") / "clip-adapted"
    result = runner.invoke(
        app,
        [
            "clip", "adapt", "metaworld-reach", "--out", str(out), "--episodes", "2", "--val-episodes", "1",
            "--policies", "expert,random", "--episode-steps", "10", "--epochs", "1", "--batch-size", "16",
            "--no-progress", *TINY,
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"adapted scorer written to {out}" in result.output
    return out


def test_adapt_writes_a_loadable_folder_and_info_reports_it(adapted: Path) -> None:
    cfg = json.loads((adapted / "clip_config.json").read_text())
    assert cfg["task"] == "metaworld-reach" and cfg["training"]["episodes"] == 2
    result = runner.invoke(app, ["clip", "info", "metaworld-reach", "--reward", f"clip:{adapted},alpha=1", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output[result.output.index("{") :])
    assert info["alpha"] == 1.0 and info["cameras"] == ["corner"] and info["frame_size"] == [32, 32]
    assert info["goal"] == cfg["goal"] and info["startup"].startswith("clip: scoring on cpu")


def test_bad_input_is_one_line_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no retries against the hub
    init = ["clip", "adapt", "metaworld-reach", "--out", str(tmp_path / "y"), "--init"]
    for args, needle in (
        ([*init, "ViT-B-32"], "--init must be MODEL/TAG or MODEL/PATH"),
        ([*init, "ViT-B-32/laion2b_s34b_b79k"], "cannot fetch open_clip weights ViT-B-32/laion2b_s34b_b79k"),
        (["clip", "adapt", "metaworld-reach", "--cameras", "left", "--out", str(tmp_path / "x")], "are not cameras"),
        (["clip", "info", "metaworld-reach", "--reward", "clip:nowhere/clip-adapted"], "no adapted model folder"),
        (["clip", "info", "metaworld-reach", "--reward", "env"], "must be a clip:... spec"),
        (["reward", "check", "metaworld-reach", "--reward", "vlm:x"], "unknown reward kind 'vlm'"),
        (["reward", "check", "metaworld-reach", "--render", "ultra"], "--render must be fast or full"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.strip().count("\n") == 0 and needle in result.output, result.output


def test_reward_check_json_and_plot(adapted: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "reward", "check", "metaworld-reach", "--reward", f"clip:{adapted}", "--episodes", "1",
            "--episode-steps", "8", "--epic-transitions", "16", "--epic-samples", "16", "--out", str(tmp_path),
            "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["episodes"] == 3 and report["transitions"] == 24
    assert set(report["policies"]) == {"expert", "expert:0.5", "random"}
    assert 0.0 <= report["epic"]["distance"] <= 1.0 and Path(report["plot"]).is_file()
    text = runner.invoke(app, ["reward", "check", "tests/data/chain.toml", "--episodes", "2", "--out", str(tmp_path)])
    assert text.exit_code == 0, text.output
    assert "EPIC distance to env reward" in text.output and "verdict:" in text.output


def test_clip_spec_through_embodied_train(adapted: Path, tmp_path: Path) -> None:
    task = tmp_path / "reach-short.toml"
    src = Path("envs/metaworld-reach.toml").read_text().replace("max_episode_steps = 150", "max_episode_steps = 12")
    task.write_text(src.replace('name = "metaworld-reach"', 'name = "reach-short"'))
    spec = f"clip:{adapted}"
    result = runner.invoke(
        app,
        [
            "train", str(task), "--reward", spec, "--shaping", spec, "--algo", "sac", "--steps", "30", "--envs", "1",
            "--run", "clip-tiny", "--root", str(tmp_path / "policies"), "--no-progress",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    run = tmp_path / "policies" / "clip-tiny"
    metrics = json.loads((run / "metrics.json").read_text())
    last = metrics["history"][-1] if metrics.get("history") else metrics
    assert abs(last.get("shaping_residual_max_abs", 0.0)) < 1e-9
    # the adapted folder travels with the run; the saved specs point into it
    copied = run / "clip" / f"{adapted.parent.name}-clip-adapted"
    assert sorted(p.name for p in copied.iterdir()) == ["clip_config.json", "model.safetensors"]
    config = (run / "config.toml").read_text()
    assert f'reward = "clip:clip/{copied.name}"' in config and f'shaping = "clip:clip/{copied.name}"' in config
