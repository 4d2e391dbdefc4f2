"""Reward programs (`program:PATH` spec): a Python file defining
``compute_reward(view, action) -> (float, dict[str, float])`` over the task's named views.

Programs are checked by `embodied.rewards.code.load_program` (static allow-list; sandboxed dry run
when samples are given) and then run in-process. A program may also define
``compute_reward_batch(view, action)`` whose views carry a leading batch axis [N, ...] and which
returns (float [N], dict of float [N]); it is then called once per batch instead of once per
transition, after a check at load that it agrees with ``compute_reward`` on probe inputs. A program
that ignores its action (works with ``action=None``) can also serve as a potential Φ(s).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from embodied.rewards.base import Obs, RewardError, RewardModel, RewardOutput, TransitionBatch, batch_size, obs_take
from embodied.tasks.spec import TaskSpec
from embodied.tasks.views import View


class ProgramReward(RewardModel):
    """A validated reward program evaluated over a batch, one call per transition.

    Args:
        path: the program file.
        task: the task whose views the program reads.
        space: the env's observation space (views are checked against it); built from the task if None.
        action_space: the env's action space (probes for `compute_reward_batch`); built from the task if None.
    """

    uses_obs = False  # programs see views of s' and the action only

    def __init__(
        self, path: Path, task: TaskSpec, space: gym.Space | None = None, action_space: gym.Space | None = None
    ) -> None:
        from embodied.envs.wrappers import view_getters
        from embodied.rewards.code import RewardCodeError, load_program

        if not path.is_file():
            raise RewardError(f"reward program {path} does not exist")
        try:
            self.fn = load_program(path.read_text(), name=str(path))
        except RewardCodeError as exc:
            raise RewardError(f"{path}: {exc}") from None
        if space is None or action_space is None:
            space, action_space = _spaces(task)
        self.path, self.task, self.name = path, task, f"program:{path}"
        self.getters = view_getters(task, space)
        self.batch_fn = self.fn.namespace.get("compute_reward_batch")
        self.state_only = self._accepts_no_action(space)
        if self.batch_fn is not None:
            self._verify_batch(space, action_space)

    def _accepts_no_action(self, space: gym.Space) -> bool:
        """State-only programs run with action=None; probe once on a zero observation."""
        zero = (
            {k: np.zeros(s.shape, s.dtype) for k, s in space.spaces.items()}
            if isinstance(space, gym.spaces.Dict)
            else np.zeros(space.shape, space.dtype)
        )
        try:
            with np.errstate(all="ignore"):
                self._call(zero, None)
        except Exception:
            return False
        return True

    def _verify_batch(self, space: gym.Space, action_space: gym.Space) -> None:
        """compute_reward_batch must reproduce compute_reward row by row (zero and random probes).

        Tolerance rtol=1e-6: float32 actions summed along another axis order differ in the 7th digit.
        """
        if isinstance(space, gym.spaces.Dict):
            raise RewardError(f"{self.path}: compute_reward_batch is supported for array observations only")
        rng = np.random.default_rng(0)
        obs = np.concatenate([np.zeros((1, *space.shape)), rng.normal(size=(7, *space.shape))]).astype(space.dtype)
        action_space.seed(0)
        probes = [np.stack([action_space.sample() for _ in range(len(obs))])]
        if self.state_only:
            probes.append(None)
        for act in probes:
            rows = [self._call(obs[i], None if act is None else act[i]) for i in range(len(obs))]
            batch_r, batch_c = self._batch(obs, act)
            expect = np.array([r for r, _ in rows], dtype=np.float64)
            same_parts = set(batch_c) == set(rows[0][1]) and all(
                np.allclose(batch_c[k], [p[k] for _, p in rows], rtol=1e-6, atol=1e-9) for k in batch_c
            )
            if not np.allclose(batch_r, expect, rtol=1e-6, atol=1e-9) or not same_parts:
                raise RewardError(
                    f"{self.path}: compute_reward_batch disagrees with compute_reward on probe inputs "
                    f"(action={'None' if act is None else 'sampled'}; rewards {np.round(batch_r[:3], 6).tolist()} "
                    f"vs {np.round(expect[:3], 6).tolist()})"
                )

    def _batch(self, obs: Obs, action: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        n = batch_size(obs)
        result = self.batch_fn(View(self.getters, _readonly(obs)), action)
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
            raise RewardError(f"{self.path}: compute_reward_batch must return (float [N], dict[str, float [N]])")
        return _column(result[0], n), {k: _column(v, n) for k, v in result[1].items()}

    def _call(self, obs_row: Obs, action: Any) -> tuple[float, dict[str, float]]:
        result = self.fn(View(self.getters, _readonly(obs_row)), action)
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
            raise RewardError(
                f"{self.path}: compute_reward must return (float, dict[str, float]), got {type(result).__name__}"
            )
        return result

    def compute_reward(self, batch: TransitionBatch) -> RewardOutput:
        if self.batch_fn is not None:
            return RewardOutput(*self._batch(batch.next_obs, np.asarray(batch.action)))
        n = len(batch)
        reward = np.empty(n)
        comps: dict[str, np.ndarray] = {}
        actions = np.asarray(batch.action)
        for i in range(n):
            r, parts = self._call(_row(batch.next_obs, i), actions[i])
            reward[i] = r
            for key, value in parts.items():
                if key not in comps:
                    comps[key] = np.zeros(n)
                comps[key][i] = value
        return RewardOutput(reward, comps)

    def potential(self, obs: Obs, frames: dict[str, np.ndarray] | None = None) -> np.ndarray:
        if not self.state_only:
            raise RewardError(f"{self.path}: compute_reward uses the action, so this program cannot be a potential")
        if self.batch_fn is not None:
            return self._batch(obs, None)[0]
        return np.array([float(self._call(_row(obs, i), None)[0]) for i in range(batch_size(obs))])


def _column(value: Any, n: int) -> np.ndarray:
    """A batch output as float [n]; a scalar (a term that does not vary) is repeated."""
    arr = np.asarray(value, dtype=np.float64)
    return arr if arr.shape == (n,) else np.broadcast_to(arr, (n,))


def _readonly(obs: Obs) -> Obs:
    """A read-only view, so a program cannot write into the observations the learner will see."""
    if isinstance(obs, dict):
        return {k: _readonly(v) for k, v in obs.items()}  # type: ignore[misc]
    view = np.asarray(obs).view()
    view.flags.writeable = False
    return view


def _row(obs: Obs, i: int) -> Obs:
    return obs_take(obs, i) if isinstance(obs, dict) else obs[i]


def _spaces(task: TaskSpec) -> tuple[gym.Space, gym.Space]:
    from embodied.envs.make import make

    env = make(task)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def from_spec(arg: str, task: TaskSpec) -> ProgramReward:
    """Factory for ``program:PATH`` (PATH relative to the working directory)."""
    if not arg:
        raise RewardError("reward spec 'program' needs a path: program:reward_models/<task>/<file>.py")
    return ProgramReward(Path(arg), task)


def localize_spec(arg: str, task: TaskSpec | None, run_dir: Path) -> str:
    """Copy the program into ``run_dir/programs/`` and return the path relative to the run folder."""
    src = Path(arg)
    if not src.is_file():
        raise RewardError(f"reward program {src} does not exist")
    dst = run_dir / "programs" / src.name
    dst.parent.mkdir(exist_ok=True)
    if dst.exists() and dst.read_bytes() != src.read_bytes():
        dst = dst.with_name(f"{src.parent.name}-{src.name}")
    shutil.copyfile(src, dst)
    return str(dst.relative_to(run_dir))


def absolute_spec(arg: str, run_dir: Path) -> str:
    """Resolve a program path stored relative to a run folder."""
    return str(run_dir / arg) if not Path(arg).is_absolute() and (run_dir / arg).is_file() else arg
