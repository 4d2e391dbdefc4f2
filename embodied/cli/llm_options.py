"""Command-line options shared by every command that talks to an LLM (`reward`, `calm`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

BaseUrl = Annotated[
    Optional[str],
    typer.Option(
        "--llm-base-url",
        help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1 (vLLM), http://localhost:11434/v1 (Ollama), "
        "https://api.openai.com/v1. Default: $EMBODIED_LLM_BASE_URL.",
    ),
]
Model = Annotated[
    Optional[str], typer.Option("--llm-model", help="Model name as the server knows it. Default: $EMBODIED_LLM_MODEL.")
]
KeyEnv = Annotated[
    Optional[str],
    typer.Option(
        "--llm-key-env",
        help="Name of the environment variable holding the API key ('' for keyless local servers). "
        "Default: $EMBODIED_LLM_KEY_ENV or OPENAI_API_KEY. The key itself is never written anywhere.",
    ),
]
Replay = Annotated[
    Optional[Path],
    typer.Option(
        "--replay",
        help="Answer from this recording (JSONL keyed by a hash of each request) instead of an endpoint; offline.",
    ),
]
Record = Annotated[
    bool,
    typer.Option("--record", help="With --replay: ask the endpoint for requests not in the file and append them."),
]


def make_cli_client(
    base_url: str | None, model: str | None, key_env: str | None, replay: Path | None, record: bool
) -> Any:
    """The LLM client the options describe (a replay client with --replay)."""
    from embodied.llm.client import make_client

    if record and replay is None:
        raise ValueError("--record needs --replay FILE (the recording to append to)")
    return make_client(base_url, model, key_env, replay=replay, record=record)
