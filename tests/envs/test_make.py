"""Every shipped task builds, passes gymnasium's env checker, reports success, and seeds reproducibly."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import embodied
from embodied.envs.wrappers import FrameCapture
from embodied.tasks import list_tasks

TASKS = [t.name for t in list_tasks()]


@pytest.mark.parametrize("name", TASKS)
def test_env_checker_and_success_flag(name: str) -> None:
    env = embodied.make(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env, skip_render_check=True)
    _, info = env.reset(seed=0)
    assert info["success"] is False
    _, _, _, _, info = env.step(env.action_space.sample())
    assert isinstance(info["success"], bool)
    assert not isinstance(env, FrameCapture)  # nothing renders unless asked
    env.close()


@pytest.mark.parametrize("name", ["metaworld-push", "minihack-keyroom", "fetch-push"])
def test_seeded_resets_reproduce_and_differ(name: str) -> None:
    def first_obs(seed: int) -> np.ndarray:
        env = embodied.make(name)
        obs, _ = env.reset(seed=seed)
        obs2, _ = env.reset()  # the following episode is reproducible too
        env.close()
        flat = gym.spaces.flatten(env.observation_space, obs)
        return np.concatenate([flat, gym.spaces.flatten(env.observation_space, obs2)])

    a, b, c = first_obs(1), first_obs(1), first_obs(2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_frames_at_requested_size_for_each_camera() -> None:
    env = embodied.make("metaworld-drawer-open", frames=True, frame_size=(48, 64))
    _, info = env.reset(seed=0)
    spec = embodied.load_task("metaworld-drawer-open")
    assert set(info["frames"]) == set(spec.cameras)
    for frame in info["frames"].values():
        assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
    env.close()


def test_unknown_camera_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"unknown camera\(s\) \['nope'\]"):
        embodied.make("metaworld-reach", frames=["nope"])
    with pytest.raises(ValueError, match="lists no cameras"):
        embodied.make("minihack-room", frames=True)


def test_vector_env_uses_next_step_autoreset() -> None:
    vec = embodied.make_vec("metaworld-reach", 2)
    assert vec.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    obs, _ = vec.reset(seed=5)
    single, _ = embodied.make("metaworld-reach").reset(seed=6)
    np.testing.assert_array_equal(obs[1], single)  # sub-env i is seeded seed + i
    vec.close()


def test_minihack_time_limit_truncates_and_observations_are_not_reused() -> None:
    env = embodied.make("minihack-room", max_episode_steps=3)
    prev, _ = env.reset(seed=0)
    for _ in range(3):
        obs, _, terminated, truncated, _ = env.step(0)
        assert obs["blstats"] is not prev["blstats"]  # NLE reuses its buffers; the adapter copies
        prev = obs
    assert (terminated, truncated) == (False, True)  # our TimeLimit, not NLE's abort
    assert (obs["chars"] == ord("@")).any()  # a real screen, not NLE's blank end-of-game one
    env.close()
