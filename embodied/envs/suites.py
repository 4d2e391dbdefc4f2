"""One builder per simulator suite: task spec -> base `gymnasium.Env` (no time limit yet).

Heavy simulator imports happen inside the builders, so importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from embodied.tasks.spec import TaskError, TaskSpec


class MetaWorldEnv(gym.Env):
    """Meta-World v3 goal-observable env with reproducible per-episode randomisation.

    Meta-World ignores `reset(seed=...)` and freezes object/goal positions after construction; here a
    seeded reset re-seeds its generator and every reset draws new positions from it, so held-out
    seeds mean held-out layouts. Observations: float64 [39] (hand, gripper, objects, previous
    step's copy, goal).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(self, env_name: str, **kwargs: Any) -> None:
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE as envs

        key = f"{env_name}-goal-observable"
        if key not in envs:
            names = sorted(k.removesuffix("-goal-observable") for k in envs)
            raise TaskError(f"unknown Meta-World env id {env_name!r}; known: {', '.join(names)}")
        self.sim = envs[key](seed=kwargs.pop("seed", 0), **kwargs)
        self.sim._freeze_rand_vec = False
        self.sim.seeded_rand_vec = True
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, self.sim.observation_space.shape, np.float64)
        self.action_space = self.sim.action_space
        self.flip_frames = True  # Meta-World's cameras are mounted upside down in its XML

    @property
    def model(self) -> Any:
        return self.sim.model

    @property
    def data(self) -> Any:
        return self.sim.data

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self.sim.seed(seed)
        obs, info = self.sim.reset()
        return obs.astype(np.float64), dict(info)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.sim.step(np.asarray(action, dtype=np.float32))
        return obs.astype(np.float64), float(reward), bool(terminated), bool(truncated), dict(info)

    def get_state(self) -> tuple[np.ndarray, np.ndarray]:
        """MuJoCo (qpos, qvel), for comparisons that restore states."""
        return self.sim.data.qpos.copy(), self.sim.data.qvel.copy()

    def close(self) -> None:
        self.sim.close()


class MiniHackEnv(gym.Wrapper):
    """MiniHack with reproducible seeding and `info['task_success']` from the end status.

    NLE ignores gymnasium's `reset(seed=...)` and draws NetHack's RNG seeds from an unseeded source;
    here a seeded reset starts a generator from which every episode's (core, disp) seeds are drawn,
    with NetHack's anti-TAS reseeding off, so equal seeds give equal episodes. NLE also reuses its
    observation buffers between steps, so observations are copied (else a stored s changes into s').
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._rng = np.random.default_rng()

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        obs = {k: np.array(v, copy=True) for k, v in obs.items()}
        info = dict(info)
        info["task_success"] = int(getattr(info.get("end_status"), "value", info.get("end_status", 0)) == 2)
        return obs, float(reward), terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        core, disp = (int(x) for x in self._rng.integers(0, 2**62, size=2))
        self.env.unwrapped.seed(core, disp, False)
        # NLE indexes options["wizkit_items"] whenever options is given (gymnasium's checker passes {}).
        obs, info = self.env.reset(seed=seed, options={"wizkit_items": None, **(options or {})})
        obs = {k: np.array(v, copy=True) for k, v in obs.items()}
        info = dict(info)
        info["task_success"] = 0
        return obs, info


def _metaworld(spec: TaskSpec) -> gym.Env:
    return MetaWorldEnv(spec.env_id, **spec.env_kwargs)


def _gym_id(spec: TaskSpec, **extra: Any) -> gym.Env:
    try:
        env = gym.make(spec.env_id, disable_env_checker=True, **{**spec.env_kwargs, **extra}).unwrapped
    except gym.error.Error as exc:
        raise TaskError(f"{spec.source or spec.name}: field 'env_id': cannot make {spec.env_id!r}: {exc}") from None
    # `embodied.make(task)` is how this env is built: a registry spec would promise gym.make recreates it.
    env.spec = None
    return env


def _mujoco(spec: TaskSpec) -> gym.Env:
    return _gym_id(spec)


def _fetch(spec: TaskSpec) -> gym.Env:
    import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)
    return gym.wrappers.FlattenObservation(_gym_id(spec))


def _minihack(spec: TaskSpec) -> gym.Env:
    import minihack  # noqa: F401 - registers the MiniHack ids

    # NLE ends an episode at its own step limit with terminated=True (a blank, aborted screen); the task's
    # TimeLimit must be the one that ends it, as a truncation, so NLE's limit is set past it.
    kwargs = {
        "observation_keys": ("chars_crop", "blstats", "message", "chars"),
        **spec.env_kwargs,
        "max_episode_steps": spec.max_episode_steps + 1,
    }
    kwargs["observation_keys"] = tuple(kwargs["observation_keys"])
    try:
        env = gym.make(spec.env_id, disable_env_checker=True, **kwargs)
    except gym.error.Error as exc:
        raise TaskError(f"{spec.source or spec.name}: field 'env_id': cannot make {spec.env_id!r}: {exc}") from None
    # gym.make added a TimeLimit of its own for some ids; ours is added by embodied.make.
    base = env.unwrapped
    base.spec = None
    return MiniHackEnv(base)


def _scripted(spec: TaskSpec) -> gym.Env:
    from embodied.envs.scripted import SCRIPTED

    if spec.env_id not in SCRIPTED:
        raise TaskError(
            f"{spec.source or spec.name}: field 'env_id': unknown scripted env {spec.env_id!r}; "
            f"known: {sorted(SCRIPTED)}"
        )
    return SCRIPTED[spec.env_id](**spec.env_kwargs)


BUILDERS: dict[str, Callable[[TaskSpec], gym.Env]] = {
    "metaworld": _metaworld,
    "mujoco": _mujoco,
    "fetch": _fetch,
    "minihack": _minihack,
    "scripted": _scripted,
}


def build_base_env(spec: TaskSpec) -> gym.Env:
    """The simulator env for `spec`, before task wrappers and time limit."""
    return BUILDERS[spec.suite](spec)
