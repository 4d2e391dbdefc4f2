"""Generation and refinement: validation with automatic error feedback, versioned files, history."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from embodied.llm.client import Completion, Message
from embodied.llm.generate import generate, refine
from embodied.llm.prompts import task_interface

CHAIN = Path(__file__).resolve().parents[1] / "data" / "chain.toml"
GOOD = "```python\ndef compute_reward(view, action):\n    p = float(view.position)\n    return p, {'progress': p}\n```"
BETTER = (
    "```python\ndef compute_reward(view, action):\n    p = float(view.position) / 4.0\n"
    "    bonus = 1.0 if p >= 1.0 else 0.0\n    return p + bonus, {'progress': p, 'bonus': bonus}\n```"
)


class Scripted:
    """Returns the scripted answers in order and keeps every request."""

    def __init__(self, answers: list[tuple[str, str]]) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[list[Message], int]] = []
        self.model = "scripted-1"

    def complete(
        self, messages: Sequence[Message], *, seed: int, temperature: float = 0.7, max_tokens: int = 2048
    ) -> Completion:
        self.requests.append((list(messages), seed))
        text, finish = self.answers.pop(0)
        return Completion(text, finish, self.model)


@pytest.fixture(scope="module")
def iface():
    spaces = (gym.spaces.Box(-np.inf, np.inf, (2,), np.float64), gym.spaces.Discrete(2))
    return task_interface(CHAIN, spaces=spaces)


def _samples() -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    return [({"position": np.float64(p)}, np.int64(p % 2)) for p in (-1, 0, 1, 2, 3)]


def test_generate_feeds_rejections_back_until_valid(tmp_path: Path, iface) -> None:
    client = Scripted([
        ("```python\ndef compute_reward(view, action)\n    return 1.0, {}\n```", "stop"),
        ("```python\ndef compute_reward(view, action):\n    return float(view.position), {'p': float(", "length"),
        (GOOD, "stop"),
    ])  # fmt: skip
    out = generate(CHAIN, client, root=tmp_path, seed=5, samples=_samples(), interface=iface)
    assert out.path == tmp_path / "chain" / "gen-001.py"
    assert "p = float(view.position)" in out.path.read_text() and "```" not in out.path.read_text()
    assert [seed for _, seed in client.requests] == [5, 6, 7]
    second_request = client.requests[1][0]
    assert second_request[-2]["role"] == "assistant" and "[syntax] at line 1" in second_request[-1]["content"]
    assert "[truncated]" in client.requests[2][0][-1]["content"]

    meta = json.loads(out.path.with_suffix(".json").read_text())
    assert meta["model"] == "scripted-1" and meta["task"] == "chain" and len(meta["prompt_hash"]) == 16
    assert meta["response"] == GOOD and meta["validation"]["components"] == ["progress"]
    assert [a.get("error", {}).get("kind") for a in meta["attempts"]] == ["syntax", "truncated", None]


def test_generate_gives_up_with_the_last_reason(tmp_path: Path, iface) -> None:
    client = Scripted([("no code here", "stop"), ("```python\nimport os\n```", "stop")])
    with pytest.raises(ValueError, match=r"after 2 attempt\(s\).*extract|forbidden_import"):
        generate(CHAIN, client, root=tmp_path, attempts=2, samples=_samples(), interface=iface)
    assert not list(tmp_path.glob("**/gen-*.py"))


def test_refine_versions_and_keeps_history(tmp_path: Path, iface) -> None:
    first = generate(CHAIN, Scripted([(GOOD, "stop")]), root=tmp_path, samples=_samples(), interface=iface)
    client = Scripted([(BETTER, "stop")])
    second = refine(first.path, "It walks right but never stops at the goal.", client, video="videos/chain.mp4",
                    rollout_stats={"success_rate": 0.4}, samples=_samples(), interface=iface)  # fmt: skip
    assert second.path == first.path.with_name("gen-002.py")
    prompt = client.requests[0][0][1]["content"]
    assert "p = float(view.position)" in prompt and "never stops at the goal" in prompt
    assert "videos/chain.mp4" in prompt and '"success_rate": 0.4' in prompt
    third = refine(second.path, "Good, but make the bonus larger.", Scripted([(GOOD, "stop")]),
                   samples=_samples(), interface=iface)  # fmt: skip
    meta = json.loads(third.path.with_suffix(".json").read_text())
    assert meta["parent"] == str(second.path) and meta["kind"] == "refine"
    assert [h["feedback"] for h in meta["history"]] == [
        "It walks right but never stops at the goal.",
        "Good, but make the bonus larger.",
    ]
    assert meta["history"][0]["video"] == "videos/chain.mp4"


def test_refine_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        refine(tmp_path / "missing.py", "x", Scripted([]))
    program = tmp_path / "p.py"
    program.write_text("def compute_reward(view, action):\n    return 0.0, {}\n")
    with pytest.raises(ValueError, match="feedback is empty"):
        refine(program, "  ", Scripted([]))
