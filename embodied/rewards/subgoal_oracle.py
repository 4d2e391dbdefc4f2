"""Exact subgoal detectors for the shipped MiniHack tasks: an oracle judge and ground truth for LLM judges.

Two kinds of detector, both over the task's observation keys only (`chars`, `blstats`, `message`,
`inv_glyphs`; no simulator internals):

* **Transition labels** (exact): did the transition (s, a, s') achieve subgoal k?

  - ``get_key``: the skeleton key (NLE glyph 2102) is in the inventory of s' but not of s;
  - ``open_door``: the action was APPLY while holding the key next to (8-neighbourhood) a closed
    door ``+`` — MiniHack's KeyRoom then unlocks and opens the door in that one step;
  - ``reach_stairs``: the episode ended in success (``info["task_success"]``); without infos, the
    action moved onto a ``>`` and the screen went blank (NLE blanks it when the game ends).

* **State detectors** (for potentials, Φ must be a function of the state): does state s show the
  subgoal as achieved? ``get_key``: the key is in the inventory. ``open_door``: no closed door on
  the (remembered) map and an open door is drawn — NetHack draws an open door in a vertical wall
  as ``-`` between two floor cells with walls above and below, and in a horizontal wall as ``|``
  with walls left and right — or the agent stands in the doorway. ``reach_stairs``: none (the level
  ends on the stairs). NLE blanks the screen when a game ends (on the stairs, or when MiniHack quits
  at its step limit); there only the inventory is left, and shaping zeroes Φ at termination anyway.

The tests check the state detectors against the exact transition labels accumulated over scripted
and random episodes (`evaluate_judge(..., question="state")` reports the same comparison).

`ScriptedSolver` (BFS on the character grid) solves both shipped tasks; it produces the positive
transitions of the balanced evaluation sets `collect_transitions` / `balanced_set` build.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embodied.llm.text_view import is_blank
from embodied.rewards.base import Obs, batch_size, obs_take
from embodied.rewards.subgoals import Judgment, Subgoal, SubgoalError, SubgoalSet
from embodied.tasks.spec import TaskSpec

KEY_GLYPH = 2102
"""NLE 1.3 glyph of the skeleton key: GLYPH_OBJ_OFF (1906) + object index 196 (checked by the tests)."""

_WALL = frozenset(b"-|")
_CLOSED_DOOR = ord("+")
_BLANK = ord(" ")
_PASSABLE = frozenset(b'.@<>(#{)[%?!/="*$^`')

KEYROOM_SUBGOALS = (
    Subgoal("get_key", "walk to the key '(' and pick it up, so that the key is in the inventory", 1.0, "get_key"),
    Subgoal("open_door", "stand next to the locked door '+' and apply the key to unlock and open it", 1.0, "open_door"),
    Subgoal("reach_stairs", "step onto the staircase down '>', which ends the level", 1.0, "reach_stairs"),
)
ROOM_SUBGOALS = (KEYROOM_SUBGOALS[2],)

# MiniHack env id prefix -> the subgoals the oracle can detect there.
ORACLE_TASKS: dict[str, tuple[Subgoal, ...]] = {
    "MiniHack-KeyRoom-": KEYROOM_SUBGOALS,
    "MiniHack-Room-": ROOM_SUBGOALS,
}
DETECTORS = ("get_key", "open_door", "reach_stairs")


class OracleError(SubgoalError):
    """The oracle cannot serve this task or subgoal (unsupported env id, missing observation key)."""


def oracle_subgoals_for(task: TaskSpec) -> tuple[Subgoal, ...] | None:
    """The oracle's subgoals for a task, or None when the oracle does not know the task's env id."""
    if task.suite != "minihack":
        return None
    for prefix, subgoals in ORACLE_TASKS.items():
        if task.env_id.startswith(prefix):
            return subgoals
    return None


def oracle_subgoals(task: TaskSpec) -> SubgoalSet:
    """The oracle's subgoal set (names, descriptions, weight 1 each) for a supported task."""
    subgoals = oracle_subgoals_for(task)
    if subgoals is None:
        known = ", ".join(f"{p}*" for p in ORACLE_TASKS)
        raise OracleError(
            f"task {task.name!r} (env {task.env_id}): the oracle judge knows only MiniHack {known}; use judge=llm"
        )
    return SubgoalSet(task=task.name, goal=task.goal, subgoals=subgoals, source="oracle")


# -- state readers (one observation, not a batch) ------------------------------------------------


def _row_chars(obs: Mapping[str, Any]) -> np.ndarray:
    if "chars" not in obs:
        raise OracleError("the subgoal oracle needs observation key 'chars' (the 21x79 screen)")
    return np.asarray(obs["chars"], dtype=np.uint8)


def agent_rc(obs: Mapping[str, Any]) -> tuple[int, int]:
    """(row, column) of the agent on the 21x79 screen (blstats holds x = column, y = row)."""
    x, y = (int(v) for v in np.asarray(obs["blstats"])[:2])
    return y, x


def has_key(obs: Mapping[str, Any]) -> bool:
    """The skeleton key is in the inventory (from `inv_glyphs`, else `inv_strs`)."""
    if "inv_glyphs" in obs:
        return bool(np.any(np.asarray(obs["inv_glyphs"]) == KEY_GLYPH))
    if "inv_strs" in obs:
        rows = [bytes(np.asarray(r, np.uint8)).split(b"\0", 1)[0] for r in np.asarray(obs["inv_strs"])]
        return any(b"key" in r for r in rows)
    raise OracleError(
        "the get_key detector needs observation key 'inv_glyphs' (or 'inv_strs'); "
        "add it to the task's env_kwargs.observation_keys"
    )


def _at(chars: np.ndarray, r: int, c: int) -> int:
    if 0 <= r < chars.shape[0] and 0 <= c < chars.shape[1]:
        return int(chars[r, c])
    return _BLANK


def _open_door_cells(chars: np.ndarray) -> list[tuple[int, int]]:
    """Cells drawn as an open door: '-' with walls above/below and non-walls left/right, or '|' transposed."""
    cells = []
    for r, c in np.argwhere((chars == ord("-")) | (chars == ord("|"))):
        ch = int(chars[r, c])
        up, down, left, right = _at(chars, r - 1, c), _at(chars, r + 1, c), _at(chars, r, c - 1), _at(chars, r, c + 1)
        across, along = ((left, right), (up, down)) if ch == ord("-") else ((up, down), (left, right))
        if all(a in _WALL for a in along) and all(a in _PASSABLE for a in across):
            cells.append((int(r), int(c)))
    return cells


def _in_doorway(chars: np.ndarray, r: int, c: int) -> bool:
    """The agent's cell is a doorway: walls on both sides along a wall line, floor on both sides across it.

    Along a vertical wall the cells above and below are walls, at least one of them '|' (the other
    may be a '-' corner); along a horizontal wall the cells left and right are walls, at least one
    '-' (the other may be a '|' junction). A 1-wide passage between two parallel walls has '|' on
    both sides (vertical) or '-' above and below (horizontal), which this excludes.
    """
    up, down, left, right = _at(chars, r - 1, c), _at(chars, r + 1, c), _at(chars, r, c - 1), _at(chars, r, c + 1)
    in_vertical = up in _WALL and down in _WALL and ord("|") in (up, down) and left in _PASSABLE and right in _PASSABLE
    in_horizontal = left in _WALL and right in _WALL and ord("-") in (left, right) and up in _PASSABLE
    return in_vertical or (in_horizontal and down in _PASSABLE)


def door_open(obs: Mapping[str, Any]) -> bool:
    """The map shows the (single) door open: no closed door remembered, and an open door drawn or the agent in it."""
    chars = _row_chars(obs)
    if np.any(chars == _CLOSED_DOOR):
        return False
    if _open_door_cells(chars):
        return True
    r, c = agent_rc(obs)
    return _in_doorway(chars, r, c)


def closed_door_adjacent(obs: Mapping[str, Any]) -> bool:
    """A closed door '+' in the 8 cells around the agent (where KeyRoom's APPLY finds it)."""
    chars = _row_chars(obs)
    r, c = agent_rc(obs)
    return any(
        _at(chars, r + dr, c + dc) == _CLOSED_DOOR for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)
    )


# -- the judge -------------------------------------------------------------------------------------


_MOVES: dict[str, tuple[int, int]] = {
    "N": (-1, 0),
    "E": (0, 1),
    "S": (1, 0),
    "W": (0, -1),
    "NE": (-1, 1),
    "SE": (1, 1),
    "SW": (1, -1),
    "NW": (-1, -1),
}


def _state_flag(name: str, obs: Mapping[str, Any]) -> bool:
    if name == "get_key":
        return has_key(obs)  # the end screen keeps the inventory
    if is_blank(obs):
        return False  # the end screen shows no map (Φ is zeroed at termination anyway)
    if name == "open_door":
        return door_open(obs)
    return False  # reach_stairs: the level ends on the stairs, so no live state shows it


def _moves_onto_stairs(obs: Mapping[str, Any], action_name: str) -> bool:
    delta = _MOVES.get(action_name)
    if delta is None:
        return False
    r, c = agent_rc(obs)
    return _at(_row_chars(obs), r + delta[0], c + delta[1]) == ord(">")


def _transition_flag(
    name: str, obs: Mapping[str, Any], action_name: str, next_obs: Mapping[str, Any], info: Mapping[str, Any] | None
) -> bool:
    if is_blank(obs):
        return False
    if name == "get_key":
        return not has_key(obs) and has_key(next_obs)
    if name == "open_door":
        return action_name == "APPLY" and has_key(obs) and closed_door_adjacent(obs)
    if info is not None and "task_success" in info:
        return bool(info["task_success"])
    # Without infos: the game ended (blank screen) on a step onto the stairs. A time-out also
    # blanks the screen (MiniHack quits the game at its step limit), hence the move check.
    return is_blank(next_obs) and _moves_onto_stairs(obs, action_name)


@dataclass
class OracleJudge:
    """Exact subgoal labels from the game state (see the module doc), with the `Judge` interface.

    Args:
        task: a MiniHack task the oracle supports.
        subgoals: which subgoals to report (each must name a detector through `oracle` or its name);
            default: all of the oracle's subgoals for the task.
        action_names: NLE action names in action-index order (for APPLY); read from the env if None.
    """

    task: TaskSpec
    subgoals: SubgoalSet | None = None
    action_names: Sequence[str] | None = None
    name: str = "oracle"
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.subgoals is None:
            self.subgoals = oracle_subgoals(self.task)
        elif oracle_subgoals_for(self.task) is None:
            oracle_subgoals(self.task)  # raises the one-line error
        available = {s.name for s in oracle_subgoals_for(self.task) or ()}
        self.detectors = []
        for sub in self.subgoals.subgoals:
            detector = sub.oracle or sub.name
            if detector not in available:
                raise OracleError(
                    f"subgoal {sub.name!r}: the oracle has no detector {detector!r} for task {self.task.name!r}; "
                    f"available: {', '.join(sorted(available))} (set the subgoal's 'oracle' field to one of them)"
                )
            self.detectors.append(detector)
        if self.action_names is None:
            from embodied.llm.text_view import task_action_names

            self.action_names = task_action_names(self.task)
        self.stats = {"judged": 0, "requests": 0, "cache_hits": 0, "failures": 0, "failure_reasons": {}}

    def _name(self, action: Any) -> str:
        index = int(np.asarray(action).reshape(-1)[0])
        names = self.action_names or ()
        return names[index] if 0 <= index < len(names) else ""

    def transitions(
        self, obs: Obs, action: np.ndarray, next_obs: Obs, infos: Sequence[Mapping[str, Any]] | None = None
    ) -> np.ndarray:
        """bool [N, K]: subgoal k was achieved by transition i (exact)."""
        n = batch_size(obs)
        out = np.zeros((n, len(self.detectors)), dtype=bool)
        actions = np.asarray(action)
        for i in range(n):
            s, s2 = obs_take(obs, i), obs_take(next_obs, i)
            info = infos[i] if infos is not None and len(infos) > i else None
            a = self._name(actions[i])
            for k, det in enumerate(self.detectors):
                out[i, k] = _transition_flag(det, s, a, s2, info)
        self.stats["judged"] += n
        return out

    def states(self, obs: Obs) -> np.ndarray:
        """bool [N, K]: state i shows subgoal k as achieved (state detectors)."""
        n = batch_size(obs)
        out = np.zeros((n, len(self.detectors)), dtype=bool)
        for i in range(n):
            s = obs_take(obs, i)
            for k, det in enumerate(self.detectors):
                out[i, k] = _state_flag(det, s)
        self.stats["judged"] += n
        return out

    def judgments(self, flags: np.ndarray) -> list[Judgment]:
        """Rows of a flag matrix as `Judgment`s (for reports)."""
        names = self.subgoals.names if self.subgoals else ()
        return [Judgment(tuple(n for n, f in zip(names, row, strict=True) if f)) for row in flags]


# -- scripted solver --------------------------------------------------------------------------------


class ScriptedSolver:
    """Solves MiniHack Room and KeyRoom from the character grid: BFS to the key, PICKUP, BFS next to the
    door, APPLY, BFS to the stairs; explores toward unseen cells when a target is not in view.

    Stateful per episode (remembers where it saw the key and the door): call `reset()` at every
    episode start. `epsilon` > 0 mixes in uniformly random actions (for diverse evaluation data).

    Args:
        action_names: the env's NLE action names in index order.
        epsilon: probability of a random action per step.
        seed: seed of the solver's own random generator.
    """

    def __init__(self, action_names: Sequence[str], epsilon: float = 0.0, seed: int = 0) -> None:
        self.action_names = list(action_names)
        self.index = {n: i for i, n in enumerate(self.action_names)}
        self.moves = [n for n in _MOVES if n in self.index]
        self.epsilon = float(epsilon)
        self.rng = np.random.default_rng(seed)
        self.reset()

    def reset(self) -> None:
        self.key_pos: tuple[int, int] | None = None
        self.door_pos: tuple[int, int] | None = None

    def _bfs(self, chars: np.ndarray, start: tuple[int, int], goals: set[tuple[int, int]]) -> list[tuple[int, int]]:
        """Shortest path (cells after `start`) to any goal; no diagonal steps into or out of the doorway."""
        queue, prev = deque([start]), {start: start}
        while queue:
            cell = queue.popleft()
            if cell in goals and cell != start:
                path = []
                while cell != start:
                    path.append(cell)
                    cell = prev[cell]
                return path[::-1]
            for name in self.moves:
                dr, dc = _MOVES[name]
                nxt = (cell[0] + dr, cell[1] + dc)
                if nxt in prev or not (0 <= nxt[0] < chars.shape[0] and 0 <= nxt[1] < chars.shape[1]):
                    continue
                passable = int(chars[nxt]) in _PASSABLE or (nxt == self.door_pos and int(chars[nxt]) != _CLOSED_DOOR)
                if not passable:
                    continue
                if dr and dc and self.door_pos in (cell, nxt):
                    continue
                prev[nxt] = cell
                queue.append(nxt)
        return []

    def _step_to(self, here: tuple[int, int], there: tuple[int, int]) -> str:
        delta = (there[0] - here[0], there[1] - here[1])
        return next(n for n, d in _MOVES.items() if d == delta)

    def _plan(self, obs: Mapping[str, Any]) -> str:
        chars = _row_chars(obs)
        here = agent_rc(obs)
        keys = [tuple(int(v) for v in p) for p in np.argwhere(chars == ord("("))]
        doors = [tuple(int(v) for v in p) for p in np.argwhere(chars == _CLOSED_DOOR)]
        if keys:
            self.key_pos = min(keys, key=lambda p: abs(p[0] - here[0]) + abs(p[1] - here[1]))
        if doors:
            self.door_pos = doors[0]
        needs_key = "PICKUP" in self.index and "inv_glyphs" in obs and not has_key(obs)
        goals: set[tuple[int, int]] = set()
        if needs_key and self.key_pos is not None:
            if here == self.key_pos:
                self.key_pos = None if keys else self.key_pos
                return "PICKUP"
            goals = {self.key_pos}
        elif not needs_key and doors and "APPLY" in self.index:
            door = doors[0]
            sides = {(door[0] + dr, door[1] + dc) for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1))}
            if here in sides:
                return "APPLY"
            goals = {s for s in sides if _at(chars, *s) in _PASSABLE}
        if not goals:
            stairs = {tuple(int(v) for v in p) for p in np.argwhere(chars == ord(">"))}
            goals = stairs if stairs and not (needs_key and self.key_pos is None and doors) else set()
        if not goals:  # explore: passable cells next to unseen ones
            unseen = chars == _BLANK
            near = np.zeros_like(unseen)
            near[1:, :] |= unseen[:-1, :]
            near[:-1, :] |= unseen[1:, :]
            near[:, 1:] |= unseen[:, :-1]
            near[:, :-1] |= unseen[:, 1:]
            goals = {tuple(int(v) for v in p) for p in np.argwhere(near & np.isin(chars, list(_PASSABLE)))}
            goals.discard(here)
        path = self._bfs(chars, here, goals)
        if not path:
            return str(self.rng.choice(self.moves))
        return self._step_to(here, path[0])

    def act(self, obs: Mapping[str, Any]) -> int:
        """The action index for one observation (not a batch)."""
        if self.epsilon > 0 and self.rng.random() < self.epsilon:
            return int(self.rng.integers(len(self.action_names)))
        return self.index[self._plan(obs)]


# -- evaluation data ----------------------------------------------------------------------------------


@dataclass
class Transition:
    """One labelled transition (copies of single observations, not batches).

    Attributes:
        obs, action, next_obs, info: the transition; `info` keeps `task_success`.
        labels: exact oracle transition labels, one bool per oracle subgoal (task order).
        achieved: state truth of next_obs: subgoals achieved so far in the episode (cumulative labels).
        source: "scripted" or "random".
        episode, step: where it came from.
    """

    obs: dict[str, np.ndarray]
    action: int
    next_obs: dict[str, np.ndarray]
    info: dict[str, Any]
    labels: np.ndarray
    achieved: np.ndarray
    source: str
    episode: int
    step: int


def _copy(obs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    # NLE reuses its observation buffers between steps: keep copies.
    return {k: np.array(v, copy=True) for k, v in obs.items()}


def collect_transitions(
    task: TaskSpec,
    scripted_episodes: int,
    random_episodes: int,
    seed: int = 0,
    epsilon: float = 0.1,
    progress: Any = None,
) -> list[Transition]:
    """Play scripted (solver with ε-random actions) and uniformly random episodes; label every transition.

    Episode e uses env seed `seed + e` (scripted first, then random). `progress(k)` is called after
    each episode when given.
    """
    from embodied.envs.make import make

    subgoal_set = oracle_subgoals(task)
    env = make(task)
    try:
        names = [a.name for a in env.unwrapped.actions]
        judge = OracleJudge(task, subgoal_set, names)
        solver = ScriptedSolver(names, epsilon=epsilon, seed=seed)
        rng = np.random.default_rng(seed + 1_000_003)
        out: list[Transition] = []
        for episode in range(scripted_episodes + random_episodes):
            source = "scripted" if episode < scripted_episodes else "random"
            obs, _ = env.reset(seed=seed + episode)
            obs = _copy(obs)
            solver.reset()
            achieved = np.zeros(len(subgoal_set.subgoals), dtype=bool)
            for step in range(task.max_episode_steps):
                action = solver.act(obs) if source == "scripted" else int(rng.integers(len(names)))
                next_obs, _, terminated, truncated, info = env.step(action)
                next_obs = _copy(next_obs)
                info = {"task_success": int(info.get("task_success", 0)), "success": bool(info.get("success", False))}
                batch = {k: v[None] for k, v in obs.items()}
                nbatch = {k: v[None] for k, v in next_obs.items()}
                labels = judge.transitions(batch, np.array([action]), nbatch, [info])[0]
                achieved = achieved | labels
                out.append(Transition(obs, action, next_obs, info, labels, achieved.copy(), source, episode, step))
                obs = next_obs
                if terminated or truncated:
                    break
            if progress is not None:
                progress(1)
        return out
    finally:
        env.close()


def balanced_set(
    transitions: Sequence[Transition], n: int, question: str = "transition", seed: int = 0
) -> list[Transition]:
    """About `n` transitions: for each of K subgoals n/(2K) positives, the rest negatives (half scripted, half random).

    For question "transition" a positive achieves the subgoal in that step; for "state" the
    subgoal has been achieved by next_obs. Fewer positives than asked for are all taken (the
    report gives the supports). Negatives are transitions positive for no subgoal.
    """
    if question not in ("transition", "state"):
        raise SubgoalError(f"question must be 'transition' or 'state', got {question!r}")
    if n < 2:
        raise SubgoalError(f"the evaluation set needs at least 2 transitions, got {n}")
    rng = np.random.default_rng(seed)
    flags = np.array([t.labels if question == "transition" else t.achieved for t in transitions])
    k = flags.shape[1]
    per = max(1, n // (2 * k))
    chosen: list[int] = []
    for j in range(k):
        pos = [i for i in np.flatnonzero(flags[:, j]) if i not in set(chosen)]
        take = rng.permutation(pos)[:per] if pos else []
        chosen.extend(int(i) for i in take)
    negatives = np.flatnonzero(~flags.any(axis=1))
    need = max(0, n - len(chosen))
    by_source = {
        s: [int(i) for i in rng.permutation(negatives) if transitions[i].source == s] for s in ("scripted", "random")
    }
    half = need // 2
    neg = by_source["scripted"][:half]
    neg += by_source["random"][: need - len(neg)]
    neg += [i for i in by_source["scripted"][half:] if i not in neg][: need - len(neg)]
    chosen.extend(neg)
    return [transitions[i] for i in chosen]


def evaluation_set(
    task: TaskSpec, n: int, question: str = "transition", seed: int = 0, epsilon: float = 0.1, progress: Any = None
) -> list[Transition]:
    """The balanced evaluation set `embodied calm eval` uses: play, label, pick about `n` transitions.

    Plays E scripted and E random episodes (E = ceil(n / 2K) + 2, env seeds seed..seed+2E-1), keeps
    only transitions with a visible next state for the state question (the end screen is blank),
    and picks the balanced set with `balanced_set`.
    """
    from embodied.llm.text_view import is_blank

    k = len(oracle_subgoals(task).subgoals)
    if n < 2:
        raise SubgoalError(f"the evaluation set needs at least 2 transitions, got {n}")
    episodes = max(2, -(-n // (2 * k)) + 2)
    pool = collect_transitions(task, episodes, episodes, seed, epsilon, progress=progress)
    if question == "state":
        pool = [t for t in pool if not is_blank(t.next_obs)]
    return balanced_set(pool, n, question, seed)


def evaluate_judge(
    judge: Any, transitions: Sequence[Transition], question: str = "transition", task: TaskSpec | None = None
) -> dict[str, Any]:
    """Per-subgoal precision, recall and F1 of a judge's labels against the oracle's ground truth.

    The judge's subgoals are matched to oracle detectors through each subgoal's `oracle` field (or
    its name); unmatched subgoals are listed without scores.

    Returns:
        dict with `per_subgoal` {name: {tp, fp, fn, tn, support, precision, recall, f1}},
        `macro_f1` (over subgoals whose F1 is defined: a subgoal with no positives and no
        predicted positives gets None), `micro_f1`, `transitions`, `question`, `judge` and the judge's `stats`
        (requests, cache hits, failures by reason).
    """
    if not transitions:
        raise SubgoalError("no transitions to evaluate")
    obs = {k: np.stack([t.obs[k] for t in transitions]) for k in transitions[0].obs}
    next_obs = {k: np.stack([t.next_obs[k] for t in transitions]) for k in transitions[0].next_obs}
    actions = np.array([t.action for t in transitions])
    if question == "transition":
        pred = judge.transitions(obs, actions, next_obs, [t.info for t in transitions])
        truth_all = np.array([t.labels for t in transitions])
    elif question == "state":
        pred = judge.states(next_obs)
        truth_all = np.array([t.achieved for t in transitions])
    else:
        raise SubgoalError(f"question must be 'transition' or 'state', got {question!r}")
    oracle_names = [s.name for s in (oracle_subgoals_for(task) if task is not None else KEYROOM_SUBGOALS) or ()]
    per: dict[str, dict[str, Any]] = {}
    unmatched = []
    tp_all = fp_all = fn_all = 0
    for k, sub in enumerate(judge.subgoals.subgoals):
        det = sub.oracle or sub.name
        if det not in oracle_names:
            unmatched.append(sub.name)
            continue
        truth = truth_all[:, oracle_names.index(det)]
        p = pred[:, k]
        tp, fp = int(np.sum(p & truth)), int(np.sum(p & ~truth))
        fn, tn = int(np.sum(~p & truth)), int(np.sum(~p & ~truth))
        row: dict[str, Any] = {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "support": tp + fn}
        if tp + fn == 0 and tp + fp == 0:
            row.update(precision=None, recall=None, f1=None)  # nothing to find and nothing claimed: undefined
        else:
            precision = tp / (tp + fp) if tp + fp else 0.0
            recall = tp / (tp + fn) if tp + fn else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            row.update(precision=round(precision, 4), recall=round(recall, 4), f1=round(f1, 4))
        per[sub.name] = row
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
    micro_p = tp_all / (tp_all + fp_all) if tp_all + fp_all else 0.0
    micro_r = tp_all / (tp_all + fn_all) if tp_all + fn_all else 0.0
    micro = 2 * micro_p * micro_r / (micro_p + micro_r) if micro_p + micro_r else 0.0
    sources = {s: sum(t.source == s for t in transitions) for s in ("scripted", "random")}
    defined = [v["f1"] for v in per.values() if v["f1"] is not None]
    return {
        "judge": judge.name,
        "question": question,
        "transitions": len(transitions),
        "sources": sources,
        "per_subgoal": per,
        "unmatched_subgoals": unmatched,
        "macro_f1": round(float(np.mean(defined)), 4) if defined else None,
        "micro_f1": round(micro, 4),
        "stats": _public_stats(judge.stats),
    }


def _public_stats(stats: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in stats.items()}


@functools.cache
def key_glyph_from_nle() -> int:
    """The skeleton key's glyph computed from NLE (for checking `KEY_GLYPH` against the installed NLE)."""
    import nle.nethack as nh

    for index in range(nh.NUM_OBJECTS):
        if nh.objdescr.from_idx(index).oc_name == "skeleton key":
            return int(nh.GLYPH_OBJ_OFF + index)
    raise OracleError("NLE has no 'skeleton key' object")
