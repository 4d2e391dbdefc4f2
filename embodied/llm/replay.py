"""Replay and record LLM completions, keyed by a hash of the request.

File format: JSON Lines, one record per completion::

    {"key": "<sha256>", "request": {"messages": [...], "seed": 3, "temperature": 0.7, "max_tokens": 2048},
     "completion": {"text": "...", "finish_reason": "stop", "model": "...", ...}}

The key covers messages, seed, temperature and max_tokens (not the model name or endpoint), so a
search recorded against one server replays offline bit for bit. A file that is a JSON list of the
same records is read too (hand-written fixtures).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from embodied.llm.client import Completion, LLMClient, LLMError, Message


def request_key(messages: Sequence[Message], *, seed: int, temperature: float, max_tokens: int) -> str:
    """sha256 of the canonical JSON of the request (what the replay file is keyed by)."""
    payload = {
        "messages": [{"role": str(m["role"]), "content": str(m["content"])} for m in messages],
        "seed": int(seed),
        "temperature": round(float(temperature), 6),
        "max_tokens": int(max_tokens),
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def load_records(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """key -> record from a JSONL (or JSON list) replay file; later records win."""
    path = Path(path)
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    records: list[Any]
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except ValueError as exc:
            raise LLMError(f"{path}: not a valid JSON replay file: {exc}") from None
    else:
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError:
                raise LLMError(f"{path}:{number}: not a JSON line") from None
    out: dict[str, dict[str, Any]] = {}
    for rec in records:
        if not isinstance(rec, dict) or "completion" not in rec:
            raise LLMError(f"{path}: every record needs 'completion' and 'key' (or 'request')")
        key = rec.get("key")
        if not key:
            req = rec["request"]
            key = request_key(
                req["messages"],
                seed=req["seed"],
                temperature=req.get("temperature", 0.7),
                max_tokens=req.get("max_tokens", 2048),
            )
        out[str(key)] = rec
    return out


class ReplayClient:
    """Answers from a replay file only; a request that was never recorded is an error (offline mode)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise LLMError(f"replay file {self.path} does not exist (record one with --record and an endpoint)")
        self._records = load_records(self.path)
        models = {str(r["completion"].get("model", "")) for r in self._records.values()} - {""}
        self.model = models.pop() if len(models) == 1 else "replay"
        self.hits = 0

    def __len__(self) -> int:
        return len(self._records)

    def complete(
        self, messages: Sequence[Message], *, seed: int, temperature: float = 0.7, max_tokens: int = 2048
    ) -> Completion:
        key = request_key(messages, seed=seed, temperature=temperature, max_tokens=max_tokens)
        rec = self._records.get(key)
        if rec is None:
            raise LLMError(
                f"no recorded response in {self.path} for this request (key {key[:12]}, seed {seed}; "
                f"{len(self._records)} recorded); re-run with --record and an endpoint"
            )
        self.hits += 1
        return Completion.from_dict(rec["completion"])


class RecordingClient:
    """Replays what the file has and asks `inner` for the rest, appending each new answer at once
    (so an interrupted run keeps every completion it paid for)."""

    def __init__(self, inner: LLMClient, path: str | os.PathLike[str]) -> None:
        self.inner = inner
        self.path = Path(path)
        self.model = inner.model
        self._records = load_records(self.path)
        self._lock = threading.Lock()
        self.recorded = 0

    def complete(
        self, messages: Sequence[Message], *, seed: int, temperature: float = 0.7, max_tokens: int = 2048
    ) -> Completion:
        key = request_key(messages, seed=seed, temperature=temperature, max_tokens=max_tokens)
        rec = self._records.get(key)
        if rec is not None:
            return Completion.from_dict(rec["completion"])
        completion = self.inner.complete(messages, seed=seed, temperature=temperature, max_tokens=max_tokens)
        record = {
            "key": key,
            "request": {"messages": list(messages), "seed": seed, "temperature": temperature, "max_tokens": max_tokens},
            "completion": completion.to_dict(),
        }
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            self._records[key] = record
            self.recorded += 1
        return completion
