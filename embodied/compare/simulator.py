"""Reward comparison on a task's simulator: coverage collection, state restoration, registry rewards.

Every state the comparison touches lives in a `StateTable` (observation, frames of the requested
cameras, the env reward and flags of the step that produced it, and a MuJoCo snapshot), and the
sampled estimators of `embodied.compare.sampled` see integer state ids. Reward models from the
registry are wrapped into batched callables ``reward(obs_ids, action, next_ids)`` that build a
`TransitionBatch` from the table, so any reward the platform produces (env, programs, CLIP,
progress models) can be scored at the (s, a, s') triples a metric asks for.

Conventions:

* The env reward of a triple (x, a, y) is the reward recorded for the step that produced y (with
  action a — the estimators only pair y with the action that produced it). This is exact when the
  env reward is a function of (a, s'), as in Meta-World; for rewards that also read s (e.g. gym
  MuJoCo forward velocity) it uses y's real predecessor.
* EPIC draws (A, S') as recorded (action, next state) pairs (`paired_samples=True`).
* DARD steps the simulator from restored MuJoCo states (qpos, qvel, act, mocap, warm start, plus
  the env's numeric Python attributes such as Meta-World's previous-frame observation).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embodied.compare.sampled import Coverage, SampledComparison, compare_sampled

POLICY_KINDS = ("random", "expert")
FRAME_CHUNK = 256


# --------------------------------------------------------------------------------------------------
# state table


@dataclass
class StateTable:
    """Every state a comparison touches, addressed by integer id.

    Attributes (lists, one entry per state):
        obs: the observation as the task env returns it (array or dict of arrays).
        frames: camera -> uint8 [H, W, 3] frames (only cameras some reward requires).
        env_reward: reward of the step that produced the state (NaN for reset states).
        terminated, truncated: flags of that step.
        infos: info dict of that step ({} for reset states), without frames.
        snapshots: simulator snapshot per state (None where not restorable or not kept).
    """

    cameras: tuple[str, ...] = ()
    obs: list[Any] = field(default_factory=list)
    frames: dict[str, list[np.ndarray]] = field(default_factory=dict)
    env_reward: list[float] = field(default_factory=list)
    terminated: list[bool] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[Any] = field(default_factory=list)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def add(
        self,
        obs: Any,
        info: Mapping[str, Any],
        env_reward: float = float("nan"),
        terminated: bool = False,
        truncated: bool = False,
        snapshot: Any = None,
    ) -> int:
        """Append one state; returns its id."""
        frames = info.get("frames") or {}
        for cam in self.cameras:
            if cam not in frames:
                raise ValueError(f"cameras: env gave no frame for camera {cam!r} (has {sorted(frames)})")
            self.frames.setdefault(cam, []).append(np.asarray(frames[cam]))
        self.obs.append(obs)
        self.env_reward.append(float(env_reward))
        self.terminated.append(bool(terminated))
        self.truncated.append(bool(truncated))
        self.infos.append({k: v for k, v in info.items() if k != "frames"})
        self.snapshots.append(snapshot)
        self._cache.clear()
        return len(self.obs) - 1

    def __len__(self) -> int:
        return len(self.obs)

    def _array(self, key: str) -> Any:
        if key not in self._cache:
            if key == "obs":
                first = self.obs[0]
                if isinstance(first, dict):
                    self._cache[key] = {k: np.stack([o[k] for o in self.obs]) for k in first}
                else:
                    self._cache[key] = np.stack([np.asarray(o) for o in self.obs])
            else:
                self._cache[key] = np.asarray(getattr(self, key))
        return self._cache[key]

    def take_obs(self, ids: np.ndarray) -> Any:
        """Observations of states `ids` [B]: array [B, ...] or dict of such arrays."""
        obs = self._array("obs")
        return {k: v[ids] for k, v in obs.items()} if isinstance(obs, dict) else obs[ids]

    def numeric_obs(self, ids: np.ndarray) -> np.ndarray:
        """Observations flattened to float [B, D] (dict observations: numeric keys concatenated)."""
        obs = self.take_obs(np.asarray(ids, dtype=np.int64))
        if isinstance(obs, dict):
            parts = [
                np.asarray(v, dtype=np.float64).reshape(len(ids), -1)
                for _, v in sorted(obs.items())
                if np.issubdtype(np.asarray(v).dtype, np.number)
            ]
            return np.concatenate(parts, axis=1)
        return np.asarray(obs, dtype=np.float64).reshape(len(ids), -1)

    def batch(self, obs_ids: np.ndarray, action: np.ndarray, next_ids: np.ndarray, cameras: Sequence[str] = ()) -> Any:
        """`TransitionBatch` for triples (obs_ids, action, next_ids); frames of next states for `cameras`."""
        from embodied.rewards.base import TransitionBatch

        obs_ids, next_ids = np.asarray(obs_ids, dtype=np.int64), np.asarray(next_ids, dtype=np.int64)
        # gathered per batch, never stacked whole: 8k states of 224² RGB are 1.2 GB per camera
        frames = {cam: np.stack([self.frames[cam][i] for i in next_ids]) for cam in cameras} if cameras else None
        return TransitionBatch(
            obs=self.take_obs(obs_ids),
            action=np.asarray(action),
            next_obs=self.take_obs(next_ids),
            terminated=self._array("terminated")[next_ids],
            truncated=self._array("truncated")[next_ids],
            env_reward=self._array("env_reward")[next_ids],
            infos=[self.infos[i] for i in next_ids],
            frames=frames,
        )


# --------------------------------------------------------------------------------------------------
# MuJoCo snapshots


def physics_owner(env: Any) -> Any | None:
    """The object holding the MuJoCo `model`/`data` of `env` (Meta-World: the wrapped `sim`), or None."""
    base = env.unwrapped
    for obj in (getattr(base, "sim", None), base):
        if obj is not None and hasattr(obj, "model") and hasattr(obj, "data"):
            try:
                import mujoco

                if isinstance(obj.model, mujoco.MjModel):
                    return obj
            except ImportError:  # pragma: no cover - mujoco is a dependency
                return None
    return None


def _plain_attrs(obj: Any) -> dict[str, Any]:
    # numeric episode state (Meta-World: _prev_obs, _target_pos, curr_path_length, ...); never model/data
    return {k: copy.copy(v) for k, v in vars(obj).items() if isinstance(v, (np.ndarray, np.generic, int, float, bool))}


def snapshot(owner: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Full MuJoCo integration state (mj_getState) plus the owner's numeric attributes."""
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(owner.model, spec))
    mujoco.mj_getState(owner.model, owner.data, state, spec)
    return state, _plain_attrs(owner)


def restore(owner: Any, snap: tuple[np.ndarray, dict[str, Any]]) -> None:
    """Put `owner` back into a `snapshot` state."""
    import mujoco

    state, attrs = snap
    for key, value in attrs.items():
        setattr(owner, key, copy.copy(value))
    mujoco.mj_setState(owner.model, owner.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
    mujoco.mj_forward(owner.model, owner.data)


def _reset_time_limit(env: Any) -> None:
    e = env
    while e is not None:
        if hasattr(e, "_elapsed_steps"):
            e._elapsed_steps = 0
        e = getattr(e, "env", None)


# --------------------------------------------------------------------------------------------------
# policies


Policy = Callable[[Any], np.ndarray]


def metaworld_expert(env_id: str) -> Policy:
    """Meta-World's scripted expert for `env_id` (e.g. 'reach-v3' -> SawyerReachV3Policy)."""
    import metaworld.policies as mp

    stem, _, version = env_id.rpartition("-")
    name = "Sawyer" + "".join(part.capitalize() for part in stem.split("-")) + version.upper() + "Policy"
    cls = getattr(mp, name, None)
    if cls is None:
        raise ValueError(f"policies: no Meta-World scripted expert {name} for env id {env_id!r}")
    expert = cls()

    def act(obs: Any) -> np.ndarray:
        with warnings.catch_warnings():
            # the experts' gains saturate the [-1, 1] action box by design; Meta-World warns every step
            warnings.simplefilter("ignore", UserWarning)
            return np.asarray(expert.get_action(np.asarray(obs)), dtype=np.float32)

    return act


def make_policy(spec: str, env: Any, task: Any, rng: np.random.Generator) -> Policy:
    """A coverage policy from a spec.

    Specs: ``random`` (uniform over the action space); ``expert`` (Meta-World scripted expert);
    ``expert:SIGMA`` (expert plus Gaussian action noise of std SIGMA, clipped to the action space).
    """
    kind, _, arg = spec.partition(":")
    space = env.action_space
    if kind == "random":
        if arg:
            raise ValueError(f"policies: 'random' takes no argument, got {spec!r}")
        space.seed(int(rng.integers(2**31)))
        return lambda obs: np.asarray(space.sample())
    if kind == "expert":
        if task.suite != "metaworld":
            raise ValueError(f"policies: 'expert' needs a Meta-World task, {task.name!r} is suite {task.suite!r}")
        try:
            sigma = float(arg) if arg else 0.0
        except ValueError:
            raise ValueError(f"policies: bad noise level in {spec!r}; expected expert:SIGMA, e.g. expert:0.3") from None
        expert = metaworld_expert(task.env_id)
        low, high = space.low, space.high

        def act(obs: Any) -> np.ndarray:
            a = expert(obs)
            if sigma > 0:
                a = np.clip(a + rng.normal(0.0, sigma, size=a.shape), low, high).astype(a.dtype)
            return a

        return act
    raise ValueError(f"policies: unknown policy {spec!r}; choose one of random, expert, expert:SIGMA")


# --------------------------------------------------------------------------------------------------
# coverage collection


@dataclass
class SimulatorCoverage:
    """Coverage transitions of a task as state ids into `table`, plus the env used to step it."""

    task: Any
    table: StateTable
    coverage: Coverage
    env: Any
    owner: Any | None
    policies: tuple[str, ...]
    episodes: int

    def close(self) -> None:
        self.env.close()


def collect_coverage(
    task: Any,
    policies: Sequence[str] = ("random",),
    n_transitions: int = 4096,
    seed: int = 0,
    cameras: Sequence[str] = (),
    episode_steps: int | None = None,
    progress: bool = False,
) -> SimulatorCoverage:
    """Roll out `policies` in turn (one episode each) until `n_transitions` transitions are recorded.

    Args:
        task: task name, path or `TaskSpec`.
        policies: coverage policy specs (see `make_policy`), used round-robin per episode.
        n_transitions: transitions to record.
        seed: episode i resets with seed + i; policy noise and random actions draw from `seed`.
        cameras: cameras to capture for every state (those reward models require).
        episode_steps: cut episodes after this many steps (default: the task's limit).
        progress: show a tqdm bar.
    """
    from embodied.envs import make
    from embodied.tasks import load_task

    spec = load_task(task)
    if n_transitions < 1:
        raise ValueError(f"n_transitions: must be >= 1, got {n_transitions}")
    if not policies:
        raise ValueError("policies: give at least one coverage policy")
    env = make(spec, frames=list(cameras) or None)
    rng = np.random.default_rng(seed)
    pols = [make_policy(p, env, spec, rng) for p in policies]
    owner = physics_owner(env)
    table = StateTable(cameras=tuple(cameras))
    obs_ids: list[int] = []
    acts: list[np.ndarray] = []
    next_ids: list[int] = []
    limit = episode_steps or spec.max_episode_steps
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_transitions, desc=f"coverage {spec.name}", unit="step")
    episode = 0
    while len(acts) < n_transitions:
        policy = pols[episode % len(pols)]
        obs, info = env.reset(seed=seed + episode)
        sid = table.add(obs, info, snapshot=snapshot(owner) if owner is not None else None)
        for _ in range(limit):
            action = policy(obs)
            obs, reward, terminated, truncated, info = env.step(action)
            nid = table.add(obs, info, reward, terminated, truncated, snapshot(owner) if owner is not None else None)
            obs_ids.append(sid)
            acts.append(np.asarray(action))
            next_ids.append(nid)
            sid = nid
            if bar is not None:
                bar.update(1)
            if terminated or truncated or len(acts) >= n_transitions:
                break
        episode += 1
    if bar is not None:
        bar.close()
    term = np.asarray([table.terminated[i] for i in next_ids])
    cov = Coverage(np.asarray(obs_ids), np.stack(acts), np.asarray(next_ids), term)
    return SimulatorCoverage(spec, table, cov, env, owner, tuple(policies), episode)


def make_sample_next(sim: SimulatorCoverage) -> Callable[[np.ndarray, np.ndarray, int], np.ndarray]:
    """`sample_next(state_ids, actions, k) -> new ids [B, k]` by restoring MuJoCo states and stepping.

    MuJoCo is deterministic, so one step per row is taken and its id repeated k times. The new
    states (obs, frames, env reward of the step) are appended to the table.
    """
    if sim.owner is None:
        raise ValueError(
            f"metric: 'dard' needs a simulator whose state can be restored (MuJoCo); task {sim.task.name!r} "
            f"(suite {sim.task.suite!r}) has none: use --metric starc or epic"
        )

    def sample_next(state_ids: np.ndarray, actions: np.ndarray, k: int) -> np.ndarray:
        out = np.empty((len(state_ids), k), dtype=np.int64)
        for row, (sid, action) in enumerate(zip(np.asarray(state_ids), np.asarray(actions), strict=True)):
            snap = sim.table.snapshots[int(sid)]
            if snap is None:
                raise ValueError(f"state {int(sid)} has no simulator snapshot to restore")
            restore(sim.owner, snap)
            _reset_time_limit(sim.env)
            obs, reward, terminated, truncated, info = sim.env.step(action)
            out[row, :] = sim.table.add(obs, info, reward, terminated, truncated)
        return out

    return sample_next


# --------------------------------------------------------------------------------------------------
# registry rewards as batched callables over state ids


def _ignores_obs(model: Any) -> bool:
    """Whether a reward model reads only (action, s'): declared, state-only, or a kind that does so by design."""
    return not getattr(model, "uses_obs", True) or bool(getattr(model, "state_only", False))


def reward_callable(model: Any, table: StateTable) -> Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """Wrap a `RewardModel` as ``reward(obs_ids, action, next_ids) -> float [B]`` over `table`."""
    cams = tuple(model.requires.cameras)
    missing = [c for c in cams if c not in table.cameras]
    if missing:
        raise ValueError(f"reward {model.name!r} needs cameras {missing} that were not captured")

    # frame models get small chunks so a batch of frames stays within memory (256 × 224² × 3 ≈ 39 MB)
    chunk = FRAME_CHUNK if cams else None

    def fn(obs_ids: np.ndarray, action: np.ndarray, next_ids: np.ndarray) -> np.ndarray:
        if chunk is None or len(next_ids) <= chunk:
            return model(table.batch(obs_ids, action, next_ids, cams)).reward
        parts = [
            model(table.batch(obs_ids[i : i + chunk], action[i : i + chunk], next_ids[i : i + chunk], cams)).reward
            for i in range(0, len(next_ids), chunk)
        ]
        return np.concatenate(parts)

    fn.ignores_obs = _ignores_obs(model)  # type: ignore[attr-defined]
    return fn


def compare_task(
    task: Any,
    rewards: Sequence[str],
    metric: str = "starc",
    policies: Sequence[str] | None = None,
    n_transitions: int = 4096,
    n_samples: int = 4096,
    n_seeds: int = 3,
    gamma: float | None = None,
    dard_samples: int = 8,
    norm: str = "l2",
    seed: int = 0,
    episode_steps: int | None = None,
    extra_kinds: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> SampledComparison:
    """Compare reward specs on a task's simulator (see `embodied.compare.sampled.compare_sampled`).

    Args:
        task: task name, path or `TaskSpec`.
        rewards: reward specs for `embodied.rewards.registry.make_reward` (e.g. env, program:PATH).
        metric: "starc" | "epic" | "dard".
        policies: coverage policies (default: random + noisy expert on Meta-World, random elsewhere).
        n_transitions: coverage transitions collected (and used per seed).
        n_samples: EPIC's (A, S') pairs per seed.
        n_seeds: seeds (different transition / sample / feature draws).
        gamma: discount (default: the task's).
        dard_samples: simulator next-state draws per transition for DARD.
        norm: STARC norm.
        seed: base seed for rollouts and estimators.
        episode_steps: cut coverage episodes after this many steps.
        extra_kinds: additional reward kinds for the registry (plugins, tests).
        progress: progress bar while collecting.
    """
    from embodied.rewards.registry import make_reward
    from embodied.tasks import load_task

    spec = load_task(task)
    if len(rewards) < 2:
        raise ValueError(f"rewards: need at least two reward specs to compare, got {len(rewards)}")
    if len(set(rewards)) != len(rewards):
        raise ValueError(f"rewards: duplicate spec in {list(rewards)}")
    models = {r: make_reward(r, spec, extra_kinds) for r in rewards}
    cams = tuple(dict.fromkeys(c for m in models.values() for c in m.requires.cameras))
    if policies is None:
        policies = ("random", "expert:0.5") if spec.suite == "metaworld" else ("random",)
    sim = collect_coverage(spec, policies, n_transitions, seed, cams, episode_steps, progress)
    try:
        fns = {name: reward_callable(m, sim.table) for name, m in models.items()}
        g = spec.gamma if gamma is None else gamma
        sample_next = make_sample_next(sim) if metric == "dard" else None
        result = compare_sampled(
            fns, sim.coverage, g, metric,
            n_transitions=n_transitions, n_samples=n_samples, n_seeds=n_seeds, paired_samples=True,
            sample_next=sample_next, dard_samples=dard_samples, norm=norm, obs_lookup=sim.table.numeric_obs,
            seed=seed,
        )  # fmt: skip
    finally:
        sim.close()
    result.settings.update(
        {"task": spec.name, "policies": list(sim.policies), "episodes": sim.episodes, "rewards": list(rewards)}
    )
    return result
