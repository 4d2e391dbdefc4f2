"""`embodied demos | progress | bc` end to end at tiny scale: collect -> train -> eval -> shaped training / RA-BC."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embodied.cli.main import app

runner = CliRunner()


def ok(args: list[str]) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def fails(args: list[str]) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ")
    return lines[-1]


@pytest.mark.parametrize(
    "command",
    [
        ["demos"], ["demos", "collect"], ["demos", "import"], ["demos", "export"], ["demos", "info"],
        ["progress"], ["progress", "train"], ["progress", "eval"], ["bc"], ["bc", "train"],
    ],
)  # fmt: skip
def test_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_collect_train_eval_shape_and_rabc(in_tmp_workspace: Path) -> None:
    out = ok(["demos", "collect", "metaworld-reach", "-n", "5", "--out", "demos/clean", "--no-frames"])
    assert "wrote 5 episodes" in out and "5 successful" in out
    ok(["demos", "collect", "metaworld-reach", "-n", "2", "--out", "demos/bad", "--no-frames", "--regress", "1",
        "--max-steps", "30", "--seed", "50"])  # fmt: skip
    info = json.loads(ok(["demos", "info", "demos/bad", "--json"]))
    assert (info["episodes"], info["successes"], info["frames"]) == (2, 0, 62)

    # --root keeps the model out of the workspace's reward_models/ (a link to the repository's)
    out = ok(["progress", "train", "metaworld-reach", "--demos", "demos/clean", "--steps", "150", "--root", "rm",
              "--no-progress"])  # fmt: skip
    model = Path("rm/metaworld-reach/progress-state")
    assert f"model written to {model}" in out and (model / "model.pt").is_file()
    held = ok(["demos", "collect", "metaworld-reach", "-n", "2", "--out", "demos/held", "--no-frames", "--seed", "900"])
    assert "wrote 2" in held
    report = json.loads(ok(["progress", "eval", model, "--demos", "demos/held", "--demos", "demos/bad", "--json"]))
    assert report["episodes"] == 4 and report["successes"] == 2 and report["failures"] == 2
    assert report["voc_mean"] > 0.9 and report["stage_accuracy"] == 1.0
    assert report["separation_auc"] == 1.0
    text = ok(["progress", "eval", model, "--demos", "demos/held"])
    assert "value-order correlation" in text and "separation AUC n/a" in text

    # policy-invariant shaping with the learned potential, through the normal training command
    ok(["train", "metaworld-reach", "--reward", "env", "--shaping", f"progress:{model}", "--steps", "256",
        "--envs", "1", "--run", "shaped", "--no-progress"])  # fmt: skip
    cfg = tomllib.loads(Path("policies/shaped/config.toml").read_text())
    # the run keeps its own copy of the model, so it reproduces from its folder alone
    assert cfg["shaping"] == "progress:models/progress-state" and cfg["reward"] == "env"
    assert (Path("policies/shaped/models/progress-state/model.pt")).is_file()
    metrics = json.loads(Path("policies/shaped/metrics.json").read_text())
    assert metrics["history"] and abs(metrics["history"][-1].get("shaping_residual_max_abs", 0.0)) < 1e-9
    result = json.loads(ok(["eval", "shaped", "--episodes", "1", "--json"]))
    assert result["shaping"] == "progress:models/progress-state" and result["episodes"] == 1

    # RA-BC and vanilla BC on the mixed set, evaluated like any run
    out = ok(["bc", "train", "metaworld-reach", "--demos", "demos/clean", "--demos", "demos/bad", "--weighting", "rabc",
              "--progress-model", model, "--steps", "30", "--run", "rabc", "--no-progress"])  # fmt: skip
    assert "run written to policies/rabc" in out
    ok(["bc", "train", "metaworld-reach", "--demos", "demos/clean", "--steps", "30", "--no-progress"])
    assert Path("policies/metaworld-reach-bc-none-s0/model.zip").is_file()
    result = json.loads(ok(["eval", "rabc", "--episodes", "1", "--json"]))
    assert result["run"] == "rabc" and 0.0 <= result["success_rate"] <= 1.0

    # LeRobot round trip through the CLI
    ok(["demos", "export", "demos/clean", "--out", "lerobot/clean"])
    assert Path("lerobot/clean/meta/info.json").is_file()
    ok(["demos", "import", "lerobot/clean", "--out", "demos/back"])
    back = json.loads(ok(["demos", "info", "demos/back", "--json"]))
    assert (back["episodes"], back["frames"], back["task"]) == (5, info_frames("demos/clean"), "metaworld-reach")


def info_frames(path: str) -> int:
    return json.loads(ok(["demos", "info", path, "--json"]))["frames"]


def test_user_errors_are_one_line(in_tmp_workspace: Path, chain_task: Path) -> None:
    assert "not a demonstration dataset" in fails(["progress", "train", "metaworld-reach", "--demos", "nowhere"])
    assert "needs a progress model" in fails(
        ["bc", "train", "metaworld-reach", "--demos", "nowhere", "--weighting", "rabc"]
    )
    assert "scripted experts exist only for Meta-World" in fails(
        ["demos", "collect", str(chain_task), "-n", "1", "--out", "x"]
    )
    ok(["demos", "collect", "metaworld-reach", "-n", "2", "--out", "demos/f", "--no-frames", "--fail", "1",
        "--max-steps", "20"])  # fmt: skip
    assert "no successful episode" in fails(["progress", "train", "metaworld-reach", "--demos", "demos/f"])
    assert "not a progress model folder" in fails(["progress", "eval", "demos/f", "--demos", "demos/f"])
    assert "option --encoder" in fails(
        ["progress", "train", "metaworld-reach", "--demos", "demos/f", "--encoder", "vit"]
    )
    assert "progress model 'progress-none' not found" in fails(
        ["train", "metaworld-reach", "--shaping", "progress:progress-none", "--steps", "8", "--run", "x"]
    )


@pytest.mark.slow
def test_frame_model_shaping_and_video(in_tmp_workspace: Path) -> None:
    ok(["demos", "collect", "metaworld-reach", "-n", "2", "--out", "demos/cam", "--camera", "corner", "--size", "32",
        "--max-steps", "60", "--tail", "2"])  # fmt: skip
    ok(["progress", "train", "metaworld-reach", "--demos", "demos/cam", "--encoder", "cnn", "--size", "32",
        "--steps", "10", "--batch-size", "16", "--root", "rm", "--no-progress"])  # fmt: skip
    ok(["train", "metaworld-reach", "--reward", "env", "--shaping", "progress:rm/metaworld-reach/progress-cnn",
        "--steps", "64", "--envs", "1", "--run", "cnn-shaped", "--no-progress"])  # fmt: skip
    ok(["bc", "train", "metaworld-reach", "--demos", "demos/cam", "--steps", "5", "--run", "bcv", "--no-progress"])
    out = ok(["video", "bcv", "--size", "32"])
    assert Path("videos/bcv.mp4").is_file() and "video written" in out
