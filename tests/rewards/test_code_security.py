"""The hostile corpus: every program is rejected statically or contained by the sandboxed dry run.

Three groups:
* STATIC: must fail the static checks (no process is even started).
* DRY: pass the static checks by construction (loops, recursion, bombs, huge outputs) and must be
  stopped by the dry run's limits.
* BYPASS: programs run in the child *without* static checks and with real builtins, to show the
  process-level layer (audit hook, blocked modules, scrubbed environment, network namespace,
  file-size limit) contains code that got past the first layer.

After every case: no file appeared outside the temporary folder, and no sandbox process is left.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from embodied.rewards import _codecheck
from embodied.rewards.code import RewardCodeError, dry_run, load_program, static_check

CANARY = f"/tmp/embodied-pwned-{uuid.uuid4().hex}"


def _samples(n: int = 4) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    rng = np.random.default_rng(1)
    return [({"hand_pos": rng.normal(size=3), "goal_pos": rng.normal(size=3)}, rng.normal(size=4)) for _ in range(n)]


def _sandbox_pids() -> set[int]:
    """Processes running our sandbox bootstrap (its command line names the checker module)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"_embodied_codecheck" in cmdline:
            pids.add(int(entry.name))
    return pids


@pytest.fixture(autouse=True)
def _no_escape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-canary")
    before_pids = _sandbox_pids()  # others' dry runs may be running concurrently
    before_work = set(Path(tempfile.gettempdir()).glob("embodied-sandbox-*"))
    yield
    assert not Path(CANARY).exists(), "a hostile program wrote a file"
    assert set(Path(tempfile.gettempdir()).glob("embodied-sandbox-*")) <= before_work, "a sandbox folder was left"
    deadline = time.time() + 5
    while _sandbox_pids() - before_pids and time.time() < deadline:
        time.sleep(0.05)
    assert not _sandbox_pids() - before_pids, "a sandbox process was left behind"


def _contract(body: str, header: str = "import numpy as np\nimport math\n") -> str:
    lines = "\n".join("    " + line for line in body.strip("\n").split("\n"))
    return f"{header}def compute_reward(view, action):\n{lines}\n"


STATIC = {
    "read_file": _contract("return float(len(open('/etc/passwd').read())), {}"),
    "write_file": _contract(f"open('{CANARY}', 'w').write('x')\nreturn 1.0, {{}}"),
    "import_os": "import os\n" + _contract(f"os.system('touch {CANARY}')\nreturn 1.0, {{}}", ""),
    "from_os": "from os import system\n" + _contract("return 1.0, {}", ""),
    "import_subprocess": "import subprocess\n" + _contract("return 1.0, {}", ""),
    "import_socket": "import socket\n" + _contract("return 1.0, {}", ""),
    "importlib": "import importlib\n" + _contract("return 1.0, {}", ""),
    "import_in_function": _contract("import os\nreturn 1.0, {}"),
    "dunder_import": _contract("os = __import__('os')\nreturn 1.0, {}"),
    "subclasses": _contract("x = ().__class__.__bases__[0].__subclasses__()\nreturn 1.0, {}"),
    "builtins_dict": _contract("o = __builtins__['open']\nreturn 1.0, {}"),
    "func_globals": _contract("f = lambda: 0\ng = f.__globals__\nreturn 1.0, {}"),
    "attr_chain_init": _contract("g = view.__class__.__init__.__globals__\nreturn 1.0, {}"),
    "format_string_dunder": _contract("s = '{0.__class__}'.format(view)\nreturn 1.0, {}"),
    "format_string_frame": _contract("g = (x for x in [1])\ns = '{0.gi_frame.f_globals}'.format(g)\nreturn 1.0, {}"),
    "format_map": _contract("s = '{x.gi_frame}'.format_map({'x': (i for i in [1])})\nreturn 1.0, {}"),
    "fstring_dunder": _contract("s = f'{view.__class__}'\nreturn 1.0, {}"),
    "getattr_concat": _contract("c = getattr(view, '__cla' + 'ss__')\nreturn 1.0, {}"),
    "vars": _contract("d = vars(np)\nreturn 1.0, {}"),
    "globals": _contract("b = globals()\nreturn 1.0, {}"),
    "locals": _contract("b = locals()\nreturn 1.0, {}"),
    "eval": _contract("return eval('1+1'), {}"),
    "exec": _contract("exec('import os')\nreturn 1.0, {}"),
    "compile": _contract("c = compile('1', 's', 'eval')\nreturn 1.0, {}"),
    "generator_frame": _contract("g = (x for x in [1])\nf = g.gi_frame.f_back\nreturn 1.0, {}"),
    "traceback_frame": _contract(
        "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    t = e.__traceback__.tb_frame.f_globals\nreturn 1.0, {}"
    ),
    "with_traceback": _contract("e = ValueError('x').with_traceback(None)\nreturn 1.0, {}"),
    "mro": _contract("o = float.mro()[-1]\nreturn 1.0, {}"),
    "type_call": _contract("T = type('T', (), {})\nreturn 1.0, {}"),
    "object_name": _contract("o = object\nreturn 1.0, {}"),
    "class_def": "class Evil:\n    pass\n" + _contract("return 1.0, {}", ""),
    "np_ctypeslib": _contract("c = np.ctypeslib\nreturn 1.0, {}"),
    "np_load": _contract("a = np.load('/etc/passwd')\nreturn 1.0, {}"),
    "np_save": _contract(f"np.save('{CANARY}', view.hand_pos)\nreturn 1.0, {{}}"),
    "np_tofile": _contract(f"view.hand_pos.tofile('{CANARY}')\nreturn 1.0, {{}}"),
    "np_lib": _contract("f = np.lib.format\nreturn 1.0, {}"),
    "np_f2py": _contract("f = np.f2py\nreturn 1.0, {}"),
    "np_testing": _contract("t = np.testing\nreturn 1.0, {}"),
    "np_seterrcall": _contract("np.seterrcall(lambda *a: 0)\nreturn 1.0, {}"),
    "np_private": _contract("c = np._core\nreturn 1.0, {}"),
    "np_ctypes_attr": _contract("p = view.hand_pos.ctypes.data\nreturn 1.0, {}"),
    "import_numpy_ctypeslib": "import numpy.ctypeslib\n" + _contract("return 1.0, {}", ""),
    "from_numpy_load": "from numpy import load\n" + _contract("return 1.0, {}", ""),
    "import_numpy_private": "import numpy._core\n" + _contract("return 1.0, {}", ""),
    "from_numpy_lib": "from numpy.lib import format\n" + _contract("return 1.0, {}", ""),
    "attribute_store": _contract("np.pi = 3\nreturn 1.0, {}"),
    "dunder_string_key": _contract("x = view['__class__']\nreturn 1.0, {}"),
    "global_stmt": _contract("global STATE\nSTATE = 1\nreturn 1.0, {}"),
    "nonlocal_stmt": _contract("def f():\n    nonlocal x\nreturn 1.0, {}"),
    "decorator": _contract("return 1.0, {}").replace("def compute", "@np.vectorize\ndef compute"),
    "with_open": _contract("with open('/etc/passwd') as f:\n    pass\nreturn 1.0, {}"),
    "breakpoint": _contract("breakpoint()\nreturn 1.0, {}"),
    "input": _contract("x = input()\nreturn 1.0, {}"),
    "memoryview": _contract("m = memoryview(b'x')\nreturn 1.0, {}"),
    "module_level_loop": "while True:\n    pass\n" + _contract("return 1.0, {}", ""),
    "module_level_call": "import numpy as np\nX = np.zeros(10**12)\n" + _contract("return 1.0, {}", ""),
    "module_level_power": "X = 10 ** 10 ** 10\n" + _contract("return 1.0, {}", ""),
    "default_arg_bomb": "def compute_reward(view, action, x=[0] * 10 ** 10):\n    return 1.0, {}\n",
    "match_class_pattern": _contract("match view:\n    case float(real=r):\n        pass\nreturn 1.0, {}"),
    "async_def": "async def f():\n    pass\n" + _contract("return 1.0, {}", ""),
    "yield": _contract("yield 1.0"),
    "star_import": "from math import *\n" + _contract("return 1.0, {}", ""),
    "relative_import": "from . import x\n" + _contract("return 1.0, {}", ""),
    "no_contract": "def reward(view, action):\n    return 1.0, {}\n",
    "bytes_literal": _contract("b = b'\\x00'\nreturn 1.0, {}"),
}


@pytest.mark.parametrize("name", sorted(STATIC))
def test_static_corpus_rejected_before_any_process(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    source = STATIC[name]

    def no_process(*args: object, **kwargs: object) -> None:
        raise AssertionError("a static rejection must not start the sandbox")

    monkeypatch.setattr(subprocess, "Popen", no_process)
    with pytest.raises(RewardCodeError) as info:
        load_program(source, _samples(), timeout_s=5, name=name)
    assert info.value.kind in {"forbidden", "forbidden_import", "contract", "syntax", "unknown_name"}, str(info.value)
    with pytest.raises(RewardCodeError):
        static_check(source)


def test_annotations_are_never_evaluated() -> None:
    """Annotations run at definition time in the caller's process, so they are stripped, not run."""
    source = "def helper(x: [0] * 10 ** 10) -> [0] * 10 ** 10:\n    return x\n" + _contract(
        "return float(helper(view['hand_pos'][0])), {}", ""
    )
    t0 = time.monotonic()
    program = load_program(source)
    assert time.monotonic() - t0 < 1.0
    assert program({"hand_pos": np.array([2.0, 0.0, 0.0])}, None)[0] == 2.0


# Each passes the static checks; the dry run must stop it. (kind(s) expected)
DRY = {
    "infinite_loop": (_contract("while True:\n    pass\nreturn 1.0, {}"), {"timeout", "cpu"}),
    "infinite_loop_third_sample": (
        _contract("if view.hand_pos[0] > 0.5:\n    while True:\n        pass\nreturn float(view.hand_pos[0]), {}"),
        {"timeout", "cpu"},
    ),
    "loop_swallowing_errors": (
        _contract(
            "while True:\n    try:\n        x = 10 ** 10 ** 7\n    except Exception:\n        pass\nreturn 1.0, {}"
        ),
        {"timeout", "cpu"},
    ),
    "deep_recursion": (
        "def f(n):\n    return f(n + 1) + 1\n" + _contract("return float(f(0)), {}", ""),
        {"recursion"},
    ),
    "mutual_recursion": (
        "def a(n):\n    return b(n)\ndef b(n):\n    return a(n)\n" + _contract("return float(a(0)), {}", ""),
        {"recursion"},
    ),
    "list_bomb": (_contract("x = [0] * 10 ** 10\nreturn 1.0, {}"), {"memory"}),
    "numpy_bomb": (_contract("x = np.ones((10 ** 5, 10 ** 5))\nreturn float(x.sum()), {}"), {"memory"}),
    "string_bomb": (_contract("s = 'x' * 10 ** 11\nreturn 1.0, {}"), {"memory"}),
    "doubling_bomb": (_contract("x = [1]\nwhile True:\n    x = x + x\nreturn 1.0, {}"), {"memory", "timeout", "cpu"}),
    "cpu_bomb_power": (_contract("x = 10 ** 10 ** 9\nreturn 1.0, {}"), {"timeout", "cpu", "memory"}),
    "huge_component_dict": (
        _contract("return float(view.hand_pos[0]), {str(i): 1.0 for i in range(10 ** 5)}"),
        {"output"},
    ),
    "huge_component_name": (_contract("return float(view.hand_pos[0]), {'x' * 10 ** 7: 1.0}"), {"output"}),
    "huge_reward_list": (_contract("return list(range(10 ** 5)), {}"), {"output"}),
    "huge_exception_message": (_contract("raise ValueError('x' * 10 ** 7)"), {"runtime"}),
    "nan_reward": (_contract("return float('nan'), {}"), {"nonfinite"}),
    "reward_is_function": (_contract("return compute_reward, {}"), {"output"}),
}


@pytest.mark.parametrize("name", sorted(DRY))
def test_dry_corpus_contained(name: str) -> None:
    source, kinds = DRY[name]
    static_check(source)  # by construction these get past the first layer
    t0 = time.monotonic()
    with pytest.raises(RewardCodeError) as info:
        load_program(source, _samples(), timeout_s=3.0, memory_mb=256, name=name)
    elapsed = time.monotonic() - t0
    assert info.value.kind in kinds, str(info.value)
    assert elapsed < 10, f"containing {name} took {elapsed:.1f} s"
    assert len(str(info.value)) < 2000, "error messages stay short whatever the program does"


# Run with real builtins and no static checks: the child's own guards must hold.
BYPASS = {
    "write_file": (
        f"def compute_reward(view, action):\n    open('{CANARY}', 'w').write('x')\n    return 1.0, {{}}\n",
        {"sandbox"},
    ),
    "os_system": (
        f"import os\ndef compute_reward(view, action):\n    os.system('touch {CANARY}')\n    return 1.0, {{}}\n",
        {"sandbox"},
    ),
    "os_fork": ("import os\ndef compute_reward(view, action):\n    os.fork()\n    return 1.0, {}\n", {"sandbox"}),
    "os_kill_parent": (
        "import os\ndef compute_reward(view, action):\n    os.kill(os.getppid(), 9)\n    return 1.0, {}\n",
        {"sandbox"},
    ),
    "os_listdir": (
        "import os\ndef compute_reward(view, action):\n    os.listdir('/')\n    return 1.0, {}\n",
        {"sandbox"},
    ),
    "os_open_write": (
        (
            f"import os\ndef compute_reward(view, action):\n    os.open('{CANARY}', os.O_CREAT | os.O_WRONLY)\n"
            "    return 1.0, {}\n"
        ),
        {"sandbox"},
    ),
    "import_socket": (
        "def compute_reward(view, action):\n    import socket\n    return 1.0, {}\n",
        {"runtime", "sandbox"},  # unimportable in the child (the import event is denied, or ImportError)
    ),
    "import_subprocess": (
        "def compute_reward(view, action):\n    import subprocess\n    subprocess.run(['true'])\n    return 1.0, {}\n",
        {"runtime", "sandbox"},
    ),
    "import_new_module": (
        "def compute_reward(view, action):\n    import xml.dom.minidom\n    return 1.0, {}\n",
        {"sandbox"},
    ),
    "ctypes": ("def compute_reward(view, action):\n    import ctypes\n    return 1.0, {}\n", {"runtime", "sandbox"}),
    "caught_denial": (
        (
            "def compute_reward(view, action):\n    try:\n        open('/etc/passwd')\n"
            "    except Exception:\n        pass\n"
            "    return float(view['hand_pos'][0]), {}\n"
        ),
        {"sandbox"},
    ),
}


@pytest.mark.parametrize("name", sorted(BYPASS))
def test_bypass_corpus_contained_by_process_layer(name: str) -> None:
    source, kinds = BYPASS[name]
    with pytest.raises(RewardCodeError) as info:
        dry_run(source, _samples(), timeout_s=5.0, name=name, _unsafe_skip_static_checks=True)
    assert info.value.kind in kinds, str(info.value)
    assert os.getppid() > 1  # the test process (and its parent) survived


def test_child_environment_is_scrubbed() -> None:
    source = (
        "import os\ndef compute_reward(view, action):\n"
        "    secret = sum(1 for k in os.environ if 'KEY' in k or 'TOKEN' in k or 'SECRET' in k)\n"
        "    return float(view['hand_pos'][0]), {'secrets': float(secret), 'n_env': float(len(os.environ))}\n"
    )
    assert os.environ["OPENAI_API_KEY"]  # set by the fixture, so there is something to leak
    result = dry_run(source, _samples(), timeout_s=5.0, _unsafe_skip_static_checks=True)
    assert result.components["secrets"] == [0.0] * 4
    assert max(result.components["n_env"]) <= 6


def test_child_has_no_network() -> None:
    """The child's network isolation, alone: it cannot reach a server listening on loopback here."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted: list[object] = []
    server.settimeout(3)

    def accept() -> None:
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    script = (
        "import importlib.util as u, socket\n"
        f"s = u.spec_from_file_location('_embodied_codecheck', {_codecheck.__file__!r})\n"
        "m = u.module_from_spec(s); s.loader.exec_module(m)\n"
        "how = m._isolate_network()\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2); print('CONNECTED', how)\n"
        "except OSError as e:\n"
        "    print('BLOCKED', how, e)\n"
    )
    out = subprocess.run([sys.executable, "-I", "-c", script], check=False, capture_output=True, text=True, timeout=20)
    thread.join()
    server.close()
    if "audit hook only" in out.stdout:
        pytest.skip("no network namespaces here; the audit hook and blocked socket modules are the guard")
    assert out.stdout.startswith("BLOCKED"), out.stdout + out.stderr
    assert not accepted
