"""The subgoal oracle: exact transition labels and state detectors on scripted and random MiniHack play."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from embodied.rewards.subgoal_oracle import (
    KEY_GLYPH,
    OracleError,
    OracleJudge,
    ScriptedSolver,
    balanced_set,
    collect_transitions,
    door_open,
    evaluate_judge,
    evaluation_set,
    key_glyph_from_nle,
    oracle_subgoals,
)
from embodied.rewards.subgoals import Subgoal, SubgoalSet
from embodied.tasks.spec import load_task

ACTIONS = ("N", "E", "S", "W", "NE", "SE", "SW", "NW", "PICKUP", "APPLY")


@pytest.fixture(scope="module")
def keyroom():
    return load_task("minihack-keyroom")


@pytest.fixture(scope="module")
def mixed_play(keyroom):
    """20 scripted episodes (30 % random actions) and 20 random ones, labelled."""
    return collect_transitions(keyroom, 20, 20, seed=500, epsilon=0.3)


def screen(rows: list[str], agent: tuple[int, int], key: bool = True) -> dict[str, np.ndarray]:
    """A 21x79 observation with `rows` drawn at the top-left and the agent at (row, column)."""
    chars = np.full((21, 79), ord(" "), np.uint8)
    for r, row in enumerate(rows):
        chars[r, : len(row)] = np.frombuffer(row.encode(), np.uint8)
    blstats = np.zeros(27, np.int64)
    blstats[[0, 1, 10]] = [agent[1], agent[0], 12]
    inv = np.full(55, 5976, np.int16)
    inv[0] = KEY_GLYPH if key else 1935
    return {"chars": chars, "blstats": blstats, "message": np.zeros(256, np.uint8), "inv_glyphs": inv}


def test_key_glyph_matches_the_installed_nle() -> None:
    assert KEY_GLYPH == key_glyph_from_nle() == 2102


def test_scripted_solver_solves_keyroom_in_order(keyroom) -> None:
    play = collect_transitions(keyroom, 10, 0, seed=0, epsilon=0.0)
    episodes: dict[int, list] = {}
    for t in play:
        episodes.setdefault(t.episode, []).append(t)
    steps = {e: [[t.step for t in ts if t.labels[k]] for k in range(3)] for e, ts in episodes.items()}
    # Every episode: key, then door, then stairs, each exactly once, and the episode ends on the stairs.
    assert steps[0] == [[3], [7], [9]] and steps[3] == [[2], [4], [6]] and steps[7] == [[1], [3], [6]]
    for e, ts in episodes.items():
        (key,), (door,), (stairs,) = steps[e]
        assert key < door < stairs == len(ts) - 1
        assert ts[-1].info["task_success"] == 1
        assert ts[door].action == ACTIONS.index("APPLY") and ts[key].action == ACTIONS.index("PICKUP")
    assert [len(ts) for ts in episodes.values()] == [10, 8, 9, 7, 12, 8, 9, 7, 7, 11]


def test_scripted_solver_solves_room() -> None:
    task = load_task("minihack-room")
    play = collect_transitions(task, 3, 0, seed=0, epsilon=0.0)
    assert len(play) == 12  # the Room-5x5 layout is fixed: 4 diagonal steps to '>'
    assert [t.step for t in play if t.labels[0]] == [3, 3, 3]
    assert oracle_subgoals(task).names == ("reach_stairs",)


def test_state_detectors_agree_with_the_exact_labels(mixed_play) -> None:
    """On every visible state, the state detectors equal the transition labels accumulated over the episode."""
    judge = OracleJudge(load_task("minihack-keyroom"), action_names=ACTIONS)
    visible = [t for t in mixed_play if t.next_obs["blstats"].any()]
    obs = {k: np.stack([t.next_obs[k] for t in visible]) for k in visible[0].next_obs}
    flags = judge.states(obs)
    truth = np.array([t.achieved for t in visible])
    assert len(visible) > 2000
    assert truth[:, 0].sum() > 500 and truth[:, 1].sum() > 200  # both subgoals are well represented
    np.testing.assert_array_equal(flags, truth)
    assert flags[:, 2].sum() == 0  # no live state shows the stairs reached: the level ends there


def test_labels_without_infos_equal_labels_with_infos(mixed_play) -> None:
    judge = OracleJudge(load_task("minihack-keyroom"), action_names=ACTIONS)
    obs = {k: np.stack([t.obs[k] for t in mixed_play]) for k in mixed_play[0].obs}
    nxt = {k: np.stack([t.next_obs[k] for t in mixed_play]) for k in mixed_play[0].obs}
    actions = np.array([t.action for t in mixed_play])
    truth = np.array([t.labels for t in mixed_play])
    np.testing.assert_array_equal(judge.transitions(obs, actions, nxt, None), truth)
    # Random episodes time out on a blank screen too: the move-onto-'>' check keeps them negative.
    timeouts = [t for t in mixed_play if not t.next_obs["blstats"].any() and not t.info["task_success"]]
    assert timeouts and not any(t.labels[2] for t in timeouts)


@pytest.mark.parametrize(
    ("rows", "agent", "expected"),
    [
        (["------", "|..|.|", "|..-@|", "|..|.|", "------"], (2, 4), True),  # open door in a vertical wall
        (["------", "|..|.|", "|..+@|", "|..|.|", "------"], (2, 4), False),  # closed door
        (["-------", "|.>|..|", "|..|..|", "|@--..|", "|.....|", "-------"], (3, 1), True),  # agent in the doorway
        (["-----", "|.|@|", "|.|.|", "-----"], (1, 3), False),  # 1-wide gap between two walls: no door
        (["-------", "|.....|", "|..@..|", "-------"], (2, 3), False),  # no door at all
        (["----", "|.||", "|..|", "----"], (1, 1), False),  # '|' beside a wall is no open door
    ],
)
def test_door_detector_cases(rows: list[str], agent: tuple[int, int], expected: bool) -> None:
    assert door_open(screen(rows, agent)) is expected


def test_oracle_errors_are_one_line(chain_task, keyroom, tmp_path) -> None:
    with pytest.raises(OracleError, match=r"task 'chain' \(env chain\): the oracle judge knows only MiniHack"):
        oracle_subgoals(load_task(chain_task))
    odd = SubgoalSet("minihack-keyroom", "g", (Subgoal("find_key", "see the key"),))
    with pytest.raises(OracleError, match="subgoal 'find_key': the oracle has no detector 'find_key'"):
        OracleJudge(keyroom, odd, ACTIONS)
    mapped = SubgoalSet("minihack-keyroom", "g", (Subgoal("take_key", "take it", 2.0, "get_key"),))
    assert OracleJudge(keyroom, mapped, ACTIONS).detectors == ["get_key"]
    no_inv = screen(["---", "|@|", "---"], (1, 1))
    del no_inv["inv_glyphs"]
    judge = OracleJudge(keyroom, action_names=ACTIONS)
    with pytest.raises(OracleError, match="needs observation key 'inv_glyphs'"):
        judge.states({k: v[None] for k, v in no_inv.items()})


def test_balanced_set_composition(mixed_play) -> None:
    chosen = balanced_set(mixed_play, 30, "transition", seed=0)
    labels = np.array([t.labels for t in chosen])
    assert len(chosen) == 30
    assert labels.sum(axis=0).tolist() == [5, 5, 5]
    negatives = [t for t in chosen if not t.labels.any()]
    assert len(negatives) == 15
    assert sum(t.source == "random" for t in negatives) == 8 and sum(t.source == "scripted" for t in negatives) == 7
    state = balanced_set(mixed_play, 30, "state", seed=0)
    assert np.array([t.achieved for t in state]).any(axis=1).sum() == 15


@dataclass
class FlippingJudge:
    """The oracle, with chosen get_key positives dropped and chosen negatives called open_door."""

    inner: OracleJudge
    drop_key: int
    fake_door: int
    name: str = "flipping"
    stats: dict[str, Any] = field(default_factory=lambda: {"requests": 0})

    @property
    def subgoals(self) -> SubgoalSet:
        return self.inner.subgoals

    def transitions(self, obs, action, next_obs, infos=None):
        out = self.inner.transitions(obs, action, next_obs, infos)
        out[np.flatnonzero(out[:, 0])[: self.drop_key], 0] = False
        out[np.flatnonzero(~out.any(axis=1))[: self.fake_door], 1] = True
        return out


def test_evaluate_judge_reports_exact_precision_recall_f1(keyroom) -> None:
    chosen = evaluation_set(keyroom, 30, "transition", seed=0)
    oracle = OracleJudge(keyroom, action_names=ACTIONS)
    perfect = evaluate_judge(oracle, chosen, "transition", keyroom)
    assert perfect["macro_f1"] == perfect["micro_f1"] == 1.0
    assert perfect["sources"] == {"scripted": 18, "random": 12}
    report = evaluate_judge(FlippingJudge(oracle, drop_key=2, fake_door=3), chosen, "transition", keyroom)
    key, door, stairs = (report["per_subgoal"][n] for n in ("get_key", "open_door", "reach_stairs"))
    assert (key["tp"], key["fn"], key["precision"], key["recall"], key["f1"]) == (3, 2, 1.0, 0.6, 0.75)
    assert (door["tp"], door["fp"], door["precision"], door["recall"], door["f1"]) == (5, 3, 0.625, 1.0, 0.7692)
    assert stairs["f1"] == 1.0
    assert report["macro_f1"] == 0.8397 and report["micro_f1"] == 0.8387  # 13 tp, 3 fp, 2 fn


def test_solver_explores_when_nothing_is_in_sight() -> None:
    solver = ScriptedSolver(ACTIONS, seed=0)
    dark = screen(["     ", " ... ", " .@. ", " ... ", "     "], (2, 2), key=False)
    assert ACTIONS[solver.act(dark)] in ("N", "E", "S", "W", "NE", "SE", "SW", "NW")
    key_here = screen(["-----", "|.(.|", "|...|", "-----"], (1, 2), key=False)
    solver.reset()
    solver.key_pos = (1, 2)  # it saw the key before stepping onto it
    key_here["chars"][1, 2] = ord("@")
    assert ACTIONS[solver.act(key_here)] == "PICKUP"
