"""The main job end to end at tiny scale: `embodied demo` trains two arms, evaluates, writes a video."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from embodied.cli.main import app


def test_demo_tiny(in_tmp_workspace: Path) -> None:
    result = CliRunner().invoke(app, ["demo", "--steps", "512", "--episodes", "2"])
    assert result.exit_code == 0, result.output
    summaries = list((in_tmp_workspace / "policies").glob("demo-metaworld-reach-*.json"))
    assert len(summaries) == 1
    summary = json.loads(summaries[0].read_text())
    assert set(summary["results"]) == {"program+shaping", "env reward"}
    for res in summary["results"].values():
        assert res["episodes"] == 2 and 0.0 <= res["success_rate"] <= 1.0
    shaped = summary["results"]["program+shaping"]
    assert shaped["shaping"] and shaped["reward"].startswith("program:")
    assert Path(summary["video"]).stat().st_size > 10_000
    assert "program+shaping" in result.output and "env reward" in result.output
