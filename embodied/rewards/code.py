"""Reward programs written by an LLM or a person: extraction, validation, sandboxed dry run, fast path.

A reward program is Python source defining ``compute_reward(view, action) -> (float, dict[str, float])``
over the task's named observation views (``view.hand_pos``, shape per `envs/<task>.toml`) and the
action (float array [A], or None when the program serves as a potential). Helper functions and
module-level constants are allowed; imports are limited to `math` and `numpy`.

Layers, cheapest first:

1. Static checks (always): extract the code, parse it, allow-list the AST (no dunders, no
   eval/exec/open/getattr/..., no classes, no global/nonlocal, no attribute stores, no
   ``str.format``), require the contract function, reject unknown names. Module level may only
   bind constants, so loading never runs a loop.
2. Restricted execution namespace: a small set of builtins, `math`, and a filtered numpy
   (no file I/O, no `ctypes`, no process-wide hooks such as `seterrcall`); module-level
   containers are frozen so a program cannot carry state across calls.
3. Dry run (when `samples` are given): the program runs on recorded transitions in a child
   process with CPU-time, address-space and file-size limits, a wall-clock timeout that kills the
   whole process group, an empty environment (no API keys), its own network namespace where the
   kernel allows (else an audit hook is the only network guard), and an audit hook that denies
   every file, socket, process, import and ctypes event once setup is done. Outputs must be finite
   real numbers, vary across samples, name the same components every time, and be fast.

Validated programs then run in-process (`RewardProgram.__call__`) with a guard that turns NaN/inf
or an exception into a `RewardCodeError` naming the program, the call number and the line.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embodied.rewards import _codecheck as cc
from embodied.rewards.base import RewardError

__all__ = [
    "DryRunResult",
    "NonFiniteRewardError",
    "RewardCodeError",
    "RewardProgram",
    "ValidationReport",
    "dry_run",
    "extract_code",
    "load_program",
    "load_program_file",
    "static_check",
    "task_samples",
]

Sample = tuple[Any, Any]
"""One dry-run input: (view, action). `view` is a `View`, a mapping name -> array, or anything with
`as_dict()`; `action` is an array [A] or None."""


class RewardCodeError(ValueError):
    """A reward program was rejected or failed at run time.

    Attributes:
        kind: short machine-readable reason, e.g. ``syntax``, ``forbidden``, ``forbidden_import``,
            ``contract``, ``unknown_name``, ``extract``, ``truncated``, ``runtime``, ``timeout``, ``cpu``,
            ``memory``, ``recursion``, ``sandbox``, ``output``, ``nonfinite``, ``constant``,
            ``components``, ``slow``, ``crash``.
        reason: the human-readable reason (also what the LLM gets as feedback).
        line: 1-based line in the program where the problem is, when known.
        program: name of the program (file name or search sample id), when known.
    """

    def __init__(self, kind: str, reason: str, line: int | None = None, program: str | None = None) -> None:
        self.kind = kind
        self.reason = reason
        self.line = line
        self.program = program
        where = f" in {program}" if program else ""
        at = f" (line {line})" if line else ""
        super().__init__(f"{kind}{where}: {reason}{at}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, used in validation logs and search feedback."""
        return {"kind": self.kind, "reason": self.reason, "line": self.line, "program": self.program}

    def feedback(self) -> str:
        """One line for the next LLM round."""
        at = f" at line {self.line}" if self.line else ""
        return f"[{self.kind}]{at}: {self.reason}"


class NonFiniteRewardError(RewardCodeError, RewardError):
    """A validated program produced NaN/inf in training (a `RewardError` too, so reward wrappers see it)."""


def _wrap(exc: cc.CodeCheckError, program: str | None) -> RewardCodeError:
    return RewardCodeError(exc.kind, exc.reason, exc.line, program)


def extract_code(text: str) -> str:
    """The program inside an LLM response: a fenced block (the one defining `compute_reward`), or,
    without fences, the code lines with surrounding prose dropped.

    Raises:
        RewardCodeError: kind ``extract`` when the text holds no code at all.
    """
    try:
        return cc.extract_code(text)
    except cc.CodeCheckError as exc:
        raise _wrap(exc, None) from None


def static_check(source: str, name: str | None = None) -> None:
    """Run only the static checks (parse, allow-list, contract). Raises `RewardCodeError`."""
    try:
        cc.check_source(source)
    except cc.CodeCheckError as exc:
        raise _wrap(exc, name) from None


# --------------------------------------------------------------------------------------------------
# dry run


@dataclass
class DryRunResult:
    """What the sandboxed dry run measured.

    Attributes:
        rewards: reward per sample, [n].
        components: component name -> values per sample, each [n].
        call_s: wall time of each call inside the child, [n] (seconds).
        wall_s: total wall time of the dry run including process start (seconds).
        network: how the child's network was cut ("network namespace", ..., or "audit hook only").
    """

    rewards: list[float]
    components: dict[str, list[float]]
    call_s: list[float]
    wall_s: float
    network: str

    def summary(self) -> dict[str, Any]:
        """min/mean/max of the reward and each component, median/max call time."""

        def stats(xs: Sequence[float]) -> dict[str, float]:
            return {"min": float(min(xs)), "mean": float(sum(xs) / len(xs)), "max": float(max(xs))}

        return {
            "samples": len(self.rewards),
            "reward": stats(self.rewards),
            "components": {k: stats(v) for k, v in self.components.items()},
            "call_s_median": float(statistics.median(self.call_s)),
            "call_s_max": float(max(self.call_s)),
            "wall_s": self.wall_s,
            "network": self.network,
        }


def _plain_view(view: Any) -> dict[str, np.ndarray]:
    if hasattr(view, "as_dict"):
        data = view.as_dict()
    elif isinstance(view, Mapping):
        data = dict(view)
    else:
        raise TypeError(f"a dry-run view must be a View, a mapping or have as_dict(); got {type(view).__name__}")
    return {str(k): np.array(v) for k, v in data.items()}


def _bootstrap() -> str:
    """The child's `-c` program: load `_codecheck.py` by path (no package __init__) and run it."""
    path = str(Path(cc.__file__).resolve())
    syspath = [p for p in sys.path if p]
    return (
        "import sys, importlib.util as u\n"
        f"sys.path[:] = {syspath!r}\n"
        f"s = u.spec_from_file_location('_embodied_codecheck', {path!r})\n"
        "m = u.module_from_spec(s); sys.modules[s.name] = m; s.loader.exec_module(m)\n"
        "m.child_main()\n"
    )


# Only what the child needs: a minimal PATH and single-threaded BLAS (threads would multiply the
# address space the memory limit has to allow for). No HOME, no API keys, no proxies.
_CHILD_ENV = {
    "PATH": "/usr/bin:/bin",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "LC_ALL": "C.UTF-8",
}
_MAX_REPLY_BYTES = 4 * 2**20


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def dry_run(
    source: str,
    samples: Sequence[Sample],
    timeout_s: float = 10.0,
    *,
    memory_mb: int = 512,
    cpu_s: float | None = None,
    name: str | None = None,
    _unsafe_skip_static_checks: bool = False,
) -> DryRunResult:
    """Run `source` on `samples` in a sandboxed child process and return raw outputs (unchecked
    for finiteness/constancy; `load_program` does that).

    Args:
        source: program source (already extracted).
        samples: (view, action) pairs; views are sent as dicts of arrays.
        timeout_s: wall-clock limit for the whole child (start-up included); the process group is
            killed when it passes.
        memory_mb: address space the program may add on top of the interpreter and numpy.
        cpu_s: CPU-time limit (default: `timeout_s`).
        name: program name for error messages.

    Raises:
        RewardCodeError: the program failed, timed out, ran out of memory or touched the sandbox.
    """
    if not samples:
        raise ValueError("dry_run needs at least one (view, action) sample")
    request = {
        "source": source,
        "filename": f"<reward:{name or 'program'}>",
        "samples": [(_plain_view(v), None if a is None else np.array(a)) for v, a in samples],
        "limits": {"cpu_s": float(cpu_s or timeout_s), "memory_mb": int(memory_mb)},
        "unsafe_skip_static_checks": bool(_unsafe_skip_static_checks),
    }
    payload = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
    workdir = tempfile.mkdtemp(prefix="embodied-sandbox-")
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-c", _bootstrap()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env=dict(_CHILD_ENV),
            start_new_session=True,  # own process group, so a timeout kills everything it started
            close_fds=True,
        )
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    try:
        try:
            out, err = proc.communicate(payload, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.communicate(timeout=5)
            raise RewardCodeError(
                "timeout",
                f"the dry run did not finish within {timeout_s:g} s (infinite loop or far too slow?)",
                program=name,
            ) from None
    finally:
        _kill_group(proc.pid)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)
    wall = time.perf_counter() - t0
    reply = _last_json_line(out[-_MAX_REPLY_BYTES:])
    if reply is None:
        raise _crash(proc.returncode, err.decode("utf-8", "replace"), memory_mb, request["limits"]["cpu_s"], name)
    if not reply.get("ok"):
        raise RewardCodeError(str(reply.get("kind", "runtime")), str(reply.get("message", "")), reply.get("line"), name)
    comps: dict[str, list[float]] = {}
    names0 = list(reply["components"][0]) if reply["components"] else []
    for i, c in enumerate(reply["components"]):
        if list(c) != names0 and set(c) != set(names0):
            raise RewardCodeError(
                "components",
                f"sample {i} returned components {sorted(c)} but sample 0 returned {sorted(names0)}; "
                "always return the same component names",
                program=name,
            )
    for key in names0:
        comps[key] = [float(c[key]) for c in reply["components"]]
    return DryRunResult(
        [float(r) for r in reply["rewards"]],
        comps,
        [float(t) for t in reply["times"]],
        wall,
        str(reply.get("network", "")),
    )


def _last_json_line(out: bytes) -> dict[str, Any] | None:
    for line in reversed(out.decode("utf-8", "replace").splitlines()):
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def _crash(code: int | None, stderr: str, memory_mb: int, cpu_s: float, name: str | None) -> RewardCodeError:
    tail = stderr.strip().splitlines()[-1][:300] if stderr.strip() else ""
    if code == -signal.SIGXCPU or (code == -signal.SIGKILL and "MemoryError" not in stderr):
        return RewardCodeError("cpu", f"the program used more than {cpu_s:g} s of CPU time", program=name)
    if "MemoryError" in stderr:
        return RewardCodeError("memory", f"the program exceeded the memory limit ({memory_mb} MiB)", program=name)
    if code == -signal.SIGXFSZ:
        return RewardCodeError("sandbox", "the program tried to write a file", program=name)
    what = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    return RewardCodeError("crash", f"the sandbox process died ({what}) {tail}".strip(), program=name)


# --------------------------------------------------------------------------------------------------
# validated program


@dataclass
class ValidationReport:
    """What validation did: kept as the program's validation log (JSON via `to_dict`)."""

    name: str
    static_ok: bool = False
    static_s: float = 0.0
    dry_run: dict[str, Any] | None = None
    components: tuple[str, ...] = ()
    log: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RewardProgram:
    """A validated reward program, called in-process: ``program(view, action) -> (reward, components)``.

    The call is the training fast path: one Python call into the program plus a finiteness check.
    Any exception or NaN/inf becomes a `RewardCodeError` (NaN/inf: `NonFiniteRewardError`) that
    names the program, the call number (`calls`, 1-based since load) and the program line.
    """

    __slots__ = ("_fn", "calls", "name", "namespace", "report", "source")

    def __init__(
        self, fn: Callable[[Any, Any], Any], source: str, name: str, namespace: dict[str, Any], report: ValidationReport
    ) -> None:
        self._fn = fn
        self.source = source
        self.name = name
        self.namespace = namespace
        self.report = report
        self.calls = 0

    @property
    def components(self) -> tuple[str, ...]:
        """Component names seen in the dry run (empty when no dry run was done)."""
        return self.report.components

    def __call__(self, view: Any, action: Any) -> tuple[float, dict[str, float]]:
        self.calls += 1
        try:
            reward, parts = self._fn(view, action)
            r = float(reward)
            comps = {k: float(v) for k, v in parts.items()}
        except Exception as exc:
            raise self._runtime_error(exc) from exc
        # One finiteness test on the sum covers every value; details only on failure.
        if not math.isfinite(r + sum(comps.values())):
            self._check_finite(r, comps)
        return r, comps

    def _check_finite(self, r: float, comps: dict[str, float]) -> None:
        if not math.isfinite(r):
            raise NonFiniteRewardError(
                "nonfinite", f"returned a non-finite reward ({r}) at call {self.calls}", program=self.name
            )
        for k, v in comps.items():
            if not math.isfinite(v):
                raise NonFiniteRewardError(
                    "nonfinite", f"returned a non-finite component {k!r} ({v}) at call {self.calls}", program=self.name
                )

    def _runtime_error(self, exc: Exception) -> RewardCodeError:
        filename = f"<reward:{self.name}>"
        text, line = cc.describe_exception(exc, filename)
        if isinstance(exc, (TypeError, ValueError, AttributeError)) and line is None:
            text = f"{text} (compute_reward must return (float, dict[str, float]))"
        return RewardCodeError("runtime", f"raised {text} at call {self.calls}", line, self.name)

    def __repr__(self) -> str:
        return f"RewardProgram({self.name!r}, components={list(self.components)})"


def load_program(
    source: str,
    samples: Sequence[Sample] | None = None,
    timeout_s: float = 10.0,
    *,
    name: str = "program",
    memory_mb: int = 512,
    max_call_s: float = 0.005,
    extract: bool = True,
) -> RewardProgram:
    """Validate a reward program and return it ready to call in-process.

    Args:
        source: program text; an LLM response with a fenced block works too (see `extract_code`).
        samples: (view, action) pairs for the sandboxed dry run; None skips the dry run (static
            checks still run), which is what hand-written programs loaded for training use.
        timeout_s: wall-clock limit of the dry run (CPU-time limit too).
        name: program name used in errors and in tracebacks.
        memory_mb: extra address space the dry run may use.
        max_call_s: the median call in the dry run must be faster than this (seconds).
        extract: run `extract_code` first (a plain program passes through unchanged).

    Returns:
        A `RewardProgram`; ``program(view, action) -> (float, dict[str, float])``.

    Raises:
        RewardCodeError: the first failed check, with its kind, reason and line.
    """
    report = ValidationReport(name=name)
    t0 = time.perf_counter()
    if extract:
        source = extract_code(source)
    filename = f"<reward:{name}>"
    try:
        tree = cc.check_source(source)
        fn, namespace = cc.compile_program(tree, filename)
    except cc.CodeCheckError as exc:
        raise _wrap(exc, name) from None
    report.static_ok = True
    report.static_s = time.perf_counter() - t0
    report.log.append(f"static checks passed in {report.static_s * 1e3:.1f} ms")
    if samples is not None:
        samples = list(samples)
        result = dry_run(source, samples, timeout_s, memory_mb=memory_mb, name=name)
        _check_outputs(result, name, max_call_s)
        report.dry_run = result.summary()
        report.components = tuple(result.components)
        report.log.append(
            f"dry run passed: {len(samples)} samples, median call {report.dry_run['call_s_median'] * 1e6:.0f} us, "
            f"wall {result.wall_s:.2f} s, network: {result.network}"
        )
    return RewardProgram(fn, source, name, namespace, report)


def _check_outputs(result: DryRunResult, name: str, max_call_s: float) -> None:
    for i, r in enumerate(result.rewards):
        if not math.isfinite(r):
            raise RewardCodeError("nonfinite", f"sample {i}: the reward is {r}", program=name)
    for key, values in result.components.items():
        for i, v in enumerate(values):
            if not math.isfinite(v):
                raise RewardCodeError("nonfinite", f"sample {i}: component {key!r} is {v}", program=name)
    rewards = result.rewards
    if len(rewards) >= 2:
        spread = max(rewards) - min(rewards)
        if spread <= 1e-9 * max(1.0, abs(rewards[0])):
            raise RewardCodeError(
                "constant",
                f"the reward is constant ({rewards[0]:g}) across {len(rewards)} different samples; "
                "a dense reward must vary with the state",
                program=name,
            )
    median = statistics.median(result.call_s)
    if median > max_call_s:
        raise RewardCodeError(
            "slow",
            f"the median call took {median * 1e3:.2f} ms; the limit is {max_call_s * 1e3:.2f} ms per call",
            program=name,
        )


def load_program_file(
    path: str | Path, samples: Sequence[Sample] | None = None, timeout_s: float = 10.0, **kwargs: Any
) -> RewardProgram:
    """`load_program` on a file; the program is named by its path."""
    path = Path(path)
    return load_program(path.read_text(), samples, timeout_s, name=kwargs.pop("name", str(path)), **kwargs)


# --------------------------------------------------------------------------------------------------
# samples from the task


def task_samples(task: Any, n: int = 32, seed: int = 0) -> list[tuple[dict[str, np.ndarray], np.ndarray]]:
    """Recorded transitions of a task for the dry run: a uniformly random policy for `n` steps
    (resetting at episode ends), each as (views of s' as a dict, action). The same (s', a) pairing
    the reward wrapper uses in training."""
    from embodied.envs.make import make
    from embodied.envs.wrappers import view_getters
    from embodied.tasks.views import View

    env = make(task)
    try:
        from embodied.envs.make import resolve

        spec = resolve(task)
        getters = view_getters(spec, env.observation_space)
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        out: list[tuple[dict[str, np.ndarray], np.ndarray]] = []
        while len(out) < n:
            action = env.action_space.sample()
            obs, _, terminated, truncated, _ = env.step(action)
            out.append((View(getters, obs).as_dict(), np.asarray(action)))
            if terminated or truncated:
                obs, _ = env.reset()
        return out
    finally:
        env.close()
