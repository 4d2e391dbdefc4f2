"""`embodied reward generate | refine | search`, offline from recordings keyed like the real requests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from embodied.cli.main import app
from embodied.llm.prompts import generation_messages, refinement_messages, reflection_messages, task_interface
from embodied.llm.replay import request_key
from embodied.tasks.spec import load_task

runner = CliRunner()
CHAIN = Path(__file__).resolve().parents[1] / "data" / "chain.toml"
GOOD = (
    "Here you go.\n```python\nGOAL = 4.0\n\ndef compute_reward(view, action):\n    p = float(view.position) / GOAL\n"
    "    bonus = 1.0 if p >= 1.0 else 0.0\n    return p + bonus, {'progress': p, 'success_bonus': bonus}\n```"
)
LEFT = "```python\ndef compute_reward(view, action):\n    p = float(view.position)\n    return -p, {'left': -p}\n```"


def _record(path: Path, messages: list, seed: int, temperature: float, text: str, finish: str = "stop") -> None:
    rec = {
        "key": request_key(messages, seed=seed, temperature=temperature, max_tokens=2048),
        "request": {"messages": messages, "seed": seed, "temperature": temperature, "max_tokens": 2048},
        "completion": {"text": text, "finish_reason": finish, "model": "recorded-model-1"},
    }
    with path.open("a") as fh:
        fh.write(json.dumps(rec) + "\n")


@pytest.mark.parametrize("command", [["reward"], ["reward", "generate"], ["reward", "refine"], ["reward", "search"]])
def test_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_generate_then_refine_offline(tmp_path: Path) -> None:
    root = tmp_path / "reward_models"
    replay = tmp_path / "llm.jsonl"
    spec = load_task(CHAIN)
    iface = task_interface(spec)
    _record(replay, generation_messages(spec, examples_root=root, interface=iface), 0, 0.7, GOOD)

    result = runner.invoke(app, ["reward", "generate", str(CHAIN), "--replay", str(replay), "--root", str(root)])
    assert result.exit_code == 0, result.output
    program = root / "chain" / "gen-001.py"
    assert f"wrote {program}" in result.output and "progress, success_bonus" in result.output
    meta = json.loads(program.with_suffix(".json").read_text())
    assert meta["model"] == "recorded-model-1" and meta["response"] == GOOD
    assert meta["validation"]["dry_run"]["samples"] == 32

    feedback = "It reaches the goal but wanders left first."
    messages = refinement_messages(spec, program.read_text(), feedback=feedback, video="videos/c.mp4", interface=iface)
    _record(replay, messages, 0, 0.7, GOOD.replace("GOAL = 4.0", "GOAL = 4.0  # refined"))
    result = runner.invoke(
        app,
        ["reward", "refine", str(program), "--feedback", feedback, "--video", "videos/c.mp4", "--replay", str(replay)],
    )
    assert result.exit_code == 0, result.output
    refined = root / "chain" / "gen-002.py"
    assert "# refined" in refined.read_text()
    assert json.loads(refined.with_suffix(".json").read_text())["history"][0]["feedback"] == feedback


def test_search_offline_with_real_training(tmp_path: Path) -> None:
    root = tmp_path / "reward_models"
    replay = tmp_path / "search.jsonl"
    spec = load_task(CHAIN)
    messages = reflection_messages(spec, None, None, [], examples_root=root, interface=task_interface(spec))
    _record(replay, messages, 0, 1.0, LEFT)
    _record(replay, messages, 1, 1.0, GOOD)
    args = ["reward", "search", str(CHAIN), "--samples", "2", "--iterations", "1", "--steps", "64", "--replay",
            str(replay), "--root", str(root), "--id", "cli", "--eval-episodes", "2"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["best"].endswith("search-cli/best.py") and len(summary["reeval"]) == 3
    assert 0.0 <= summary["fitness"] <= 1.0
    state = json.loads((root / "chain" / "search-cli" / "search.json").read_text())
    assert state["status"] == "done" and state["timings"]["training"] > 0
    # Rerunning the finished search resumes it: nothing new is asked or trained.
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout.strip().splitlines()[-1]) == summary


def test_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMBODIED_LLM_BASE_URL", raising=False)
    result = runner.invoke(app, ["reward", "generate", str(CHAIN), "--llm-model", "m", "--root", str(tmp_path)])
    assert result.exit_code == 2 and "no LLM endpoint" in result.output
    assert len(result.output.strip().splitlines()) == 1

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = runner.invoke(app, ["reward", "generate", str(CHAIN), "--replay", str(empty), "--root", str(tmp_path)])
    assert result.exit_code == 2 and "no recorded response" in result.output

    result = runner.invoke(app, ["reward", "generate", str(CHAIN), "--record", "--root", str(tmp_path)])
    assert result.exit_code == 2 and "--record needs --replay" in result.output

    result = runner.invoke(app, ["reward", "search", "no-such-task", "--replay", str(empty)])
    assert result.exit_code == 2 and "unknown task" in result.output
