"""The environment's own reward as a reward model (`env` spec)."""

from __future__ import annotations

from embodied.rewards.base import RewardError, RewardModel, RewardOutput, TransitionBatch
from embodied.tasks.spec import TaskSpec


class EnvReward(RewardModel):
    """Passes the environment's reward through unchanged."""

    name = "env"
    uses_obs = False  # the recorded reward of the step that produced s'

    def compute_reward(self, batch: TransitionBatch) -> RewardOutput:
        return RewardOutput(batch.env_reward.astype("float64"), {})


def from_spec(arg: str, task: TaskSpec) -> EnvReward:
    """Factory for spec ``env`` (takes no argument)."""
    if arg:
        raise RewardError(f"reward spec 'env' takes no argument, got 'env:{arg}'")
    return EnvReward()
