"""`embodied calm` (eval, decompose, show) and training with subgoal shaping end to end, offline."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from embodied.cli.main import app
from embodied.llm.client import Completion
from embodied.rewards.subgoals import SubgoalSet

runner = CliRunner()
DATA = Path(__file__).resolve().parents[1] / "rewards" / "data" / "calm"
REPLAY = DATA / "judge_keyroom.jsonl"


def invoke(args: list[str]) -> Any:
    return runner.invoke(app, args)


def as_json(result: Any) -> dict:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("command", [["calm"], ["calm", "eval"], ["calm", "decompose"], ["calm", "show"]])
def test_help(command: list[str]) -> None:
    result = invoke([*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_eval_oracle_is_perfect_on_a_balanced_set() -> None:
    report = as_json(invoke(["calm", "eval", "minihack-keyroom", "--judge", "oracle", "--transitions", "30", "--json"]))
    assert report["transitions"] == 30 and report["sources"] == {"scripted": 18, "random": 12}
    assert {n: (r["support"], r["f1"]) for n, r in report["per_subgoal"].items()} == {
        "get_key": (5, 1.0), "open_door": (5, 1.0), "reach_stairs": (5, 1.0)
    }  # fmt: skip
    assert report["macro_f1"] == 1.0 and report["stats"]["requests"] == 0


def test_eval_llm_judge_from_a_recording(tmp_path: Path) -> None:
    args = ["calm", "eval", "minihack-keyroom", "--judge", "llm", "--transitions", "60", "--replay", str(REPLAY)]
    cache = tmp_path / "judgments.jsonl"
    report = as_json(invoke([*args, "--json", "--cache", str(cache), "--out", str(tmp_path / "r.json")]))
    per = report["per_subgoal"]
    assert report["model"] == "heuristic-judge-v1" and report["transitions"] == 60
    assert (per["get_key"]["tp"], per["get_key"]["fp"], per["get_key"]["fn"]) == (7, 3, 3)
    assert (per["open_door"]["precision"], per["open_door"]["recall"]) == (1.0, 1.0)
    assert (per["reach_stairs"]["recall"], per["reach_stairs"]["f1"]) == (0.9, 0.9474)
    assert report["macro_f1"] == 0.8825 and report["micro_f1"] == 0.8814
    stats = report["stats"]
    assert stats["requests"] == 60 and stats["failures"] == 8
    assert {k: v for k, v in stats["failure_reasons"].items() if v} == {
        "not_json": 3, "unknown_subgoal": 4, "truncated": 1
    }  # fmt: skip
    assert json.loads((tmp_path / "r.json").read_text()) == report
    # Second pass over the same set: answered from the judgment cache, no request.
    again = as_json(invoke([*args, "--json", "--cache", str(cache)]))
    assert again["stats"]["requests"] == 0 and again["stats"]["cache_hits"] == 60
    assert again["per_subgoal"] == per
    # The state question (what the default potential asks) has its own recordings.
    state = as_json(invoke([*args, "--json", "--question", "state"]))
    assert state["per_subgoal"]["reach_stairs"]["f1"] is None  # no live state shows it
    assert state["per_subgoal"]["get_key"]["recall"] == 0.85 and state["macro_f1"] == 0.897
    table = invoke(args)
    assert table.exit_code == 0 and "failed answers 8 (not_json 3, unknown_subgoal 4, truncated 1)" in table.stdout


def test_decompose_writes_shows_and_edits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "subgoals.json"
    base = ["calm", "decompose", "minihack-keyroom", "--out", str(out)]
    result = invoke([*base, "--replay", str(DATA / "decompose.jsonl")])
    assert result.exit_code == 0, result.output
    written = SubgoalSet.load(out)
    assert written.names == ("get_key", "open_door", "reach_stairs") and written.source == "llm"
    # An existing file is shown, not asked for again (this replay file would fail the request).
    result = invoke([*base, "--replay", str(REPLAY)])
    assert result.exit_code == 0 and "get_key" in result.stdout
    result = invoke([*base, "--from-oracle"])
    assert result.exit_code == 2 and "pass --force" in result.output
    assert invoke([*base, "--from-oracle", "--force"]).exit_code == 0
    assert SubgoalSet.load(out).source == "oracle"

    import click

    def edit_weight(text: str, **kwargs: Any) -> str:
        data = json.loads(text)
        data["subgoals"][1]["weight"] = 2.5
        return json.dumps(data)

    monkeypatch.setattr(click, "edit", edit_weight)
    assert invoke([*base, "--edit"]).exit_code == 0
    edited = SubgoalSet.load(out)
    assert edited.weights.tolist() == [1.0, 2.5, 1.0] and edited.source == "edited"
    monkeypatch.setattr(click, "edit", lambda text, **kw: text.replace('"name": "get_key"', '"name": "Get Key"'))
    result = invoke([*base, "--edit"])
    assert result.exit_code == 2 and "must be snake_case" in result.output and "unchanged" in result.output
    assert SubgoalSet.load(out) == edited


def test_user_errors_are_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("EMBODIED_LLM_BASE_URL", raising=False)
    chain = str(Path(__file__).resolve().parents[1] / "data" / "chain.toml")
    cases = {
        ("calm", "eval", "no-such-task"): "no-such-task",
        ("calm", "eval", "minihack-keyroom", "--judge", "psychic"): "--judge must be 'oracle' or 'llm'",
        ("calm", "eval", "minihack-keyroom", "--question", "why"): "--question must be 'transition' or 'state'",
        ("calm", "eval", chain): "the oracle judge knows only MiniHack",
        ("calm", "eval", "minihack-keyroom", "--judge", "llm", "--transitions", "6"): "no LLM endpoint",
        ("calm", "eval", "minihack-keyroom", "--judge", "llm", "--record"): "--record needs --replay FILE",
        ("calm", "decompose", "minihack-room", "--out", str(tmp_path / "x.json")): "no LLM endpoint",
        ("calm", "show", chain): "plays scripted MiniHack episodes",
    }
    for args, message in cases.items():
        result = invoke(list(args))
        assert result.exit_code == 2, (args, result.output)
        assert result.output.startswith("error: ") and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1


def test_show_prints_what_the_judge_reads() -> None:
    result = invoke(["calm", "show", "minihack-keyroom", "--seed", "3", "--steps", "3", "--radius", "2"])
    assert result.exit_code == 0, result.output
    assert result.stdout.count("Before the action:") == 3
    assert "Action: PICKUP (pick up what lies at your position)" in result.stdout
    assert "Map (5x5 around you, @ = you):" in result.stdout


@pytest.fixture
def one_torch_thread() -> Any:
    """Tiny MLPs on 2 shared cores: one torch thread is several times faster than two that spin against others."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_train_with_oracle_subgoal_shaping(in_tmp_workspace: Path, one_torch_thread: None) -> None:
    result = invoke([
        "train", "minihack-keyroom", "--reward", "env", "--shaping", "subgoals:judge=oracle",
        "--steps", "256", "--run", "calm-oracle", "--no-progress",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    run = in_tmp_workspace / "policies" / "calm-oracle"
    metrics = json.loads((run / "metrics.json").read_text())
    # The run keeps the exact subgoal set it was shaped with, and its config points there.
    assert metrics["shaping"] == "subgoals:judge=oracle,file=subgoals/subgoals.json" and metrics["timesteps"] >= 256
    assert json.loads((run / "subgoals" / "subgoals.json").read_text())
    assert (run / "model.zip").is_file()
    final = metrics["final"]
    assert final["shaping_residual_max_abs"] < 1e-9  # Σγ^tF telescopes in every episode
    evaluation = as_json(invoke(["eval", "calm-oracle", "--episodes", "2", "--json"]))
    assert 0.0 <= evaluation["success_rate"] <= 1.0


def _heuristic_client() -> Any:
    spec = importlib.util.spec_from_file_location("calm_fake_llm_cli", DATA / "fake_llm.py")
    fake = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(fake)  # type: ignore[union-attr]

    class Client:
        model = fake.MODEL
        calls = 0

        def complete(self, messages: Any, *, seed: int, temperature: float = 0.7, max_tokens: int = 2048) -> Any:
            Client.calls += 1
            return Completion(*fake.answer(list(messages), seed), self.model)

    return Client()


def test_train_with_an_llm_judge_potential(
    in_tmp_workspace: Path, monkeypatch: pytest.MonkeyPatch, one_torch_thread: None
) -> None:
    """One command with an LLM judge: the client is the in-process heuristic stand-in (no endpoint here)."""
    import embodied.rewards.subgoals as subgoals

    client = _heuristic_client()
    monkeypatch.setattr(subgoals, "make_client_from_options", lambda options: client)
    file = in_tmp_workspace / "subgoals.json"
    assert invoke(["calm", "decompose", "minihack-keyroom", "--from-oracle", "--out", str(file)]).exit_code == 0
    cache = in_tmp_workspace / "judgments.jsonl"
    result = invoke([
        "train", "minihack-keyroom", "--reward", "env", "--shaping", f"subgoals:judge=llm,file={file},cache={cache}",
        "--steps", "128", "--envs", "1", "--run", "calm-llm", "--no-progress",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    judged = len(cache.read_text().splitlines())
    assert 0 < judged == type(client).calls <= 257  # one request per distinct visible state (a 256-step rollout)
    metrics = json.loads((in_tmp_workspace / "policies" / "calm-llm" / "metrics.json").read_text())
    assert metrics["timesteps"] >= 128


def test_record_through_a_loopback_endpoint_then_replay_offline(tmp_path: Path) -> None:
    """--record with the real OpenAI client against a 127.0.0.1 server, then the same commands offline."""
    spec = importlib.util.spec_from_file_location("calm_fake_llm_server", DATA / "fake_llm.py")
    fake = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(fake)  # type: ignore[union-attr]
    rec, out = tmp_path / "rec.jsonl", tmp_path / "subgoals.json"
    decompose = ["calm", "decompose", "minihack-keyroom", "--out", str(out), "--replay", str(rec)]
    evaluate = ["calm", "eval", "minihack-keyroom", "--judge", "llm", "--transitions", "6", "--json"]
    evaluate += ["--replay", str(rec)]
    with fake.FakeServer() as server:
        llm = ["--llm-base-url", server.url, "--llm-model", fake.MODEL, "--llm-key-env", "", "--record"]
        assert invoke([*decompose, *llm]).exit_code == 0
        live = as_json(invoke([*evaluate, *llm]))
    assert live["transitions"] == 6 and live["model"] == fake.MODEL
    assert len(rec.read_text().splitlines()) == 1 + live["stats"]["requests"] == 7
    out.unlink()
    assert invoke(decompose).exit_code == 0 and SubgoalSet.load(out).source == "llm"
    offline = as_json(invoke(evaluate))
    assert offline["per_subgoal"] == live["per_subgoal"] and offline["stats"]["requests"] == 6
