"""The reward path through every adapter: exact numbers, autoreset handling, identical results."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

import embodied
from embodied.rewards.adapters import RewardWrapper, VectorRewardWrapper
from embodied.rewards.base import RewardError, RewardModel, RewardOutput, TransitionBatch
from embodied.rewards.program import ProgramReward
from embodied.rewards.shaping import Shaper
from embodied.tasks import load_task
from embodied.train.sb3_adapter import SB3RewardWrapper


def potential(obs: np.ndarray) -> np.ndarray:
    return obs[:, 0] * 2.0 + 1.0


class PositionReward(RewardModel):
    """r = 10·x' + a (depends on the action: not a potential)."""

    name = "position"

    def compute_reward(self, batch: TransitionBatch) -> RewardOutput:
        x = np.asarray(batch.next_obs)[:, 0]
        a = np.asarray(batch.action, dtype=float).reshape(len(batch))
        return RewardOutput(10 * x + a, {"x": x, "a": a})


def test_vector_env_never_scores_the_autoreset_step(chain_task) -> None:
    env = VectorRewardWrapper(
        embodied.make_vec(chain_task, 2, max_episode_steps=2), PositionReward(), Shaper(potential, 0.9)
    )
    env.reset(seed=0)
    _, r, term, trunc, info = env.step(np.array([1, 0]))
    np.testing.assert_allclose(r, [10 + 1 + (0.9 * 3 - 1), -10 + 0 + (0.9 * -1 - 1)])
    _, r, term, trunc, info = env.step(np.array([1, 0]))
    # env 1 reached the trap (x = -2): terminated, so Φ(s') = 0 even though the time limit also hit.
    assert term.tolist() == [False, True] and trunc.tolist() == [True, True]
    np.testing.assert_allclose(r, [20 + 1 + (0.9 * 5 - 3), -20 + 0 + (0.0 - (-1.0))])
    assert info["reward_episode"][0]["shaping_residual"] == pytest.approx(0, abs=1e-12)
    # Next step is the reset step: action ignored, reward exactly 0, nothing shaped.
    obs, r, term, trunc, info = env.step(np.array([1, 1]))
    np.testing.assert_array_equal(r, [0.0, 0.0])
    np.testing.assert_array_equal(info["shaping"], [0.0, 0.0])
    np.testing.assert_array_equal(obs[:, 0], [0.0, 0.0])
    # The new episode's Φ(s0) comes from the reset obs.
    _, r, *_ = env.step(np.array([1, 1]))
    np.testing.assert_allclose(r, [10 + 1 + (0.9 * 3 - 1)] * 2)


def test_single_env_info_keys(chain_task) -> None:
    env = RewardWrapper(embodied.make(chain_task), PositionReward(), None)
    env.reset(seed=0)
    _, r, _, _, info = env.step(1)
    assert r == 11.0 and info["env_reward"] == 0.0 and info["shaping"] == 0.0
    assert info["reward_components"] == {"x": 1.0, "a": 1.0}


def test_reward_model_errors_name_model_and_step(chain_task) -> None:
    class Bad(RewardModel):
        name = "bad"

        def __init__(self, value) -> None:
            self.value = value

        def compute_reward(self, batch):
            return RewardOutput(self.value(len(batch)), {})

    env = RewardWrapper(embodied.make(chain_task), Bad(lambda n: np.full(n, np.inf)))
    env.reset(seed=0)
    with pytest.raises(RewardError, match=r"reward model 'bad' at step 1 returned a non-finite reward \(inf\)"):
        env.step(1)
    env = RewardWrapper(embodied.make(chain_task), Bad(lambda n: np.zeros((n, 2))))
    env.reset(seed=0)
    with pytest.raises(RewardError, match=r"returned shape \(1, 2\), expected \(1,\)"):
        env.step(1)


def _drive_vector(env, actions: np.ndarray, steps: int) -> list[list[float]]:
    """Rewards per env of scored transitions only, feeding env i its own action sequence."""
    n = env.num_envs
    out: list[list[float]] = [[] for _ in range(n)]
    cursor = np.zeros(n, dtype=int)
    resetting = np.zeros(n, dtype=bool)
    env.reset(seed=7)
    for _ in range(steps):
        act = np.stack([actions[i, cursor[i]] for i in range(n)])
        _, r, term, trunc, _ = env.step(act)
        for i in range(n):
            if not resetting[i]:
                out[i].append(float(r[i]))
                cursor[i] += 1
        resetting = term | trunc
    return out


def _drive_single(make_env, actions: np.ndarray, n: int, steps: int) -> list[list[float]]:
    out = []
    for i in range(n):
        env = make_env()
        env.reset(seed=7 + i)
        rewards = []
        for t in range(steps):
            _, r, term, trunc, _ = env.step(actions[i, t])
            rewards.append(float(r))
            if term or trunc:
                env.reset()
        out.append(rewards)
    return out


def _drive_sb3(venv, actions: np.ndarray, steps: int) -> list[list[float]]:
    venv.seed(7)
    venv.reset()
    out: list[list[float]] = [[] for _ in range(venv.num_envs)]
    for t in range(steps):
        _, r, _, _ = venv.step(actions[:, t])
        for i in range(venv.num_envs):
            out[i].append(float(r[i]))
    return out


@pytest.mark.parametrize("task_name", ["chain", "metaworld-reach"])
def test_vector_single_and_sb3_adapters_agree(task_name: str, chain_task, reach_program) -> None:
    n, steps = 3, 9
    if task_name == "chain":
        task = load_task(chain_task)
        overrides = {"max_episode_steps": 4}
        reward_factory = PositionReward
        pot = potential
        actions = np.random.default_rng(0).integers(0, 2, size=(n, 40))
    else:
        task = load_task("metaworld-reach")
        overrides = {"max_episode_steps": 4}
        probe = embodied.make(task)

        def reward_factory():
            return ProgramReward(reach_program, task, probe.observation_space, probe.action_space)

        pot = reward_factory()
        actions = np.random.default_rng(0).uniform(-1, 1, size=(n, 40, 4)).astype(np.float32)
    spec = embodied.envs.resolve(task, **overrides)

    vec = VectorRewardWrapper(embodied.make_vec(spec, n), reward_factory(), Shaper(pot, 0.9))
    singles = _drive_single(
        lambda: RewardWrapper(embodied.make(spec), reward_factory(), Shaper(pot, 0.9)), actions, n, steps
    )
    sb3 = SB3RewardWrapper(
        DummyVecEnv([lambda: Monitor(embodied.make(spec)) for _ in range(n)]), reward_factory(), Shaper(pot, 0.9)
    )
    # The vector env needs extra (reset) steps to score the same number of transitions.
    vec_rewards = _drive_vector(vec, actions, steps + steps // 4 + 1)
    sb3_rewards = _drive_sb3(sb3, actions, steps)
    for i in range(n):
        np.testing.assert_allclose(vec_rewards[i][:steps], singles[i], rtol=0, atol=1e-12)
        # SB3 stores rewards as float32: equal up to float32 rounding.
        np.testing.assert_allclose(sb3_rewards[i], np.float32(singles[i]), rtol=0, atol=0)


def test_same_step_autoreset_uses_final_obs(chain_task) -> None:
    fns = [lambda: embodied.make(chain_task, max_episode_steps=2)] * 2
    venv = gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    env = VectorRewardWrapper(venv, None, Shaper(potential, 0.9))
    env.reset(seed=0)
    env.step(np.array([1, 1]))
    obs, r, _, trunc, _ = env.step(np.array([1, 1]))
    assert trunc.all() and (obs[:, 0] == 0).all()  # already reset
    np.testing.assert_allclose(r, [0.9 * 5 - 3] * 2)  # but shaped with the true final obs (x = 2)
    _, r, *_ = env.step(np.array([1, 1]))
    np.testing.assert_allclose(r, [0.9 * 3 - 1] * 2)


def test_frames_are_captured_before_autoreset(reach_program) -> None:
    """The frame delivered with the final step shows the final state, not the reset state."""
    vec = embodied.make_vec("metaworld-reach", 1, frames=["corner"], frame_size=(64, 64), max_episode_steps=2)
    single = embodied.make("metaworld-reach", frames=["corner"], frame_size=(64, 64), max_episode_steps=2)
    a = np.full((1, 4), 0.8, dtype=np.float32)
    _, info_v0 = vec.reset(seed=3)
    _, info_s0 = single.reset(seed=3)
    np.testing.assert_array_equal(info_v0["frames"]["corner"][0], info_s0["frames"]["corner"])
    for _ in range(2):
        _, _, _, trunc_v, info_v = vec.step(a)
        _, _, _, trunc_s, info_s = single.step(a[0])
    assert trunc_v[0] and trunc_s
    final = info_v["frames"]["corner"][0]
    np.testing.assert_array_equal(final, info_s["frames"]["corner"])
    assert np.abs(final.astype(int) - info_s0["frames"]["corner"].astype(int)).mean() > 0.5  # the arm moved
    vec.close()
    single.close()


def test_frames_required_but_missing_is_a_clear_error() -> None:
    class NeedsFrames(RewardModel):
        name = "vlm"
        from embodied.rewards.base import Requirements

        requires = Requirements(cameras=("corner",))

        def compute_reward(self, batch):
            return RewardOutput(np.zeros(len(batch)), {})

    env = RewardWrapper(embodied.make("metaworld-reach"), None, Shaper(lambda o: o[:, 0], 0.99))
    env.reset(seed=0)
    env = VectorRewardWrapper(embodied.make_vec("metaworld-reach", 1), NeedsFrames())
    with pytest.raises(RewardError, match=r"needs frames from cameras \['corner'\]"):
        env.reset(seed=0)
