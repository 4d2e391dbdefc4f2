"""Evaluation of a trained run on held-out seeds: success rate, env return, the run's own return."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embodied.train.config import TrainConfig, load_config
from embodied.train.runs import absolute_spec, find_run

HELD_OUT_SEED = 1_000_000
"""Evaluation seeds start here; training seeds are small integers, so layouts never overlap."""


@dataclass
class Step:
    """One evaluated step, for videos: frame (or None), rewards and running sums."""

    frame: np.ndarray | None
    reward: float
    env_reward: float
    components: dict[str, float]
    ret: float
    env_ret: float
    success: bool


def load_policy(run_dir: Path, cfg: TrainConfig | None = None) -> Any:
    """The trained policy of a run (CPU): an SB3 model, or an RLlib RLModule behind the same `predict`."""
    cfg = cfg or load_config(run_dir / "config.toml")
    if cfg.backend == "rllib":
        from embodied.train import rllib

        return rllib.load_policy(run_dir, cfg)
    from embodied.train.sb3 import ALGOS

    return ALGOS[cfg.algo].load(run_dir / "model.zip", device="cpu")


def reward_env(
    cfg: TrainConfig, run_dir: Path, frames: list[str] | None = None, frame_size: tuple[int, int] | None = None
) -> Any:
    """A single task env with the run's reward model and shaping applied (for eval and video)."""
    from embodied.envs.make import make
    from embodied.rewards.adapters import RewardWrapper
    from embodied.rewards.base import merged_requirements
    from embodied.rewards.registry import make_potential, make_reward
    from embodied.rewards.shaping import Shaper

    reward_spec = absolute_spec(cfg.reward, run_dir)
    reward = None if reward_spec == "env" else make_reward(reward_spec, cfg.task)
    shaper = None
    if cfg.shaping:
        gamma = cfg.shaping_gamma if cfg.shaping_gamma is not None else cfg.gamma
        shaper = Shaper(make_potential(absolute_spec(cfg.shaping, run_dir), cfg.task), gamma, cfg.shaping_scale)
    req = merged_requirements(reward, shaper)
    cams = list(dict.fromkeys([*(frames or []), *req.cameras]))
    # A scorer sees frames at its own input size; a video then shows them upscaled (see video.record).
    size = req.frame_size or frame_size
    env = make(cfg.task, frames=cams or None, frame_size=size, render_quality="full" if frames else "fast")
    return RewardWrapper(env, reward, shaper)


def rollout(model: Any, env: Any, seed: int, camera: str | None = None, deterministic: bool = True) -> Iterator[Step]:
    """Yield the steps of one episode of `model` in `env` (a `reward_env`)."""
    obs, info = env.reset(seed=seed)
    ret = env_ret = 0.0
    done = False
    while not done:
        action, _ = model.predict(obs, deterministic=deterministic)
        obs, reward, terminated, truncated, info = env.step(action)
        ret += reward
        env_ret += info["env_reward"]
        done = terminated or truncated
        frame = info["frames"][camera] if camera else None
        yield Step(
            frame,
            float(reward),
            float(info["env_reward"]),
            dict(info["reward_components"]),
            ret,
            env_ret,
            bool(info["success"]),
        )


def episode_success(steps: list[Step], success_at: str) -> bool:
    """Whether an episode succeeded under the task's `success_at` rule ("any" or "end")."""
    return steps[-1].success if success_at == "end" else any(s.success for s in steps)


def evaluate(
    run: str | Path,
    episodes: int = 10,
    seed: int = HELD_OUT_SEED,
    root: Path = Path("policies"),
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Roll out the run's policy deterministically on held-out seeds `seed, seed+1, ...`.

    Success follows the task's `success_at`: the rule held at any step (Meta-World's convention) or
    at the last step (tasks such as standing, where the start state already satisfies it).

    Returns:
        success_rate, env_return (mean), env_return_std, return (mean of the reward the learner saw),
        length (mean), episodes, seeds.
    """
    run_dir = find_run(run, root)
    cfg = load_config(run_dir / "config.toml")
    model = load_policy(run_dir, cfg)
    env = reward_env(cfg, run_dir)
    successes, env_returns, returns, lengths = [], [], [], []
    try:
        for k in range(episodes):
            steps = list(rollout(model, env, seed + k))
            successes.append(episode_success(steps, cfg.task.success_at))
            env_returns.append(steps[-1].env_ret)
            returns.append(steps[-1].ret)
            lengths.append(len(steps))
            if progress:
                progress(1)
    finally:
        env.close()
    return {
        "run": cfg.run,
        "task": cfg.task.name,
        "reward": cfg.reward,
        "shaping": cfg.shaping,
        "episodes": episodes,
        "seeds": [seed, seed + episodes - 1],
        "success_rate": float(np.mean(successes)),
        "env_return": float(np.mean(env_returns)),
        "env_return_std": float(np.std(env_returns)),
        "return": float(np.mean(returns)),
        "length": float(np.mean(lengths)),
    }
