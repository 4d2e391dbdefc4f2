"""Single-machine training with Stable-Baselines3 (PPO, SAC) on any task, reward and shaping spec.

Data path: task -> DummyVecEnv of task envs (Monitor inside, frames captured per sub-env)
-> SB3RewardWrapper (reward model + potential shaping) -> learner.
"""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from embodied.rewards.base import merged_requirements
from embodied.rewards.registry import make_potential, make_reward
from embodied.rewards.shaping import Shaper, check_gamma
from embodied.train.config import TrainConfig, load_config
from embodied.train.runs import RunError, absolute_spec, finish, interrupted_run, new_run

DEFAULTS: dict[str, dict[str, Any]] = {
    "ppo": {"n_steps": 256, "batch_size": 256, "n_epochs": 10, "learning_rate": 3e-4, "ent_coef": 0.0},
    "sac": {"learning_starts": 1000, "batch_size": 256, "learning_rate": 3e-4, "train_freq": 1, "gradient_steps": 1},
}


def build_vec_env(cfg: TrainConfig, run_dir: Path | None = None, seed: int | None = None) -> Any:
    """The SB3 VecEnv for a config: reward model + shaping applied by `SB3RewardWrapper`."""
    from embodied.envs.make import make
    from embodied.train.sb3_adapter import SB3RewardWrapper

    reward_spec = absolute_spec(cfg.reward, run_dir) if run_dir else cfg.reward
    reward = None if reward_spec == "env" else make_reward(reward_spec, cfg.task)
    shaper = None
    if cfg.shaping:
        gamma = cfg.shaping_gamma if cfg.shaping_gamma is not None else cfg.gamma
        check_gamma(gamma, cfg.gamma, "--shaping")
        potential = make_potential(absolute_spec(cfg.shaping, run_dir) if run_dir else cfg.shaping, cfg.task)
        shaper = Shaper(potential, gamma, cfg.shaping_scale)
    req = merged_requirements(reward, shaper)  # render only what is scored, at the scorer's input size
    frames = list(req.cameras) or None
    venv = DummyVecEnv([lambda: Monitor(make(cfg.task, frames=frames, frame_size=req.frame_size))] * cfg.envs)
    venv.seed(cfg.seed if seed is None else seed)
    return SB3RewardWrapper(venv, reward, shaper)


class RewardLogger(BaseCallback):
    """Logs reward components, env vs shaped returns, success and the shaping residual.

    Rows also go into `history` (one per rollout), which becomes `metrics.json`.
    """

    def __init__(self, history: list[dict[str, float]], success_at: str = "any") -> None:
        super().__init__()
        self.history, self.success_at = history, success_at
        self.episodes: deque[dict[str, float]] = deque(maxlen=100)
        self.components: dict[str, list[float]] = {}
        self._succeeded: dict[int, bool] = {}

    def _on_step(self) -> bool:
        for i, info in enumerate(self.locals["infos"]):
            for key, value in info.get("reward_components", {}).items():
                self.components.setdefault(key, []).append(value)
            success = bool(info.get("success", False))
            self._succeeded[i] = success if self.success_at == "end" else self._succeeded.get(i, False) or success
            if "reward_episode" in info:
                self.episodes.append({**info["reward_episode"], "success": float(self._succeeded.pop(i))})
        return True

    def _on_rollout_end(self) -> None:
        row: dict[str, float] = {"timesteps": float(self.num_timesteps)}
        for key, values in self.components.items():
            self.logger.record(f"reward/{key}", float(np.mean(values)))
            row[f"component/{key}"] = float(np.mean(values))
        self.components.clear()
        if self.episodes:
            eps = list(self.episodes)
            for key in ("env_return", "return", "shaping_return", "success", "length"):
                value = float(np.mean([e[key] for e in eps]))
                self.logger.record(f"reward/ep_{key}_mean", value)
                row[f"ep_{key}_mean"] = value
            residual = float(np.max(np.abs([e["shaping_residual"] for e in eps])))
            self.logger.record("reward/shaping_residual_max_abs", residual)
            row["shaping_residual_max_abs"] = residual
        self.history.append(row)


class Checkpointer(BaseCallback):
    """Saves a checkpoint every `every` env steps (see `save_checkpoint`)."""

    def __init__(self, ckpt_dir: Path, every: int) -> None:
        super().__init__()
        self.ckpt_dir, self.every, self.last = ckpt_dir, every, 0

    def _init_callback(self) -> None:
        self.last = self.num_timesteps - self.num_timesteps % self.every

    def _on_step(self) -> bool:
        if self.num_timesteps - self.last >= self.every:
            self.last = self.num_timesteps - self.num_timesteps % self.every
            save_checkpoint(self.model, self.ckpt_dir, self.num_timesteps)
        return True


def save_checkpoint(model: Any, ckpt_dir: Path, steps: int) -> None:
    """model at `steps` (and SAC's replay buffer), then the `latest` pointer, each written atomically."""
    ckpt_dir.mkdir(exist_ok=True)
    path = ckpt_dir / f"step_{steps}.zip"
    model.save(path.with_suffix(".tmp.zip"))
    path.with_suffix(".tmp.zip").replace(path)
    if hasattr(model, "replay_buffer") and model.replay_buffer is not None:
        model.save_replay_buffer(ckpt_dir / "replay_buffer.pkl")
    tmp = ckpt_dir / "latest.json.tmp"
    tmp.write_text(json.dumps({"steps": steps, "model": path.name}))
    tmp.replace(ckpt_dir / "latest.json")


ALGOS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "sac": SAC}


def _policy(venv: Any) -> str:
    return "MultiInputPolicy" if isinstance(venv.observation_space, gym.spaces.Dict) else "MlpPolicy"


def train(cfg: TrainConfig, root: Path = Path("policies"), progress: bool = True) -> Path:
    """Train a new run; returns the completed run folder `root/<run>`."""
    with new_run(cfg, root) as (cfg, tmp):
        return _learn(cfg, tmp, root, progress, resume_from=None)


def resume(run: str, root: Path = Path("policies"), progress: bool = True) -> Path:
    """Continue an interrupted run from its last checkpoint."""
    cfg, tmp, latest = interrupted_run(root, run)
    return _learn(cfg, tmp, root, progress, resume_from=latest)


def _learn(cfg: TrainConfig, tmp: Path, root: Path, progress: bool, resume_from: dict | None) -> Path:
    import torch

    torch.set_num_threads(cfg.threads)
    venv = build_vec_env(cfg, tmp)
    algo = ALGOS[cfg.algo]
    hyper = {**DEFAULTS[cfg.algo], **cfg.hyperparams}
    history: list[dict[str, float]] = []
    metrics_path = tmp / "metrics.json"
    done_steps = 0
    if resume_from is not None:
        model = algo.load(tmp / "checkpoints" / resume_from["model"], env=venv, device=cfg.device)
        if (tmp / "checkpoints" / "replay_buffer.pkl").exists() and hasattr(model, "load_replay_buffer"):
            model.load_replay_buffer(tmp / "checkpoints" / "replay_buffer.pkl")
        done_steps = int(resume_from["steps"])
        if metrics_path.exists():
            history = json.loads(metrics_path.read_text()).get("history", [])
    else:
        model = algo(_policy(venv), venv, gamma=cfg.gamma, seed=cfg.seed, device=cfg.device, verbose=0, **hyper)
    model.set_logger(configure(str(tmp / "tb"), ["tensorboard", "csv"]))
    if abs(model.gamma - cfg.gamma) > 1e-12:
        raise RunError(f"learner gamma {model.gamma} != config gamma {cfg.gamma}")
    callbacks = CallbackList(
        [RewardLogger(history, cfg.task.success_at), Checkpointer(tmp / "checkpoints", cfg.checkpoint_every)]
    )
    t0 = time.perf_counter()
    try:
        model.learn(
            total_timesteps=max(cfg.steps - done_steps, 1),
            callback=callbacks,
            reset_num_timesteps=resume_from is None,
            progress_bar=progress,
        )
    except BaseException:
        metrics_path.write_text(json.dumps({"history": history}, indent=1))
        raise
    finally:
        venv.close()
    wall = time.perf_counter() - t0
    model.save(tmp / "model.zip")
    last = history[-1] if history else {}
    metrics = {
        "run": cfg.run,
        "task": cfg.task.name,
        "reward": cfg.reward,
        "shaping": cfg.shaping,
        "algo": cfg.algo,
        "timesteps": int(model.num_timesteps),
        "wall_s": round(wall, 2),
        "steps_per_s": round((model.num_timesteps - done_steps) / max(wall, 1e-9), 1),
        "final": {k: v for k, v in last.items() if k != "timesteps"},
        "history": history,
    }
    metrics_path.write_text(json.dumps(metrics, indent=1))
    return finish(tmp, root, cfg.run)


def load_run_config(run_dir: Path) -> TrainConfig:
    return load_config(run_dir / "config.toml")
