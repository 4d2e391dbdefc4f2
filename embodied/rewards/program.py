"""Reward programs (`program:PATH` spec): a Python file defining
``compute_reward(view, action) -> (float, dict[str, float])`` over the task's named views.

Programs are checked by `embodied.rewards.code.load_program` (static allow-list; sandboxed dry run
when samples are given) and then run in-process, one call per transition. A program that ignores
its action (works with ``action=None``) can also serve as a potential Φ(s).
"""

from __future__ import annotations

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
    """

    def __init__(self, path: Path, task: TaskSpec, space: gym.Space | None = None) -> None:
        from embodied.envs.wrappers import view_getters
        from embodied.rewards.code import RewardCodeError, load_program

        if not path.is_file():
            raise RewardError(f"reward program {path} does not exist")
        try:
            self.fn = load_program(path.read_text())
        except RewardCodeError as exc:
            raise RewardError(f"{path}: {exc}") from None
        space = space if space is not None else _observation_space(task)
        self.path, self.task, self.name = path, task, f"program:{path}"
        self.getters = view_getters(task, space)
        self.state_only = self._accepts_no_action(space)

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

    def _call(self, obs_row: Obs, action: Any) -> tuple[float, dict[str, float]]:
        result = self.fn(View(self.getters, obs_row), action)
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
            raise RewardError(
                f"{self.path}: compute_reward must return (float, dict[str, float]), got {type(result).__name__}"
            )
        return result

    def compute_reward(self, batch: TransitionBatch) -> RewardOutput:
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
        return np.array([float(self._call(_row(obs, i), None)[0]) for i in range(batch_size(obs))])


def _row(obs: Obs, i: int) -> Obs:
    return obs_take(obs, i) if isinstance(obs, dict) else obs[i]


def _observation_space(task: TaskSpec) -> gym.Space:
    from embodied.envs.make import make

    env = make(task)
    try:
        return env.observation_space
    finally:
        env.close()


def from_spec(arg: str, task: TaskSpec) -> ProgramReward:
    """Factory for ``program:PATH`` (PATH relative to the working directory)."""
    if not arg:
        raise RewardError("reward spec 'program' needs a path: program:reward_models/<task>/<file>.py")
    return ProgramReward(Path(arg), task)
