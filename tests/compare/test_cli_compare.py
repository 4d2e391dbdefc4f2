"""`embodied compare`: tabular path end to end, errors, and the simulator path on Meta-World reach."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from embodied.cli.compare import compare
from embodied.compare.tabular import epic_distance, starc_distance

REPO = Path(__file__).resolve().parents[2]
GAMMA = 0.9


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command("compare")(compare)

    @app.callback()
    def main() -> None:
        """Test app (a callback keeps 'compare' a sub-command)."""

    return app


@pytest.fixture
def npz(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    n_s, n_a = 5, 2
    P = rng.dirichlet(np.ones(n_s), size=(n_s, n_a))
    base = rng.normal(size=P.shape)
    phi = rng.normal(size=n_s)
    rewards = {
        "base": base,
        "shaped": 2 * base + GAMMA * phi[None, None, :] - phi[:, None, None],
        "neg": -base,
        "other": rng.normal(size=P.shape),
    }
    path = tmp_path / "toy.npz"
    np.savez(path, P=P, gamma=GAMMA, **{f"R_{k}": v for k, v in rewards.items()})
    return path, rewards, P


def test_tabular_json_matches_library(app: typer.Typer, npz, tmp_path: Path) -> None:
    path, rewards, P = npz
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["compare", "--tabular", str(path), "--json", "--out", str(out)])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    names = payload["names"]
    assert names == ["base", "neg", "other", "shaped"]  # R_<name> arrays in sorted order
    D = np.array(payload["distance"])
    i = {n: k for k, n in enumerate(names)}
    assert D[i["base"], i["shaped"]] == pytest.approx(0.0, abs=1e-6)
    assert D[i["base"], i["neg"]] == pytest.approx(1.0, abs=1e-6)
    ref = starc_distance(rewards["base"], rewards["other"], P, GAMMA)
    assert D[i["base"], i["other"]] == pytest.approx(ref, abs=1e-6)
    assert payload["ci_low"] is None and payload["settings"]["canonical"] == "val"
    for suffix in ("png", "json", "md"):
        assert (out / f"toy-starc.{suffix}").stat().st_size > 100
    assert (out / "toy-starc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tabular_markdown_epic_with_stacked_rewards(app: typer.Typer, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    R = rng.normal(size=(3, 4, 2, 4))
    path = tmp_path / "stack.npz"
    np.savez(path, R=R, names=np.array(["a", "b", "c"]), gamma=0.5)  # EPIC needs no P
    res = CliRunner().invoke(app, ["compare", "--tabular", str(path), "--metric", "epic", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert lines[0] == "| epic | a | b | c |" and lines[1] == "|---|---|---|---|"
    cells = lines[2].strip("|").split("|")
    assert cells[0].strip() == "a" and float(cells[1]) == 0.0
    assert float(cells[2]) == pytest.approx(epic_distance(R[0], R[1], 0.5), abs=5e-4)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--tabular", "missing.npz"], "error: tabular: no such file"),
        (["--tabular", "{npz}", "--metric", "kl"], "error: --metric: unknown metric 'kl'"),
        (["--tabular", "{npz}", "--norm", "l3"], "error: norm: unknown norm 'l3'"),
        (["--tabular", "{npz}", "--canonical", "foo"], "error: canonical: unknown canonical 'foo'"),
        (["--tabular", "{npz}", "--gamma", "1.5"], "error: gamma: must be in [0, 1)"),
        (["--tabular", "{npz}", "metaworld-reach"], "error: --tabular compares"),
        ([], "error: give a TASK"),
        (["metaworld-reach", "--rewards", "env"], "error: --rewards: give at least two"),
        (["no-such-task", "--rewards", "env,env"], "error: unknown task 'no-such-task'"),
        (["metaworld-reach", "--rewards", "env,env"], "error: rewards: duplicate spec"),
        (["metaworld-reach", "--rewards", "env,nope:x"], "error: unknown reward kind 'nope'"),
        (["metaworld-reach", "--rewards", "env,env:x", "--policies", "greedy"], "error: reward spec 'env' takes no"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(app: typer.Typer, npz, tmp_path: Path, args, message) -> None:
    path = str(npz[0])
    res = CliRunner().invoke(app, ["compare", *[a.replace("{npz}", path) for a in args], "--out", str(tmp_path)])
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert err.startswith(message) and "\n" not in err


def test_bad_npz_contents(app: typer.Typer, tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, R_a=np.zeros((2, 1, 2)), R_b=np.zeros((2, 1, 2)), gamma=0.9, Q=np.zeros(3))
    res = CliRunner().invoke(app, ["compare", "--tabular", str(path), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "unknown arrays ['Q']" in res.stderr
    np.savez(path, R_a=np.zeros((2, 1, 2)), R_b=np.zeros((2, 1, 2)), gamma=0.9)
    res = CliRunner().invoke(app, ["compare", "--tabular", str(path), "--out", str(tmp_path)])
    assert res.exit_code == 2 and res.stderr.startswith("error: P: ")


def test_help_documents_both_modes(app: typer.Typer) -> None:
    res = CliRunner().invoke(app, ["compare", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    for word in ("--rewards", "--metric", "--json", "--tabular", "--out", "starc"):
        assert word in res.stdout


def test_simulator_path_on_metaworld_reach(app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # envs/ and reward_models/ of the repository
    program = "program:reward_models/metaworld-reach/expert.py"
    res = CliRunner().invoke(
        app,
        ["compare", "metaworld-reach", "--rewards", f"env,{program}", "--json", "--transitions", "400",
         "--seeds", "2", "--episode-steps", "50", "--out", str(tmp_path)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    payload = json.loads(res.stdout)
    assert payload["names"] == ["env", program] and payload["metric"] == "starc"
    d, lo, hi = payload["distance"][0][1], payload["ci_low"][0][1], payload["ci_high"][0][1]
    assert 0.02 < d < 0.8 and lo <= d <= hi
    assert payload["settings"]["policies"] == ["random", "expert:0.5"]
    assert (tmp_path / "metaworld-reach-starc.png").is_file()
