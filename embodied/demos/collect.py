"""Scripted demonstrations: Meta-World's expert policies, annotated from the task's stage rules, optionally degraded.

Stage boundaries come from the task file: stage k ends at the first frame (after stage k-1 ended) where its
``done`` rule holds (rules read the task's views and the step's ``info``, e.g. ``near_object``,
``grasp_success``, ``success``). Stage k then spans ``[end_{k-1}, end_k]`` (stage 0 starts at frame 0;
neighbours share their boundary frame; several rules holding on one frame give zero-length stages). A
last stage without a rule ends at the first success. The ``sparse`` annotation set is one ``"task"`` stage
from frame 0 to the end of the last stage. Failed episodes annotate only the stages they completed.

Degradations make mixed-quality sets (all per step unless noted; the recorded action is the executed one):

- ``noise`` σ: Gaussian noise added to every action dimension (then clipped to the action space);
- ``pause`` p: with probability p a pause of 5-15 steps starts (arm holds still, gripper command kept);
- ``regress`` p: with probability p a regression of 5-15 steps starts (the expert's motion, reversed);
- ``fail`` p (per episode): after 0-40 expert steps the demonstrator heads for a wrong place and stays there.

Episodes end ``tail`` steps after the first success, or at the task's step limit.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embodied.demos.dataset import DemoDataset, DemoError, DemoWriter, Episode, Stage
from embodied.tasks.spec import TaskSpec, load_task

Expert = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Degradation:
    """How to spoil an expert's demonstrations (see the module docstring)."""

    noise: float = 0.0
    pause: float = 0.0
    regress: float = 0.0
    fail: float = 0.0
    pause_len: tuple[int, int] = (5, 15)
    regress_len: tuple[int, int] = (5, 15)
    fail_after: tuple[int, int] = (0, 40)

    def __post_init__(self) -> None:
        if not (np.isfinite(self.noise) and self.noise >= 0):
            raise DemoError(f"option --noise: must be a finite value >= 0, got {self.noise}")
        for name in ("pause", "regress", "fail"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise DemoError(f"option --{name}: must be a probability in [0, 1], got {value}")

    @property
    def clean(self) -> bool:
        return not (self.noise or self.pause or self.regress or self.fail)


class Demonstrator:
    """An expert policy plus degradations, for one episode at a time (Meta-World xyz-delta + gripper actions).

    Args:
        expert: obs [D] -> action [A] (Meta-World's scripted policy).
        degradation: what to spoil.
        rng: the episode's random generator.
        low, high: action bounds.
    """

    def __init__(
        self, expert: Expert, degradation: Degradation, rng: np.random.Generator, low: np.ndarray, high: np.ndarray
    ) -> None:
        self.expert, self.d, self.rng, self.low, self.high = expert, degradation, rng, low, high
        self.mode, self.left = "expert", 0
        self.fail_at = (
            int(rng.integers(*degradation.fail_after, endpoint=True)) if rng.random() < degradation.fail else None
        )
        # A wrong place inside the Sawyer's reachable box, away from where the task happens.
        self.wrong = np.array([rng.uniform(-0.3, 0.3), rng.uniform(0.45, 0.75), rng.uniform(0.15, 0.35)])
        self.wrong_grip = float(rng.choice([-1.0, 1.0]))
        self.counts = {"expert": 0, "pause": 0, "regress": 0, "fail": 0}
        self._last_grip = -1.0

    def act(self, obs: np.ndarray, t: int) -> np.ndarray:
        """The action at step t for observation `obs` (float32 [A], clipped to the bounds)."""
        d = self.d
        expert = np.asarray(self.expert(obs), dtype=np.float64)
        if self.fail_at is not None and t >= self.fail_at:
            mode = "fail"
            action = np.append(np.clip((self.wrong - obs[0:3]) * 10.0, -1, 1), self.wrong_grip)
        else:
            if self.left <= 0:
                self.mode = "expert"
                u = self.rng.random()
                if u < d.pause:
                    self.mode, self.left = "pause", int(self.rng.integers(*d.pause_len, endpoint=True))
                elif u < d.pause + d.regress:
                    self.mode, self.left = "regress", int(self.rng.integers(*d.regress_len, endpoint=True))
            mode = self.mode
            if mode == "pause":
                action = np.append(np.zeros(3), self._last_grip)
            elif mode == "regress":
                action = np.append(-expert[:3], expert[3])
            else:
                action = expert.copy()
            self.left -= 1
        if d.noise:
            action = action + self.rng.normal(0.0, d.noise, size=action.shape)
        action = np.clip(action, self.low, self.high)
        self._last_grip = float(action[3]) if action.shape[0] > 3 else self._last_grip
        self.counts[mode] += 1
        return action.astype(np.float32)


def metaworld_expert(spec: TaskSpec) -> Expert:
    """Meta-World's scripted policy for the task's env id."""
    if spec.suite != "metaworld":
        raise DemoError(
            f"{spec.source or spec.name}: field 'suite': scripted experts exist only for Meta-World tasks, "
            f"not {spec.suite!r}; record demos another way and import them (embodied demos import)"
        )
    from metaworld.policies import ENV_POLICY_MAP

    if spec.env_id not in ENV_POLICY_MAP:
        raise DemoError(f"{spec.source or spec.name}: field 'env_id': no scripted expert for {spec.env_id!r}")
    import warnings

    # Meta-World's experts use gains > 1 on purpose (the env clips actions); its per-call warning is noise.
    warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high", module="metaworld")
    policy = ENV_POLICY_MAP[spec.env_id]()
    return policy.get_action


class StageTracker:
    """Finds stage boundaries online from the task's stage `done` rules (evaluated in order)."""

    def __init__(self, spec: TaskSpec, getters: dict[str, Any]) -> None:
        from embodied.envs.wrappers import compile_rule

        self.spec, self.getters = spec, getters
        stages = spec.stages or ()
        self.names = [s.name for s in stages] or ["task"]
        self.rules: list[tuple[Any, list[str]] | None] = []
        for k, st in enumerate(stages):
            if st.done is None:
                if k != len(stages) - 1:
                    raise DemoError(
                        f"{spec.source or spec.name}: field 'stages[{k}].done': stage {st.name!r} has no done rule, "
                        "so its end cannot be annotated (only the last stage may omit it: it ends at success)"
                    )
                self.rules.append(None)
            else:
                fn, used = compile_rule(spec, st.done, f"stages[{k}].done")
                self.rules.append((fn, sorted(used - {"info"})))
        if not stages:
            self.rules.append(None)
        self.ends: list[int] = []

    def _holds(self, k: int, obs: np.ndarray, info: dict, success: bool) -> bool:
        rule = self.rules[k]
        if rule is None:
            return success
        fn, views = rule
        scope: dict[str, Any] = {v: self.getters[v](obs) for v in views}
        scope["info"] = info
        try:
            return bool(np.all(fn(scope)))
        except (KeyError, TypeError, ValueError, IndexError):
            return False  # e.g. reset infos lack the keys step infos carry

    def update(self, t: int, obs: np.ndarray, info: dict, success: bool) -> None:
        """Record every stage whose rule holds at frame t (in order; several may end on one frame)."""
        while len(self.ends) < len(self.rules) and self._holds(len(self.ends), obs, info, success):
            self.ends.append(t)

    @property
    def done(self) -> bool:
        return len(self.ends) == len(self.rules)

    def annotations(self) -> dict[str, list[Stage]]:
        """Dense stages completed so far, and the sparse ``task`` stage when all were completed."""
        dense, start = [], 0
        for name, end in zip(self.names, self.ends, strict=False):
            dense.append(Stage(name, start, end))
            start = end
        sparse = [Stage("task", 0, self.ends[-1])] if self.done else []
        return {"dense": dense, "sparse": sparse}


def collect(
    task: str | Path | TaskSpec,
    n: int,
    out: str | Path,
    *,
    degradation: Degradation | None = None,
    seed: int = 0,
    cameras: Sequence[str] | None = (),
    frame_size: tuple[int, int] = (64, 64),
    tail: int = 10,
    max_steps: int | None = None,
    expert: Expert | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> DemoDataset:
    """Record `n` demonstrations of `task` into the dataset folder `out`.

    Args:
        task: a Meta-World task (name, path or spec).
        n: number of episodes; episode i resets with seed ``seed + i`` (its own layout).
        out: dataset folder to create.
        degradation: noise / pauses / regressions / failures (None: clean expert).
        seed: first reset seed; degradations draw from ``default_rng([seed, i])``.
        cameras: cameras to record (None: the task's first camera; ``()``: state only).
        frame_size: (H, W) of recorded frames.
        tail: steps recorded after the first success.
        max_steps: step limit (default: the task's `max_episode_steps`).
        expert: obs -> action to use instead of Meta-World's scripted policy.
        overwrite: replace an existing `out`.
        progress: show a progress bar.

    Returns:
        The written `DemoDataset`.
    """
    from embodied.envs.make import make
    from embodied.envs.wrappers import view_getters

    if n < 1:
        raise DemoError(f"option -n: need at least 1 episode, got {n}")
    if tail < 0:
        raise DemoError(f"option --tail: must be >= 0, got {tail}")
    spec = load_task(task)
    degradation = degradation or Degradation()
    policy = expert or metaworld_expert(spec)
    cams = tuple(spec.cameras[:1]) if cameras is None else tuple(cameras)
    unknown = [c for c in cams if c not in spec.cameras]
    if unknown:
        raise DemoError(f"option --camera: unknown camera(s) {unknown}; task {spec.name!r} has {list(spec.cameras)}")
    limit = max_steps or spec.max_episode_steps
    env = make(spec, frames=list(cams) or None, frame_size=frame_size, max_episode_steps=max(limit, 1))
    getters = view_getters(spec, env.observation_space)
    sim = getattr(env.unwrapped, "sim", None)
    fps = float(getattr(sim, "metadata", {}).get("render_fps", 30)) if sim is not None else 30.0
    low = np.asarray(env.action_space.low, np.float64)
    high = np.asarray(env.action_space.high, np.float64)
    names = StageTracker(spec, getters).names
    writer = DemoWriter(
        out,
        task=spec.name,
        instruction=spec.goal,
        fps=fps,
        cameras=cams,
        frame_size=tuple(frame_size) if cams else None,
        stages={"dense": names, "sparse": ["task"]},
        state_dim=int(np.prod(env.observation_space.shape)),
        action_dim=int(np.prod(env.action_space.shape)),
        source=" ".join(shlex.quote(a) for a in sys.argv) if sys.argv else "",
        overwrite=overwrite,
    )
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc=f"collecting {spec.name}", unit="ep")
    try:
        for i in range(n):
            rng = np.random.default_rng([seed, i])
            demo = Demonstrator(policy, degradation, rng, low, high)
            tracker = StageTracker(spec, getters)
            obs, info = env.reset(seed=seed + i)
            states, actions, rewards, flags = [obs], [], [0.0], [bool(info.get("success", False))]
            frames: dict[str, list[np.ndarray]] = {c: [info["frames"][c]] for c in cams}
            tracker.update(0, obs, info, flags[0])
            first_success = 0 if flags[0] else None
            t = 0
            while True:
                action = demo.act(obs, t)
                actions.append(action)
                if first_success is not None and t - first_success >= tail:
                    break
                obs, reward, terminated, truncated, info = env.step(action)
                t += 1
                success = bool(info["success"])
                states.append(obs)
                rewards.append(float(reward))
                flags.append(success)
                for c in cams:
                    frames[c].append(info["frames"][c])
                tracker.update(t, obs, info, success)
                if success and first_success is None:
                    first_success = t
                if terminated or truncated:
                    actions.append(demo.act(obs, t))
                    break
            ok = flags[-1] if spec.success_at == "end" else any(flags)
            ann = tracker.annotations()
            writer.add(
                Episode(
                    states=np.asarray(states, np.float32),
                    actions=np.asarray(actions, np.float32),
                    success=ok,
                    frames={c: np.stack(v) for c, v in frames.items()},
                    annotations=ann,
                    rewards=np.asarray(rewards, np.float32),
                    success_flags=np.asarray(flags, bool),
                    task=spec.goal,
                    info={
                        "seed": seed + i,
                        "degradation": asdict(degradation),
                        "steps": demo.counts,
                        "failure_injected_at": demo.fail_at,
                        "first_success": first_success,
                    },
                )
            )
            if bar is not None:
                bar.update(1)
        return writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
        env.close()
