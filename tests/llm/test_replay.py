"""Replay and record clients."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from embodied.llm.client import Completion, LLMError, Message, make_client, sample_k
from embodied.llm.replay import RecordingClient, ReplayClient, load_records, request_key

MESSAGES = [{"role": "user", "content": "write a reward"}]


class CountingClient:
    """Answers 'answer <seed>' and counts calls."""

    model = "counting-1"

    def __init__(self) -> None:
        self.calls = 0

    def complete(
        self, messages: Sequence[Message], *, seed: int, temperature: float = 0.7, max_tokens: int = 2048
    ) -> Completion:
        self.calls += 1
        return Completion(f"answer {seed}", "stop", self.model, latency_s=0.1)


def test_request_key_covers_every_request_field() -> None:
    base = request_key(MESSAGES, seed=1, temperature=0.7, max_tokens=100)
    assert base == request_key([dict(m) for m in MESSAGES], seed=1, temperature=0.7, max_tokens=100)
    assert base != request_key(MESSAGES, seed=2, temperature=0.7, max_tokens=100)
    assert base != request_key(MESSAGES, seed=1, temperature=0.8, max_tokens=100)
    assert base != request_key(MESSAGES, seed=1, temperature=0.7, max_tokens=101)
    assert base != request_key(
        [{"role": "user", "content": "write a reward!"}], seed=1, temperature=0.7, max_tokens=100
    )


def test_record_then_replay_offline(tmp_path: Path) -> None:
    path = tmp_path / "rec" / "llm.jsonl"
    inner = CountingClient()
    recorder = RecordingClient(inner, path)
    first = sample_k(recorder, MESSAGES, 3, seed=5, workers=2)
    assert [c.text for c in first] == ["answer 5", "answer 6", "answer 7"]
    assert inner.calls == 3 and recorder.recorded == 3
    assert len(path.read_text().splitlines()) == 3
    # Recording again only asks for what is missing.
    sample_k(recorder, MESSAGES, 4, seed=5, workers=1)
    assert inner.calls == 4 and len(path.read_text().splitlines()) == 4

    replay = ReplayClient(path)
    assert len(replay) == 4 and replay.model == "counting-1"
    again = replay.complete(MESSAGES, seed=6, temperature=0.7, max_tokens=2048)
    assert again.text == "answer 6" and again.finish_reason == "stop"
    with pytest.raises(LLMError, match="no recorded response") as info:
        replay.complete(MESSAGES, seed=99)
    assert "\n" not in str(info.value)


def test_make_client_replay_modes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "r.jsonl"
    with pytest.raises(LLMError, match="does not exist"):
        make_client(replay=path)
    monkeypatch.delenv("EMBODIED_LLM_BASE_URL", raising=False)
    with pytest.raises(LLMError, match="no LLM endpoint"):
        make_client(replay=path, record=True, model="m")  # recording needs an endpoint
    RecordingClient(CountingClient(), path).complete(MESSAGES, seed=0)
    assert isinstance(make_client(replay=path), ReplayClient)


def test_hand_written_json_list_fixture(tmp_path: Path) -> None:
    path = tmp_path / "fixture.json"
    path.write_text(
        json.dumps(
            [
                {
                    "request": {"messages": MESSAGES, "seed": 3, "temperature": 0.2, "max_tokens": 50},
                    "completion": {"text": "hello", "finish_reason": "length", "model": "x"},
                },
            ]
        )
    )
    out = ReplayClient(path).complete(MESSAGES, seed=3, temperature=0.2, max_tokens=50)
    assert out.text == "hello" and out.truncated


def test_corrupt_replay_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"key": "a", "completion": {"text": "x"}}\nnot json\n')
    with pytest.raises(LLMError, match=r"bad.jsonl:2"):
        load_records(path)
