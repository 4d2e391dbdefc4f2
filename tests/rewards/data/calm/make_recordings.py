"""Re-record the LLM replay files of the CALM tests through the loopback heuristic server (fake_llm.py).

Run from the repository root after changing prompts or the text view:

    .venv/bin/python tests/rewards/data/calm/make_recordings.py

It goes through the real path: `embodied calm ...` commands with --record and the OpenAI client
talking to http://127.0.0.1:<port>/v1. Writes, next to this file:

* decompose.jsonl      — decompositions of minihack-keyroom, minihack-room and the chain test task
* judge_keyroom.jsonl  — `calm eval minihack-keyroom --judge llm --transitions 60 --seed 0`, both questions
* trajectory.jsonl     — one scripted minihack-keyroom episode (env seed 3): transitions, one per request
                          and four per request, and states
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[3]
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from fake_llm import MODEL, FakeServer  # noqa: E402


def main() -> None:
    from typer.testing import CliRunner

    from embodied.cli.main import app
    from embodied.llm.client import LLMConfig, OpenAIClient
    from embodied.llm.replay import RecordingClient
    from embodied.llm.text_view import text_view_for
    from embodied.rewards.subgoal_oracle import collect_transitions, oracle_subgoals
    from embodied.rewards.subgoals import LLMJudge
    from embodied.tasks.spec import load_task

    runner = CliRunner()
    for name in ("decompose.jsonl", "judge_keyroom.jsonl", "trajectory.jsonl"):
        (HERE / name).unlink(missing_ok=True)
    with FakeServer() as server, tempfile.TemporaryDirectory() as tmp:
        llm = ["--llm-base-url", server.url, "--llm-model", MODEL, "--llm-key-env", "", "--record"]

        def run(args: list[str]) -> None:
            result = runner.invoke(app, args)
            if result.exit_code != 0:
                raise SystemExit(f"{' '.join(args)} failed: {result.output}")

        for task in ("minihack-keyroom", "minihack-room", str(REPO / "tests/data/chain.toml")):
            out = Path(tmp) / f"{Path(task).stem}.json"
            run(["calm", "decompose", task, "--out", str(out), "--replay", str(HERE / "decompose.jsonl"), *llm])
        for question in ("transition", "state"):
            run([
                "calm", "eval", "minihack-keyroom", "--judge", "llm", "--transitions", "60", "--seed", "0",
                "--question", question, "--json", "--replay", str(HERE / "judge_keyroom.jsonl"), *llm,
            ])  # fmt: skip

        task = load_task("minihack-keyroom")
        steps = collect_transitions(task, 1, 0, seed=3, epsilon=0.0)
        endpoint = OpenAIClient(LLMConfig(server.url, MODEL, api_key_env=""))
        client = RecordingClient(endpoint, HERE / "trajectory.jsonl")
        view = text_view_for(task)
        obs = {k: np.stack([t.obs[k] for t in steps]) for k in steps[0].obs}
        nxt = {k: np.stack([t.next_obs[k] for t in steps]) for k in steps[0].obs}
        actions = np.array([t.action for t in steps])
        for per_request in (1, 4):
            judge = LLMJudge(client, oracle_subgoals(task), view, per_request=per_request, workers=1)
            judge.transitions(obs, actions, nxt)
        LLMJudge(client, oracle_subgoals(task), view, workers=1).states(obs)
    for name in ("decompose.jsonl", "judge_keyroom.jsonl", "trajectory.jsonl"):
        lines = (HERE / name).read_text().count("\n")
        print(f"{name}: {lines} records")


if __name__ == "__main__":
    main()
