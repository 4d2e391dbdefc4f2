"""Chat-completion clients for OpenAI-compatible servers (vLLM, Ollama, llama.cpp server, hosted APIs).

Every client implements the `LLMClient` protocol::

    complete(messages, *, seed, temperature, max_tokens) -> Completion(text, finish_reason, model)

`OpenAIClient` talks to a real endpoint through the `openai` SDK; `embodied.llm.replay` replays
or records responses keyed by a hash of the request. K samples are drawn as K requests with
distinct seeds (`sample_k`), because some servers (Ollama) ignore `n`.

Errors are one line (`LLMError` and subclasses) so a CLI can print them as they are.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

Message = dict[str, str]
"""One chat message: {"role": "system" | "user" | "assistant", "content": str}."""

ENV_BASE_URL = "EMBODIED_LLM_BASE_URL"
ENV_MODEL = "EMBODIED_LLM_MODEL"
ENV_KEY_ENV = "EMBODIED_LLM_KEY_ENV"


class LLMError(RuntimeError):
    """An LLM request failed. The message is one line and says what to do where it can."""


class LLMConfigError(LLMError):
    """The client is not configured: no base URL, no model, or the API-key variable is unset."""


class LLMResponseError(LLMError):
    """The server answered, but not with a usable completion (malformed JSON, no choices, empty text)."""


@dataclass(frozen=True)
class Completion:
    """One chat completion.

    Attributes:
        text: the assistant message content.
        finish_reason: "stop" when the model ended by itself; "length" means the text was cut at
            `max_tokens` (truncated code); "content_filter" etc. as the server reports.
        model: the model that answered (as the server names it).
        usage: token counts when the server reports them.
        latency_s: wall time of the request that produced it (0 for replayed completions).
    """

    text: str
    finish_reason: str
    model: str
    usage: dict[str, int] = field(default_factory=dict)
    latency_s: float = 0.0

    @property
    def truncated(self) -> bool:
        """True when the server stopped for any reason other than a natural end."""
        return self.finish_reason not in ("stop", "eos", "end_turn", "stop_sequence")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Completion:
        return cls(
            text=str(data["text"]),
            finish_reason=str(data.get("finish_reason", "stop")),
            model=str(data.get("model", "")),
            usage={k: int(v) for k, v in (data.get("usage") or {}).items()},
            latency_s=float(data.get("latency_s", 0.0)),
        )


@runtime_checkable
class LLMClient(Protocol):
    """What every chat client offers. `model` names the model for metadata ("replay" when unknown)."""

    model: str

    def complete(
        self, messages: Sequence[Message], *, seed: int, temperature: float = 0.7, max_tokens: int = 2048
    ) -> Completion:
        """One completion for `messages`; deterministic servers return the same text for the same seed."""
        ...


@dataclass(frozen=True)
class LLMConfig:
    """How to reach an endpoint.

    Attributes:
        base_url: e.g. ``http://localhost:8000/v1`` (vLLM), ``http://localhost:11434/v1`` (Ollama),
            ``https://api.openai.com/v1``.
        model: model name as the server knows it.
        api_key_env: name of the environment variable holding the key; "" for servers without keys.
            The key itself is never stored in configs, logs or metadata.
        timeout_s: per-request timeout (connect + read).
        max_attempts: hard cap on attempts per request (first try included).
        backoff_s: first retry delay; doubles per retry (with jitter) up to `max_backoff_s`.
        max_total_s: hard cap on the time spent on one request, retries included.
    """

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 120.0
    max_attempts: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    max_total_s: float = 600.0

    @classmethod
    def from_env(
        cls, base_url: str | None = None, model: str | None = None, api_key_env: str | None = None, **kwargs: Any
    ) -> LLMConfig:
        """Fill missing values from `EMBODIED_LLM_BASE_URL`, `EMBODIED_LLM_MODEL`, `EMBODIED_LLM_KEY_ENV`.

        Raises:
            LLMConfigError: no base URL or no model.
        """
        base_url = base_url or os.environ.get(ENV_BASE_URL, "")
        model = model or os.environ.get(ENV_MODEL, "")
        if api_key_env is None:
            api_key_env = os.environ.get(ENV_KEY_ENV, "OPENAI_API_KEY")
        if not base_url:
            raise LLMConfigError(
                f"no LLM endpoint: pass --llm-base-url (e.g. http://localhost:8000/v1) or set {ENV_BASE_URL}; "
                "offline, use --replay FILE"
            )
        if not model:
            raise LLMConfigError(f"no LLM model: pass --llm-model or set {ENV_MODEL}")
        return cls(base_url=base_url, model=model, api_key_env=api_key_env, **kwargs)

    def public(self) -> dict[str, Any]:
        """The config without secrets (the key's variable name only), for metadata."""
        return asdict(self)


_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class OpenAIClient:
    """`LLMClient` over the `openai` SDK's chat-completions API, with our own retry loop.

    The SDK's retries are switched off so the cap (`max_attempts`, `max_total_s`) is the only one and
    every failure kind gets the same one-line error.
    """

    def __init__(self, config: LLMConfig) -> None:
        from openai import OpenAI

        key = "not-needed"
        if config.api_key_env:
            key = os.environ.get(config.api_key_env, "")
            if not key:
                raise LLMConfigError(
                    f"the API key variable {config.api_key_env} is not set; export it, or pass "
                    "--llm-key-env '' for a server that needs no key"
                )
        self.config = config
        self.model = config.model
        self._client = OpenAI(base_url=config.base_url, api_key=key, timeout=config.timeout_s, max_retries=0)

    def complete(
        self, messages: Sequence[Message], *, seed: int, temperature: float = 0.7, max_tokens: int = 2048
    ) -> Completion:
        """One completion; retries transient failures, raises `LLMError` (one line) when it gives up."""
        cfg = self.config
        start = time.monotonic()
        delay = cfg.backoff_s
        last = "no attempt made"
        for attempt in range(1, cfg.max_attempts + 1):
            t0 = time.monotonic()
            try:
                return self._once(messages, seed, temperature, max_tokens, t0)
            except _Retryable as exc:
                last = str(exc)
            except LLMError:
                raise
            spent = time.monotonic() - start
            if attempt == cfg.max_attempts or spent + delay > cfg.max_total_s:
                break
            time.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, cfg.max_backoff_s)
        raise LLMError(f"LLM request to {cfg.base_url} failed after {attempt} attempt(s): {last}")

    def _once(
        self, messages: Sequence[Message], seed: int, temperature: float, max_tokens: int, t0: float
    ) -> Completion:
        import openai

        url = self.config.base_url
        try:
            resp = self._client.chat.completions.create(
                model=self.model,
                messages=list(messages),  # type: ignore[arg-type]
                seed=seed,
                temperature=temperature,
                max_tokens=max_tokens,
            )
        except openai.APITimeoutError:
            raise _Retryable(f"timed out after {self.config.timeout_s:g} s") from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc
            raise _Retryable(f"cannot reach {url} ({_one_line(cause)})") from None
        except openai.APIStatusError as exc:
            text = f"HTTP {exc.status_code} from {url}: {_one_line(exc.message)}"
            if exc.status_code in _RETRY_STATUS:
                raise _Retryable(text) from None
            hint = " (check the API key)" if exc.status_code in (401, 403) else ""
            hint = hint or (" (check --llm-model and the base URL's /v1 suffix)" if exc.status_code == 404 else "")
            raise LLMError(text + hint) from None
        except openai.APIResponseValidationError as exc:
            raise _Retryable(f"malformed response from {url}: {_one_line(exc)}") from None
        except ValueError as exc:  # JSON decoding of a malformed body
            raise _Retryable(f"malformed JSON from {url}: {_one_line(exc)}") from None
        return _parse(resp, url, self.model, time.monotonic() - t0)


class _Retryable(Exception):
    """Internal: a failure worth another attempt."""


def _one_line(x: object, limit: int = 200) -> str:
    text = " ".join(str(x).split())
    return text if len(text) <= limit else text[:limit] + "..."


def _parse(resp: Any, url: str, model: str, latency: float) -> Completion:
    # Servers that return non-JSON or odd JSON make the SDK hand back a str or a half-filled object.
    if isinstance(resp, (str, bytes)) or not hasattr(resp, "choices"):
        raise _Retryable(f"malformed JSON from {url}: not a chat completion ({_one_line(resp, 80)!r})")
    choices = resp.choices or []
    if not choices:
        raise _Retryable(f"empty response from {url}: no choices")
    choice = choices[0]
    message = getattr(choice, "message", None)
    text = getattr(message, "content", None)
    if not text or not str(text).strip():
        raise _Retryable(f"empty response from {url}: the completion has no text")
    usage: dict[str, int] = {}
    if getattr(resp, "usage", None) is not None:
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            value = getattr(resp.usage, key, None)
            if isinstance(value, int):
                usage[key] = value
    return Completion(
        text=str(text),
        finish_reason=str(getattr(choice, "finish_reason", None) or "unknown"),
        model=str(getattr(resp, "model", None) or model),
        usage=usage,
        latency_s=latency,
    )


def sample_k(
    client: LLMClient,
    messages: Sequence[Message],
    k: int,
    *,
    seed: int = 0,
    temperature: float = 0.7,
    max_tokens: int = 2048,
    workers: int = 4,
) -> list[Completion | LLMError]:
    """K completions as K requests with seeds `seed, seed+1, ...` (servers may ignore `n`).

    A failed request does not fail the batch: its slot holds the `LLMError`, in seed order.
    """
    seeds = [seed + i for i in range(k)]

    def one(s: int) -> Completion | LLMError:
        try:
            return client.complete(messages, seed=s, temperature=temperature, max_tokens=max_tokens)
        except LLMError as exc:
            return exc

    if workers <= 1 or k <= 1:
        return [one(s) for s in seeds]
    with ThreadPoolExecutor(max_workers=min(workers, k)) as pool:
        return list(pool.map(one, seeds))


def make_client(
    base_url: str | None = None,
    model: str | None = None,
    api_key_env: str | None = None,
    *,
    replay: str | os.PathLike[str] | None = None,
    record: bool = False,
    **config: Any,
) -> LLMClient:
    """The client the CLI options describe.

    * ``replay=FILE`` alone: answer from FILE only (offline; a miss is an error).
    * ``replay=FILE, record=True``: ask the endpoint on a miss and append the answer to FILE.
    * no replay: the endpoint.

    Raises:
        LLMConfigError: an endpoint is needed but not configured.
    """
    from embodied.llm.replay import RecordingClient, ReplayClient

    if replay is not None and not record:
        return ReplayClient(replay)
    endpoint = OpenAIClient(LLMConfig.from_env(base_url, model, api_key_env, **config))
    if replay is not None:
        return RecordingClient(endpoint, replay)
    return endpoint
