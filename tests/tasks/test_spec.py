"""Task loading and validation: every bad input is a one-line error naming the file and field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import embodied
from embodied.tasks import TaskError, load_task
from embodied.tasks.expr import ExprError, compile_expr
from embodied.tasks.views import View, ViewError, make_getter

BASE = """
suite = "scripted"
env_id = "chain"
goal = "reach the end"
success = "position >= 4"
max_episode_steps = 10
gamma = 0.9
[views.position]
expr = "obs[0]"
meaning = "position"
"""


def write(tmp_path: Path, text: str, name: str = "t.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loads_and_names_from_file_stem(tmp_path: Path) -> None:
    spec = load_task(write(tmp_path, BASE, "my-task.toml"))
    assert spec.name == "my-task" and spec.gamma == 0.9 and spec.views["position"].expr == "obs[0]"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gamma = 0.5\n" + BASE, "malformed TOML"),  # duplicate key
        (BASE.replace("gamma = 0.9", "gamma = 1.5"), "field 'gamma'"),
        (BASE.replace('suite = "scripted"', 'suite = "atari"'), "field 'suite'"),
        (BASE.replace("max_episode_steps = 10", "max_episode_steps = 0"), "field 'max_episode_steps'"),
        ("colour = 'red'\n" + BASE, "field 'colour'"),
        (BASE.replace('goal = "reach the end"', ""), "field 'goal'"),
        (BASE + "[views.info]\nexpr='obs[0]'\nmeaning='x'\n", "field 'views'"),
    ],
)
def test_invalid_files_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TaskError) as err:
        load_task(path)
    assert str(path) in str(err.value) and message in str(err.value) and "\n" not in str(err.value)


def test_unknown_task_lists_known(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write(tmp_path, BASE, "a.toml")
    monkeypatch.setenv("EMBODIED_TASKS", str(tmp_path))
    with pytest.raises(TaskError, match="unknown task 'b'; known tasks: a"):
        load_task("b")


def test_unknown_env_id_and_missing_view_slice_fail_at_make(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="field 'env_id': unknown scripted env 'nope'"):
        embodied.make(write(tmp_path, BASE.replace('env_id = "chain"', 'env_id = "nope"')))
    bad_view = BASE.replace('expr = "obs[0]"', 'expr = "obs[5]"')
    with pytest.raises(TaskError, match=r"views.position: view 'obs\[5\]' indexes past the observation"):
        embodied.make(write(tmp_path, bad_view, "v.toml"))
    with pytest.raises(TaskError, match="unknown Meta-World env id 'reach-v9'"):
        embodied.make("metaworld-reach", env_id="reach-v9")
    bad_rule = BASE.replace('success = "position >= 4"', "success = \"__import__('os')\"")
    with pytest.raises(TaskError, match=r"success: (only .* may be called|unknown name)"):
        embodied.make(write(tmp_path, bad_rule, "r.toml"))


def test_views_work_on_single_and_batched_obs() -> None:
    get, shape = make_getter(
        "obs[1:3]", "x", embodied.make(Path(__file__).parents[1] / "data" / "chain.toml").observation_space
    )
    assert shape == (1,)
    np.testing.assert_array_equal(get(np.array([1.0, 2.0])), [2.0])
    np.testing.assert_array_equal(get(np.array([[1.0, 2.0], [3.0, 4.0]])), [[2.0], [4.0]])
    view = View({"pos": make_getter("obs[0]", "x")[0]}, np.array([5.0, 1.0]))
    assert view.pos == 5.0 and view["pos"] == 5.0
    with pytest.raises(AttributeError, match="no view named 'vel'"):
        view.vel  # noqa: B018
    with pytest.raises(ViewError, match="must index 'obs'"):
        make_getter("state[0]", "x")
    with pytest.raises(ViewError, match="integer indices"):
        make_getter("obs[0.5]", "x")


def test_expressions_are_allow_listed() -> None:
    fn = compile_expr("norm(a - b) < 0.1 and info['s'] > 0", {"a", "b", "info"}, "w")
    assert fn({"a": np.zeros(3), "b": np.full(3, 0.01), "info": {"s": 1}})
    for bad in ("a.__class__", "open('x')", "[x for x in a]", "lambda: 1", "b"):
        with pytest.raises(ExprError):
            compile_expr(bad, {"a"}, "w")


def test_overrides_are_validated() -> None:
    with pytest.raises(TaskError, match="unknown override field"):
        embodied.make("metaworld-reach", colour="red")
    with pytest.raises(TaskError, match="override 'gamma'"):
        embodied.make("metaworld-reach", gamma=2.0)
