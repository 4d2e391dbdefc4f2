"""A rule-based stand-in for an LLM judge, and a loopback OpenAI-compatible server around it.

It reads the same prompt text a real LLM would (the text view of MiniHack transitions/states) and
answers the way a plausible but imperfect judge does:

* transitions — ``get_key`` when "key" newly appears in the inventory, but also when the message
  says "You see here a key" (stepping onto the key is not picking it up: a typical confusion);
  ``open_door`` when the action is APPLY, the agent holds a key and a '+' is anywhere on the shown
  map (not necessarily adjacent); ``reach_stairs`` when the game ended after a move (also on a
  time-out);
* states — ``get_key`` when the inventory lists a key; ``open_door`` when a key is held, no '+'
  is shown and the stairs '>' are visible;
* about 1 answer in 25 is prose (not JSON), 1 in 25 names an unknown subgoal, 1 in 25 is truncated
  (finish_reason "length"), chosen by a hash of the item text, so recordings are reproducible.

Decomposition requests get fixed answers per task (for "chain", seed 0 answers prose first, so the
feedback path is exercised). `make_recordings.py` records through this server with the real
OpenAI client; the tests replay the recordings offline. Nothing here is a language model.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "heuristic-judge-v1"

DECOMPOSITIONS = {
    "minihack-keyroom": {
        "subgoals": [
            {"name": "get_key", "description": "pick up the key '(' so that a key is listed in the inventory"},
            {"name": "open_door", "description": "apply the key next to the locked door '+' so that it opens"},
            {"name": "reach_stairs", "description": "walk onto the staircase down '>', which ends the level"},
        ]
    },
    "minihack-room": {
        "subgoals": [{"name": "reach_stairs", "description": "walk onto the staircase down '>', which ends the level"}]
    },
    "chain": {
        "subgoals": [
            {"name": "move_right", "description": "the position increases by one"},
            {"name": "reach_goal", "description": "the position reaches 4"},
        ]
    },
}
MOVES = {"N", "E", "S", "W", "NE", "SE", "SW", "NW"}


def _hash(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def _section(text: str, label: str) -> str:
    for line in text.splitlines():
        if line.startswith(label):
            return line[len(label) :].strip()
    return ""


def _map(text: str) -> str:
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith("Map ("):
            inside = True
            continue
        if inside and re.match(r"^(Legend|Message|Inventory|Stats):", line):
            break
        if inside:
            lines.append(line)
    return "\n".join(lines)


def judge_transition(item: str, names: list[str]) -> list[str]:
    before, _, rest = item.partition("\n\nAction: ")
    action_line, _, after = rest.partition("\n\nAfter the action:")
    action = action_line.split(" ", 1)[0].strip()
    got: list[str] = []
    key_before = "key" in _section(before, "Inventory:")
    key_after = "key" in _section(after, "Inventory:")
    if (key_after and not key_before) or "You see here a key" in _section(after, "Message:"):
        got.append("get_key")
    if action == "APPLY" and key_before and "+" in _map(before):
        got.append("open_door")
    if "The game has ended" in after and action in MOVES:
        got.append("reach_stairs")
    return [n for n in got if n in names]


def judge_state(item: str, names: list[str]) -> list[str]:
    got = []
    has_key = "key" in _section(item, "Inventory:")
    if has_key:
        got.append("get_key")
    shown = _map(item)
    if has_key and "+" not in shown and ">" in shown:
        got.append("open_door")
    return [n for n in got if n in names]


def _items(content: str, marker: str) -> list[str]:
    parts = re.split(rf"=== {marker} \d+ ===\n", content)
    if len(parts) > 1:
        last = parts[-1]
        parts[-1] = last[: last.rfind("\n\nA subgoal counts")]
        return parts[1:]
    return []


def answer(messages: list[dict[str, str]], seed: int) -> tuple[str, str]:
    """(text, finish_reason) for a chat request."""
    content = messages[-1]["content"]
    if "Decompose the goal" in messages[1]["content"]:
        task = _section(messages[1]["content"], "Task:")
        if task == "chain" and seed == 0 and len(messages) == 2:
            return "Sure! The agent should first move right and then reach the goal.", "stop"
        return json.dumps(DECOMPOSITIONS.get(task, {"subgoals": []})), "stop"
    names = re.findall(r"^- ([a-z][a-z0-9_]*): ", content, re.M)
    state = "Current state:" in content or "=== State 1 ===" in content
    marker = "State" if state else "Transition"
    batch = _items(content, marker)
    if batch:
        entries = []
        for i, item in enumerate(batch, 1):
            h = _hash(item) % 25
            if h == 0:
                continue  # a forgotten entry
            got = judge_state(item, names) if state else judge_transition(item, names)
            entries.append({"id": i, "achieved": ["pick_up_key"] if h == 1 else got})
        return json.dumps({"transitions": entries}), "stop"
    if state:
        item = content.split("Current state:\n", 1)[1].rsplit("\n\nA subgoal counts", 1)[0]
        got = judge_state(item, names)
    else:
        item = content.split("\n\nBefore the action:\n", 1)[1].rsplit("\n\nA subgoal counts", 1)[0]
        got = judge_transition(item, names)
    h = _hash(item) % 25
    if h == 0:
        return "The agent seems to have made progress toward the key.", "stop"
    if h == 1:
        return json.dumps({"achieved": ["pick_up_key"]}), "stop"
    if h == 2:
        return '{"achieved": ["get_', "length"
    return json.dumps({"achieved": got}), "stop"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text, finish = answer(body["messages"], int(body.get("seed", 0)))
        reply = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


class FakeServer:
    """The heuristic judge behind an OpenAI-compatible /v1/chat/completions on 127.0.0.1 (context manager)."""

    def __enter__(self) -> FakeServer:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
