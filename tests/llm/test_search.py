"""Eureka-style search on the scripted chain task, from recorded responses.

The fast trainer is a greedy one-step planner on the chain (moves to the neighbour the program
rewards more), so a program's fitness is a real consequence of its code: "progress to the right"
succeeds, "stay near the start" falls into the trap.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from embodied.llm.client import Completion, LLMError, Message
from embodied.llm.prompts import ComponentStats
from embodied.llm.replay import RecordingClient, ReplayClient
from embodied.llm.search import SB3Trainer, SearchConfig, TrainResult, search, stats_from_history

DATA = Path(__file__).parent / "data"
CHAIN = Path(__file__).resolve().parents[1] / "data" / "chain.toml"


class ScriptedClient:
    """Answers by seed from tests/llm/data/search_responses.json; counts calls."""

    def __init__(self) -> None:
        records = json.loads((DATA / "search_responses.json").read_text())
        self.by_seed = {r["seed"]: r for r in records}
        self.model = "recorded-model-1"
        self.calls: list[int] = []

    def complete(
        self, messages: Sequence[Message], *, seed: int, temperature: float = 0.7, max_tokens: int = 2048
    ) -> Completion:
        self.calls.append(seed)
        rec = self.by_seed.get(seed)
        if rec is None:
            raise LLMError(f"no scripted response for seed {seed}")
        return Completion(rec["text"], rec["finish_reason"], rec["model"])


class _V:
    def __init__(self, position: float) -> None:
        self.position = np.float64(position)


def greedy_chain_trainer(program_path: Path, steps: int, seed: int) -> TrainResult:
    """Fitness of a chain program: a greedy planner over its reward reaches the goal (1.0) or not (0.0)."""
    from embodied.rewards.code import load_program

    program = load_program(Path(program_path).read_text(), name=str(program_path))
    pos, comps, success_curve = 0, {}, []
    for _ in range(10):
        scored = []
        for action, nxt in ((0, pos - 1), (1, pos + 1)):
            r, parts = program(_V(nxt), np.int64(action))
            scored.append((r, action, nxt, parts))
        r, action, pos, parts = max(scored, key=lambda t: (t[0], -t[1]))  # ties go left
        for k, v in parts.items():
            comps.setdefault(k, []).append(v)
        success_curve.append(1.0 if pos >= 4 else 0.0)
        if pos >= 4 or pos <= -2:
            break
    success = 1.0 if pos >= 4 else 0.0
    return TrainResult(
        success_rate=success,
        components=[ComponentStats(k, tuple(v), None) for k, v in comps.items()],
        success_curve=success_curve,
        env_return=success,
    )


def interrupting_trainer(program_path: Path, steps: int, seed: int) -> TrainResult:
    """Like the greedy trainer, but the second iteration's training is 'interrupted' (Ctrl-C)."""
    if "iter-01" in str(program_path):
        raise KeyboardInterrupt
    return greedy_chain_trainer(program_path, steps, seed)


def _config(**kw: object) -> SearchConfig:
    base = dict(samples=4, iterations=2, steps=100, seed=0, validate_timeout_s=1.5, dry_run_samples=12)
    base.update(kw)
    return SearchConfig(**base)  # type: ignore[arg-type]


def test_search_survives_every_failure_kind_and_keeps_the_best(tmp_path: Path) -> None:
    client = ScriptedClient()
    root = tmp_path / "reward_models"
    result = search(str(CHAIN), client, _config(), trainer=greedy_chain_trainer, root=root, search_id="t1")

    assert sorted(client.calls) == list(range(8))  # K requests with distinct seeds per iteration
    by = {(o.iteration, o.index): o for o in result.outcomes}
    kinds = {key: (o.error or {}).get("kind") for key, o in by.items()}
    assert kinds == {
        (0, 0): None,  # no code fence, still valid
        (0, 1): "syntax",
        (0, 2): "forbidden_import",
        (0, 3): "truncated",
        (1, 0): "nonfinite",
        (1, 1): "timeout",
        (1, 2): None,
        (1, 3): None,
    }
    assert by[(0, 0)].fitness == 0.0 and by[(1, 2)].fitness == 1.0 and by[(1, 3)].fitness == 0.0

    # The winner is the best valid program, saved with its metadata and re-evaluated on 3 seeds.
    assert result.best_fitness == 1.0 and result.reeval == [1.0, 1.0, 1.0]
    best_src = result.best_path.read_text()
    assert "GOAL = 4.0" in best_src and "```" not in best_src
    meta = json.loads((result.directory / "best.json").read_text())
    assert meta["model"] == "recorded-model-1" and len(meta["prompt_hash"]) == 16
    assert "I improved the reward" in meta["response"] and meta["validation"]["ok"]
    assert meta["reeval"]["mean"] == 1.0 and meta["reeval"]["seeds"] == [1, 2, 3]
    assert set(result.timings) == {"llm", "validation", "training", "reeval"}
    assert result.timings["validation"] >= 1.5  # the infinite loop ran into its timeout

    # Iteration 1's prompt: best of iteration 0 with its reflection, and the failures of iteration 0.
    prompt = json.loads((result.directory / "iter-01" / "prompt.json").read_text())["messages"][1]["content"]
    assert "stay = -0.1 * pos" in prompt
    assert "succeeded in 0%" in prompt and "rewrite the whole reward" in prompt
    assert "[syntax] at line 1" in prompt and "[forbidden_import]" in prompt and "[truncated]" in prompt
    # Everything is on disk.
    for sub in (
        "iter-00/sample-01/response.json",
        "iter-00/sample-01/validation.json",
        "iter-01/summary.json",
        "iter-01/sample-02/train.json",
        "fitness.json",
        "search.json",
    ):
        assert (result.directory / sub).is_file(), sub
    fitness = json.loads((result.directory / "fitness.json").read_text())
    assert [f["best_so_far"] for f in fitness] == [0.0, 1.0]
    state = json.loads((result.directory / "search.json").read_text())
    assert state["status"] == "done" and state["iterations_done"] == 2


def test_search_replays_offline_from_a_recording(tmp_path: Path) -> None:
    recording = tmp_path / "search.jsonl"
    first = search(str(CHAIN), RecordingClient(ScriptedClient(), recording), _config(iterations=1),
                   trainer=greedy_chain_trainer, root=tmp_path / "a", search_id="rec")  # fmt: skip
    replay = ReplayClient(recording)
    second = search(str(CHAIN), replay, _config(iterations=1), trainer=greedy_chain_trainer,
                    root=tmp_path / "b", search_id="rep")  # fmt: skip
    assert replay.hits == 4
    assert [(o.status, o.fitness) for o in first.outcomes] == [(o.status, o.fitness) for o in second.outcomes]
    assert first.best_path.read_text() == second.best_path.read_text()


def test_interrupted_search_resumes_without_losing_results(tmp_path: Path) -> None:
    client = ScriptedClient()
    root = tmp_path / "rm"
    with pytest.raises(KeyboardInterrupt):
        search(str(CHAIN), client, _config(), trainer=interrupting_trainer, root=root, search_id="r")
    directory = root / "chain" / "search-r"
    state = json.loads((directory / "search.json").read_text())
    assert state["iterations_done"] == 1 and state["best"]["fitness"] == 0.0
    assert (directory / "iter-01" / "sample-02" / "response.json").is_file()  # paid-for responses were kept
    calls_before = len(client.calls)

    result = search(str(CHAIN), client, _config(), trainer=greedy_chain_trainer, root=root, search_id="r")
    assert len(client.calls) == calls_before  # nothing asked twice
    assert result.best_fitness == 1.0 and len(result.outcomes) == 8

    with pytest.raises(ValueError, match="different settings"):
        search(str(CHAIN), client, _config(steps=999), trainer=greedy_chain_trainer, root=root, search_id="r")


def test_search_where_nothing_is_valid(tmp_path: Path) -> None:
    class Broken:
        model = "broken"

        def complete(self, messages: Sequence[Message], *, seed: int, temperature: float = 0.7,
                     max_tokens: int = 2048) -> Completion:  # fmt: skip
            if seed % 2:
                raise LLMError("HTTP 503 from http://127.0.0.1: overloaded")
            return Completion("I'd rather not.", "stop", "broken")

    result = search(str(CHAIN), Broken(), _config(samples=2, iterations=1), trainer=greedy_chain_trainer,
                    root=tmp_path, search_id="x")  # fmt: skip
    assert result.best_path is None and result.best_fitness is None and result.reeval == []
    assert {(o.error or {}).get("kind") for o in result.outcomes} == {"extract", "llm"}


def test_parallel_training_in_worker_processes(tmp_path: Path) -> None:
    result = search(str(CHAIN), ScriptedClient(), _config(iterations=1, workers=2), trainer=greedy_chain_trainer,
                    root=tmp_path, search_id="p")  # fmt: skip
    assert result.best_fitness == 0.0 and len(result.reeval) == 3


def test_stats_from_history() -> None:
    history = [
        {"timesteps": 64, "component/reach": -0.5, "ep_success_mean": 0.0},
        {"timesteps": 128, "component/reach": -0.3, "ep_success_mean": 0.2},
        {"timesteps": 192, "component/reach": -0.1, "ep_success_mean": 0.6, "component/flat": 1.0},
    ]
    comps, curve = stats_from_history(history)
    assert curve == [0.0, 0.2, 0.6]
    reach = next(c for c in comps if c.name == "reach")
    assert reach.values == (-0.5, -0.3, -0.1) and reach.corr_success == pytest.approx(0.9820, abs=1e-3)
    assert next(c for c in comps if c.name == "flat").corr_success is None


def test_real_training_path_at_tiny_scale(tmp_path: Path) -> None:
    """generation -> validation -> SB3 training -> held-out fitness -> re-evaluation, for real."""

    class OneGood:
        model = "recorded-model-1"

        def complete(self, messages: Sequence[Message], *, seed: int, temperature: float = 0.7,
                     max_tokens: int = 2048) -> Completion:  # fmt: skip
            return Completion(ScriptedClient().by_seed[6]["text"], "stop", self.model)

    root = tmp_path / "reward_models"
    cfg = _config(samples=1, iterations=1, steps=128)
    search_dir = root / "chain" / "search-real"
    trainer = SB3Trainer(task=str(CHAIN), root=str(search_dir / "runs"), envs=1, eval_episodes=2,
                         hyperparams={"n_steps": 32, "batch_size": 32, "n_epochs": 1})  # fmt: skip
    result = search(str(CHAIN), OneGood(), cfg, trainer=trainer, root=root, search_id="real")
    assert result.best_path is not None and 0.0 <= result.best_fitness <= 1.0
    assert len(result.reeval) == 3
    train = json.loads((search_dir / "iter-00" / "sample-00" / "train.json").read_text())
    assert Path(train["run_dir"]).is_dir() and {c["name"] for c in train["components"]} == {"progress", "success_bonus"}
    assert len(train["components"][0]["values"]) >= 2  # one value per rollout


@pytest.mark.slow
def test_parallel_training_through_ray(tmp_path: Path) -> None:
    import ray  # a dependency of the package, so no skip
    try:
        result = search(str(CHAIN), ScriptedClient(), _config(iterations=1, workers=2, executor="ray"),
                        trainer=greedy_chain_trainer, root=tmp_path, search_id="ray")  # fmt: skip
    finally:
        ray.shutdown()
    assert result.best_fitness == 0.0 and result.reeval == [0.0, 0.0, 0.0]
