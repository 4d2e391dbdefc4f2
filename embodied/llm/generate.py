"""Text2Reward-style generation and refinement of reward programs, versioned in `reward_models/<task>/`.

Each call writes ``gen-NNN.py`` (the validated program) and ``gen-NNN.json`` (metadata: task, model,
prompt hash, the raw response, the validation log, every attempt, and for refinements the parent
program, the person's feedback, the video path and the full refinement history).

A response that fails validation is answered automatically with its error (up to `attempts`
tries), so the person only sees programs that passed the static checks and the dry run.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embodied.llm.client import LLMClient, Message
from embodied.llm.prompts import generation_messages, prompt_hash, refinement_messages


@dataclass
class Generated:
    """A validated program on disk and its metadata."""

    path: Path
    meta: dict[str, Any]


def _next_version(folder: Path) -> int:
    nums = [int(m.group(1)) for p in folder.glob("gen-*.py") if (m := re.fullmatch(r"gen-(\d+)\.py", p.name))]
    return max(nums, default=0) + 1


def _ask_until_valid(
    client: LLMClient,
    messages: list[Message],
    samples: list[Any],
    *,
    seed: int,
    temperature: float,
    max_tokens: int,
    attempts: int,
    timeout_s: float,
) -> tuple[Any, Any, list[dict[str, Any]]]:
    """(program, completion, attempt log). Failed attempts are fed back as a follow-up turn."""
    from embodied.rewards.code import RewardCodeError, extract_code, load_program

    log: list[dict[str, Any]] = []
    convo = list(messages)
    last_error = "no attempt made"
    for attempt in range(attempts):
        completion = client.complete(convo, seed=seed + attempt, temperature=temperature, max_tokens=max_tokens)
        entry: dict[str, Any] = {"seed": seed + attempt, "finish_reason": completion.finish_reason}
        try:
            if completion.truncated:
                raise RewardCodeError(
                    "truncated",
                    f"the response was cut off (finish_reason={completion.finish_reason!r}); write shorter code",
                )
            program = load_program(extract_code(completion.text), samples, timeout_s, name=f"attempt-{attempt}")
        except RewardCodeError as exc:
            entry["error"] = exc.to_dict()
            log.append(entry)
            last_error = str(exc)
            convo = [
                *convo,
                {"role": "assistant", "content": completion.text},
                {
                    "role": "user",
                    "content": f"That code was rejected: {exc.feedback()}\nFix it and answer with the code block only.",
                },
            ]
            continue
        entry["ok"] = True
        log.append(entry)
        return program, completion, log
    raise ValueError(f"no valid reward program after {attempts} attempt(s); last error: {last_error}")


def _write(folder: Path, source: str, meta: dict[str, Any]) -> Generated:
    folder.mkdir(parents=True, exist_ok=True)
    version = _next_version(folder)
    path = folder / f"gen-{version:03d}.py"
    meta = {"version": version, **meta}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(source)
    tmp.replace(path)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1, default=str))
    return Generated(path, meta)


def generate(
    task: str | Path,
    client: LLMClient,
    *,
    few_shot: bool = False,
    root: Path = Path("reward_models"),
    seed: int = 0,
    temperature: float = 0.7,
    max_tokens: int = 2048,
    attempts: int = 3,
    timeout_s: float = 10.0,
    samples: list[Any] | None = None,
    interface: Any = None,
) -> Generated:
    """Ask for a first reward program for `task`, validate it, save it as the next `gen-NNN.py`.

    Raises:
        ValueError: no valid program within `attempts` (the message carries the last rejection).
        LLMError: the endpoint failed.
    """
    from embodied.rewards.code import task_samples
    from embodied.tasks.spec import load_task

    spec = load_task(task)
    messages = generation_messages(spec, few_shot=few_shot, examples_root=root, interface=interface)
    samples = samples if samples is not None else task_samples(spec, n=32, seed=seed)
    program, completion, log = _ask_until_valid(
        client, messages, samples, seed=seed, temperature=temperature, max_tokens=max_tokens, attempts=attempts,
        timeout_s=timeout_s,
    )  # fmt: skip
    meta = {
        "kind": "generate",
        "task": spec.name,
        "task_source": spec.source,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": completion.model or client.model,
        "prompt_hash": prompt_hash(messages),
        "few_shot": few_shot,
        "temperature": temperature,
        "messages": messages,
        "response": completion.text,
        "validation": program.report.to_dict(),
        "attempts": log,
        "parent": None,
        "history": [],
    }
    return _write(root / spec.name, program.source, meta)


def run_stats(run_dir: Path) -> dict[str, Any]:
    """What the robot did in a training run, for a refinement prompt: final metrics and per-component
    means over training (from the run's `metrics.json`)."""
    from embodied.llm.search import stats_from_history

    metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    comps, success = stats_from_history(metrics.get("history", []))
    return {
        "run": metrics.get("run"),
        "timesteps": metrics.get("timesteps"),
        "final": metrics.get("final", {}),
        "success_during_training": success[-10:],
        "components": {c.name: {"min": c.min, "mean": c.mean, "max": c.max} for c in comps},
    }


def refine(
    program: Path,
    feedback: str,
    client: LLMClient,
    *,
    video: str | None = None,
    rollout_stats: dict[str, Any] | str | None = None,
    task: str | Path | None = None,
    seed: int = 0,
    temperature: float = 0.7,
    max_tokens: int = 2048,
    attempts: int = 3,
    timeout_s: float = 10.0,
    samples: list[Any] | None = None,
    interface: Any = None,
) -> Generated:
    """The next version of `program` from the person's feedback (Text2Reward refinement).

    The task comes from the program's metadata (``<program>.json``), else `task`, else the folder name.
    The new version goes next to `program`; its metadata keeps the whole refinement history.
    """
    from embodied.rewards.code import task_samples
    from embodied.tasks.spec import load_task

    program = Path(program)
    if not program.is_file():
        raise FileNotFoundError(f"reward program {program} does not exist")
    if not feedback.strip():
        raise ValueError("--feedback is empty: say what the robot did wrong")
    meta_path = program.with_suffix(".json")
    parent_meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    # The spec's own file first: a task given by path is not found by name later.
    source = parent_meta.get("task_source")
    spec = load_task(task or (source if source and Path(source).is_file() else None) or parent_meta.get("task")
                     or program.parent.name)  # fmt: skip
    previous = program.read_text()
    messages = refinement_messages(
        spec, previous, feedback=feedback, rollout_stats=rollout_stats, video=video, interface=interface
    )
    samples = samples if samples is not None else task_samples(spec, n=32, seed=seed)
    new, completion, log = _ask_until_valid(
        client, messages, samples, seed=seed, temperature=temperature, max_tokens=max_tokens, attempts=attempts,
        timeout_s=timeout_s,
    )  # fmt: skip
    step = {"parent": str(program), "feedback": feedback, "video": video, "rollout_stats": rollout_stats}
    meta = {
        "kind": "refine",
        "task": spec.name,
        "task_source": spec.source,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": completion.model or client.model,
        "prompt_hash": prompt_hash(messages),
        "temperature": temperature,
        "messages": messages,
        "response": completion.text,
        "validation": new.report.to_dict(),
        "attempts": log,
        "parent": str(program),
        "feedback": feedback,
        "video": video,
        "history": [*parent_meta.get("history", []), step],
    }
    return _write(program.parent, new.source, meta)
