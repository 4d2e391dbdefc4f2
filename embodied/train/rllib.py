"""Distributed training with Ray RLlib (new API stack): PPO, SAC and APPO on any task, reward and shaping spec.

The same `TrainConfig` as the SB3 backend (`backend = "rllib"` plus the scale-out knobs
`env_runners`, `envs_per_runner`, `learners`, `gpus_per_learner`, `reward_service`, `reward_gpus`)
and the same run folder: config.toml, programs/, model.zip, checkpoints/, metrics.json, tb/.

Data path inside every EnvRunner (`make_env`, registered with `tune.register_env`, returns a
gymnasium VectorEnv; RLlib steps it with `gym_env_vectorize_mode="vector_entry_point"`)::

    embodied.make_vec(task, M)              next-step autoreset; frames captured per sub-env
    -> SeedOffset                           global sub-env k is seeded `seed + k`, as under SB3
    -> VectorRewardWrapper(reward, shaper)  the shared RewardPipeline: no reward on autoreset steps,
                                            Φ(s') from the true final obs; models local or served
    -> RLlibInfos                           standard masked vector infos (frames dropped) + episode stats
    [-> FlattenObservation, float32]        Dict observation spaces only (RLlib's default nets want a Box)

`EmbodiedCallbacks.on_sample_end` drains the episode statistics (env return, shaped return, Σγ^tF,
its residual, success under the task's `success_at`, length) and the reward components into RLlib's
`MetricsLogger` under `env_runners/embodied/...`; the driver writes them to metrics.json and TensorBoard.

`model.zip` holds the final RLModule checkpoint; `RLlibPolicy` gives it SB3's
`predict(obs, deterministic=True) -> (action, state)` so `embodied eval` and `embodied video` work.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from embodied.rewards.adapters import VectorRewardWrapper
from embodied.rewards.base import RewardError
from embodied.train.config import ConfigError, TrainConfig
from embodied.train.reward_service import (
    NAMESPACE,
    Factory,
    Placement,
    PlacementWarning,
    RewardSetup,
    ServiceHandle,
    place_parts,
    plan_placement,
    scoring_device,
    served_parts,
    start_service,
)
from embodied.train.runs import RunError, finish, interrupted_run, new_run

ENV_NAME = "embodied-task"
"""Name under which `make_env` is registered with `ray.tune.register_env`."""
ALGOS = ("ppo", "sac", "appo")
EPISODE_KEYS = ("env_return", "return", "shaping_return", "success", "length")
POLICY_FILE = "embodied_policy.json"


class ClusterError(ValueError):
    """The Ray cluster cannot be reached or cannot host the requested runners/learners."""


# --------------------------------------------------------------------------------------------------
# The env inside each EnvRunner.


class SeedOffset(gym.vector.VectorWrapper):
    """Gives every sub-env in the cluster its own seed: global sub-env k is seeded `seed + k`.

    RLlib resets EnvRunner w (w = 1..N, 0 = the driver's local runner) with `seed + w`, and a vector env
    seeds its sub-env i with `s + i`, so runners would share seeds. This wrapper maps RLlib's seed to
    `seed + (w - 1) * num_envs` (w = 0 and w = 1 both start at `seed`), so one runner with M envs is
    seeded exactly like SB3 with `--envs M`.
    """

    def __init__(self, env: gym.vector.VectorEnv, base_seed: int) -> None:
        super().__init__(env)
        self.base_seed = int(base_seed)

    def reset(self, *, seed: Any = None, options: dict | None = None) -> tuple[Any, dict]:
        if isinstance(seed, int | np.integer):
            worker = int(seed) - self.base_seed
            if 0 <= worker < 1_000_000:  # RLlib's evaluation runners add 1e6: leave those alone
                seed = self.base_seed + max(worker - 1, 0) * self.num_envs
        return self.env.reset(seed=seed, options=options)


class RLlibInfos(gym.vector.VectorWrapper):
    """Turns `VectorRewardWrapper` infos into gymnasium's masked vector-info format and keeps stats.

    RLlib wraps every vector env in `DictInfoToList`, which needs each key `k` to come with a bool
    mask `_k` and array (or nested dict) values. Frames are dropped (RLlib would store them in every
    episode). Finished episodes (with success under the task's `success_at`) and reward components are
    kept until `drain()` (called by `EmbodiedCallbacks.on_sample_end` after every sample).
    """

    def __init__(self, env: gym.vector.VectorEnv, success_at: str = "any") -> None:
        super().__init__(env)
        self.success_at = success_at
        n = env.num_envs
        self._succeeded = np.zeros(n, dtype=bool)
        self._resetting = np.zeros(n, dtype=bool)
        self.episodes: list[dict[str, float]] = []
        self.components: dict[str, list[float]] = {}

    def reset(self, *, seed: Any = None, options: dict | None = None) -> tuple[Any, dict]:
        obs, infos = self.env.reset(seed=seed, options=options)
        self._succeeded[:], self._resetting[:] = False, False
        return obs, self._convert(infos, None)

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict]:
        obs, reward, terminated, truncated, infos = self.env.step(actions)
        n = self.num_envs
        stepped = ~self._resetting  # next-step autoreset: these rows carry real transitions
        success = np.asarray(infos.get("success", np.zeros(n)), dtype=bool) & np.asarray(
            infos.get("_success", np.ones(n, dtype=bool)), dtype=bool
        )
        self._succeeded = np.where(self._resetting, False, self._succeeded)
        if self.success_at == "end":
            self._succeeded = np.where(stepped, success, self._succeeded)
        else:
            self._succeeded |= stepped & success
        for key, values in infos.get("reward_components", {}).items():
            self.components.setdefault(key, []).extend(np.asarray(values)[stepped].tolist())
        episodes = infos.get("reward_episode", {})
        for i, stats in episodes.items():
            self.episodes.append({**stats, "success": float(self._succeeded[i])})
        self._resetting = np.asarray(terminated, dtype=bool) | np.asarray(truncated, dtype=bool)
        return obs, reward, terminated, truncated, self._convert(infos, episodes)

    def _convert(self, infos: Mapping[str, Any], episodes: Mapping[int, dict] | None) -> dict[str, Any]:
        n = self.num_envs
        every = np.ones(n, dtype=bool)
        out: dict[str, Any] = {}
        for key, value in infos.items():
            if key.startswith("_") or key in ("frames", "reward_components", "reward_episode"):
                continue
            if isinstance(value, np.ndarray) and value.shape[:1] == (n,):
                out[key] = value
                out[f"_{key}"] = np.asarray(infos.get(f"_{key}", every), dtype=bool)
        comps = infos.get("reward_components")
        if comps:
            out["reward_components"] = {k: np.asarray(v) for k, v in comps.items()}
            out["reward_components"].update({f"_{k}": every for k in comps})
            out["_reward_components"] = every
        if episodes:
            ended = np.zeros(n, dtype=bool)
            ended[list(episodes)] = True
            table: dict[str, Any] = {}
            for key in ("env_return", "return", "shaping_return", "shaping_residual", "length"):
                column = np.zeros(n)
                for i, stats in episodes.items():
                    column[i] = stats[key]
                table[key], table[f"_{key}"] = column, ended
            out["reward_episode"], out["_reward_episode"] = table, ended
        return out

    def drain(self) -> tuple[list[dict[str, float]], dict[str, list[float]]]:
        """Episodes finished and component values seen since the last call (then forgotten)."""
        episodes, components = self.episodes, self.components
        self.episodes, self.components = [], {}
        return episodes, components


_RUNNER_REPORT: dict[str, Any] = {}
"""What the env creator built in this process (read by the driver through `foreach_env_runner`)."""


def make_env(ctx: Mapping[str, Any]) -> gym.Env | gym.vector.VectorEnv:
    """The env creator registered with `tune.register_env`: the reward path inside an EnvRunner.

    Args:
        ctx: RLlib's env context: this module's `env_config` plus `num_envs` (vector entry point).

    Returns:
        A gymnasium VectorEnv (when RLlib asks for `num_envs`) or one bare task env (for spaces).
    """
    import embodied  # noqa: F401  (sets MUJOCO_GL=egl before MuJoCo loads)
    from embodied.envs.make import make

    setup = RewardSetup.from_dict(ctx["setup"])
    num_envs = ctx.get("num_envs")
    if num_envs is None:
        env = make(setup.task)
        if isinstance(env.observation_space, gym.spaces.Dict):  # as in `build_vector_env`
            env = gym.wrappers.DtypeObservation(gym.wrappers.FlattenObservation(env), np.float32)
        return env
    return build_vector_env(setup, int(num_envs), int(ctx.get("seed", 0)), ctx.get("service"))


def build_vector_env(
    setup: RewardSetup, num_envs: int, seed: int, service: Mapping[str, Any] | None = None
) -> gym.vector.VectorEnv:
    """The vector env an EnvRunner steps (see the module docstring); also used by the equivalence tests."""
    from embodied.envs.make import make_vec

    if service:
        reward, shaper, info = served_parts(
            setup, service["name"], service.get("namespace", NAMESPACE), float(service.get("timeout_s", 120.0))
        )
        report = {"mode": "actor", "service": service["name"], "device": info["device"], "pid": os.getpid()}
    else:
        reward_model, potential = setup.models()
        report = {"mode": "in-runner", **place_parts(reward_model, potential, scoring_device())}
        reward, shaper = reward_model, setup.shaper(potential)
    from embodied.rewards.base import merged_requirements

    req = merged_requirements(reward, shaper)  # render only what is scored, at the scorer's input size
    venv = make_vec(setup.task, num_envs, frames=list(req.cameras) or None, frame_size=req.frame_size)
    env: gym.vector.VectorEnv = SeedOffset(venv, seed)
    env = VectorRewardWrapper(env, reward, shaper)
    env = RLlibInfos(env, setup.task.success_at)
    if isinstance(env.single_observation_space, gym.spaces.Dict):
        env = gym.wrappers.vector.DtypeObservation(gym.wrappers.vector.FlattenObservation(env), np.float32)
    _RUNNER_REPORT.clear()
    _RUNNER_REPORT.update(report)
    return env


def _runner_report(_: Any = None) -> dict[str, Any]:
    return dict(_RUNNER_REPORT)


def find_wrapper(env: Any, cls: type) -> Any:
    """The first wrapper of type `cls` in a (vector) wrapper chain, or None."""
    seen = 0
    while env is not None and seen < 32:
        if isinstance(env, cls):
            return env
        env, seen = getattr(env, "env", None), seen + 1
    return None


def _callbacks_base() -> type:
    from ray.rllib.callbacks.callbacks import RLlibCallback

    return RLlibCallback


class EmbodiedCallbacks(_callbacks_base()):  # type: ignore[misc]
    """Logs the reward path's statistics through RLlib's `MetricsLogger` (key prefix `embodied/`)."""

    def on_sample_end(self, *, env_runner: Any = None, metrics_logger: Any = None, **kwargs: Any) -> None:
        infos = find_wrapper(getattr(env_runner, "env", None), RLlibInfos)
        if infos is None or metrics_logger is None:
            return
        episodes, components = infos.drain()
        for ep in episodes:
            for key in EPISODE_KEYS:
                metrics_logger.log_value(("embodied", f"ep_{key}_mean"), float(ep[key]), reduce="mean", window=100)
            metrics_logger.log_value(
                ("embodied", "shaping_residual_max_abs"), abs(float(ep["shaping_residual"])), reduce="max", window=100
            )
        for key, values in components.items():
            if values:
                metrics_logger.log_value(
                    ("embodied", f"component/{key}"), float(np.mean(values)), reduce="mean", window=1
                )


# --------------------------------------------------------------------------------------------------
# Cluster.


@dataclass
class RaySession:
    """A connection to a Ray cluster; `close()` shuts Ray down only if this session started it."""

    address: str | None
    owned: bool
    cpus: float
    gpus: float
    nodes: int

    def describe(self) -> str:
        if self.address:
            where = f"joined the Ray cluster at {self.address}"
        else:
            where = (
                "started a local Ray cluster" if self.owned else "using the Ray cluster this process is connected to"
            )
        return f"ray: {where}: {self.nodes} node(s), {self.cpus:g} CPUs, {self.gpus:g} GPUs"

    def close(self) -> None:
        if self.owned:
            import ray

            ray.shutdown()


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Raise `ClusterError` unless something listens at a Ray address (`host:port` or `ray://host:port`)."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host:
        host, port = hostport, "10001" if address.startswith("ray://") else "6379"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise ClusterError(
            f"cannot reach a Ray cluster at {address!r} ({reason}); start one with `ray start --head` "
            "on that machine, or fix --address / RAY_ADDRESS"
        ) from None


def worker_env() -> dict[str, str]:
    """Environment variables every Ray worker of a run needs (headless rendering)."""
    env = {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    if os.environ.get("PYOPENGL_PLATFORM"):
        env["PYOPENGL_PLATFORM"] = os.environ["PYOPENGL_PLATFORM"]
    return env


def worker_runtime_env() -> dict[str, Any] | None:
    """The runtime env for this run's workers; inside `ray job submit` only what the job does not set.

    Ray refuses to merge a job's runtime env with a driver's that names the same variables, so keys the
    submitted job already sets (e.g. `MUJOCO_GL` in `--runtime-env-json`) are left to the job.
    """
    env = worker_env()
    injected = os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR")
    if injected:
        try:
            job_vars = (json.loads(injected).get("runtime_env") or {}).get("env_vars") or {}
        except (ValueError, AttributeError):
            job_vars = {}
        env = {k: v for k, v in env.items() if k not in job_vars}
    return {"env_vars": env} if env else None


def connect(address: str | None = None) -> RaySession:
    """Join the cluster at `address` (or `RAY_ADDRESS`), or start a local one with this machine's resources."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    if address == "local":
        address = None
    if address:
        check_reachable(address)
    owned = not ray.is_initialized()
    logging.getLogger("ray.rllib").setLevel(logging.ERROR)  # RLlib's "new API stack" notices on every build
    if owned:
        kwargs: dict[str, Any] = {
            "runtime_env": worker_runtime_env(),
            "logging_level": logging.ERROR,
            "log_to_driver": bool(os.environ.get("EMBODIED_RAY_LOGS")),
        }
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(include_dashboard=False, **kwargs)
        except (ConnectionError, RuntimeError, TimeoutError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ClusterError(f"cannot join the Ray cluster at {address or 'local'}: {first}") from None
    res = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return RaySession(address, owned, float(res.get("CPU", 0)), float(res.get("GPU", 0)), nodes)


def learners_of(cfg: TrainConfig) -> int:
    """Learner actors: the config's, else 0 (the learner runs in the driver)."""
    return 0 if cfg.learners is None else cfg.learners


def envs_per_runner(cfg: TrainConfig) -> int:
    return cfg.envs_per_runner or cfg.envs


def check_resources(cfg: TrainConfig, session: RaySession) -> None:
    """One-line errors when the cluster cannot host the runners and learners (Ray would wait forever)."""
    learners = learners_of(cfg)
    learner_cpus = learners if cfg.gpus_per_learner == 0 else 0
    need = cfg.env_runners + learner_cpus
    if need > session.cpus:
        parts = f"--env-runners {cfg.env_runners}" + (f" + {learner_cpus} learner(s)" if learner_cpus else "")
        raise ClusterError(
            f"{parts} need {need} CPUs but the Ray cluster has {session.cpus:g}; "
            "lower --env-runners or add nodes (`ray start --address=HEAD:6379` on each)"
        )
    need_gpus = max(learners, 1) * cfg.gpus_per_learner
    if need_gpus > session.gpus:
        raise ClusterError(
            f"--gpus-per-learner {cfg.gpus_per_learner:g} × {max(learners, 1)} learner(s) need {need_gpus:g} GPUs "
            f"but the Ray cluster has {session.gpus:g}"
        )


# --------------------------------------------------------------------------------------------------
# Algorithm config.

MODEL: dict[str, dict[str, Any]] = {
    # The same networks as SB3's defaults, so a run moved between backends learns alike.
    "ppo": {"fcnet_hiddens": [64, 64], "fcnet_activation": "tanh", "vf_share_layers": False},
    "appo": {"fcnet_hiddens": [64, 64], "fcnet_activation": "tanh", "vf_share_layers": False},
    "sac": {"fcnet_hiddens": [256, 256], "fcnet_activation": "relu"},
}


def training_defaults(cfg: TrainConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """(`training()` kwargs, `reporting()` kwargs) mirroring the SB3 defaults.

    Tiny runs (tests, smoke checks) get at least about four iterations: an iteration never samples
    more than a quarter of `--steps`; real runs (≥ 4 × 256 × envs steps) are unaffected.
    """
    n_envs = max(cfg.env_runners, 1) * envs_per_runner(cfg)
    per_learner = max(learners_of(cfg), 1)
    quarter = max(cfg.steps // 4, 8)
    if cfg.algo == "ppo":
        batch = max(min(256 * n_envs, quarter) // per_learner, 8)
        return {
            "lr": 3e-4,
            "train_batch_size_per_learner": batch,
            "minibatch_size": min(256, batch),
            "num_epochs": 10,
            "lambda_": 0.95,
            "clip_param": 0.2,
            "entropy_coeff": 0.0,
            "vf_loss_coeff": 0.5,
            "use_kl_loss": False,
            "grad_clip": 0.5,
        }, {}
    if cfg.algo == "appo":
        batch = max(min(500, quarter) // per_learner, 8)
        return {"lr": 3e-4, "train_batch_size_per_learner": batch, "vf_loss_coeff": 0.5, "entropy_coeff": 0.0}, {
            "min_time_s_per_iteration": 0,
            "min_sample_timesteps_per_iteration": batch * per_learner,
        }
    # SAC: min_time_s_per_iteration = 0, else RLlib keeps sampling for a second per iteration and the
    # step count overshoots --steps by however many steps fit in that second.
    batch = 256
    return {
        "actor_lr": 3e-4,
        "critic_lr": 3e-4,
        "alpha_lr": 3e-4,
        "train_batch_size_per_learner": batch,
        "num_steps_sampled_before_learning_starts": min(1000, cfg.steps // 2),
    }, {"min_time_s_per_iteration": 0, "min_sample_timesteps_per_iteration": min(1000, quarter)}


def algo_config(cfg: TrainConfig, setup: RewardSetup, placement: Placement, service: ServiceHandle | None) -> Any:
    """The RLlib `AlgorithmConfig` for a run."""
    from ray import tune
    from ray.rllib.algorithms.appo import APPOConfig
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.algorithms.sac import SACConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    if cfg.algo not in ALGOS:
        raise ConfigError(f"unknown algorithm {cfg.algo!r} for --backend rllib; available: {', '.join(ALGOS)}")
    tune.register_env(ENV_NAME, make_env)
    config_cls = {"ppo": PPOConfig, "sac": SACConfig, "appo": APPOConfig}[cfg.algo]
    training, reporting = training_defaults(cfg)
    training.update(cfg.hyperparams)
    if "minibatch_size" in training and "minibatch_size" not in cfg.hyperparams:
        training["minibatch_size"] = min(training["minibatch_size"], training["train_batch_size_per_learner"])
    env_config = {
        "setup": setup.to_dict(),
        "seed": cfg.seed,
        "service": None
        if service is None
        else {"name": service.name, "namespace": service.namespace, "timeout_s": service.timeout_s},
    }
    config = (
        config_cls()
        .environment(ENV_NAME, env_config=env_config, disable_env_checking=True)
        .env_runners(
            num_env_runners=cfg.env_runners,
            num_envs_per_env_runner=envs_per_runner(cfg),
            gym_env_vectorize_mode="vector_entry_point",
            num_cpus_per_env_runner=1,
            num_gpus_per_env_runner=placement.runner_gpus,
        )
        .learners(num_learners=learners_of(cfg), num_gpus_per_learner=cfg.gpus_per_learner)
        .fault_tolerance(
            restart_failed_env_runners=True,
            max_num_env_runner_restarts=1000,
            delay_between_env_runner_restarts_s=1.0,
            env_runner_health_probe_timeout_s=30.0,
        )
        .rl_module(model_config=DefaultModelConfig(**MODEL[cfg.algo]))
        .callbacks(EmbodiedCallbacks)
        .debugging(seed=cfg.seed, log_level="ERROR")
    )
    try:
        config = config.training(gamma=cfg.gamma, **training)
    except TypeError as exc:
        raise ConfigError(f"hyperparams: not an RLlib {cfg.algo.upper()} training option ({exc})") from None
    if reporting:
        config = config.reporting(**reporting)
    return config


# --------------------------------------------------------------------------------------------------
# Checkpoints and the exported policy.


def save_checkpoint(algo: Any, ckpt_dir: Path, steps: int) -> Path:
    """The whole algorithm at `steps` as `checkpoints/step_N/`, then the `latest.json` pointer; both atomic."""
    ckpt_dir.mkdir(exist_ok=True)
    path = ckpt_dir / f"step_{steps}"
    tmp = ckpt_dir / f".step_{steps}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    algo.save_to_path(str(tmp.resolve()))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    pointer = ckpt_dir / "latest.json.tmp"
    pointer.write_text(json.dumps({"steps": steps, "model": path.name}))
    pointer.replace(ckpt_dir / "latest.json")
    return path


MODULE_PATH = Path("learner_group") / "learner" / "rl_module" / "default_policy"


def export_policy(checkpoint: Path, out: Path, meta: Mapping[str, Any]) -> None:
    """Zip the RLModule of an algorithm checkpoint (plus `meta`) into `out` (atomically)."""
    module_dir = checkpoint / MODULE_PATH
    if not module_dir.is_dir():
        raise RunError(f"checkpoint {checkpoint} holds no RLModule at {MODULE_PATH}")
    tmp = out.with_name(f".{out.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(module_dir.rglob("*")):
            if file.is_file():
                zf.write(file, Path("rl_module") / file.relative_to(module_dir))
        zf.writestr(POLICY_FILE, json.dumps(dict(meta), indent=1))
    tmp.replace(out)


class RLlibPolicy:
    """An RLlib RLModule with SB3's `predict(obs, deterministic=True) -> (action, state)` (CPU).

    Args:
        module: the trained RLModule (torch).
        observation_space: the task env's observation space (Dict spaces are flattened as in training).
        action_space: the task env's action space (Box actions are unsquashed from [-1, 1] when the run
            trained with RLlib's `normalize_actions`, else clipped when `clip_actions`).
    """

    def __init__(
        self,
        module: Any,
        observation_space: gym.Space,
        action_space: gym.Space,
        normalize_actions: bool = True,
        clip_actions: bool = False,
    ) -> None:
        self.module, self.observation_space, self.action_space = module, observation_space, action_space
        self.normalize_actions, self.clip_actions = normalize_actions, clip_actions
        self._dist = module.get_inference_action_dist_cls()

    def predict(
        self, obs: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True
    ) -> tuple[np.ndarray, None]:
        """Action for one observation (unbatched, as `embodied.make` returns it)."""
        import torch

        if isinstance(self.observation_space, gym.spaces.Dict):
            obs = gym.spaces.flatten(self.observation_space, obs)
        batch = torch.as_tensor(np.asarray(obs, dtype=np.float32)[None])
        with torch.no_grad():
            out = (
                self.module.forward_inference({"obs": batch})
                if deterministic
                else self.module.forward_exploration({"obs": batch})
            )
            if "actions" in out:
                action = out["actions"]
            else:
                dist = self._dist.from_logits(out["action_dist_inputs"])
                action = dist.to_deterministic().sample() if deterministic else dist.sample()
        action = np.asarray(action.cpu().numpy()[0])
        if isinstance(self.action_space, gym.spaces.Box):
            from ray.rllib.utils.spaces.space_utils import clip_action, unsquash_action

            if self.normalize_actions:
                action = unsquash_action(action, self.action_space)
            elif self.clip_actions:
                action = clip_action(action, self.action_space)
            action = action.astype(self.action_space.dtype)
        elif isinstance(self.action_space, gym.spaces.Discrete):
            action = np.asarray(int(action))
        return action, None


def load_policy(run_dir: Path, cfg: TrainConfig) -> RLlibPolicy:
    """The policy in `run_dir/model.zip` of an RLlib run, ready for `embodied.train.evaluate.rollout`."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    from embodied.envs.make import make

    logging.getLogger("ray.rllib").setLevel(logging.ERROR)  # RLModule's constructor deprecation notice
    archive = run_dir / "model.zip"
    with tempfile.TemporaryDirectory(prefix="embodied-policy-") as tmp, zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp)
        meta = json.loads((Path(tmp) / POLICY_FILE).read_text())
        module = RLModule.from_checkpoint(str(Path(tmp) / "rl_module"))
    module.eval()
    env = make(cfg.task)
    try:
        spaces = env.observation_space, env.action_space
    finally:
        env.close()
    return RLlibPolicy(module, *spaces, bool(meta.get("normalize_actions", True)), bool(meta.get("clip_actions")))


# --------------------------------------------------------------------------------------------------
# Training.

Hook = Callable[[Any, dict, int], None]
"""Called after every training iteration with (algorithm, result, env steps so far)."""


def train(
    cfg: TrainConfig,
    root: Path = Path("policies"),
    progress: bool = True,
    address: str | None = None,
    on_iteration: Hook | None = None,
    log: Callable[[str], None] | None = None,
    reward_factory: Factory | None = None,
) -> Path:
    """Train a new run on a Ray cluster; returns the completed run folder `root/<run>`.

    Args:
        cfg: the run's config (`backend = "rllib"`).
        root: folder of run folders.
        progress: show a progress bar.
        address: Ray cluster address (`host:port`, `ray://host:port`, `auto`); None = `RAY_ADDRESS`, else a
            local cluster with this machine's resources.
        on_iteration: optional hook after each iteration (tests use it to kill an EnvRunner).
        log: where start-up lines go (default: stderr).
        reward_factory: builds (reward model or None, potential or None) inside the reward actor instead
            of the registry (for models the registry does not know, e.g. in bench/gpu_rllib.py); forces
            the actor placement. The specs in `cfg` still name the parts (and are what eval rebuilds).
    """
    if cfg.backend != "rllib":
        raise ConfigError(f"embodied.train.rllib needs backend 'rllib', got {cfg.backend!r}")
    with new_run(cfg, root) as (cfg, tmp):
        return _learn(cfg, tmp, root, progress, None, address, on_iteration, log, reward_factory)


def resume(
    run: str,
    root: Path = Path("policies"),
    progress: bool = True,
    address: str | None = None,
    on_iteration: Hook | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Continue an interrupted RLlib run from its last checkpoint (on this or another cluster)."""
    cfg, tmp, latest = interrupted_run(root, run)
    return _learn(cfg, tmp, root, progress, latest, address, on_iteration, log)


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _learn(
    cfg: TrainConfig,
    tmp: Path,
    root: Path,
    progress: bool,
    resume_from: dict | None,
    address: str | None,
    on_iteration: Hook | None,
    log: Callable[[str], None] | None,
    reward_factory: Factory | None = None,
) -> Path:
    log = log or _stderr
    setup = RewardSetup.from_config(cfg, tmp)
    if reward_factory is None and not setup.wants_gpu:
        setup.models()  # cheap parts: build once here so a bad spec is a one-line error before Ray starts
    session = connect(address)
    algo: Any = None
    service: ServiceHandle | None = None
    writer: Any = None
    history: list[dict[str, float]] = []
    metrics_path = tmp / "metrics.json"
    done_steps = 0
    if resume_from is not None:
        done_steps = int(resume_from["steps"])
        if metrics_path.exists():
            old = json.loads(metrics_path.read_text()).get("history", [])
            history = [row for row in old if row.get("timesteps", 0) <= done_steps]
    try:
        log(session.describe())
        check_resources(cfg, session)
        learner_gpus = max(learners_of(cfg), 1) * cfg.gpus_per_learner
        mode = "actor" if reward_factory is not None else cfg.reward_service
        placement = plan_placement(mode, setup, session.gpus, cfg.env_runners, learner_gpus, cfg.reward_gpus)
        for note in placement.warnings:  # explicit fall-backs (e.g. a GPU model on a CPU-only cluster)
            log(f"warning: {note}")
        if placement.mode == "actor":
            service = start_service(
                reward_factory or setup,
                f"embodied-reward-{cfg.run}-{uuid.uuid4().hex[:6]}",
                placement.actor_gpus,
                expected_clients=max(cfg.env_runners, 1),
            )
        try:
            algo = algo_config(cfg, setup, placement, service).build_algo()
        except ValueError as exc:
            if isinstance(exc, ConfigError | ClusterError | RewardError):
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(f"RLlib rejected the {cfg.algo.upper()} config: {first}") from None
        if abs(float(algo.config.gamma) - cfg.gamma) > 1e-12:
            raise RunError(f"learner gamma {algo.config.gamma} != config gamma {cfg.gamma}")
        if resume_from is not None:
            algo.restore_from_path(str((tmp / "checkpoints" / resume_from["model"]).resolve()))
            log(f"resumed {cfg.run!r} from {resume_from['model']} ({done_steps} steps)")
        runners = "the driver" if cfg.env_runners == 0 else f"{cfg.env_runners} EnvRunner(s)"
        learners = learners_of(cfg)
        learner_text = "1 learner in the driver" if learners == 0 else f"{learners} learner actor(s)"
        gpu_text = f" × {cfg.gpus_per_learner:g} GPU" if cfg.gpus_per_learner else " (CPU)"
        log(f"rllib: {cfg.algo.upper()}, {runners} × {envs_per_runner(cfg)} envs, {learner_text}{gpu_text}")
        reward_report = _reward_report(algo, placement, service, cfg)
        log(f"reward: {reward_report['text']} [{placement.reason}]")
        from tensorboardX import SummaryWriter
        from tqdm import tqdm

        writer = SummaryWriter(str(tmp / "tb"))
        steps, last_ckpt, idle = done_steps, done_steps - done_steps % cfg.checkpoint_every, 0
        t0 = time.perf_counter()
        with tqdm(total=cfg.steps, initial=steps, disable=not progress, unit="step", desc=cfg.run) as bar:
            while steps < cfg.steps:
                result = algo.train()
                sampled = int(result.get("env_runners", {}).get("num_env_steps_sampled", 0) or 0)
                idle = 0 if sampled else idle + 1
                if idle >= 50:
                    raise RunError("50 training iterations sampled no env steps; are all EnvRunners failing?")
                steps += sampled
                bar.update(sampled)
                row = _row(result, steps)
                history.append(row)
                for key, value in row.items():
                    if key != "timesteps":
                        writer.add_scalar(f"reward/{key}", value, steps)
                if service is not None:
                    seen = service.restarts_seen
                    with warnings.catch_warnings():  # logged below instead
                        warnings.simplefilter("ignore", PlacementWarning)
                        service.check()
                    if service.restarts_seen != seen:
                        log(f"warning: reward service restarted; models re-loaded on {service.info['device']}")
                if on_iteration is not None:
                    on_iteration(algo, result, steps)
                if steps - last_ckpt >= cfg.checkpoint_every:
                    last_ckpt = steps - steps % cfg.checkpoint_every
                    save_checkpoint(algo, tmp / "checkpoints", steps)
                    metrics_path.write_text(json.dumps({"history": history}, indent=1))
        wall = time.perf_counter() - t0
        final = save_checkpoint(algo, tmp / "checkpoints", steps)
        export_policy(
            final,
            tmp / "model.zip",
            {
                "algo": cfg.algo,
                "steps": steps,
                "normalize_actions": bool(algo.config.normalize_actions),
                "clip_actions": bool(algo.config.clip_actions),
            },
        )
        last = history[-1] if history else {}
        metrics = {
            "run": cfg.run,
            "task": cfg.task.name,
            "reward": cfg.reward,
            "shaping": cfg.shaping,
            "algo": cfg.algo,
            "backend": "rllib",
            "env_runners": cfg.env_runners,
            "envs_per_runner": envs_per_runner(cfg),
            "learners": learners,
            "timesteps": int(steps),
            "wall_s": round(wall, 2),
            "steps_per_s": round((steps - done_steps) / max(wall, 1e-9), 1),
            "env_runner_restarts": int(algo.env_runner_group.num_remote_worker_restarts()),
            "reward_service": {
                "mode": placement.mode,
                "device": reward_report["device"],
                **({"restarts": service.restarts_seen, "stats": service.stats()} if service is not None else {}),
            },
            "final": {k: v for k, v in last.items() if k != "timesteps"},
            "history": history,
        }
        metrics_path.write_text(json.dumps(metrics, indent=1))
    except BaseException:
        if history:
            metrics_path.write_text(json.dumps({"history": history}, indent=1))
        raise
    finally:
        if writer is not None:
            writer.close()
        if algo is not None:
            algo.stop()
        if service is not None:
            service.stop()
        session.close()
    return finish(tmp, root, cfg.run)


def _reward_report(algo: Any, placement: Placement, service: ServiceHandle | None, cfg: TrainConfig) -> dict:
    """Which device actually scores: asked from the reward actor or from every EnvRunner."""
    if service is not None:
        return {"text": service.describe() + f", shared by {runners_text(cfg)}", "device": service.info["device"]}
    reports = algo.env_runner_group.foreach_env_runner(_runner_report, local_env_runner=cfg.env_runners == 0)
    devices = sorted({r.get("device", "?") for r in reports if r}) or ["?"]
    gpu = f", {placement.runner_gpus:g} GPU each" if placement.runner_gpus else ""
    return {
        "text": f"in-runner in {runners_text(cfg)}{gpu}, scoring on {'/'.join(devices)}",
        "device": "/".join(devices),
    }


def runners_text(cfg: TrainConfig) -> str:
    return "the driver" if cfg.env_runners == 0 else f"{cfg.env_runners} EnvRunner(s)"


def _row(result: Mapping[str, Any], steps: int) -> dict[str, float]:
    """One metrics.json row (the same keys as the SB3 backend's) from an RLlib result."""
    runners = result.get("env_runners", {}) or {}
    ours = runners.get("embodied", {}) or {}
    row: dict[str, float] = {"timesteps": float(steps)}
    for key, value in sorted(ours.items()):
        if key == "component" and isinstance(value, Mapping):
            row.update({f"component/{k}": float(v) for k, v in sorted(value.items()) if _finite(v)})
        elif _finite(value):
            row[key] = float(value)
    for key in ("episode_return_mean", "episode_len_mean"):
        if _finite(runners.get(key)):
            row[f"rllib/{key}"] = float(runners[key])
    return row


def _finite(value: Any) -> bool:
    try:
        return bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        return False
