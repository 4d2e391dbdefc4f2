"""LLM credit assignment for sparse-reward tasks (CALM): subgoals, judges, and the `subgoals:` reward spec.

Pieces:

* `SubgoalSet` — the task's goal decomposed into named subgoals (name, description, weight, and
  optionally the oracle detector it corresponds to). `decompose` asks an LLM for one (answer
  parsed as strict JSON); `load_or_decompose` caches it per task on disk
  (``reward_models/<task>/subgoals.json``), where a person may edit it; `localize_spec` copies it
  into a run folder.
* Judges answer two questions over batches (`Judge` protocol):
  ``transitions(obs, action, next_obs, infos) -> bool [N, K]`` ("which subgoals did this action
  achieve?", CALM's question) and ``states(obs) -> bool [N, K]`` ("which subgoals does this state
  show as achieved?"). `LLMJudge` asks an LLM over a text rendering (`embodied.llm.text_view`);
  `embodied.rewards.subgoal_oracle.OracleJudge` reads the game state exactly.
* `LLMJudge` answers are JSON, parsed strictly (`json.loads`, never `eval`). A non-JSON answer,
  an unknown subgoal name, a wrong schema or a truncated answer is a logged, counted failure
  and means "no subgoal achieved". Requests are deduplicated within a batch, optionally
  packed several transitions per request, sent concurrently, and cached on disk by (question,
  model, subgoal set, rendered observation(s) + action): a repeated state or transition costs
  nothing. A failed *request* (endpoint down, replay miss) is an error, not a silent zero.
* `SubgoalReward` — the reward model behind the ``subgoals:`` spec (syntax in `parse_options`):

  - ``mode=potential`` (default; state-only): Φ(s) = Σ_k w_k·achieved_k(s), used through
    policy-invariant shaping (``--reward env --shaping subgoals:...``). achieved_k(s) is read
    from the observation key ``subgoals_achieved`` when the env has one (`SubgoalFlags` adds it:
    the transition judge's credit, OR-ed over the episode, made part of the state), and otherwise
    from the state judge. Either way Φ is a function of the (augmented) state, so
    Σ_t γ^t F_t = γ^T Φ(s_T)[not terminated] − Φ(s_0): repeating a transition earns nothing.
  - ``mode=bonus_not_invariant``: CALM's reward, env reward + w_k when the transition judge says
    subgoal k was achieved and the state before did not already show it. Not potential-based: a
    judge that mislabels a repeatable transition pays it every time. It warns when built.

Spec syntax: ``subgoals:key=value,key=value`` with the keys of `OPTIONS` (values cannot contain
commas), e.g. ``subgoals:judge=oracle``, ``subgoals:judge=llm,replay=rec.jsonl``,
``subgoals:judge=llm,base_url=http://localhost:8000/v1,model=m,key_env=``,
``subgoals:judge=oracle,mode=bonus_not_invariant``. See docs/calm.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from embodied.rewards.base import Obs, RewardError, RewardModel, RewardOutput, TransitionBatch, batch_size, obs_take
from embodied.tasks.spec import TaskSpec

log = logging.getLogger(__name__)

PROMPT_VERSION = "calm-v1"
"""Part of every cache key: bump it when the prompts change so stale judgments are not reused."""
FLAGS_KEY = "subgoals_achieved"
"""Observation key `SubgoalFlags` adds: int8 [K], 1 where the subgoal was credited earlier in the episode."""
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
FAILURE_REASONS = ("not_json", "bad_schema", "unknown_subgoal", "truncated", "missing")


class SubgoalError(RewardError):
    """Bad subgoal file, spec option or judge configuration. The message is one line and names the culprit."""


# -- subgoal sets ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subgoal:
    """One subgoal.

    Attributes:
        name: snake_case identifier the judge answers with (``[a-z][a-z0-9_]*``, ≤ 40 chars).
        description: what achieving it looks like, in the words the judge reads.
        weight: its share of the potential (> 0).
        oracle: the oracle detector it corresponds to (get_key, open_door, reach_stairs), when any;
            used to evaluate judges and by the oracle judge. Defaults to the name.
    """

    name: str
    description: str
    weight: float = 1.0
    oracle: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "description": self.description, "weight": self.weight}
        if self.oracle:
            out["oracle"] = self.oracle
        return out


@dataclass(frozen=True)
class SubgoalSet:
    """A task's ordered subgoals plus where they came from.

    Attributes:
        task: task name.
        goal: the task's language goal the set decomposes.
        subgoals: the subgoals, in the order they are usually achieved.
        source: "oracle", "llm" (decomposed by an LLM) or "edited" (written or changed by a person).
        meta: provenance (model, prompt hash, raw answer) for LLM decompositions.
    """

    task: str
    goal: str
    subgoals: tuple[Subgoal, ...]
    source: str = "edited"
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_subgoals(self.subgoals, f"subgoals of task {self.task!r}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.subgoals)

    @property
    def weights(self) -> np.ndarray:
        """float64 [K]."""
        return np.array([s.weight for s in self.subgoals], dtype=np.float64)

    def fingerprint(self) -> str:
        """sha256 (16 hex) of the names and descriptions: what a judgment depends on (not the weights)."""
        blob = json.dumps([[s.name, s.description] for s in self.subgoals], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "goal": self.goal,
            "source": self.source,
            "subgoals": [s.to_dict() for s in self.subgoals],
            "meta": dict(self.meta),
        }

    def save(self, path: str | Path) -> Path:
        """Write as indented JSON (atomic rename); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, data: Any, where: str) -> SubgoalSet:
        if not isinstance(data, dict):
            raise SubgoalError(f"{where}: expected a JSON object with 'task', 'goal' and 'subgoals'")
        for key in ("task", "goal", "subgoals"):
            if key not in data:
                raise SubgoalError(f"{where}: missing field {key!r}")
        items = data["subgoals"]
        if not isinstance(items, list):
            raise SubgoalError(f"{where}: field 'subgoals' must be a list")
        subgoals = tuple(_subgoal(item, f"{where}: subgoals[{i}]") for i, item in enumerate(items))
        meta = data.get("meta") or {}
        if not isinstance(meta, dict):
            raise SubgoalError(f"{where}: field 'meta' must be an object")
        try:
            return cls(str(data["task"]), str(data["goal"]), subgoals, str(data.get("source", "edited")), meta)
        except SubgoalError as exc:
            raise SubgoalError(f"{where}: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> SubgoalSet:
        """Read a subgoal file (as `save` writes it, or edited by hand)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SubgoalError(f"subgoal file {path} does not exist") from None
        except ValueError as exc:
            raise SubgoalError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(data, str(path))


def _subgoal(item: Any, where: str) -> Subgoal:
    if not isinstance(item, dict):
        raise SubgoalError(f"{where}: expected an object with 'name' and 'description'")
    unknown = set(item) - {"name", "description", "weight", "oracle"}
    if unknown:
        raise SubgoalError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: name, description, weight, oracle")
    weight = item.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise SubgoalError(f"{where}: field 'weight' must be a number, got {weight!r}")
    oracle = item.get("oracle")
    if oracle is not None and not isinstance(oracle, str):
        raise SubgoalError(f"{where}: field 'oracle' must be a string")
    return Subgoal(str(item.get("name", "")), str(item.get("description", "")), float(weight), oracle)


def validate_subgoals(subgoals: Sequence[Subgoal], where: str) -> None:
    """Raise `SubgoalError` unless there is ≥ 1 subgoal, names are valid and unique, weights finite and > 0."""
    if not subgoals:
        raise SubgoalError(f"{where}: needs at least one subgoal")
    seen: set[str] = set()
    for s in subgoals:
        if not NAME_RE.match(s.name):
            raise SubgoalError(f"{where}: subgoal name {s.name!r} must be snake_case ([a-z][a-z0-9_]*, ≤ 40 chars)")
        if s.name in seen:
            raise SubgoalError(f"{where}: duplicate subgoal name {s.name!r}")
        seen.add(s.name)
        if not s.description.strip():
            raise SubgoalError(f"{where}: subgoal {s.name!r} has an empty description")
        if not (math.isfinite(s.weight) and s.weight > 0):
            raise SubgoalError(f"{where}: subgoal {s.name!r} weight must be a finite number > 0, got {s.weight}")


# -- strict answer parsing ------------------------------------------------------------------------------


class AnswerError(ValueError):
    """An LLM answer was unusable; `reason` is one of FAILURE_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


_FENCE = re.compile(r"```(?:json|JSON)?[ \t]*\n?(.*?)\n?[ \t]*```", re.S)


def parse_json_answer(text: str) -> Any:
    """The JSON value of an answer that is JSON and nothing else (one ```json fence around it is allowed).

    Uses `json.loads` only: no `eval`, no repair of broken JSON, no picking JSON out of prose.
    """
    body = text.strip()
    fence = _FENCE.fullmatch(body)
    if fence:
        body = fence.group(1).strip()
    try:
        return json.loads(body)
    except ValueError as exc:
        raise AnswerError("not_json", f"{exc.__class__.__name__}: {exc}; answer starts {body[:60]!r}") from None


@dataclass(frozen=True)
class Judgment:
    """A judge's answer for one item: the achieved subgoal names, or a failure (then nothing achieved)."""

    achieved: tuple[str, ...] = ()
    failure: str | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"achieved": list(self.achieved), "failure": self.failure, "detail": self.detail}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Judgment:
        return cls(tuple(data.get("achieved") or ()), data.get("failure"), str(data.get("detail", "")))


def _achieved_list(value: Any, names: Sequence[str], where: str) -> tuple[str, ...]:
    if not isinstance(value, dict) or "achieved" not in value:
        raise AnswerError("bad_schema", f"{where}: expected an object with key 'achieved'")
    items = value["achieved"]
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise AnswerError("bad_schema", f"{where}: 'achieved' must be a list of subgoal names")
    unknown = [x for x in items if x not in names]
    if unknown:
        raise AnswerError("unknown_subgoal", f"{where}: unknown subgoal(s) {unknown}; known: {list(names)}")
    return tuple(n for n in names if n in items)  # in subgoal order, duplicates dropped


def parse_judgment(text: str, names: Sequence[str], finish_reason: str = "stop") -> Judgment:
    """One judgment from ``{"achieved": [names]}``; failures come back as `Judgment(failure=reason)`."""
    if finish_reason not in ("stop", "eos", "end_turn", "stop_sequence"):
        return Judgment(failure="truncated", detail=f"finish_reason {finish_reason!r}")
    try:
        return Judgment(_achieved_list(parse_json_answer(text), names, "answer"))
    except AnswerError as exc:
        return Judgment(failure=exc.reason, detail=exc.detail)


def parse_batch_judgment(text: str, names: Sequence[str], n: int, finish_reason: str = "stop") -> list[Judgment]:
    """n judgments from ``{"transitions": [{"id": 1, "achieved": [...]}, ...]}`` (ids 1..n).

    A failure of the whole answer fails all n; a bad or missing entry fails only its item.
    """
    if finish_reason not in ("stop", "eos", "end_turn", "stop_sequence"):
        return [Judgment(failure="truncated", detail=f"finish_reason {finish_reason!r}")] * n
    try:
        value = parse_json_answer(text)
        if not isinstance(value, dict) or not isinstance(value.get("transitions"), list):
            raise AnswerError("bad_schema", "expected an object with a list 'transitions'")
    except AnswerError as exc:
        return [Judgment(failure=exc.reason, detail=exc.detail)] * n
    out: list[Judgment | None] = [None] * n
    for entry in value["transitions"]:
        ident = entry.get("id") if isinstance(entry, dict) else None
        if isinstance(ident, bool) or not isinstance(ident, int) or not 1 <= ident <= n or out[ident - 1] is not None:
            continue  # ids outside 1..n or repeated: ignored; the item they meant stays missing
        try:
            out[ident - 1] = Judgment(_achieved_list(entry, names, f"transition {ident}"))
        except AnswerError as exc:
            out[ident - 1] = Judgment(failure=exc.reason, detail=exc.detail)
    missing = [Judgment(failure="missing", detail=f"no entry for id {i + 1}") for i in range(n)]
    return [j if j is not None else missing[i] for i, j in enumerate(out)]


# -- prompts ------------------------------------------------------------------------------------------------

JUDGE_SYSTEM = (
    "You judge the progress of an agent in a game, to give it credit during reinforcement learning. "
    "Be precise: credit a subgoal only when the evidence shows it. Answer with JSON only, no prose."
)
DECOMPOSE_SYSTEM = (
    "You break a task of a reinforcement-learning agent into subgoals a judge can recognise from a text "
    "rendering of the game. Answer with JSON only, no prose."
)


def _subgoal_lines(subgoals: SubgoalSet) -> str:
    return "\n".join(f"- {s.name}: {s.description}" for s in subgoals.subgoals)


def transition_messages(subgoals: SubgoalSet, items: Sequence[str]) -> list[dict[str, str]]:
    """Messages asking which subgoals each rendered transition achieved (one or several per request)."""
    head = f"Task goal: {subgoals.goal}\n\nSubgoals:\n{_subgoal_lines(subgoals)}\n\n"
    rule = (
        "A subgoal counts as achieved by a transition only if this action completed it: it was not complete "
        "before the action and is complete after it."
    )
    if len(items) == 1:
        body = (
            f"{head}{items[0]}\n\n{rule}\nWhich subgoals did this action achieve? Answer with JSON only, exactly "
            'in this form: {"achieved": ["<subgoal name>", ...]} (an empty list if none).'
        )
    else:
        parts = "\n\n".join(f"=== Transition {i} ===\n{text}" for i, text in enumerate(items, 1))
        body = (
            f"{head}{parts}\n\n{rule}\nFor every transition, which subgoals did its action achieve? Answer with "
            'JSON only, exactly in this form: {"transitions": [{"id": 1, "achieved": ["<subgoal name>", ...]}, ...]} '
            f"with one entry for each id from 1 to {len(items)}."
        )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": body}]


def state_messages(subgoals: SubgoalSet, items: Sequence[str]) -> list[dict[str, str]]:
    """Messages asking which subgoals each rendered state shows as achieved."""
    head = f"Task goal: {subgoals.goal}\n\nSubgoals:\n{_subgoal_lines(subgoals)}\n\n"
    rule = "A subgoal counts as achieved in a state when its effect holds there (e.g. an item is in the inventory)."
    if len(items) == 1:
        body = (
            f"{head}Current state:\n{items[0]}\n\n{rule}\nWhich subgoals are achieved in this state? Answer with "
            'JSON only, exactly in this form: {"achieved": ["<subgoal name>", ...]} (an empty list if none).'
        )
    else:
        parts = "\n\n".join(f"=== State {i} ===\n{text}" for i, text in enumerate(items, 1))
        body = (
            f"{head}{parts}\n\n{rule}\nFor every state, which subgoals are achieved? Answer with JSON only, exactly "
            'in this form: {"transitions": [{"id": 1, "achieved": ["<subgoal name>", ...]}, ...]} '
            f"with one entry for each id from 1 to {len(items)}."
        )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": body}]


def decomposition_messages(task: TaskSpec, environment: str = "") -> list[dict[str, str]]:
    """Messages asking an LLM to decompose the task's goal into 2-6 ordered subgoals (CALM's first step)."""
    env = f"Environment:\n{environment}\n\n" if environment else ""
    body = (
        f"Task: {task.name}\nGoal: {task.goal}\n\n{env}"
        "Decompose the goal into 2 to 6 subgoals the agent must achieve in order. Each subgoal must be "
        "recognisable from one transition (the screen before and after one action, the action's name, the "
        "message line and the inventory). The last subgoal completes the goal.\n"
        'Answer with JSON only, exactly in this form: {"subgoals": [{"name": "<snake_case_name>", '
        '"description": "<what achieving it looks like>"}, ...]}'
    )
    return [{"role": "system", "content": DECOMPOSE_SYSTEM}, {"role": "user", "content": body}]


def environment_description(task: TaskSpec) -> str:
    """A short description of the observation and actions for the decomposition prompt."""
    if task.suite == "minihack":
        from embodied.llm.text_view import ACTION_GLOSS, LEGEND, task_action_names

        names = task_action_names(task)
        actions = ", ".join(f"{n} ({ACTION_GLOSS[n]})" if n in ACTION_GLOSS else n for n in names)
        legend = "; ".join(f"{c if c != ' ' else 'blank'} {m}" for c, m in LEGEND.items() if c in "@.|-+(<> ")
        return (
            "A NetHack level (MiniHack) shown as a grid of characters around the agent, with the game's message "
            f"line, the inventory and the status line.\nSymbols: {legend}.\nActions: {actions}."
        )
    views = "; ".join(f"{n}: {v.meaning} ({v.unit})" for n, v in task.views.items())
    return f"Observations are described through these named views: {views}." if views else ""


def parse_decomposition(text: str, task: TaskSpec, finish_reason: str = "stop") -> tuple[Subgoal, ...]:
    """Subgoals from a decomposition answer (strict JSON); raises `AnswerError` with the reason."""
    if finish_reason not in ("stop", "eos", "end_turn", "stop_sequence"):
        raise AnswerError("truncated", f"finish_reason {finish_reason!r}")
    value = parse_json_answer(text)
    if not isinstance(value, dict) or not isinstance(value.get("subgoals"), list):
        raise AnswerError("bad_schema", "expected an object with a list 'subgoals'")
    out = []
    for i, item in enumerate(value["subgoals"]):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("name"), str)
            or not isinstance(item.get("description"), str)
        ):
            raise AnswerError("bad_schema", f"subgoals[{i}] needs string fields 'name' and 'description'")
        out.append(Subgoal(item["name"].strip(), item["description"].strip()))
    if not 1 <= len(out) <= 8:
        raise AnswerError("bad_schema", f"expected 1 to 8 subgoals, got {len(out)}")
    try:
        validate_subgoals(out, "answer")
    except SubgoalError as exc:
        raise AnswerError("bad_schema", str(exc)) from None
    return tuple(out)


def decompose(
    task: TaskSpec,
    client: Any,
    *,
    seed: int = 0,
    temperature: float = 0.0,
    max_tokens: int = 1024,
    attempts: int = 3,
) -> SubgoalSet:
    """Ask the LLM to decompose the task's goal; a rejected answer is fed back and asked again (next seed).

    Raises:
        SubgoalError: no acceptable answer in `attempts` tries (message lists the last reason).
    """
    messages = decomposition_messages(task, environment_description(task))
    last = ""
    for attempt in range(max(1, attempts)):
        completion = _complete(client, messages, seed + attempt, temperature, max_tokens)
        try:
            subgoals = parse_decomposition(completion.text, task, completion.finish_reason)
        except AnswerError as exc:
            last = str(exc)
            log.warning("decomposition answer rejected (attempt %d): %s", attempt + 1, last)
            messages = [
                *messages,
                {"role": "assistant", "content": completion.text},
                {"role": "user", "content": f"That answer was rejected ({last}). Answer again with JSON only."},
            ]
            continue
        prompt_sha = hashlib.sha256(json.dumps(messages).encode()).hexdigest()[:16]
        meta = {"model": completion.model, "prompt_sha": prompt_sha, "seed": seed + attempt, "answer": completion.text}
        return SubgoalSet(task.name, task.goal, subgoals, "llm", meta)
    raise SubgoalError(f"task {task.name!r}: no usable subgoal decomposition after {attempts} attempt(s): {last}")


def default_subgoal_path(task: TaskSpec) -> Path:
    """Where a task's decomposition is cached: ``reward_models/<task>/subgoals.json`` (relative to the cwd)."""
    return Path("reward_models") / task.name / "subgoals.json"


def default_cache_path(task: TaskSpec) -> Path:
    """Where a task's judgments are cached: ``reward_models/<task>/subgoal_judgments.jsonl``."""
    return Path("reward_models") / task.name / "subgoal_judgments.jsonl"


def load_or_decompose(task: TaskSpec, path: str | Path | None, client: Any | None, **kwargs: Any) -> SubgoalSet:
    """The cached decomposition at `path` (default per task), or a new one from `client`, saved there."""
    path = Path(path) if path is not None else default_subgoal_path(task)
    if path.is_file():
        subgoals = SubgoalSet.load(path)
        if subgoals.task != task.name:
            log.warning("subgoal file %s was written for task %r, used for %r", path, subgoals.task, task.name)
        return subgoals
    if client is None:
        raise SubgoalError(
            f"no subgoal file {path}; create one with `embodied calm decompose {task.name}` (an LLM or --replay)"
        )
    subgoals = decompose(task, client, **kwargs)
    subgoals.save(path)
    log.info("saved the subgoal decomposition of %s to %s", task.name, path)
    return subgoals


def _complete(client: Any, messages: list[dict[str, str]], seed: int, temperature: float, max_tokens: int) -> Any:
    from embodied.llm.client import LLMError

    try:
        return client.complete(messages, seed=seed, temperature=temperature, max_tokens=max_tokens)
    except LLMError as exc:
        raise SubgoalError(f"LLM request failed: {exc}") from None


# -- judgment cache -------------------------------------------------------------------------------------------


def judgment_key(question: str, model: str, subgoals: SubgoalSet, text: str) -> str:
    """sha256 of (prompt version, question, model, subgoal set, rendered item): the judgment cache key.

    The rendered item is the text of the observation (state question) or of (s, action name, s')
    (transition question), so it stands for the (observation hash, action) part.
    """
    blob = json.dumps([PROMPT_VERSION, question, model, subgoals.fingerprint(), text], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgmentCache:
    """Judgments by key, in memory and appended to a JSONL file (one ``{"key", "achieved", "failure"}`` per line).

    Failed answers are cached too (the same request gets the same answer); delete the file to ask again.
    Appends are line-sized writes under a lock, so several processes can share a file.

    Args:
        path: the JSONL file; None keeps judgments in memory only.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._data: dict[str, Judgment] = {}
        self._lock = threading.Lock()
        if self.path is not None and self.path.is_file():
            for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    self._data[str(rec["key"])] = Judgment.from_dict(rec)
                except (ValueError, KeyError, TypeError):
                    log.warning("%s:%d: skipping a malformed cache line", self.path, number)

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> Judgment | None:
        return self._data.get(key)

    def put(self, key: str, judgment: Judgment) -> None:
        with self._lock:
            self._data[key] = judgment
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"key": key, **judgment.to_dict()}, ensure_ascii=False) + "\n")


# -- judges ---------------------------------------------------------------------------------------------------


class Judge(Protocol):
    """Labels transitions and states with the subgoals they achieve (bool [N, K], K = len(subgoals))."""

    name: str
    subgoals: SubgoalSet
    stats: dict[str, Any]

    def transitions(
        self, obs: Obs, action: np.ndarray, next_obs: Obs, infos: Sequence[Mapping[str, Any]] | None = None
    ) -> np.ndarray: ...

    def states(self, obs: Obs) -> np.ndarray: ...


def _row(obs: Obs, i: int) -> Any:
    return obs_take(obs, i) if isinstance(obs, dict) else np.asarray(obs)[i]


class LLMJudge:
    """CALM's judge: an LLM reads text renderings and answers which subgoals were achieved, as JSON.

    Args:
        client: an `embodied.llm.client.LLMClient` (endpoint, replay or recording client).
        subgoals: the subgoal set the judge answers about.
        view: the text view rendering observations (`embodied.llm.text_view`).
        cache: judgment cache (default: in memory only).
        seed, temperature, max_tokens: request parameters (temperature 0 for reproducible labels).
        per_request: items packed into one request (1 = one transition per request).
        workers: concurrent requests.

    `stats`: judged (items asked about), requests (LLM calls), cache_hits, failures and
    failure_reasons (counts per reason in FAILURE_REASONS).
    """

    name = "llm"

    def __init__(
        self,
        client: Any,
        subgoals: SubgoalSet,
        view: Any,
        cache: JudgmentCache | None = None,
        *,
        seed: int = 0,
        temperature: float = 0.0,
        max_tokens: int = 256,
        per_request: int = 1,
        workers: int = 4,
    ) -> None:
        if per_request < 1 or workers < 1:
            raise SubgoalError(f"per_request and workers must be >= 1, got {per_request} and {workers}")
        self.client, self.subgoals, self.view = client, subgoals, view
        self.cache = cache if cache is not None else JudgmentCache(None)
        self.seed, self.temperature, self.max_tokens = seed, temperature, max_tokens
        self.per_request, self.workers = per_request, workers
        self.model = str(getattr(client, "model", "") or "unknown")
        self.stats: dict[str, Any] = {
            "judged": 0, "requests": 0, "cache_hits": 0, "failures": 0,
            "failure_reasons": dict.fromkeys(FAILURE_REASONS, 0),
        }  # fmt: skip
        self._lock = threading.Lock()
        self._warned = 0

    def transitions(
        self, obs: Obs, action: np.ndarray, next_obs: Obs, infos: Sequence[Mapping[str, Any]] | None = None
    ) -> np.ndarray:
        """bool [N, K]: which subgoals each transition's action achieved (failures: none)."""
        n = batch_size(obs)
        actions = np.asarray(action)
        texts = [self.view.render_transition(_row(obs, i), actions[i], _row(next_obs, i)) for i in range(n)]
        return self._flags(self._judge("transition", texts))

    def states(self, obs: Obs) -> np.ndarray:
        """bool [N, K]: which subgoals each state shows as achieved. The blank MiniHack end screen is
        not sent (Φ is zeroed at termination anyway): it gets all-False without a request."""
        from embodied.llm.text_view import is_blank

        n = batch_size(obs)
        rows = [_row(obs, i) for i in range(n)]
        ask = [i for i, r in enumerate(rows) if not (isinstance(r, Mapping) and is_blank(r))]
        out = np.zeros((n, len(self.subgoals.subgoals)), dtype=bool)
        if ask:
            out[ask] = self._flags(self._judge("state", [self.view.render(rows[i]) for i in ask]))
        return out

    def _flags(self, judgments: Sequence[Judgment]) -> np.ndarray:
        names = self.subgoals.names
        return np.array([[n in j.achieved for n in names] for j in judgments], dtype=bool).reshape(-1, len(names))

    def _judge(self, question: str, texts: Sequence[str]) -> list[Judgment]:
        keys = [judgment_key(question, self.model, self.subgoals, t) for t in texts]
        result: dict[str, Judgment] = {}
        todo: dict[str, str] = {}
        for key, text in zip(keys, texts, strict=True):
            cached = self.cache.get(key)
            if cached is not None:
                result[key] = cached
            elif key not in todo:
                todo[key] = text
        hits = len(texts) - len(todo)
        chunks = [list(todo.items())[i : i + self.per_request] for i in range(0, len(todo), self.per_request)]
        if chunks:
            if self.workers > 1 and len(chunks) > 1:
                with ThreadPoolExecutor(max_workers=min(self.workers, len(chunks))) as pool:
                    answers = list(pool.map(lambda c: self._ask(question, c), chunks))
            else:
                answers = [self._ask(question, c) for c in chunks]
            for chunk, judgments in zip(chunks, answers, strict=True):
                for (key, _), judgment in zip(chunk, judgments, strict=True):
                    self.cache.put(key, judgment)
                    result[key] = judgment
        with self._lock:
            self.stats["judged"] += len(texts)
            self.stats["cache_hits"] += hits
        return [result[k] for k in keys]

    def _ask(self, question: str, chunk: Sequence[tuple[str, str]]) -> list[Judgment]:
        items = [text for _, text in chunk]
        build = transition_messages if question == "transition" else state_messages
        messages = build(self.subgoals, items)
        tokens = self.max_tokens * len(items)
        completion = _complete(self.client, messages, self.seed, self.temperature, tokens)
        names = self.subgoals.names
        if len(items) == 1:
            judgments = [parse_judgment(completion.text, names, completion.finish_reason)]
        else:
            judgments = parse_batch_judgment(completion.text, names, len(items), completion.finish_reason)
        with self._lock:
            self.stats["requests"] += 1
            for j in judgments:
                if j.failure:
                    self.stats["failures"] += 1
                    self.stats["failure_reasons"][j.failure] = self.stats["failure_reasons"].get(j.failure, 0) + 1
                    self._warned += 1
                    level = logging.WARNING if self._warned <= 20 else logging.DEBUG
                    log.log(level, "LLM judge answer rejected (%s), counted as no subgoal: %s", j.failure, j.detail)
        return judgments


# -- the reward model -----------------------------------------------------------------------------------------

MODES = ("potential", "bonus_not_invariant")


class SubgoalReward(RewardModel):
    """Subgoal credit as a potential (default) or as CALM's bonus (not invariant).

    Args:
        judge: an `LLMJudge`, `OracleJudge` or any `Judge`.
        mode: "potential" (state-only, for ``--shaping``) or "bonus_not_invariant" (a reward).
    """

    def __init__(self, judge: Any, mode: str = "potential") -> None:
        if mode not in MODES:
            raise SubgoalError(f"subgoals option mode must be one of {', '.join(MODES)}, got {mode!r}")
        if mode == "bonus_not_invariant":
            warnings.warn(
                "subgoals mode 'bonus_not_invariant' is NOT policy-invariant: it pays a bonus per judged "
                "transition, which a policy can farm wherever the judge mislabels a repeatable transition",
                stacklevel=2,
            )
        self.judge, self.mode = judge, mode
        self.subgoals: SubgoalSet = judge.subgoals
        self.weights = self.subgoals.weights
        self.state_only = mode == "potential"
        self.name = f"subgoals[{judge.name}]" + ("" if mode == "potential" else "[bonus]")

    def achieved(self, obs: Obs) -> np.ndarray:
        """bool [N, K]: from the `subgoals_achieved` observation key when present, else the state judge."""
        if isinstance(obs, dict) and FLAGS_KEY in obs:
            flags = np.asarray(obs[FLAGS_KEY])
            if flags.ndim != 2 or flags.shape[1] != len(self.weights):
                raise SubgoalError(
                    f"observation key {FLAGS_KEY!r} has shape {flags.shape}, expected [N, {len(self.weights)}]"
                )
            return flags.astype(bool)
        return self.judge.states(obs)

    def potential(self, obs: Obs, frames: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Φ(s) = Σ_k w_k·achieved_k(s), float [N]."""
        if self.mode != "potential":
            raise SubgoalError("the subgoal bonus depends on the action; use mode=potential for shaping")
        return self.achieved(obs).astype(np.float64) @ self.weights

    def compute_reward(self, batch: TransitionBatch) -> RewardOutput:
        if self.mode == "potential":
            raise SubgoalError(
                "subgoals in mode=potential is a shaping potential: use `--reward env --shaping subgoals:...` "
                "(or mode=bonus_not_invariant for CALM's non-invariant bonus)"
            )
        judged = self.judge.transitions(batch.obs, batch.action, batch.next_obs, batch.infos or None)
        before = self.achieved(batch.obs)
        bonus = (judged & ~before).astype(np.float64) * self.weights
        env = np.asarray(batch.env_reward, dtype=np.float64)
        comps = {"env": env, **{f"subgoal_{n}": bonus[:, k] for k, n in enumerate(self.subgoals.names)}}
        return RewardOutput(env + bonus.sum(axis=1), comps)


# -- achievement flags in the observation ----------------------------------------------------------------------


class SubgoalFlags(gym.Wrapper):
    """Adds observation key ``subgoals_achieved`` (int8 [K]): subgoals the transition judge credited so far.

    This makes CALM's history-dependent credit ("achieved so far in the episode") part of the state,
    so Φ = Σ w_k·flag_k is a potential of the augmented state and shaping stays policy-invariant.
    The env reward and dynamics ignore the flags, so the augmented task has the same optimal
    behaviour. Needs a Dict observation space. Observations are copied (NLE reuses its buffers).
    """

    def __init__(self, env: gym.Env, judge: Any) -> None:
        super().__init__(env)
        if not isinstance(env.observation_space, gym.spaces.Dict):
            raise SubgoalError("SubgoalFlags needs a Dict observation space")
        self.judge = judge
        k = len(judge.subgoals.subgoals)
        self.observation_space = gym.spaces.Dict(
            {**env.observation_space.spaces, FLAGS_KEY: gym.spaces.Box(0, 1, (k,), np.int8)}
        )
        self._flags = np.zeros(k, dtype=np.int8)
        self._obs: dict[str, np.ndarray] | None = None

    def _with_flags(self, obs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        self._obs = {k: np.array(v, copy=True) for k, v in obs.items()}
        return {**self._obs, FLAGS_KEY: self._flags.copy()}

    def reset(self, **kwargs: Any) -> tuple[dict[str, np.ndarray], dict]:
        obs, info = self.env.reset(**kwargs)
        self._flags[:] = 0
        return self._with_flags(obs), info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        assert self._obs is not None, "call reset() first"
        prev = {k: v[None] for k, v in self._obs.items()}
        nxt = {k: np.asarray(v)[None] for k, v in obs.items()}
        credited = self.judge.transitions(prev, np.asarray(action)[None], nxt, [info])[0]
        self._flags |= credited.astype(np.int8)
        return self._with_flags(obs), reward, terminated, truncated, info


# -- the `subgoals:` spec ----------------------------------------------------------------------------------------

OPTIONS: dict[str, str] = {
    "judge": "oracle | llm (default: oracle where the task has one, else llm)",
    "mode": "potential (default) | bonus_not_invariant",
    "file": "subgoal file (default: the oracle's set for judge=oracle; reward_models/<task>/subgoals.json for llm)",
    "cache": "judgment cache JSONL (default reward_models/<task>/subgoal_judgments.jsonl; 'none' = memory only)",
    "replay": "answer from this LLM recording (JSONL) instead of an endpoint",
    "record": "1 = ask the endpoint for requests missing from the replay file and append them",
    "base_url": "OpenAI-compatible endpoint (default $EMBODIED_LLM_BASE_URL)",
    "model": "model name (default $EMBODIED_LLM_MODEL)",
    "key_env": "name of the variable holding the API key (default $EMBODIED_LLM_KEY_ENV or OPENAI_API_KEY)",
    "seed": "request seed (default 0)",
    "temperature": "sampling temperature (default 0)",
    "max_tokens": "token limit per judged item (default 256)",
    "per_request": "items per request (default 1)",
    "workers": "concurrent requests (default 4)",
    "map": "text view map: crop (default) | full",
    "radius": "text view crop radius in cells (default 4 = 9x9)",
    "budget": "text view characters per observation (default 1500)",
}


def parse_options(arg: str) -> dict[str, str]:
    """``key=value,key=value`` -> dict; keys must be in `OPTIONS`. Values cannot contain commas.

    Examples: ``judge=oracle``; ``judge=llm,replay=rec.jsonl``; ``judge=oracle,mode=bonus_not_invariant``;
    ``judge=llm,base_url=http://localhost:8000/v1,model=qwen2.5-7b,key_env=,per_request=4``.
    """
    out: dict[str, str] = {}
    for part in (p.strip() for p in arg.split(",")):
        if not part:
            continue
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq:
            raise SubgoalError(f"subgoals spec: expected key=value, got {part!r} (e.g. subgoals:judge=oracle)")
        if key not in OPTIONS:
            raise SubgoalError(f"subgoals spec: unknown option {key!r}; known: {', '.join(OPTIONS)}")
        if key in out:
            raise SubgoalError(f"subgoals spec: option {key!r} given twice")
        out[key] = value.strip()
    return out


def _int_option(options: Mapping[str, str], key: str, default: int) -> int:
    try:
        return int(options.get(key, default))
    except ValueError:
        raise SubgoalError(f"subgoals spec: option {key} must be an integer, got {options[key]!r}") from None


def _float_option(options: Mapping[str, str], key: str, default: float) -> float:
    try:
        return float(options.get(key, default))
    except ValueError:
        raise SubgoalError(f"subgoals spec: option {key} must be a number, got {options[key]!r}") from None


def make_client_from_options(options: Mapping[str, str]) -> Any:
    """The LLM client the spec's options describe (replay / record / endpoint)."""
    from embodied.llm.client import LLMError, make_client

    record = options.get("record", "0") in ("1", "true", "yes")
    replay = options.get("replay") or None
    if record and replay is None:
        raise SubgoalError("subgoals spec: record=1 needs replay=FILE (the recording to append to)")
    try:
        return make_client(
            options.get("base_url") or None,
            options.get("model") or None,
            options["key_env"] if "key_env" in options else None,
            replay=replay,
            record=record,
        )
    except LLMError as exc:
        raise SubgoalError(f"subgoals spec: {exc}") from None


def build_judge(task: TaskSpec, options: Mapping[str, str], client: Any | None = None) -> Any:
    """The judge the options describe (see `OPTIONS`); `client` overrides the LLM client options."""
    from embodied.rewards.subgoal_oracle import OracleJudge, oracle_subgoals_for

    judge_kind = options.get("judge") or ("oracle" if oracle_subgoals_for(task) is not None else "llm")
    if judge_kind == "oracle":
        subgoals = SubgoalSet.load(options["file"]) if options.get("file") else None
        return OracleJudge(task, subgoals)
    if judge_kind != "llm":
        raise SubgoalError(f"subgoals spec: judge must be 'oracle' or 'llm', got {judge_kind!r}")
    from embodied.llm.text_view import TextViewError, config_from_options, text_view_for

    if client is None:
        client = make_client_from_options(options)
    subgoals = load_or_decompose(task, options.get("file") or None, client, seed=_int_option(options, "seed", 0))
    try:
        view_cfg = config_from_options({k: options[k] for k in ("map", "radius", "budget") if k in options})
    except TextViewError as exc:
        raise SubgoalError(f"subgoals spec: {exc}") from None
    cache_opt = options.get("cache")
    cache_path = None if cache_opt == "none" else Path(cache_opt) if cache_opt else default_cache_path(task)
    return LLMJudge(
        client,
        subgoals,
        text_view_for(task, view_cfg),
        JudgmentCache(cache_path),
        seed=_int_option(options, "seed", 0),
        temperature=_float_option(options, "temperature", 0.0),
        max_tokens=_int_option(options, "max_tokens", 256),
        per_request=_int_option(options, "per_request", 1),
        workers=_int_option(options, "workers", 4),
    )


def from_spec(arg: str, task: TaskSpec) -> SubgoalReward:
    """Factory for ``subgoals:[key=value,...]`` (see `parse_options` and `OPTIONS`).

    ``--shaping subgoals:judge=oracle`` shapes with Φ = weighted count of achieved subgoals;
    ``--reward subgoals:judge=llm,mode=bonus_not_invariant,replay=rec.jsonl`` is CALM's bonus.
    """
    options = parse_options(arg)
    return SubgoalReward(build_judge(task, options), options.get("mode", "potential"))


def localize_spec(arg: str, task: TaskSpec, run_dir: Path) -> str:
    """Copy the spec's subgoal file into ``run_dir/subgoals/`` and point the spec there (saved with the run).

    Returns the new spec argument (``file=`` relative to the run folder). For judge=oracle without a
    file, the oracle's set is written so the run records exactly which subgoals and weights it used.
    """
    from embodied.rewards.subgoal_oracle import oracle_subgoals, oracle_subgoals_for

    options = parse_options(arg)
    judge_kind = options.get("judge") or ("oracle" if oracle_subgoals_for(task) is not None else "llm")
    if options.get("file"):
        subgoals = SubgoalSet.load(options["file"])
    elif judge_kind == "oracle":
        subgoals = oracle_subgoals(task)
    else:
        path = default_subgoal_path(task)
        if not path.is_file():
            return arg  # decomposed on first use; nothing to copy yet
        subgoals = SubgoalSet.load(path)
    dst = subgoals.save(Path(run_dir) / "subgoals" / "subgoals.json")
    options = {**options, "file": str(dst.relative_to(run_dir))}
    return ",".join(f"{k}={v}" for k, v in options.items())


def absolute_spec(arg: str, run_dir: Path) -> str:
    """Resolve a ``file=`` stored relative to a run folder (see `localize_spec`)."""
    options = parse_options(arg)
    file = options.get("file")
    if file and not Path(file).is_absolute() and (Path(run_dir) / file).is_file():
        options["file"] = str(Path(run_dir) / file)
    return ",".join(f"{k}={v}" for k, v in options.items())
