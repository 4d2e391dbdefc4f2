"""Behaviour cloning (BC) and reward-aligned behaviour cloning (RA-BC, SARM) into a Stable-Baselines3 policy.

RA-BC weights every demonstration sample by how much progress its chunk makes. With a progress model φ
(normalised progress, `embodied.rewards.progress`) and a chunk of Δ frames:

    r_i = φ(o_{t+Δ}) − φ(o_t)                         (t + Δ clamped to the episode's last frame)
    μ = max(mean r, 0),  σ = max(std r, ε)            (over the batch)
    soft_i = clip((r_i − (μ − 2σ)) / (4σ + ε), 0, 1)
    w_i = 1 if r_i > κ;  soft_i if 0 ≤ r_i ≤ κ;  0 if r_i < 0
    loss = Σ_i w_i ℓ_i / Σ_i w_i                       (weights renormalised over the batch)

with ℓ_i the squared error between the policy's mean action and the demonstrated action. Vanilla BC is
the same with w_i = 1. φ scores each episode offline with its causal windows (frame t never sees t+1..).

The policy is the actor of an SB3 PPO `MlpPolicy` trained by this supervised loss, saved with
`model.save` into a run folder (`config.toml` with algo "ppo", `model.zip`, `bc.json`, `metrics.json`),
so `embodied eval RUN` and `embodied video RUN` load it like any trained run. For BC runs the config's
`steps` counts gradient steps (no environment steps were taken).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from embodied.demos.dataset import DemoDataset, DemoError
from embodied.tasks.spec import TaskSpec, load_task


class BCError(ValueError):
    """Behaviour cloning misconfigured (unknown weighting, missing progress model, bad demos)."""


def rabc_weights(deltas: np.ndarray, kappa: float, eps: float = 1e-6) -> np.ndarray:
    """RA-BC weights in [0, 1] for a batch of progress deltas (before renormalisation).

    Args:
        deltas: float [B], r_i = φ(o_{t+Δ}) − φ(o_t).
        kappa: soft threshold κ: deltas above it get weight 1.
        eps: ε in σ = max(std r, ε) and the soft weight's denominator.

    Returns:
        float [B]: 1 where r > κ, the soft weight where 0 ≤ r ≤ κ, 0 where r < 0.
    """
    r = np.asarray(deltas, dtype=np.float64)
    if r.size == 0:
        return r.copy()
    mu = max(float(r.mean()), 0.0)
    sigma = max(float(r.std()), eps)
    soft = np.clip((r - (mu - 2.0 * sigma)) / (4.0 * sigma + eps), 0.0, 1.0)
    return np.where(r > kappa, 1.0, np.where(r >= 0.0, soft, 0.0))


def normalize_weights(w: np.ndarray) -> np.ndarray:
    """w / Σ w (all zeros stay zeros: such a batch contributes no gradient)."""
    w = np.asarray(w, dtype=np.float64)
    total = w.sum()
    return w / total if total > 0 else np.zeros_like(w)


def progress_deltas(progress: np.ndarray, delta: int) -> np.ndarray:
    """r_t = φ[min(t + Δ, T − 1)] − φ[t] over one episode's progress φ [T]."""
    p = np.asarray(progress, dtype=np.float64)
    if delta < 1:
        raise BCError(f"option --delta: the chunk must be >= 1 frame, got {delta}")
    ahead = np.minimum(np.arange(p.shape[0]) + delta, p.shape[0] - 1)
    return p[ahead] - p


@dataclass
class BCConfig:
    """Options of `train_bc`.

    Attributes:
        weighting: ``none`` (vanilla BC) or ``rabc``.
        progress: progress model folder (or name under reward_models/<task>/) for RA-BC.
        delta: chunk Δ in frames.
        kappa: soft threshold κ on the progress delta.
        eps: ε of the weight formula.
        successes_only: drop failed episodes (filtered BC); default keeps every demo.
        steps: gradient steps.
        batch_size, lr: optimisation.
        hidden: actor MLP widths.
        seed: torch/numpy seed.
        threads: torch CPU threads while training (None: torch's default).
    """

    weighting: Literal["none", "rabc"] = "none"
    progress: str | None = None
    delta: int = 10
    kappa: float = 0.05
    eps: float = 1e-6
    successes_only: bool = False
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    hidden: tuple[int, ...] = (256, 256)
    seed: int = 0
    threads: int | None = 1

    def check(self) -> None:
        if self.weighting not in ("none", "rabc"):
            raise BCError(f"option --weighting: {self.weighting!r} is not one of ('rabc', 'none')")
        if self.weighting == "rabc" and not self.progress:
            raise BCError(
                "option --progress-model: --weighting rabc needs a progress model (embodied progress train ...)"
            )
        if self.delta < 1:
            raise BCError(f"option --delta: the chunk must be >= 1 frame, got {self.delta}")
        if self.kappa < 0 or self.eps <= 0:
            raise BCError(f"options --kappa/--eps: need kappa >= 0 and eps > 0, got {self.kappa}, {self.eps}")
        if self.steps < 1 or self.batch_size < 1:
            raise BCError("options --steps and --batch-size must be >= 1")


def _gather(
    datasets: Sequence[DemoDataset], task: TaskSpec, cfg: BCConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict[str, Any]]:
    """States, actions (and progress deltas for RA-BC) of every kept demonstration frame."""
    model = None
    if cfg.weighting == "rabc":
        from embodied.rewards.progress import ProgressModel, resolve_model_path

        model = ProgressModel.load(resolve_model_path(str(cfg.progress), task), task)
    states, actions, deltas = [], [], []
    kept = dropped = 0
    if cfg.successes_only and not any(ok for ds in datasets for ok in ds.successes):
        datasets[0].validate(require_success=True)  # raises the one-line "no successful episode" error
    for ds in datasets:
        ds.validate()
        for i, ok in enumerate(ds.successes):
            if cfg.successes_only and not ok:
                dropped += 1
                continue
            ep = ds.load(i, model.cameras if model is not None else ())
            states.append(ep.states)
            actions.append(ep.actions)
            if model is not None:
                deltas.append(progress_deltas(model.score(ep).progress, cfg.delta))
            kept += 1
    if not states:
        raise BCError("no demonstration frames to clone")
    info = {"episodes": kept, "dropped_failures": dropped, "frames": int(sum(len(s) for s in states))}
    return (
        np.concatenate(states).astype(np.float32),
        np.clip(np.concatenate(actions), -1.0, 1.0).astype(np.float32),
        np.concatenate(deltas) if deltas else None,
        info,
    )


def train_bc(
    datasets: DemoDataset | Sequence[DemoDataset],
    task: str | Path | TaskSpec,
    config: BCConfig | None = None,
    run: str | None = None,
    root: Path = Path("policies"),
    progress: bool = True,
) -> Path:
    """Clone demonstrations into an SB3 PPO actor and write the run folder `root/<run>`; returns it.

    Args:
        datasets: demonstration dataset(s) of the task (states must be the env's observations).
        task: the task (its env defines the observation and action spaces).
        config: BC options (`BCConfig`).
        run: run name (default ``<task>-bc-<weighting>-s<seed>``).
        root: folder of run folders.
        progress: show a progress bar.
    """
    import torch
    from stable_baselines3 import PPO
    from torch import nn

    from embodied.envs.make import make
    from embodied.rewards.progress import torch_threads
    from embodied.train.config import TrainConfig, save_config
    from embodied.train.runs import finish, start

    cfg = config or BCConfig()
    cfg.check()
    spec = load_task(task)
    dss = [datasets] if isinstance(datasets, DemoDataset) else list(datasets)
    if not dss:
        raise BCError("no demonstration datasets given")
    name = run or f"{spec.name}-bc-{cfg.weighting}-s{cfg.seed}"
    states, actions, deltas, data_info = _gather(dss, spec, cfg)
    env = make(spec)
    obs_dim = int(np.prod(env.observation_space.shape))
    if states.shape[1] != obs_dim:
        env.close()
        raise DemoError(
            f"{dss[0].root}: field 'states': demos have {states.shape[1]}-dim states, "
            f"task {spec.name!r} observes {obs_dim}"
        )
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    tmp = start(root, name)
    try:
        with torch_threads(cfg.threads):
            model = PPO(
                "MlpPolicy",
                env,
                gamma=spec.gamma,
                seed=cfg.seed,
                device="cpu",
                verbose=0,
                policy_kwargs={"net_arch": {"pi": list(cfg.hidden), "vf": [64, 64]}, "activation_fn": nn.ReLU},
            )
            policy = model.policy
            params = [
                *policy.features_extractor.parameters(),
                *policy.pi_features_extractor.parameters(),
                *policy.mlp_extractor.policy_net.parameters(),
                *policy.action_net.parameters(),
            ]
            opt = torch.optim.Adam(list(dict.fromkeys(params)), lr=cfg.lr)
            obs_t, act_t = torch.as_tensor(states), torch.as_tensor(actions)
            n = states.shape[0]
            losses: list[float] = []
            weight_stats = {"zero": 0.0, "one": 0.0, "soft": 0.0}
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=cfg.steps, desc=f"bc ({cfg.weighting})", unit="step")
            t0 = time.perf_counter()
            policy.train()
            for step in range(cfg.steps):
                rows = rng.integers(0, n, size=min(cfg.batch_size, n))
                pred = policy.get_distribution(obs_t[rows]).mode()
                per = ((pred - act_t[rows]) ** 2).mean(-1)
                if deltas is not None:
                    raw = rabc_weights(deltas[rows], cfg.kappa, cfg.eps)
                    weight_stats["zero"] += float((raw == 0).mean())
                    weight_stats["one"] += float((raw == 1).mean())
                    weight_stats["soft"] += float(((raw > 0) & (raw < 1)).mean())
                    w = torch.as_tensor(normalize_weights(raw), dtype=per.dtype)
                    loss = (w * per).sum()
                else:
                    loss = per.mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                if step % max(1, cfg.steps // 200) == 0:
                    losses.append(round(float(loss.detach()), 6))
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
            policy.eval()
            wall = time.perf_counter() - t0
            model.save(tmp / "model.zip")
        train_cfg = TrainConfig(
            run=name,
            task=spec,
            reward="env",
            algo="ppo",
            steps=cfg.steps,
            seed=cfg.seed,
            envs=1,
            gamma=spec.gamma,
            checkpoint_every=cfg.steps,
        )
        save_config(train_cfg, tmp / "config.toml")
        bc_info = {
            **asdict(cfg),
            "demos": [str(ds.root) for ds in dss],
            **data_info,
            "note": "config.toml 'steps' counts gradient steps of behaviour cloning; no environment steps were taken",
        }
        if deltas is not None:
            bc_info["weights"] = {k: round(v / cfg.steps, 4) for k, v in weight_stats.items()}
            full = rabc_weights(deltas, cfg.kappa, cfg.eps)
            bc_info["dataset_weights"] = {
                "zero": float((full == 0).mean()),
                "one": float((full == 1).mean()),
                "mean": float(full.mean()),
            }
        (tmp / "bc.json").write_text(json.dumps(bc_info, indent=1))
        (tmp / "metrics.json").write_text(
            json.dumps(
                {
                    "run": name,
                    "task": spec.name,
                    "kind": "bc",
                    "weighting": cfg.weighting,
                    "wall_s": round(wall, 2),
                    "final_loss": losses[-1] if losses else None,
                    "loss_curve": losses,
                },
                indent=1,
            )
        )
    except BaseException:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        env.close()
    return finish(tmp, root, name)
