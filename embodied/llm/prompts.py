"""Prompts for reward code: Text2Reward-style generation, refinement, and Eureka-style reflection.

The environment is described to the LLM as a compact Pythonic interface: the `view` attributes it
may read (name, shape, unit, one-line meaning) and the action space, plus the goal, the ordered
stages and the contract. The LLM writes against those attributes, which are real objects at run
time (no string replacement of names afterwards).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embodied.llm.client import Message
from embodied.tasks.spec import TaskSpec, load_task

CONTRACT = "compute_reward(view, action) -> tuple[float, dict[str, float]]"

SYSTEM = """You are an expert in reinforcement learning and robotics who writes dense reward functions in Python.

Write exactly one Python function with this signature, plus optional helper functions and constants:

    def compute_reward(view, action) -> tuple[float, dict[str, float]]:

Rules:
- `view` exposes the observation through the attributes listed in the task description (numpy arrays
  or numpy scalars, read-only). Use only those attributes, spelled exactly as listed.
- `action` is the action just taken (numpy array), or None when the reward is used as a state potential;
  handle None (e.g. skip action penalties).
- Return the total reward as a float and a dict naming every term that was summed into it
  (component name -> float), e.g. {"reach": -d, "grasp": g}. Always return the same component names.
- Only `import math` and `import numpy as np` are allowed; no other imports, no I/O, no classes, no
  global state, no printing, no randomness. Helper functions are fine.
- The reward must be dense and informative: it should change as the robot makes progress, and be
  finite for every state. Keep terms on comparable scales (roughly within [-10, 10] per step).
- Answer with the code in a single ```python fenced block."""


@dataclass(frozen=True)
class ViewInfo:
    """One observation view as the prompt shows it. `shape` is () for a scalar; None when unknown."""

    name: str
    shape: tuple[int, ...] | None
    unit: str
    meaning: str


@dataclass(frozen=True)
class TaskInterface:
    """What a reward program can read: the task's views and the action space, in words."""

    task: TaskSpec
    views: tuple[ViewInfo, ...]
    action: str

    def describe(self) -> str:
        """Compact Pythonic description (Text2Reward style): typed attribute stubs, one meaning each."""
        lines = [f"class View:  # what `view` exposes for task {self.task.name!r}"]
        for v in self.views:
            if v.shape is None:
                typ = "np.ndarray"
                shape = "shape unknown"
            elif v.shape == ():
                typ, shape = "float", "scalar"
            else:
                typ, shape = "np.ndarray", f"shape {v.shape}"
            unit = f", {v.unit}" if v.unit else ""
            lines.append(f"    {v.name}: {typ}  # {shape}{unit}: {v.meaning}")
        if not self.views:
            lines.append("    pass  # this task defines no views")
        lines.append("")
        lines.append(f"action: {self.action}")
        return "\n".join(lines)


def describe_space(space: Any) -> str:
    """One line for a gymnasium action space, e.g. 'np.ndarray  # shape (4,), float32, each in [-1, 1]'."""
    import gymnasium as gym
    import numpy as np

    if isinstance(space, gym.spaces.Box):
        lo, hi = np.asarray(space.low), np.asarray(space.high)
        if np.all(lo == lo.flat[0]) and np.all(hi == hi.flat[0]):
            bounds = f"each in [{lo.flat[0]:g}, {hi.flat[0]:g}]"
        else:
            bounds = f"low {lo.tolist()}, high {hi.tolist()}"
        return f"np.ndarray  # shape {tuple(space.shape)}, {space.dtype}, {bounds}"
    if isinstance(space, gym.spaces.Discrete):
        return f"int  # discrete, one of {space.start}..{space.start + space.n - 1}"
    if isinstance(space, gym.spaces.MultiDiscrete):
        return f"np.ndarray  # multi-discrete, sizes {space.nvec.tolist()}"
    return f"{type(space).__name__}  # {space}"


def task_interface(task: str | Path | TaskSpec, spaces: tuple[Any, Any] | None = None) -> TaskInterface:
    """Views with shapes and the action space, read from the task's environment.

    Args:
        task: task name, path or spec.
        spaces: (observation_space, action_space) to use instead of building the env (tests, or
            when the simulator is not installed).
    """
    from embodied.tasks.views import ViewError, make_getter

    spec = load_task(task)
    if spaces is None:
        try:
            from embodied.envs.make import make

            env = make(spec)
            spaces = (env.observation_space, env.action_space)
            env.close()
        except Exception:
            spaces = None
    views = []
    for name, v in spec.views.items():
        shape: tuple[int, ...] | None = None
        if spaces is not None:
            try:
                _, shape = make_getter(v.expr, f"{spec.name}: views.{name}", spaces[0])
            except ViewError:
                shape = None
        views.append(ViewInfo(name, shape, v.unit, v.meaning))
    action = describe_space(spaces[1]) if spaces is not None else "np.ndarray  # the environment's action"
    return TaskInterface(spec, tuple(views), action)


def _task_text(iface: TaskInterface) -> str:
    spec = iface.task
    parts = [f"Task: {spec.goal}", "", "The observation and action interface:", "```python", iface.describe(), "```"]
    if spec.stages:
        parts += ["", "The task proceeds in these stages:"]
        parts += [f"{i}. {s.name}: {s.description}" for i, s in enumerate(spec.stages, 1)]
    parts += [
        "",
        f"Episodes last at most {spec.max_episode_steps} steps; the learner's discount is gamma = {spec.gamma}.",
        f"The environment judges success by: {spec.success}",
    ]
    return "\n".join(parts)


def few_shot_examples(task: str, root: Path = Path("reward_models"), k: int = 1) -> list[tuple[str, str]]:
    """Up to `k` (other task name, program source) pairs from `root/<other task>/*.py`, never `task`.

    Expert programs (`expert.py`) come first; tasks from the same suite come before others.
    """
    if not root.is_dir():
        return []
    try:
        suite = load_task(task).suite
    except Exception:
        suite = None
    candidates: list[tuple[int, str, Path]] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name != task):
        for path in sorted(folder.glob("*.py")):
            try:
                other_suite = load_task(folder.name).suite
            except Exception:
                other_suite = None
            rank = (0 if other_suite == suite else 2) + (0 if path.stem == "expert" else 1)
            candidates.append((rank, folder.name, path))
    candidates.sort(key=lambda c: (c[0], c[1]))
    out: list[tuple[str, str]] = []
    for _, name, path in candidates:
        if len(out) >= k:
            break
        if any(n == name for n, _ in out):
            continue
        out.append((name, path.read_text()))
    return out


def generation_messages(
    task: str | Path | TaskSpec,
    *,
    few_shot: bool = False,
    examples_root: Path = Path("reward_models"),
    interface: TaskInterface | None = None,
) -> list[Message]:
    """System + user messages asking for a first reward program for `task`."""
    iface = interface or task_interface(task)
    user = _base_user(iface, few_shot, examples_root)
    user += ["", f"Write a dense reward function `{CONTRACT}` for this task."]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(user)}]


def _base_user(iface: TaskInterface, few_shot: bool, examples_root: Path) -> list[str]:
    user = [_task_text(iface)]
    if few_shot:
        for name, source in few_shot_examples(iface.task.name, examples_root):
            try:
                other = load_task(name)
                intro = (
                    f"Here is an expert reward for a different task ({name}: {other.goal}), with views:\n"
                    f"{other.view_table()}"
                )
            except Exception:
                intro = f"Here is an expert reward for a different task ({name})."
            user += ["", intro, "```python", source.strip(), "```", "Use it as a style reference only."]
    return user


def refinement_messages(
    task: str | Path | TaskSpec,
    previous_code: str,
    *,
    feedback: str,
    rollout_stats: Mapping[str, Any] | str | None = None,
    video: str | None = None,
    interface: TaskInterface | None = None,
) -> list[Message]:
    """Text2Reward refinement: the previous code, what the robot did, and a person's feedback."""
    iface = interface or task_interface(task)
    user = [_task_text(iface), "", "The current reward function:", "```python", previous_code.strip(), "```"]
    if rollout_stats:
        stats = rollout_stats if isinstance(rollout_stats, str) else json.dumps(rollout_stats, indent=1, default=str)
        user += ["", "What the robot did when trained with it (rollout statistics):", stats]
    if video:
        user += ["", f"The person watched the rollout video ({video}) and says:"]
    else:
        user += ["", "A person who watched the robot says:"]
    user += [feedback.strip(), "", f"Write an improved `{CONTRACT}` that addresses the feedback."]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(user)}]


# --------------------------------------------------------------------------------------------------
# Eureka reward reflection


@dataclass(frozen=True)
class ComponentStats:
    """One reward component over a training run.

    Attributes:
        values: the component's mean per rollout, in training order (sampled for the prompt).
        corr_success: Pearson correlation of `values` with the rollout success rate (None when
            either is constant or too short).
    """

    name: str
    values: tuple[float, ...]
    corr_success: float | None = None

    @property
    def min(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def max(self) -> float:
        return max(self.values) if self.values else float("nan")

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values) if self.values else float("nan")


def _sampled(values: Sequence[float], n: int = 10) -> list[float]:
    if len(values) <= n:
        return list(values)
    step = (len(values) - 1) / (n - 1)
    return [values[round(i * step)] for i in range(n)]


def reflection_text(
    success_rate: float, components: Sequence[ComponentStats], success_curve: Sequence[float] = ()
) -> str:
    """Eureka's reward reflection for one trained program: per-component statistics plus tips."""
    lines = [f"Trained with this reward, the policy succeeded in {success_rate:.0%} of held-out evaluation episodes."]
    if success_curve:
        curve = ", ".join(f"{v:.2f}" for v in _sampled(success_curve))
        lines.append(f"Success rate during training (sampled): {curve}")
    tips: list[str] = []
    if success_rate < 0.05:
        tips.append("The success rate is near zero: rewrite the whole reward function rather than tuning it.")
    scales = {c.name: max(abs(c.min), abs(c.max)) for c in components if c.values}
    biggest = max(scales.values(), default=0.0)
    for c in components:
        if not c.values:
            continue
        corr = "n/a" if c.corr_success is None else f"{c.corr_success:+.2f}"
        sampled = ", ".join(f"{v:.3g}" for v in _sampled(c.values))
        lines.append(
            f"- {c.name}: min {c.min:.3g}, mean {c.mean:.3g}, max {c.max:.3g}; "
            f"correlation with success {corr}; values over training: [{sampled}]"
        )
        spread = c.max - c.min
        if spread <= 1e-6 * max(1.0, abs(c.mean)):
            tips.append(
                f"'{c.name}' is nearly constant during training: the learner cannot optimise it; "
                "rescale it (or its temperature) or drop it."
            )
        elif biggest > 0 and scales[c.name] > 20 * min(s for s in scales.values() if s > 0):
            tips.append(
                f"'{c.name}' is much larger in magnitude than other components and may dominate; consider rescaling it."
            )
    if tips:
        lines += ["", "Tips:"] + [f"- {t}" for t in tips]
    return "\n".join(lines)


def reflection_messages(
    task: str | Path | TaskSpec,
    best_code: str | None,
    reflection: str | None,
    failures: Sequence[str] = (),
    *,
    few_shot: bool = False,
    examples_root: Path = Path("reward_models"),
    interface: TaskInterface | None = None,
) -> list[Message]:
    """The next search iteration's prompt: best program so far with its reflection, plus the errors
    of samples that failed validation or training."""
    iface = interface or task_interface(task)
    user = _base_user(iface, few_shot, examples_root)
    if best_code:
        user += ["", "The best reward function so far:", "```python", best_code.strip(), "```"]
        if reflection:
            user += ["", reflection]
    if failures:
        user += ["", "Other candidates failed; avoid these mistakes:"]
        user += [f"- {f}" for f in failures[:16]]
    verb = "an improved" if best_code else "a dense"
    user += ["", f"Write {verb} `{CONTRACT}` for this task. Answer with the code block only."]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(user)}]


def prompt_hash(messages: Sequence[Message]) -> str:
    """sha256 (hex, 16 chars) of the messages, for metadata."""
    blob = json.dumps([dict(m) for m in messages], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
