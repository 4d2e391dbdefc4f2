"""Tiny scripted environments whose every number can be computed by hand (for tests and docs).

`ChainEnv`: an agent on the integer line. Action 1 moves right, 0 moves left. Reaching `goal`
terminates with reward 1 (success); reaching `trap` terminates with reward 0 (failure); the
episode is truncated by the TimeLimit that `embodied.make` adds. Observation: [position, 1.0].
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np


class ChainEnv(gym.Env[np.ndarray, np.int64]):
    """A 1-D chain with a goal terminal (reward 1) and a trap terminal (reward 0)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, goal: int = 4, trap: int = -2, start: int = 0, step_reward: float = 0.0) -> None:
        if not trap < start < goal:
            raise ValueError(f"need trap < start < goal, got trap={trap}, start={start}, goal={goal}")
        self.goal, self.trap, self.start, self.step_reward = goal, trap, start, step_reward
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
        self.action_space = gym.spaces.Discrete(2)
        self.pos = start

    def _obs(self) -> np.ndarray:
        return np.array([float(self.pos), 1.0])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.pos = self.start
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.pos += 1 if int(action) == 1 else -1
        at_goal, at_trap = self.pos >= self.goal, self.pos <= self.trap
        reward = 1.0 if at_goal else self.step_reward
        return self._obs(), reward, bool(at_goal or at_trap), False, {"at_goal": at_goal}


SCRIPTED: dict[str, type[gym.Env]] = {"chain": ChainEnv}
