"""Reward-quality check: is this reward worth training on? Answered in minutes, before any GPU-hours.

Rolls out the task's scripted expert (Meta-World ships one per task), the expert with action noise,
and a random policy on the same seeded layouts, scores every transition with the reward under test
and reports:

* **Spearman ρ of the reward with ground-truth progress** — pooled over all transitions, and the
  mean within-episode ρ on clean expert demos up to their first success ("value-order correlation");
* **success-vs-failure AUC** — P(score of a successful episode > score of a failed one), the
  episode score being the mean reward over its last 20 % of transitions; also per transition
  (states where the task's success rule holds vs the rest);
* **EPIC distance to the env's reward** on the collected transitions (`embodied.compare`:
  sample-based EPIC with (A, S') drawn as recorded pairs, bootstrap CI);
* a PNG of the per-episode reward curves next to ground-truth progress.

Ground-truth progress (SARM-style stages, from the task file and the env's info): stage k of K
completes at the first step its ``done`` rule holds (stages are checked in order; success completes
all), and progress = (k + τ)/K, 1 from the first success on (``success_at="any"``). Within a stage, τ
measures how far its rule still is from holding: for comparisons such as ``norm(hand_pos −
handle_pos) < 0.07``, τ = 1 − m_t/m_start with m the margin (here the distance minus 0.07); for the
last stage of a Meta-World task whose rule is just ``info['success'] > 0``, τ = 1 − d_t/d_start with
d = ``info['obj_to_target']``; otherwise τ is the elapsed fraction of the stage (0 if it never ends).
So progress can fall when a policy moves away (random policies), unlike time-based labels.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embodied.rewards.base import Obs, RewardModel, TransitionBatch, frames_concat, obs_concat, obs_take
from embodied.tasks.spec import StageSpec, TaskSpec

DEFAULT_POLICIES = ("expert", "expert:0.5", "random")


@dataclass
class Rollout:
    """One episode with its frames and ground truth; states are indexed 0..T (0 = after reset).

    Attributes:
        policy: the policy spec that acted ("expert", "expert:0.5", "random").
        seed: the reset seed (the layout).
        obs: observations of the T + 1 states [T + 1, ...] (or dict of such arrays).
        actions: [T, ...]; env_reward, terminated, truncated: [T].
        success: bool [T + 1], the task's success rule at each state (False after reset).
        progress: float [T + 1] in [0, 1], ground-truth progress (module docstring).
        infos: T + 1 info dicts (reset info first), without frames.
        frames: camera -> uint8 [T + 1, H, W, 3].
    """

    policy: str
    seed: int
    obs: Obs
    actions: np.ndarray
    env_reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    success: np.ndarray
    progress: np.ndarray
    infos: list[dict[str, Any]]
    frames: dict[str, np.ndarray] = field(default_factory=dict)
    success_at: str = "any"

    @property
    def length(self) -> int:
        return int(self.actions.shape[0])

    @property
    def succeeded(self) -> bool:
        """Success by the task's convention: at any step ("any") or at the last step ("end")."""
        if self.success_at == "end":
            return bool(self.success[-1])
        return bool(self.success.any())

    def transitions(self) -> TransitionBatch:
        """The T transitions as one batch (frames of s' only)."""
        idx, nxt = np.arange(self.length), np.arange(1, self.length + 1)
        return TransitionBatch(
            obs=obs_take(self.obs, idx),
            action=self.actions,
            next_obs=obs_take(self.obs, nxt),
            terminated=self.terminated,
            truncated=self.truncated,
            env_reward=self.env_reward,
            infos=self.infos[1:],
            frames={c: f[1:] for c, f in self.frames.items()} or None,
        )


# --------------------------------------------------------------------------------------------------
# ground-truth progress


def progress_labels(task: TaskSpec, obs: Obs, infos: Sequence[dict[str, Any]], space: Any) -> np.ndarray:
    """Ground-truth progress float [T + 1] of one episode's states (module docstring).

    Args:
        task: the task (stages with ``done`` rules, success rule, success_at).
        obs: the T + 1 observations [T + 1, ...] (or dict).
        infos: the T + 1 info dicts; ``info["success"]`` is the task's success rule at that state.
        space: the env's observation space (to compile the views the rules read).
    """
    from embodied.envs.wrappers import view_getters

    n = len(infos)
    stages = task.stages or (StageSpec(name="task", description=task.goal, done=task.success),)
    getters = view_getters(task, space)
    K = len(stages)
    rules = [_compile(task, s.done, f"stages[{i}].done") if s.done else None for i, s in enumerate(stages)]
    margins = [_margins(task, s.done, i) if s.done else [] for i, s in enumerate(stages)]
    scopes = [_scope(getters, obs, t, infos[t]) for t in range(n)]
    success = np.array([bool(info.get("success", False)) for info in infos])

    # when each stage ends: its rule first holds (in order), or success ends all that remain
    ends: list[int | None] = [None] * K
    k = 0
    for t in range(n):
        if success[t]:
            ends[k:] = [t] * (K - k)
            k = K
            break
        while k < K:
            later = next((j for j in range(k, K) if rules[j] is not None), None)
            if later is None or not _eval(rules[later], scopes[t]):
                break
            ends[k : later + 1] = [None] * (later - k) + [t]  # rule-less stages before it: filled in below
            k = later + 1
    for j in range(K):  # rule-less stages completed by a later one split that interval evenly
        if ends[j] is None and any(e is not None for e in ends[j + 1 :]):
            nxt = next(i for i in range(j + 1, K) if ends[i] is not None)
            start = ends[j - 1] if j > 0 and ends[j - 1] is not None else 0
            for i in range(j, nxt):
                ends[i] = round(start + (ends[nxt] - start) * (i - j + 1) / (nxt - j + 1))  # type: ignore[operator]

    prog = np.zeros(n)
    for t in range(n):
        done = sum(1 for e in ends if e is not None and e <= t)
        if done >= K:
            prog[t] = 1.0
            continue
        start = ends[done - 1] if done > 0 else 0
        tau = _within_stage(margins[done], scopes, start, t)
        if tau is None and done == K - 1:
            tau = _dense_info(infos, start, t)
        if tau is None:
            end = ends[done]
            tau = 0.0 if end is None or end <= start else (t - start) / (end - start)  # type: ignore[operator]
        prog[t] = (done + min(max(tau, 0.0), 1.0)) / K
    if task.success_at == "any" and success.any():
        prog[int(np.argmax(success)) :] = 1.0
    return prog


def _compile(task: TaskSpec, source: str, field: str) -> Callable[[dict], Any]:
    from embodied.envs.wrappers import compile_rule

    return compile_rule(task, source, field)[0]


def _margins(task: TaskSpec, source: str, index: int) -> list[Callable[[dict], Any]]:
    """How far a rule of comparisons (``a < b``, ``a > b``, joined by ``and``) is from holding: ``a − b`` etc."""
    import ast

    node = ast.parse(source.strip(), mode="eval").body
    parts = node.values if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And) else [node]
    out = []
    for part in parts:
        if not (isinstance(part, ast.Compare) and len(part.ops) == 1):
            return []
        lhs, rhs = ast.unparse(part.left), ast.unparse(part.comparators[0])
        if isinstance(part.ops[0], (ast.Lt, ast.LtE)):
            expr = f"({lhs}) - ({rhs})"
        elif isinstance(part.ops[0], (ast.Gt, ast.GtE)):
            expr = f"({rhs}) - ({lhs})"
        else:
            return []
        out.append(_compile(task, expr, f"stages[{index}].done (margin)"))
    return out


def _scope(getters: dict[str, Any], obs: Obs, t: int, info: dict) -> dict[str, Any]:
    row = obs_take(obs, t) if isinstance(obs, dict) else np.asarray(obs)[t]
    scope: dict[str, Any] = {name: g(row) for name, g in getters.items()}
    scope["info"] = info
    return scope


def _eval(rule: Callable[[dict], Any] | None, scope: dict[str, Any]) -> bool:
    if rule is None:
        return False
    try:
        return bool(np.all(rule(scope)))
    except (KeyError, TypeError, ValueError, IndexError):
        return False


def _within_stage(margins: Sequence[Callable[[dict], Any]], scopes: Sequence[dict], start: int, t: int) -> float | None:
    """τ = 1 − m_t / m_start for every comparison of the stage's rule (the least advanced one counts)."""
    taus = []
    for margin in margins:
        try:
            m0, mt = float(np.max(margin(scopes[start]))), float(np.max(margin(scopes[t])))
        except (KeyError, TypeError, ValueError, IndexError):
            return None
        if not (np.isfinite(m0) and np.isfinite(mt)) or m0 <= 1e-9:
            continue  # held (or undefined) at the stage start: no distance to measure
        taus.append(1.0 - max(mt, 0.0) / m0)
    return min(taus) if taus else None


def _dense_info(infos: Sequence[dict[str, Any]], start: int, t: int) -> float | None:
    """Last stage without a usable rule: Meta-World's ``info['obj_to_target']`` distance, 1 − d_t / d_start.

    Reset infos carry no distance, so d_start is the first one recorded at or after the stage start.
    """
    key = "obj_to_target"
    d0 = next((i[key] for i in infos[start : t + 1] if key in i), None)
    if d0 is None or key not in infos[t]:
        return None
    try:
        d0, dt = float(d0), float(infos[t][key])
    except (TypeError, ValueError):
        return None
    return 1.0 - dt / d0 if d0 > 1e-9 else None


# --------------------------------------------------------------------------------------------------
# rollouts


def collect_rollouts(
    task: str | Path | TaskSpec,
    policies: Sequence[str] = DEFAULT_POLICIES,
    episodes: int = 4,
    seed: int = 0,
    cameras: Sequence[str] = (),
    frame_size: tuple[int, int] | None = None,
    render: str = "fast",
    episode_steps: int | None = None,
    after_success: int | None = None,
    progress: bool = False,
) -> list[Rollout]:
    """Roll out every policy for `episodes` episodes each, episode j on layout `seed + j` for all policies.

    Args:
        task: task name, path or spec.
        policies: policy specs of `embodied.compare.simulator.make_policy` (random, expert, expert:SIGMA).
        episodes: episodes per policy.
        seed: base reset seed; policy noise draws from `seed` too.
        cameras: cameras to capture (uint8 frames after reset and every step).
        frame_size: (H, W) to render at (a reward model's input size; default the task's).
        render: "fast" (no MSAA/shadows; CPU friendly; what training envs render) or "full" (videos).
        episode_steps: cut episodes after this many steps (default: the task's limit).
        after_success: stop this many steps after the first success (None: run to the limit).
        progress: show a progress bar.
    """
    from embodied.compare.simulator import make_policy
    from embodied.envs.make import make
    from embodied.tasks.spec import load_task

    spec = load_task(task)
    if episodes < 1:
        raise ValueError(f"episodes: must be >= 1, got {episodes}")
    if not policies:
        raise ValueError("policies: give at least one policy (random, expert, expert:SIGMA)")
    env = make(spec, frames=list(cameras) or None, frame_size=frame_size, render_quality=render)  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    pols = {p: make_policy(p, env, spec, rng) for p in dict.fromkeys(policies)}
    limit = episode_steps or spec.max_episode_steps
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(pols) * episodes, desc=f"rollouts {spec.name}", unit="episode")
    out = []
    try:
        for name, policy in pols.items():
            for j in range(episodes):
                out.append(_episode(env, spec, policy, name, seed + j, limit, after_success, cameras))
                if bar is not None:
                    bar.update(1)
    finally:
        env.close()
        if bar is not None:
            bar.close()
    return out


def _episode(
    env: Any,
    spec: TaskSpec,
    policy: Callable[[Any], np.ndarray],
    name: str,
    seed: int,
    limit: int,
    after_success: int | None,
    cameras: Sequence[str],
) -> Rollout:
    obs, info = env.reset(seed=seed)
    observations, infos, actions = [obs], [info], []
    rewards, terms, truncs = [], [], []
    frames: dict[str, list[np.ndarray]] = {c: [info["frames"][c]] for c in cameras}
    first_success = None
    for t in range(limit):
        action = np.asarray(policy(obs))
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        infos.append(info)
        actions.append(action)
        rewards.append(float(reward))
        terms.append(bool(terminated))
        truncs.append(bool(truncated))
        for c in cameras:
            frames[c].append(info["frames"][c])
        if info.get("success") and first_success is None:
            first_success = t
        if terminated or truncated:
            break
        if after_success is not None and first_success is not None and t - first_success >= after_success:
            break
    clean = [{k: v for k, v in i.items() if k != "frames"} for i in infos]
    if isinstance(observations[0], dict):
        obs_arr: Obs = {k: np.stack([np.asarray(o[k]) for o in observations]) for k in observations[0]}
    else:
        obs_arr = np.stack([np.asarray(o) for o in observations])
    prog = progress_labels(spec, obs_arr, clean, env.observation_space)
    return Rollout(
        policy=name,
        seed=seed,
        obs=obs_arr,
        actions=np.stack(actions),
        env_reward=np.asarray(rewards),
        terminated=np.asarray(terms),
        truncated=np.asarray(truncs),
        success=np.array([bool(i.get("success", False)) for i in clean]),
        progress=prog,
        infos=clean,
        frames={c: np.stack(v) for c, v in frames.items()},
        success_at=spec.success_at,
    )


# --------------------------------------------------------------------------------------------------
# metrics


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rank correlation (ties averaged); None when either side is constant or too short."""
    from scipy.stats import rankdata

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    rx, ry = rankdata(x), rankdata(y)
    return float(np.corrcoef(rx, ry)[0, 1])


def auc(positive: np.ndarray, negative: np.ndarray) -> float | None:
    """P(score of a positive > score of a negative) + ½·P(tie) (Mann-Whitney); None without both classes."""
    from scipy.stats import rankdata

    pos, neg = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
    if pos.size == 0 or neg.size == 0:
        return None
    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def score_rollouts(model: RewardModel, rollouts: Sequence[Rollout], chunk: int = 1024) -> list[np.ndarray]:
    """Reward float [T] of every transition of every rollout, in batches of about `chunk` transitions."""
    out: list[np.ndarray] = []
    pending: list[Rollout] = []
    size = 0

    def flush() -> None:
        nonlocal size
        if not pending:
            return
        batches = [r.transitions() for r in pending]
        merged = batches[0]
        for b in batches[1:]:
            merged = TransitionBatch(
                obs=obs_concat(merged.obs, b.obs),
                action=np.concatenate([merged.action, b.action]),
                next_obs=obs_concat(merged.next_obs, b.next_obs),
                terminated=np.concatenate([merged.terminated, b.terminated]),
                truncated=np.concatenate([merged.truncated, b.truncated]),
                env_reward=np.concatenate([merged.env_reward, b.env_reward]),
                infos=[*merged.infos, *b.infos],
                frames=frames_concat(merged.frames, b.frames),
            )
        reward = model(merged).reward
        lo = 0
        for r in pending:
            out.append(reward[lo : lo + r.length])
            lo += r.length
        pending.clear()
        size = 0

    for r in rollouts:
        pending.append(r)
        size += r.length
        if size >= chunk:
            flush()
    flush()
    return out


@dataclass
class QualityReport:
    """Result of `check_reward` (see the module docstring for the definitions)."""

    task: str
    reward: str
    spearman: float | None
    spearman_expert: float | None
    auc_episode: float | None
    auc_transition: float | None
    epic: dict[str, Any] | None
    policies: dict[str, dict[str, float | None]]
    episodes: int
    transitions: int
    settings: dict[str, Any]
    timings: dict[str, float]
    plot: str | None = None
    verdict: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _round(x: float | None, nd: int = 4) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), nd)


def evaluate_rollouts(rollouts: Sequence[Rollout], rewards: Sequence[np.ndarray]) -> dict[str, Any]:
    """Spearman (pooled and clean-expert), AUCs and per-policy statistics of rewards [T] per rollout."""
    all_r = np.concatenate(rewards)
    all_p = np.concatenate([r.progress[1:] for r in rollouts])
    all_s = np.concatenate([r.success[1:] for r in rollouts])
    per_ep = []
    for r, rew in zip(rollouts, rewards, strict=True):
        if r.policy == "expert":
            # up to the first success: afterwards progress is constant and only the noise would be ranked
            end = int(np.argmax(r.success[1:])) + 1 if r.success[1:].any() else r.length
            rho = spearman(rew[:end], r.progress[1 : end + 1])
            if rho is not None:
                per_ep.append(rho)
    scores = np.array([rew[-max(1, int(np.ceil(len(rew) / 5))) :].mean() for rew in rewards])
    ok = np.array([r.succeeded for r in rollouts])
    policies: dict[str, dict[str, float | None]] = {}
    for name in dict.fromkeys(r.policy for r in rollouts):
        idx = [i for i, r in enumerate(rollouts) if r.policy == name]
        rhos = [spearman(rewards[i], rollouts[i].progress[1:]) for i in idx]
        rhos_ok = [x for x in rhos if x is not None]
        policies[name] = {
            "episodes": float(len(idx)),
            "success_rate": float(np.mean(ok[idx])),
            "mean_reward": _round(float(np.mean(np.concatenate([rewards[i] for i in idx])))),
            "final_score": _round(float(np.mean(scores[idx]))),
            "spearman_within_episode": _round(float(np.mean(rhos_ok))) if rhos_ok else None,
        }
    return {
        "spearman": _round(spearman(all_r, all_p)),
        "spearman_expert": _round(float(np.mean(per_ep))) if per_ep else None,
        "auc_episode": _round(auc(scores[ok], scores[~ok])),
        "auc_transition": _round(auc(all_r[all_s], all_r[~all_s])),
        "policies": policies,
    }


def epic_to_env(
    model: RewardModel,
    rollouts: Sequence[Rollout],
    gamma: float,
    n_transitions: int = 2048,
    n_samples: int = 1024,
    n_seeds: int = 3,
    seed: int = 0,
    state_scores: Sequence[np.ndarray] | None = None,
) -> dict[str, Any]:
    """On-dataset EPIC distance between `model` and the env reward over the rollouts' transitions.

    Uses `embodied.compare`'s public pieces: the rollouts' states go into a `StateTable`, rewards
    become batched callables over state ids (`reward_callable`), and `compare_sampled(..., "epic",
    paired_samples=True)` draws (A, S') as recorded pairs, so the env reward is only ever evaluated
    on transitions that happened. `state_scores` (score of every state of every rollout, [T + 1]) lets
    a frame scorer that depends on s' alone be evaluated without re-encoding frames.
    """
    from embodied.compare.sampled import Coverage, compare_sampled
    from embodied.compare.simulator import StateTable, reward_callable
    from embodied.rewards.env import EnvReward

    cams = tuple(model.requires.cameras) if state_scores is None else ()
    table = StateTable(cameras=cams)
    obs_ids, next_ids, acts, term = [], [], [], []
    lookup: list[float] = []
    for i, r in enumerate(rollouts):
        for t in range(r.length + 1):
            info = dict(r.infos[t])
            if cams:
                info["frames"] = {c: r.frames[c][t] for c in cams}
            row = obs_take(r.obs, t) if isinstance(r.obs, dict) else r.obs[t]
            if t == 0:
                sid = table.add(row, info)
            else:
                nid = table.add(row, info, r.env_reward[t - 1], bool(r.terminated[t - 1]), bool(r.truncated[t - 1]))
                obs_ids.append(sid)
                next_ids.append(nid)
                acts.append(r.actions[t - 1])
                term.append(bool(r.terminated[t - 1]))
                sid = nid
            if state_scores is not None:
                lookup.append(float(state_scores[i][t]))
    if state_scores is not None:
        values = np.asarray(lookup)

        def fn(obs_ids: np.ndarray, action: np.ndarray, next_ids: np.ndarray) -> np.ndarray:
            return values[np.asarray(next_ids, dtype=np.int64)]

        fn.ignores_obs = True  # type: ignore[attr-defined]
        reward_fn: Any = fn
    else:
        reward_fn = reward_callable(model, table)
    cov = Coverage(np.asarray(obs_ids), np.stack(acts), np.asarray(next_ids), np.asarray(term))
    res = compare_sampled(
        {"reward": reward_fn, "env": reward_callable(EnvReward(), table)},
        cov, gamma, "epic",
        n_transitions=n_transitions, n_samples=n_samples, n_seeds=n_seeds, paired_samples=True,
        obs_lookup=table.numeric_obs, n_bootstrap=500, seed=seed,
    )  # fmt: skip
    return {
        "distance": _round(float(res.distance[0, 1])),
        "ci_low": _round(float(res.ci_low[0, 1])),
        "ci_high": _round(float(res.ci_high[0, 1])),
        "per_seed": [_round(float(x)) for x in res.per_seed[:, 0, 1]],
        "n_transitions": res.settings["n_transitions"],
        "n_samples": res.settings["n_samples"],
        "method": "on-dataset sample-based EPIC, (A, S') drawn as recorded pairs (embodied.compare.compare_sampled)",
    }


def verdict(spearman_all: float | None, auc_ep: float | None) -> str:
    """A one-line reading of the numbers (thresholds in docs/clip.md)."""
    if spearman_all is None or auc_ep is None:
        return "inconclusive: need both successful and failed episodes with varying progress"
    if spearman_all >= 0.5 and auc_ep >= 0.8:
        return "promising: tracks progress and separates success from failure"
    if spearman_all >= 0.2 and auc_ep >= 0.65:
        return "weak: some signal; try shaping with it, other prompts, or adaptation"
    return "poor: little relation to progress or success; do not spend GPU-hours on it"


def check_reward(
    task: str | Path | TaskSpec,
    reward: str | RewardModel,
    policies: Sequence[str] | None = None,
    episodes: int = 4,
    seed: int = 0,
    render: str = "fast",
    episode_steps: int | None = None,
    epic: bool = True,
    epic_transitions: int = 2048,
    epic_samples: int = 1024,
    out_dir: Path | None = None,
    progress: bool = False,
) -> QualityReport:
    """Run the quality check of a reward spec (any kind) or model on a task (see the module docstring).

    Args:
        task: task name, path or spec.
        reward: a reward spec (``env``, ``program:PATH``, ``clip:...``, ...) or a built reward model.
        policies: policy specs (default: expert, expert:0.5, random on Meta-World; random elsewhere).
        episodes: episodes per policy (layout seeds `seed` ... `seed + episodes − 1`).
        seed: base seed.
        render: "fast" or "full" frames (see `embodied.rewards.frames.set_render_quality`).
        episode_steps: cut episodes (default: the task's limit).
        epic: also compute the EPIC distance to the env reward.
        epic_transitions, epic_samples: EPIC sample sizes per seed (3 seeds).
        out_dir: where to write ``<slug>.json`` and ``<slug>.png`` (None: write nothing).
        progress: progress bars.
    """
    from embodied.rewards.registry import make_reward
    from embodied.tasks.spec import load_task

    spec = load_task(task)
    model = make_reward(reward, spec) if isinstance(reward, str) else reward
    name = reward if isinstance(reward, str) else model.name
    if policies is None:
        policies = DEFAULT_POLICIES if spec.suite == "metaworld" else ("random",)
    t0 = time.perf_counter()
    rollouts = collect_rollouts(
        spec, policies, episodes, seed, model.requires.cameras, model.requires.frame_size, render, episode_steps,
        progress=progress,
    )  # fmt: skip
    t1 = time.perf_counter()
    state_scores = None
    if model.state_only and model.requires.cameras and hasattr(model, "score_views"):
        # frame scorers: every state once (reset frames too), transitions read s' from it
        state_scores = _score_states(model, rollouts)
        rewards = [s[1:] for s in state_scores]
    else:
        rewards = score_rollouts(model, rollouts)
    t2 = time.perf_counter()
    metrics = evaluate_rollouts(rollouts, rewards)
    epic_out = None
    if epic:
        epic_out = epic_to_env(
            model, rollouts, spec.gamma, epic_transitions, epic_samples, seed=seed, state_scores=state_scores
        )
    t3 = time.perf_counter()
    report = QualityReport(
        task=spec.name,
        reward=name,
        spearman=metrics["spearman"],
        spearman_expert=metrics["spearman_expert"],
        auc_episode=metrics["auc_episode"],
        auc_transition=metrics["auc_transition"],
        epic=epic_out,
        policies=metrics["policies"],
        episodes=len(rollouts),
        transitions=int(sum(r.length for r in rollouts)),
        settings={
            "policies": list(policies),
            "episodes_per_policy": episodes,
            "seed": seed,
            "render": render,
            "episode_steps": episode_steps or spec.max_episode_steps,
            "cameras": list(model.requires.cameras),
            "frame_size": list(model.requires.frame_size) if model.requires.frame_size else None,
        },
        timings={"rollouts_s": round(t1 - t0, 2), "scoring_s": round(t2 - t1, 2), "epic_s": round(t3 - t2, 2)},
        verdict=verdict(metrics["spearman"], metrics["auc_episode"]),
    )
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = slug(name)
        report.plot = str(plot_curves(rollouts, rewards, report, out_dir / f"{stem}.png"))
        (out_dir / f"{stem}.json").write_text(json.dumps(report.to_dict(), indent=1))
    return report


def _score_states(model: Any, rollouts: Sequence[Rollout], chunk: int = 2048) -> list[np.ndarray]:
    """Fused frame score of every state of every rollout [T + 1], in large batches."""
    cams = model.requires.cameras
    lengths = [r.length + 1 for r in rollouts]
    out = np.empty(sum(lengths))
    lo = 0
    group: list[Rollout] = []

    def flush(start: int) -> int:
        frames = {c: np.concatenate([r.frames[c] for r in group]) for c in cams}
        values = model.score_views(frames)[0]
        out[start : start + values.size] = values
        group.clear()
        return start + values.size

    pending = 0
    for r in rollouts:
        group.append(r)
        pending += r.length + 1
        if pending >= chunk:
            lo = flush(lo)
            pending = 0
    if group:
        lo = flush(lo)
    return list(np.split(out, np.cumsum(lengths)[:-1]))


def slug(spec: str) -> str:
    """A file-name-safe version of a reward spec."""
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in spec.strip())
    while "--" in keep:
        keep = keep.replace("--", "-")
    return keep.strip("-.")[:80] or "reward"


COLOURS = {"expert": "tab:green", "random": "tab:grey"}


def plot_curves(rollouts: Sequence[Rollout], rewards: Sequence[np.ndarray], report: QualityReport, path: Path) -> Path:
    """PNG: reward per step for every episode (colour = policy, dot = first success), progress, scatter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    seen: set[str] = set()
    for r, rew in zip(rollouts, rewards, strict=True):
        colour = COLOURS.get(r.policy, "tab:orange")
        label = r.policy if r.policy not in seen else None
        seen.add(r.policy)
        steps = np.arange(1, r.length + 1)
        axes[0].plot(steps, rew, color=colour, alpha=0.7, lw=1, label=label)
        axes[1].plot(np.arange(r.length + 1), r.progress, color=colour, alpha=0.7, lw=1)
        axes[2].scatter(r.progress[1:], rew, s=4, color=colour, alpha=0.4)
        if r.success.any():
            t = int(np.argmax(r.success))
            axes[0].plot([t], [rew[t - 1]] if t > 0 else [rew[0]], "o", color=colour, ms=4)
    axes[0].set(xlabel="step", ylabel="reward", title="reward per episode (dot: first success)")
    axes[0].legend(fontsize=8)
    axes[1].set(xlabel="step", ylabel="ground-truth progress", title="progress (task stages)")
    axes[2].set(xlabel="ground-truth progress", ylabel="reward", title="reward vs progress")

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.2f}"

    epic = f", EPIC to env {fmt(report.epic['distance'])}" if report.epic else ""
    fig.suptitle(
        f"{report.task} — {report.reward}: Spearman {fmt(report.spearman)} (expert {fmt(report.spearman_expert)}), "
        f"AUC {fmt(report.auc_episode)}{epic}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
