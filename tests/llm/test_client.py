"""OpenAIClient against a loopback server speaking the chat-completions JSON (127.0.0.1 only)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from embodied.llm.client import (
    Completion,
    LLMConfig,
    LLMConfigError,
    LLMError,
    OpenAIClient,
    make_client,
    sample_k,
)

MESSAGES = [{"role": "system", "content": "You write reward code."}, {"role": "user", "content": "reach"}]


def completion_body(text: str | None = "```python\nx = 1\n```", finish: str = "stop", model: str = "m-1") -> dict:
    choices = (
        []
        if text is None
        else [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}]
    )
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": choices,
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


class FakeServer:
    """Answers from a script: each entry is (status, body: dict | str, delay_s); the last repeats."""

    def __init__(self) -> None:
        self.script: list[tuple[int, Any, float]] = [(200, completion_body(), 0.0)]
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                with lock:
                    index = len(server.requests)
                    server.requests.append(body)
                    server.auth.append(self.headers.get("Authorization", ""))
                status, reply, delay = server.script[min(index, len(server.script) - 1)]
                if callable(reply):
                    reply = reply(body)
                time.sleep(delay)
                data = reply.encode() if isinstance(reply, str) else json.dumps(reply).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    srv = FakeServer()
    yield srv
    srv.close()


def client_for(server: FakeServer, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> OpenAIClient:
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test")
    cfg = dict(
        base_url=server.url,
        model="m-1",
        api_key_env="TEST_LLM_KEY",
        timeout_s=5.0,
        max_attempts=3,
        backoff_s=0.01,
        max_backoff_s=0.02,
    )
    cfg.update(kw)
    return OpenAIClient(LLMConfig(**cfg))


def test_completion_roundtrip(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    client = client_for(server, monkeypatch)
    out = client.complete(MESSAGES, seed=7, temperature=0.5, max_tokens=321)
    assert out.text.startswith("```python") and out.finish_reason == "stop" and out.model == "m-1"
    assert not out.truncated and out.usage["total_tokens"] == 15 and out.latency_s > 0
    sent = server.requests[0]
    assert sent["seed"] == 7 and sent["max_tokens"] == 321 and sent["temperature"] == 0.5
    assert sent["model"] == "m-1" and sent["messages"] == MESSAGES
    assert server.auth[0] == "Bearer sk-test"


def test_transient_errors_are_retried(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.script = [
        (500, {"error": {"message": "boom"}}, 0),
        (429, {"error": {"message": "slow down"}}, 0),
        (200, completion_body("ok"), 0),
    ]
    out = client_for(server, monkeypatch).complete(MESSAGES, seed=1)
    assert out.text == "ok" and len(server.requests) == 3


def test_retries_stop_at_the_hard_cap(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.script = [(503, {"error": {"message": "overloaded"}}, 0)]
    with pytest.raises(LLMError) as info:
        client_for(server, monkeypatch, max_attempts=3).complete(MESSAGES, seed=1)
    assert len(server.requests) == 3
    msg = str(info.value)
    assert "\n" not in msg and "3 attempt" in msg and "HTTP 503" in msg


def test_client_errors_are_not_retried(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.script = [(401, {"error": {"message": "bad key"}}, 0)]
    with pytest.raises(LLMError, match=r"HTTP 401.*check the API key"):
        client_for(server, monkeypatch).complete(MESSAGES, seed=1)
    assert len(server.requests) == 1


def test_malformed_json_is_a_one_line_error(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.script = [(200, "{not json at all", 0)]
    with pytest.raises(LLMError) as info:
        client_for(server, monkeypatch, max_attempts=2).complete(MESSAGES, seed=1)
    assert "malformed" in str(info.value) and "\n" not in str(info.value)
    assert len(server.requests) == 2


def test_json_that_is_not_a_completion(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.script = [(200, {"hello": "world"}, 0)]
    with pytest.raises(LLMError, match=r"malformed|empty"):
        client_for(server, monkeypatch, max_attempts=1).complete(MESSAGES, seed=1)


@pytest.mark.parametrize("body", [completion_body(None), completion_body(""), completion_body("   \n")])
def test_empty_response(server: FakeServer, monkeypatch: pytest.MonkeyPatch, body: dict) -> None:
    server.script = [(200, body, 0)]
    with pytest.raises(LLMError, match="empty response"):
        client_for(server, monkeypatch, max_attempts=2).complete(MESSAGES, seed=1)


def test_finish_reason_length_marks_truncation(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.script = [(200, completion_body("```python\ndef compute_reward(view, act", finish="length"), 0)]
    out = client_for(server, monkeypatch).complete(MESSAGES, seed=1)
    assert out.finish_reason == "length" and out.truncated


def test_timeout(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.script = [(200, completion_body(), 3.0)]
    t0 = time.monotonic()
    with pytest.raises(LLMError, match="timed out"):
        client_for(server, monkeypatch, timeout_s=0.3, max_attempts=2).complete(MESSAGES, seed=1)
    assert time.monotonic() - t0 < 2.5


def test_total_time_cap(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.script = [(503, {"error": {"message": "down"}}, 0)]
    t0 = time.monotonic()
    with pytest.raises(LLMError):
        client_for(server, monkeypatch, max_attempts=50, backoff_s=0.2, max_backoff_s=0.2, max_total_s=0.5).complete(
            MESSAGES, seed=1
        )
    assert time.monotonic() - t0 < 2.0 and len(server.requests) < 10


def test_unreachable_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    monkeypatch.setenv("TEST_LLM_KEY", "k")
    client = OpenAIClient(
        LLMConfig(f"http://127.0.0.1:{port}/v1", "m", "TEST_LLM_KEY", timeout_s=2, max_attempts=2, backoff_s=0.01)
    )
    with pytest.raises(LLMError) as info:
        client.complete(MESSAGES, seed=0)
    assert "cannot reach" in str(info.value) and "\n" not in str(info.value)


def test_missing_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("EMBODIED_LLM_BASE_URL", "EMBODIED_LLM_MODEL", "EMBODIED_LLM_KEY_ENV", "NO_SUCH_KEY_VAR"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(LLMConfigError, match=r"no LLM endpoint.*--llm-base-url"):
        make_client(model="m")
    with pytest.raises(LLMConfigError, match="no LLM model"):
        make_client(base_url="http://127.0.0.1:1/v1")
    with pytest.raises(LLMConfigError, match="NO_SUCH_KEY_VAR is not set"):
        make_client(base_url="http://127.0.0.1:1/v1", model="m", api_key_env="NO_SUCH_KEY_VAR")
    # Keyless local servers: an empty key variable name.
    assert isinstance(make_client(base_url="http://127.0.0.1:1/v1", model="m", api_key_env=""), OpenAIClient)
    monkeypatch.setenv("EMBODIED_LLM_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("EMBODIED_LLM_MODEL", "from-env")
    monkeypatch.setenv("EMBODIED_LLM_KEY_ENV", "")
    assert make_client().model == "from-env"


def test_sample_k_uses_distinct_seeds_and_keeps_failures(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    def reply(body: dict) -> dict:
        return {"error": {"message": "no"}} if body["seed"] == 12 else completion_body(f"seed {body['seed']}")

    server.script = [(200, reply, 0)]
    client = client_for(server, monkeypatch, max_attempts=1)
    outs = sample_k(client, MESSAGES, 4, seed=10, workers=2)
    assert [o.text if isinstance(o, Completion) else "err" for o in outs] == ["seed 10", "seed 11", "err", "seed 13"]
    assert isinstance(outs[2], LLMError)
    assert sorted(r["seed"] for r in server.requests) == [10, 11, 12, 13]
    assert all("n" not in r or r["n"] in (None, 1) for r in server.requests)
