"""CALM subgoals: strict answer parsing, decomposition, LLM judges with replayed answers, caching,
the invariant potential (no farming) vs the non-invariant bonus, achievement flags, the spec."""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import embodied
from embodied.llm.client import Completion
from embodied.llm.replay import ReplayClient
from embodied.llm.text_view import text_view_for
from embodied.rewards.adapters import RewardWrapper
from embodied.rewards.registry import make_potential, make_reward
from embodied.rewards.shaping import Shaper
from embodied.rewards.subgoal_oracle import OracleJudge, collect_transitions, oracle_subgoals
from embodied.rewards.subgoals import (
    FLAGS_KEY,
    AnswerError,
    Judgment,
    JudgmentCache,
    LLMJudge,
    Subgoal,
    SubgoalError,
    SubgoalFlags,
    SubgoalReward,
    SubgoalSet,
    absolute_spec,
    decompose,
    from_spec,
    load_or_decompose,
    localize_spec,
    parse_batch_judgment,
    parse_json_answer,
    parse_judgment,
    parse_options,
)
from embodied.tasks.spec import load_task

DATA = Path(__file__).parent / "data" / "calm"
NAMES = ("get_key", "open_door", "reach_stairs")
N, E, S, W, NE, PICKUP, APPLY = 0, 1, 2, 3, 4, 8, 9


def _load_fake_llm() -> Any:
    spec = importlib.util.spec_from_file_location("calm_fake_llm", DATA / "fake_llm.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


FAKE = _load_fake_llm()


class HeuristicClient:
    """The rule-based stand-in of fake_llm.py, in process; counts calls."""

    model = FAKE.MODEL

    def __init__(self) -> None:
        self.calls = 0

    def complete(
        self, messages: Sequence[dict[str, str]], *, seed: int, temperature: float = 0.7, max_tokens: int = 2048
    ) -> Completion:
        self.calls += 1
        text, finish = FAKE.answer(list(messages), seed)
        return Completion(text, finish, self.model)


class ScriptedClient:
    """Answers with the given texts in turn (finish_reason per answer), counting calls."""

    model = "scripted"

    def __init__(self, answers: list[tuple[str, str]]) -> None:
        self.answers, self.calls = answers, 0

    def complete(self, messages: Any, *, seed: int, temperature: float = 0.7, max_tokens: int = 2048) -> Completion:
        text, finish = self.answers[self.calls % len(self.answers)]
        self.calls += 1
        return Completion(text, finish, self.model)


class CopyObs(gym.ObservationWrapper):
    """NLE reuses its observation buffers between steps; keep each observation intact."""

    def observation(self, obs: dict) -> dict:
        return {k: np.array(v, copy=True) for k, v in obs.items()}


@pytest.fixture(scope="module")
def keyroom():
    return load_task("minihack-keyroom")


@pytest.fixture(scope="module")
def trajectory(keyroom):
    """The scripted episode on env seed 3 the replay file trajectory.jsonl was recorded on (7 steps)."""
    steps = collect_transitions(keyroom, 1, 0, seed=3, epsilon=0.0)
    obs = {k: np.stack([t.obs[k] for t in steps]) for k in steps[0].obs}
    nxt = {k: np.stack([t.next_obs[k] for t in steps]) for k in steps[0].obs}
    return obs, np.array([t.action for t in steps]), nxt, np.array([t.labels for t in steps])


# -- strict parsing ----------------------------------------------------------------------------------------


def test_parse_json_answer_accepts_json_only() -> None:
    assert parse_json_answer('{"achieved": ["get_key"]}') == {"achieved": ["get_key"]}
    assert parse_json_answer('  ```json\n{"achieved": []}\n```  ') == {"achieved": []}
    for bad in (
        "The agent picked up the key.",
        'Sure! {"achieved": ["get_key"]}',  # JSON inside prose is not picked out
        '{"achieved": ["get_key"]} I hope this helps',
        "{'achieved': ['get_key']}",  # a Python literal: would pass eval, is not JSON
        "__import__('os').system('echo pwned')",
        '{"achieved": ["get_',
        "",
    ):
        with pytest.raises(AnswerError) as info:
            parse_json_answer(bad)
        assert info.value.reason == "not_json"


def test_parse_judgment_good_and_malformed() -> None:
    assert parse_judgment('{"achieved": ["open_door", "get_key", "get_key"]}', NAMES) == Judgment(
        ("get_key", "open_door")
    )
    assert parse_judgment('{"achieved": [], "reason": "nothing happened"}', NAMES) == Judgment(())
    cases = {
        "I think the key was picked up": "not_json",
        '{"achieved": ["pick_up_key"]}': "unknown_subgoal",
        '{"done": ["get_key"]}': "bad_schema",
        '{"achieved": "get_key"}': "bad_schema",
        '["get_key"]': "bad_schema",
        '{"achieved": [1]}': "bad_schema",
    }
    for text, reason in cases.items():
        judgment = parse_judgment(text, NAMES)
        assert judgment.failure == reason and judgment.achieved == ()
    truncated = parse_judgment('{"achieved": ["get_key"]}', NAMES, finish_reason="length")
    assert truncated.failure == "truncated" and truncated.achieved == ()


def test_parse_batch_judgment_fails_only_bad_entries() -> None:
    text = json.dumps(
        {
            "transitions": [
                {"id": 1, "achieved": ["get_key"]},
                {"id": 3, "achieved": ["unknown"]},
                {"id": 3, "achieved": ["get_key"]},  # a repeated id is ignored
                {"id": 9, "achieved": []},  # out of range: ignored
                {"id": True, "achieved": []},
            ]
        }
    )
    out = parse_batch_judgment(text, NAMES, 4)
    assert out[0] == Judgment(("get_key",))
    assert [j.failure for j in out] == [None, "missing", "unknown_subgoal", "missing"]
    assert [j.failure for j in parse_batch_judgment("nope", NAMES, 2)] == ["not_json", "not_json"]
    assert [j.failure for j in parse_batch_judgment('{"x": 1}', NAMES, 2)] == ["bad_schema"] * 2
    assert [j.failure for j in parse_batch_judgment("{}", NAMES, 1, "length")] == ["truncated"]


# -- subgoal sets and decomposition ------------------------------------------------------------------------


def test_subgoal_file_round_trip_and_validation(tmp_path: Path) -> None:
    subgoals = SubgoalSet("t", "goal", (Subgoal("a", "first", 2.0, "get_key"), Subgoal("b", "second")), "llm")
    path = subgoals.save(tmp_path / "s.json")
    assert SubgoalSet.load(path) == subgoals
    assert subgoals.weights.tolist() == [2.0, 1.0]
    # weights do not change what a judge is asked; names and descriptions do
    heavier = SubgoalSet("t", "goal", (Subgoal("a", "first", 5.0), Subgoal("b", "second")))
    assert heavier.fingerprint() == subgoals.fingerprint()
    reworded = SubgoalSet("t", "goal", (Subgoal("a", "other"), Subgoal("b", "second")))
    assert reworded.fingerprint() != heavier.fingerprint()
    two = '[{"name": "a", "description": "d"}, {"name": "a", "description": "e"}]'
    bad = {
        '{"task": "t", "goal": "g"}': "missing field 'subgoals'",
        '{"task": "t", "goal": "g", "subgoals": []}': "needs at least one subgoal",
        '{"task": "t", "goal": "g", "subgoals": [{"name": "Get Key", "description": "d"}]}': "must be snake_case",
        '{"task": "t", "goal": "g", "subgoals": [{"name": "a", "description": "d", "weight": 0}]}': "weight must be",
        '{"task": "t", "goal": "g", "subgoals": [{"name": "a", "description": "d", "colour": 1}]}': "unknown field",
        '{"task": "t", "goal": "g", "subgoals": ' + two + "}": "duplicate subgoal name 'a'",
        "{not json": "not valid JSON",
    }
    for text, message in bad.items():
        path.write_text(text)
        with pytest.raises(SubgoalError, match=message) as info:
            SubgoalSet.load(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_decomposition_from_replayed_answers(keyroom, chain_task, tmp_path: Path, caplog) -> None:
    client = ReplayClient(DATA / "decompose.jsonl")
    subgoals = decompose(keyroom, client)
    assert subgoals.names == NAMES and subgoals.source == "llm"
    assert subgoals.meta["model"] == FAKE.MODEL and subgoals.meta["seed"] == 0
    # The chain task's first answer is prose: it is fed back and the second answer (seed 1) is used.
    with caplog.at_level(logging.WARNING, logger="embodied.rewards.subgoals"):
        chain = decompose(load_task(chain_task), client)
    assert chain.names == ("move_right", "reach_goal") and chain.meta["seed"] == 1
    assert "decomposition answer rejected (attempt 1): not_json" in caplog.text
    with pytest.raises(SubgoalError, match="no usable subgoal decomposition after 2 attempt"):
        decompose(keyroom, ScriptedClient([("no idea", "stop")]), attempts=2)


def test_decomposition_is_cached_per_task(keyroom, tmp_path: Path) -> None:
    path = tmp_path / "reward_models" / "minihack-keyroom" / "subgoals.json"
    client = ReplayClient(DATA / "decompose.jsonl")
    first = load_or_decompose(keyroom, path, client)
    assert path.is_file() and client.hits == 1
    again = load_or_decompose(keyroom, path, ScriptedClient([("unused", "stop")]))
    assert again == first and client.hits == 1  # read from disk: no request
    with pytest.raises(SubgoalError, match="create one with `embodied calm decompose minihack-keyroom`"):
        load_or_decompose(keyroom, tmp_path / "missing.json", None)


# -- the LLM judge -------------------------------------------------------------------------------------------


def test_llm_judge_labels_a_trajectory_from_replay(keyroom, trajectory) -> None:
    obs, actions, nxt, truth = trajectory
    client = ReplayClient(DATA / "trajectory.jsonl")
    judge = LLMJudge(client, oracle_subgoals(keyroom), text_view_for(keyroom), workers=1)
    flags = judge.transitions(obs, actions, nxt)
    # The recorded judge is right on every step except step 1, whose answer was truncated (counted, no subgoal).
    np.testing.assert_array_equal(flags, truth)
    assert truth.astype(int).tolist() == [[0, 0, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1]]
    assert judge.stats["requests"] == 7 and judge.stats["failures"] == 1
    assert judge.stats["failure_reasons"]["truncated"] == 1
    # Second pass: everything from the cache, no request.
    assert client.hits == 7
    np.testing.assert_array_equal(judge.transitions(obs, actions, nxt), truth)
    assert client.hits == 7 and judge.stats["requests"] == 7 and judge.stats["cache_hits"] == 7
    # Four transitions per request: 2 requests; this answer calls stepping onto the key "get_key" (a false positive).
    batched = LLMJudge(client, oracle_subgoals(keyroom), text_view_for(keyroom), per_request=4, workers=1)
    flags = batched.transitions(obs, actions, nxt)
    assert batched.stats["requests"] == 2 and client.hits == 9
    assert flags[:, 0].astype(int).tolist() == [0, 1, 1, 0, 0, 0, 0]
    # States: the blank end screen is never sent.
    states = LLMJudge(client, oracle_subgoals(keyroom), text_view_for(keyroom), workers=1)
    assert states.states(nxt).astype(int).tolist() == [
        [0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 0], [0, 0, 0]
    ]  # fmt: skip
    assert states.stats["requests"] == 6


def test_judgment_cache_on_disk_makes_the_second_pass_free(keyroom, trajectory, tmp_path: Path) -> None:
    obs, actions, nxt, truth = trajectory
    cache_file = tmp_path / "judgments.jsonl"
    first = ReplayClient(DATA / "trajectory.jsonl")
    judge = LLMJudge(first, oracle_subgoals(keyroom), text_view_for(keyroom), JudgmentCache(cache_file), workers=3)
    judge.transitions(obs, actions, nxt)
    assert first.hits == 7 and len(cache_file.read_text().splitlines()) == 7
    second = ReplayClient(DATA / "trajectory.jsonl")
    fresh = LLMJudge(second, oracle_subgoals(keyroom), text_view_for(keyroom), JudgmentCache(cache_file))
    np.testing.assert_array_equal(fresh.transitions(obs, actions, nxt), truth)
    assert second.hits == 0 and fresh.stats["requests"] == 0 and fresh.stats["cache_hits"] == 7
    # A repeated transition inside one batch is asked once.
    rep = {k: np.repeat(v[2:3], 5, axis=0) for k, v in obs.items()}
    rep_next = {k: np.repeat(v[2:3], 5, axis=0) for k, v in nxt.items()}
    counting = HeuristicClient()
    judge = LLMJudge(counting, oracle_subgoals(keyroom), text_view_for(keyroom))
    assert judge.transitions(rep, np.full(5, PICKUP), rep_next)[:, 0].all()
    assert counting.calls == 1 and judge.stats["cache_hits"] == 4
    # A different subgoal set is a different cache entry.
    other = SubgoalSet("minihack-keyroom", "g", (Subgoal("get_key", "hold the key"),))
    LLMJudge(counting, other, text_view_for(keyroom), judge.cache).transitions(rep, np.full(5, PICKUP), rep_next)
    assert counting.calls == 2


def test_malformed_answers_are_counted_failures_never_crashes(keyroom, trajectory, caplog) -> None:
    obs, actions, nxt, _ = trajectory
    client = ScriptedClient([
        ("The agent picked up the key!", "stop"),
        ('{"achieved": ["pick_up_key"]}', "stop"),
        ('{"achieved": ["get_', "length"),
        ('{"achieved": "get_key"}', "stop"),
        ('{"achieved": ["open_door"]}', "stop"),
    ])  # fmt: skip
    judge = LLMJudge(client, oracle_subgoals(keyroom), text_view_for(keyroom), workers=1)
    with caplog.at_level(logging.WARNING, logger="embodied.rewards.subgoals"):
        flags = judge.transitions({k: v[:5] for k, v in obs.items()}, actions[:5], {k: v[:5] for k, v in nxt.items()})
    assert flags.astype(int).tolist() == [[0, 0, 0]] * 4 + [[0, 1, 0]]
    assert judge.stats["failures"] == 4
    assert {k: v for k, v in judge.stats["failure_reasons"].items() if v} == {
        "not_json": 1, "unknown_subgoal": 1, "truncated": 1, "bad_schema": 1
    }  # fmt: skip
    assert caplog.text.count("LLM judge answer rejected") == 4


def test_a_failed_request_is_an_error_not_a_silent_zero(keyroom, trajectory) -> None:
    obs, actions, nxt, _ = trajectory
    judge = LLMJudge(ReplayClient(DATA / "decompose.jsonl"), oracle_subgoals(keyroom), text_view_for(keyroom))
    with pytest.raises(SubgoalError, match="LLM request failed: no recorded response"):
        judge.transitions(obs, actions, nxt)


# -- the reward: invariant potential vs the non-invariant bonus ----------------------------------------------


def test_oracle_potential_shapes_a_solved_episode_exactly(keyroom) -> None:
    model = from_spec("judge=oracle", keyroom)
    assert model.state_only and model.name == "subgoals[oracle]"
    gamma = keyroom.gamma
    env = RewardWrapper(CopyObs(embodied.make(keyroom)), None, Shaper(model, gamma))
    env.reset(seed=3)
    shaping, env_rewards = [], []
    for action in (NE, NE, PICKUP, N, APPLY, W, W):
        _, _, terminated, _, info = env.step(action)
        shaping.append(info["shaping"])
        env_rewards.append(info["env_reward"])
    assert terminated and info["success"]
    # Φ(s') = key + door: 0, 0, 1, 1, 2, 2, then 0 at termination.
    np.testing.assert_allclose(shaping, [0, 0, gamma, gamma - 1, 2 * gamma - 1, 2 * gamma - 2, -2], atol=1e-12)
    assert abs(info["reward_episode"]["shaping_return"]) < 1e-12  # Σγ^tF = γ^T·0 − Φ(s_0) = 0
    assert abs(info["reward_episode"]["shaping_residual"]) < 1e-12


def test_farming_a_repeated_transition_earns_nothing_with_the_potential(keyroom) -> None:
    """Stepping on and off the key: the bonus judge pays every time; the potential pays nothing."""
    gamma = keyroom.gamma
    view = text_view_for(keyroom)
    subgoals = oracle_subgoals(keyroom)

    def run(reward: Any, shaper: Any) -> tuple[list[float], list[float]]:
        env = RewardWrapper(CopyObs(embodied.make(keyroom)), reward, shaper)
        env.reset(seed=1)  # the key lies just north of the agent
        rewards, shaping = [], []
        for action in (N, S) * 5:
            _, r, *_, info = env.step(action)
            rewards.append(r)
            shaping.append(info["shaping"])
        return rewards, shaping

    with pytest.warns(UserWarning, match="NOT policy-invariant"):
        bonus = SubgoalReward(LLMJudge(HeuristicClient(), subgoals, view), mode="bonus_not_invariant")
    rewards, _ = run(bonus, None)
    # The judge calls "You see here a key" a pick-up: each return to the key square pays 1 again.
    assert rewards == [1.0, 0.0] * 5
    potential = SubgoalReward(LLMJudge(HeuristicClient(), subgoals, view))
    rewards, shaping = run(None, Shaper(potential, gamma))
    assert rewards == [0.0] * 10 and shaping == [0.0] * 10
    # With the key held, every further step shapes by γΦ − Φ = −(1 − γ)·1 < 0: holding still is never paid.
    env = RewardWrapper(CopyObs(embodied.make(keyroom)), None, Shaper(from_spec("judge=oracle", keyroom), gamma))
    env.reset(seed=1)
    env.step(N)
    env.step(PICKUP)
    shaping = [env.step(W)[4]["shaping"] for _ in range(20)]
    np.testing.assert_allclose(shaping, -(1 - gamma), atol=1e-12)


def test_bonus_mode_pays_each_subgoal_once_with_the_oracle(keyroom, trajectory) -> None:
    obs, actions, nxt, _ = trajectory
    with pytest.warns(UserWarning, match="NOT policy-invariant"):
        model = make_reward("subgoals:judge=oracle,mode=bonus_not_invariant", keyroom)
    from embodied.rewards.base import TransitionBatch

    n = len(actions)
    env_reward = np.zeros(n)
    env_reward[-1] = 1.0
    batch = TransitionBatch(obs, actions, nxt, np.eye(n, dtype=bool)[-1], np.zeros(n, bool), env_reward, [{}] * n)
    out = model(batch)
    assert out.reward.tolist() == [0, 0, 1, 0, 1, 0, 2]  # key, door, stairs (+ env reward 1 at the end)
    assert out.components["subgoal_open_door"].tolist() == [0, 0, 0, 0, 1, 0, 0]
    with pytest.raises(SubgoalError, match=r"use `--reward env --shaping subgoals:\.\.\.`"):
        from_spec("judge=oracle", keyroom)(batch)


def test_subgoal_flags_make_transition_credit_part_of_the_state(keyroom) -> None:
    judge = OracleJudge(keyroom)
    env = SubgoalFlags(embodied.make(keyroom), judge)
    assert env.observation_space[FLAGS_KEY].shape == (3,)
    obs, _ = env.reset(seed=1)
    assert obs[FLAGS_KEY].tolist() == [0, 0, 0]
    obs, *_ = env.step(N)
    assert obs[FLAGS_KEY].tolist() == [0, 0, 0]
    obs, *_ = env.step(PICKUP)
    assert obs[FLAGS_KEY].tolist() == [1, 0, 0]
    model = SubgoalReward(judge)
    batch = {k: v[None] for k, v in obs.items()}
    batch[FLAGS_KEY] = np.array([[1, 1, 0]], np.int8)  # the potential reads the flags, not the screen
    assert model.potential(batch).tolist() == [2.0]
    with pytest.raises(SubgoalError, match="has shape"):
        model.potential({**batch, FLAGS_KEY: np.zeros((1, 2), np.int8)})


# -- the spec ------------------------------------------------------------------------------------------------


def test_spec_options_and_errors(keyroom, tmp_path: Path, monkeypatch) -> None:
    assert parse_options("judge=llm, replay=a.jsonl,per_request=4") == {
        "judge": "llm", "replay": "a.jsonl", "per_request": "4"
    }  # fmt: skip
    for arg, message in {
        "judge": "expected key=value",
        "colour=red": "unknown option 'colour'",
        "judge=oracle,judge=llm": "given twice",
        "judge=psychic": "judge must be 'oracle' or 'llm'",
        "mode=farm": "mode must be one of potential, bonus_not_invariant",
        "judge=llm,record=1": "record=1 needs replay=FILE",
    }.items():
        with pytest.raises(SubgoalError, match=message):
            from_spec(arg, keyroom)
    monkeypatch.delenv("EMBODIED_LLM_BASE_URL", raising=False)
    with pytest.raises(SubgoalError, match="no LLM endpoint"):
        from_spec("judge=llm", keyroom)
    assert make_potential("subgoals:judge=oracle", keyroom).name == "subgoals[oracle]"
    assert make_potential("subgoals:", keyroom).name == "subgoals[oracle]"  # the oracle is the default here
    oracle_file = oracle_subgoals(keyroom).save(tmp_path / "subgoals.json")
    model = from_spec(f"judge=llm,replay={DATA / 'trajectory.jsonl'},file={oracle_file},cache=none,radius=2", keyroom)
    assert model.state_only and isinstance(model.judge, LLMJudge) and model.judge.view.config.radius == 2
    assert model.judge.cache.path is None and model.judge.model == FAKE.MODEL
    with pytest.raises(SubgoalError, match=r"radius must be in 1\.\.40"):
        from_spec(f"judge=llm,replay={DATA / 'trajectory.jsonl'},file={oracle_file},radius=0", keyroom)


def test_spec_is_saved_with_the_run(keyroom, chain_task, tmp_path: Path) -> None:
    run = tmp_path / "run"
    arg = localize_spec("judge=oracle,mode=potential", keyroom, run)
    assert arg == "judge=oracle,mode=potential,file=subgoals/subgoals.json"
    assert SubgoalSet.load(run / "subgoals" / "subgoals.json") == oracle_subgoals(keyroom)
    resolved = absolute_spec(arg, run)
    assert resolved.endswith(f"file={run / 'subgoals' / 'subgoals.json'}")
    assert from_spec(resolved, keyroom).judge.subgoals.names == NAMES
    edited = SubgoalSet("minihack-keyroom", "g", (Subgoal("get_key", "take it", 3.0),)).save(tmp_path / "mine.json")
    arg = localize_spec(f"judge=llm,file={edited}", keyroom, tmp_path / "run2")
    assert SubgoalSet.load(tmp_path / "run2" / "subgoals" / "subgoals.json").weights.tolist() == [3.0]
    assert localize_spec("judge=llm", load_task(chain_task), tmp_path / "run3") == "judge=llm"  # nothing cached yet
