"""SB3 training through the CLI: run folder layout, atomic publish, resume, eval, video, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embodied.cli.main import app
from embodied.train import sb3
from embodied.train.config import load_config

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_train_eval_video_end_to_end(tmp_path: Path, reach_program: Path) -> None:
    root = str(tmp_path / "policies")
    code, out = invoke(
        "train",
        "metaworld-reach",
        "--reward",
        f"program:{reach_program}",
        "--shaping",
        f"program:{reach_program}",
        "--steps",
        "512",
        "--envs",
        "2",
        "--checkpoint-every",
        "256",
        "--run",
        "r1",
        "--root",
        root,
        "--no-progress",
    )
    assert code == 0, out
    run = tmp_path / "policies" / "r1"
    assert {p.name for p in run.iterdir()} >= {
        "config.toml",
        "model.zip",
        "metrics.json",
        "checkpoints",
        "tb",
        "programs",
    }
    assert not list((tmp_path / "policies").glob(".*partial"))
    cfg = load_config(run / "config.toml")
    assert cfg.reward == "program:programs/reach.py" and cfg.task.name == "metaworld-reach" and cfg.gamma == 0.99
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["timesteps"] == 512
    assert "component/distance" in metrics["final"]
    assert abs(metrics["final"]["shaping_residual_max_abs"]) < 1e-9
    assert (run / "checkpoints" / "step_256.zip").is_file()
    assert list((run / "tb").glob("events.out.tfevents.*"))

    code, out = invoke("eval", "r1", "--episodes", "2", "--json", "--root", root)
    assert code == 0, out
    result = json.loads(out)
    assert result["episodes"] == 2 and 0.0 <= result["success_rate"] <= 1.0 and result["env_return"] > 0

    video = tmp_path / "v.mp4"
    code, out = invoke("video", "r1", "--out", str(video), "--size", "96", "--root", root)
    assert code == 0, out
    assert video.stat().st_size > 10_000


def test_existing_run_and_bad_input_are_one_line_errors(tmp_path: Path, chain_task: Path) -> None:
    root = str(tmp_path / "policies")
    args = ["train", str(chain_task), "--steps", "64", "--envs", "1", "--run", "c", "--root", root, "--no-progress"]
    assert invoke(*args)[0] == 0
    code, out = invoke(*args)
    assert code == 2 and "already exists" in out and out.count("\n") == 1
    code, out = invoke("train", "no-such-task", "--root", root)
    assert code == 2 and "unknown task 'no-such-task'" in out
    code, out = invoke("train", str(chain_task), "--algo", "dqn", "--root", root)
    assert code == 2 and "--algo" in out
    code, out = invoke("train", str(chain_task), "--reward", "magic:1", "--root", root, "--run", "m")
    assert code == 2 and "unknown reward kind 'magic'" in out
    assert not (tmp_path / "policies" / ".m.partial").exists()
    code, out = invoke("train", str(chain_task), "--shaping", "env", "--root", root, "--run", "s")
    assert code == 2 and "cannot be a shaping potential" in out
    code, out = invoke("train", str(chain_task), "--shaping", f"program:{chain_task}", "--shaping-gamma", "0.99",
                       "--root", root, "--run", "g")  # fmt: skip
    assert code == 2 and "shaping gamma 0.99 != learner gamma 0.9" in out and out.count("\n") == 1
    code, out = invoke("eval", "missing", "--root", root)
    assert code == 2 and "no completed run 'missing'" in out


def test_resume_after_crash(tmp_path: Path, chain_task: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "policies"
    original = sb3.save_checkpoint
    calls = {"n": 0}

    def crash_after_first(model, ckpt_dir, steps):
        original(model, ckpt_dir, steps)
        calls["n"] += 1
        raise KeyboardInterrupt  # simulates a kill right after the first checkpoint

    monkeypatch.setattr(sb3, "save_checkpoint", crash_after_first)
    code, out = invoke(
        "train",
        str(chain_task),
        "--steps",
        "512",
        "--envs",
        "1",
        "--checkpoint-every",
        "256",
        "--run",
        "k",
        "--root",
        str(root),
        "--no-progress",
    )
    assert code == 130 and calls["n"] == 1
    partial = root / ".k.partial"
    assert partial.is_dir() and not (root / "k").exists()
    assert json.loads((partial / "checkpoints" / "latest.json").read_text())["steps"] == 256

    code, out = invoke("eval", "k", "--root", str(root))
    assert code == 2 and "--resume k" in out

    monkeypatch.setattr(sb3, "save_checkpoint", original)
    code, out = invoke("train", "--resume", "k", "--root", str(root), "--no-progress")
    assert code == 0, out
    metrics = json.loads((root / "k" / "metrics.json").read_text())
    assert metrics["timesteps"] == 512 and not partial.exists()


def test_crash_before_any_checkpoint_leaves_nothing(
    tmp_path: Path, chain_task: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(sb3, "build_vec_env", boom)
    with pytest.raises(RuntimeError):
        runner.invoke(app, ["train", str(chain_task), "--run", "x", "--root", str(tmp_path)], catch_exceptions=False)
    assert list(tmp_path.iterdir()) == []
