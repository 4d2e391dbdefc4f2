"""The `embodied` command: help for every command, instant start, task listing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from embodied.cli.main import app

runner = CliRunner()


@pytest.mark.parametrize("command", [[], ["tasks"], ["train"], ["eval"], ["video"], ["demo"]])
def test_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_help_is_instant_without_heavy_imports() -> None:
    code = (
        "import sys; from embodied.cli.main import app;"
        "mods = ('torch', 'open_clip', 'ray', 'nle', 'stable_baselines3', 'mujoco', 'metaworld', 'roslibpy');"
        "heavy = [m for m in mods if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_tasks_lists_shipped_tasks_as_json() -> None:
    result = runner.invoke(app, ["tasks", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows["metaworld-reach"]["suite"] == "metaworld"
    assert {"humanoid-kneel", "fetch-push", "minihack-keyroom"} <= set(rows)
