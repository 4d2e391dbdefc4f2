"""Reward programs: extraction, static checks, dry run, fast path."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embodied.rewards.base import RewardError
from embodied.rewards.code import (
    NonFiniteRewardError,
    RewardCodeError,
    extract_code,
    load_program,
    static_check,
)
from embodied.tasks.views import View, make_getter

EXPERT = '''
"""Hand-written reach reward (the kind of file reward_models/<task>/ holds)."""
import math
import numpy as np
from numpy.linalg import norm

TOL = 0.05
SCALE = np.array([1.0, 1.0, 2.0])
WEIGHTS = {"reach": 1.0, "effort": 0.01}


def _dist(a, b) -> float:
    return float(np.linalg.norm((a - b) * SCALE))


def compute_reward(view, action) -> tuple[float, dict[str, float]]:
    d = _dist(view.hand_pos, view.goal_pos)
    effort = 0.0 if action is None else float(sum(x * x for x in action))
    close = 1.0 if d < TOL else 0.0
    parts = [min(d, 1.0), max(0.0, -d), abs(d), math.exp(-d), norm(view.hand_pos)]
    shaped = sum(p for p in parts[:1]) / len(parts)
    for i, (a, b) in enumerate(zip(view.hand_pos, view.goal_pos)):
        if i > 2:
            break
    r = -WEIGHTS["reach"] * d - WEIGHTS["effort"] * effort + close - 0.0 * shaped
    return r, {"reach": -d, "effort": -effort, "success_bonus": close}
'''


def _samples(n: int = 8, seed: int = 0) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [({"hand_pos": rng.normal(size=3), "goal_pos": rng.normal(size=3)}, rng.normal(size=4)) for _ in range(n)]


def _view(hand: list[float], goal: list[float]) -> View:
    obs = np.array(hand + goal, dtype=np.float64)
    getters = {"hand_pos": make_getter("obs[0:3]", "t")[0], "goal_pos": make_getter("obs[3:6]", "t")[0]}
    return View(getters, obs)


def test_hand_written_program_loads_and_runs_in_process() -> None:
    program = load_program(EXPERT, name="expert.py")
    reward, comps = program(_view([0.0, 0.0, 0.0], [0.3, 0.4, 0.0]), np.zeros(4))
    assert reward == pytest.approx(-0.5)
    assert comps == {"reach": pytest.approx(-0.5), "effort": 0.0, "success_bonus": 0.0}
    assert isinstance(reward, float) and all(isinstance(v, float) for v in comps.values())
    # The same program as a potential: no action.
    assert program(_view([0.3, 0.4, 0.0], [0.3, 0.4, 0.0]), None)[0] == pytest.approx(1.0)
    assert program.calls == 2


def test_dry_run_reports_components_and_timing() -> None:
    program = load_program(EXPERT, _samples(), name="expert.py")
    report = program.report
    assert report.static_ok and report.dry_run is not None
    assert program.components == ("reach", "effort", "success_bonus")
    assert report.dry_run["samples"] == 8
    assert 0 < report.dry_run["call_s_median"] < 0.005
    assert report.dry_run["reward"]["min"] < report.dry_run["reward"]["max"]
    assert any("dry run passed" in line for line in report.log)


def test_dry_run_accepts_view_objects() -> None:
    samples = [(_view([0.0, 0.0, float(i)], [1.0, 0.0, 0.0]), np.zeros(4)) for i in range(3)]
    program = load_program(EXPERT, samples)
    assert program.report.dry_run["samples"] == 3


@pytest.mark.parametrize(
    ("text", "expected_start"),
    [
        (
            "Here you go:\n```python\nimport numpy as np\ndef compute_reward(view, action):\n"
            "    return 1.0, {}\n```\nDone.",
            "import numpy as np",
        ),
        (
            "```\ndef helper(x):\n    return x\n```\nand\n```py\ndef compute_reward(view, action):\n"
            "    return 0.0, {}\n```",
            "def compute_reward",
        ),
        (
            (
                "Sure! The reward is:\n\nimport math\n\ndef compute_reward(view, action):\n    return 0.0, {}\n\n"
                "This rewards being close."
            ),
            "import math",
        ),
        ("def compute_reward(view, action):\n    return 0.0, {}\n", "def compute_reward"),
    ],
)
def test_extract_code(text: str, expected_start: str) -> None:
    code = extract_code(text)
    assert code.startswith(expected_start)
    static_check(code)  # the extracted code parses and satisfies the contract
    assert "Done." not in code and "This rewards" not in code


def test_extract_code_without_code_is_an_error() -> None:
    with pytest.raises(RewardCodeError) as info:
        extract_code("I cannot help with that.")
    assert info.value.kind == "extract"


def test_truncated_fence_is_a_syntax_error_with_line() -> None:
    text = "```python\ndef compute_reward(view, action):\n    d = (view.hand_pos -\n"
    with pytest.raises(RewardCodeError) as info:
        load_program(text)
    assert info.value.kind == "syntax" and info.value.line == 2
    assert "line 2" in str(info.value)


@pytest.mark.parametrize(
    ("source", "kind", "line", "fragment"),
    [
        ("def reward(view, action):\n    return 0.0, {}\n", "contract", None, "compute_reward"),
        ("def compute_reward(view):\n    return 0.0, {}\n", "contract", 1, "two positional"),
        (
            "def compute_reward(v, a):\n    return 0.0, {}\ndef compute_reward(v, a):\n    return 1.0, {}\n",
            "contract",
            3,
            "2 times",
        ),
        ("import scipy\ndef compute_reward(v, a):\n    return 0.0, {}\n", "forbidden_import", 1, "scipy"),
        ("def compute_reward(v, a):\n    return eval('1'), {}\n", "forbidden", 2, "eval"),
        ("def compute_reward(v, a):\n    return v.__class__, {}\n", "forbidden", 2, "__class__"),
        ("def compute_reward(v, a):\n    return undefined_thing, {}\n", "unknown_name", 2, "undefined_thing"),
        ("X = [i for i in range(10)]\ndef compute_reward(v, a):\n    return 0.0, {}\n", "forbidden", 1, "module-level"),
        ("def compute_reward(v, a):\n    global Y\n    return 0.0, {}\n", "forbidden", 2, "global"),
        ("class A:\n    pass\ndef compute_reward(v, a):\n    return 0.0, {}\n", "forbidden", 1, "class"),
    ],
)
def test_static_rejections_name_reason_and_line(source: str, kind: str, line: int | None, fragment: str) -> None:
    with pytest.raises(RewardCodeError) as info:
        load_program(source, name="bad.py")
    err = info.value
    assert isinstance(err, ValueError)
    assert err.kind == kind and err.line == line
    assert fragment in str(err) and "bad.py" in str(err)
    assert err.to_dict()["kind"] == kind and fragment in err.feedback()


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("return float('nan'), {'a': 1.0}", "nonfinite"),
        ("return 1.0, {'a': float(v.hand_pos[0]) * float('inf')}", "nonfinite"),
        ("return 1.0, {'a': 1.0}", "constant"),
        ("return float(v.hand_pos[0])", "output"),
        ("return float(v.hand_pos[0]), [1.0]", "output"),
        ("return 'high', {}", "output"),
        ("return float(v.hand_pos[0]), ({'a': 1.0} if v.hand_pos[0] > 0 else {'b': 1.0})", "components"),
        ("return v.no_such_view, {}", "runtime"),
        ("return 1.0 / (v.hand_pos[0] - v.hand_pos[0]), {}", "nonfinite"),
        ("return int(v.hand_pos[0] * 0) // 0, {}", "runtime"),
    ],
)
def test_dry_run_rejections(body: str, kind: str) -> None:
    source = f"import numpy as np\ndef compute_reward(v, a):\n    {body}\n"
    with pytest.raises(RewardCodeError) as info:
        load_program(source, _samples(6), timeout_s=10)
    assert info.value.kind == kind, str(info.value)


def test_runtime_error_names_line_in_dry_run() -> None:
    source = "def compute_reward(v, a):\n    x = 1.0\n    return v.hand_pos[99], {}\n"
    with pytest.raises(RewardCodeError) as info:
        load_program(source, _samples(3), name="idx.py")
    assert info.value.kind == "runtime" and info.value.line == 3 and "IndexError" in str(info.value)


def test_slow_program_is_rejected() -> None:
    source = (
        "def compute_reward(v, a):\n    s = 0.0\n    for i in range(200000):\n        s += i * 1e-9\n"
        "    return s + float(v.hand_pos[0]), {}\n"
    )
    with pytest.raises(RewardCodeError) as info:
        load_program(source, _samples(3), max_call_s=0.0005)
    assert info.value.kind == "slow"


def test_fast_path_guard_names_program_and_call() -> None:
    source = (
        "import math\ndef compute_reward(v, a):\n"
        "    return math.log(float(v.hand_pos[0])) if v.hand_pos[0] > 0 else float('nan'), {}\n"
    )
    program = load_program(source, name="reach/gen-1.py")
    assert program(_view([1.0, 0, 0], [0, 0, 0]), None)[0] == 0.0
    with pytest.raises(NonFiniteRewardError) as info:
        program(_view([-1.0, 0, 0], [0, 0, 0]), None)
    assert isinstance(info.value, RewardError) and isinstance(info.value, RewardCodeError)
    assert "reach/gen-1.py" in str(info.value) and "call 2" in str(info.value)

    comp_nan = load_program("def compute_reward(v, a):\n    return 0.0, {'x': float('inf') - float('inf')}\n", name="c")
    with pytest.raises(NonFiniteRewardError, match="component 'x'"):
        comp_nan(_view([0, 0, 0], [0, 0, 0]), None)


def test_fast_path_exception_names_line() -> None:
    program = load_program("def compute_reward(v, a):\n    y = 2\n    return v.hand_pos[7], {}\n", name="p")
    with pytest.raises(RewardCodeError) as info:
        program(_view([0, 0, 0], [0, 0, 0]), None)
    assert info.value.line == 3 and "call 1" in str(info.value) and "IndexError" in str(info.value)


def test_module_constants_are_frozen_between_calls() -> None:
    source = (
        "SEEN = [0.0]\nW = {'a': 1.0}\n"
        "def compute_reward(v, a):\n    SEEN.append(1.0)\n    return float(len(SEEN)), {}\n"
    )
    program = load_program(source)
    with pytest.raises(RewardCodeError, match="append"):
        program(_view([0, 0, 0], [0, 0, 0]), None)
    program2 = load_program("W = {'a': 1.0}\ndef compute_reward(v, a):\n    W['a'] = 2.0\n    return W['a'], {}\n")
    with pytest.raises(RewardCodeError, match="does not support item assignment"):
        program2(_view([0, 0, 0], [0, 0, 0]), None)


def test_numpy_is_filtered_and_print_is_silent(capsys: pytest.CaptureFixture[str]) -> None:
    program = load_program(
        "import numpy as np\ndef compute_reward(v, a):\n    print('debug', v.hand_pos)\n"
        "    r = float(np.random.default_rng(0).random() * 0)\n"
        "    return float(np.clip(np.dot(v.hand_pos, v.goal_pos), -1, 1)), {'r': r}\n"
    )
    assert program(_view([0.5, 0, 0], [1, 0, 0]), None)[0] == 0.5
    assert capsys.readouterr().out == ""
    with pytest.raises(RewardCodeError, match="'save'"):
        load_program("import numpy as np\ndef compute_reward(v, a):\n    return float(np.save is None), {}\n")
    # Not in the filtered namespace either, should a name slip past the static check.
    from embodied.rewards._codecheck import safe_numpy

    assert not hasattr(safe_numpy(), "save") and not hasattr(safe_numpy(), "ctypeslib")
    assert hasattr(safe_numpy().linalg, "norm")


def test_nan_constant_math_functions_are_fine() -> None:
    program = load_program("import math\ndef compute_reward(v, a):\n    return math.pi * float(v.hand_pos[0]), {}\n")
    assert program(_view([1.0, 0, 0], [0, 0, 0]), None)[0] == pytest.approx(math.pi)


COMMON_NUMPY = """
import math
import numpy as np
from numpy.linalg import norm


def compute_reward(view, action):
    x = np.asarray(view.hand_pos, dtype=np.float64)
    m = np.outer(x, x) + np.eye(3)
    terms = [
        x.mean(), x.std(), np.quantile(x, 0.5), np.percentile(x, 90), np.median(x), np.cov(np.stack([x, x + 1]))[0, 1],
        np.histogram(x, bins=3)[0].sum(), np.linalg.inv(m).sum(), np.linalg.svd(m)[1].sum(),
        np.abs(np.fft.rfft(x)).sum(),
        np.polynomial.Polynomial([1.0, 2.0])(float(x[0])), np.einsum("i,i->", x, x), np.interp(0.5, [0, 1], [0, 2]),
        float(np.random.default_rng(0).normal()) * 0.0, math.atan2(x[1], x[0]), np.exp(-norm(x)),
    ]
    r = float(sum(float(t) for t in terms))
    return r, {"first": float(terms[0]), "count": float(len(f"{r:.3f}"))}
"""


def test_common_numpy_passes_the_sandbox_and_the_fast_path() -> None:
    """numpy imports lazily and fills C caches on first use (through the caller's `__import__`);
    neither the restricted builtins nor the sandbox's audit hook may break that."""
    program = load_program(COMMON_NUMPY, _samples(4), max_call_s=0.05)
    assert program.report.dry_run["samples"] == 4
    reward, comps = program(_view([0.1, 0.2, 0.3], [0, 0, 0]), None)
    assert math.isfinite(reward) and set(comps) == {"first", "count"}


def test_library_imports_through_the_program_frame() -> None:
    """C code's PyImport_Import passes a list as fromlist; a program's import statement never does."""
    import sys

    from embodied.rewards._codecheck import _safe_import

    assert _safe_import("numpy._core._methods", {}, {}, [], 0) is sys.modules["numpy._core._methods"]
    with pytest.raises(ImportError):
        _safe_import("os", {}, {}, None, 0)
    with pytest.raises(ImportError):
        _safe_import("numpy.ctypeslib", {}, {}, ("as_array",), 0)


def test_syntax_error_line_is_the_line_of_the_file() -> None:
    source = '"""A hand-written program with a typo."""\n\nimport numpy as np\n\n\ndef compute_reward(view, action):\n'
    source += "    d = np.linalg.norm(view.hand_pos - view.goal_pos\n    return -d, {}\n"
    with pytest.raises(RewardCodeError) as info:
        load_program(source, name="typo.py")
    assert info.value.kind == "syntax" and info.value.line == 7
    prose = "Here is my answer:\n\n" + source.split('"""\n', 1)[1]
    with pytest.raises(RewardCodeError) as info:
        load_program(prose)
    bad_line = prose.split("\n").index("    d = np.linalg.norm(view.hand_pos - view.goal_pos") + 1
    assert info.value.line == bad_line == 8  # counted in the response, prose included
