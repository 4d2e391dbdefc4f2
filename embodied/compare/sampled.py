"""Sample-based EPIC, DARD and STARC for continuous simulators (framework-free: numpy arrays and callables).

A reward is a batched callable ``reward(obs [B, ...], action [B, ...], next_obs [B, ...]) -> [B]``. The
arrays may be anything indexable along axis 0 — the simulator layer passes integer ids into a table
of recorded states (with their frames) so that rewards can be evaluated at arbitrary (s, a, s').

Estimators (each on ``n_transitions`` transitions drawn from the coverage set, per seed):

* EPIC: C(s,a,s') = R(s,a,s') + γ·mean_j R(s', A_j, S'_j) − mean_j R(s, A_j, S'_j), with A_j drawn from
  ``action_samples`` and S'_j from ``state_samples`` (``n_samples`` pairs, default: the coverage set's
  actions and next observations). The constant −γE[R(S,A,S')] is dropped: Pearson ignores it.
* DARD: C(s,a,s') = R(s,a,s') + mean_j[γR(s', A_j, S''_j) − R(s, A_j, S'_j) − γR(S'_j, A_j, S''_j)] with
  S'_j ~ T(s, A_j) and S''_j ~ T(s', A_j) drawn by ``sample_next`` (``dard_samples`` per transition).
* Both: distance sqrt((1 − ρ)/2), ρ the Pearson correlation over the drawn transitions.
* STARC (value-adjusted levelling): c(s,a,s') = R(s,a,s') − V(s) + γ(1 − terminated)·V(s') with V the
  value of the coverage (behaviour) policy under R, fitted by LSTD(0) with ridge on features of the
  observation (``value_features``: "linear" = [1, z]; "rff" = [1, z, random Fourier features of z]; z the
  standardised flattened observation; or a callable obs -> [B, F]). Exact for deterministic dynamics
  and a V in the feature span; potential shaping by a Φ in the span cancels exactly (LSTD is linear in
  R). Distance ½·n(c1/n(c1) − c2/n(c2)) with n the empirical l1/l2/linf norm over the drawn transitions.

All rewards are evaluated on the same samples (common random numbers), so shaping and positive
scaling give exactly 0 for EPIC and DARD, not just in expectation. Uncertainty: ``n_seeds`` seeds
redraw transitions, samples (and random features); the CI is a percentile bootstrap that picks a seed
at random and resamples its transitions with replacement, so it covers both sources of variation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

RewardFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""reward(obs [B, ...], action [B, ...], next_obs [B, ...]) -> float [B]."""

SampleNext = Callable[[np.ndarray, np.ndarray, int], np.ndarray]
"""sample_next(state [B, ...], action [B, ...], k) -> next observations [B, k, ...] drawn from T(s, a)."""

FeatureFn = Callable[[np.ndarray], np.ndarray]
"""features(obs [B, ...]) -> float [B, F], used by the STARC value fit."""

SAMPLED_METRICS: tuple[str, ...] = ("starc", "epic", "dard")
_ZERO_RTOL = 1e-10


@dataclass
class Coverage:
    """Transitions (s, a, s') from the coverage distribution, batched along axis 0.

    Attributes:
        obs: s as the reward sees it, [N, ...] (or ids into a state table).
        action: a, [N, ...].
        next_obs: s', [N, ...] (the true final observation at episode end).
        terminated: bool [N]; V(s') = 0 there in the STARC value fit (default all False).
        state: simulator state of s for `sample_next`, [N, ...] (default `obs`).
        next_state: simulator state of s', [N, ...] (default `next_obs`).
    """

    obs: np.ndarray
    action: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray | None = None
    state: np.ndarray | None = None
    next_state: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.obs, self.action, self.next_obs = np.asarray(self.obs), np.asarray(self.action), np.asarray(self.next_obs)
        n = self.obs.shape[0] if self.obs.ndim else 0
        if n == 0:
            raise ValueError("coverage: no transitions")
        for name in ("action", "next_obs", "state", "next_state", "terminated"):
            value = getattr(self, name)
            if value is not None and np.asarray(value).shape[:1] != (n,):
                raise ValueError(f"coverage.{name}: {np.asarray(value).shape[0]} rows, expected {n} (as obs)")
        term = np.zeros(n, dtype=bool) if self.terminated is None else np.asarray(self.terminated, dtype=bool)
        self.terminated = term

    def __len__(self) -> int:
        return int(self.obs.shape[0])


@dataclass
class SampledComparison:
    """Result of `compare_sampled`: K×K distances with bootstrap CIs.

    Attributes:
        names: reward names, in matrix order.
        metric: "starc" | "epic" | "dard".
        distance: [K, K] mean over seeds.
        ci_low, ci_high: [K, K] percentile-bootstrap bounds (level `settings["ci"]`).
        per_seed: [n_seeds, K, K] distance of each seed.
        settings: sample sizes, seeds, gamma, norm, features, ... (for reproduction).
    """

    names: list[str]
    metric: str
    distance: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    per_seed: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists instead of arrays)."""
        out = asdict(self)
        for key in ("distance", "ci_low", "ci_high", "per_seed"):
            out[key] = np.asarray(out[key]).round(6).tolist()
        return out


@dataclass(frozen=True)
class Estimate:
    """One pairwise distance: mean over seeds, CI bounds and per-seed values."""

    distance: float
    ci_low: float
    ci_high: float
    per_seed: tuple[float, ...]


# --------------------------------------------------------------------------------------------------
# helpers


def _eval(reward: RewardFn, name: str, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
    out = np.asarray(reward(obs, action, next_obs), dtype=np.float64).reshape(-1)
    n = obs.shape[0]
    if out.shape != (n,):
        raise ValueError(f"reward {name!r}: returned {out.shape[0]} values for a batch of {n}")
    if not np.all(np.isfinite(out)):
        raise ValueError(
            f"reward {name!r}: returned a non-finite value for transition {int(np.argmin(np.isfinite(out)))}"
        )
    return out


def _mean_over_samples(
    rewards: Mapping[str, RewardFn], x: np.ndarray, acts: np.ndarray, nexts: np.ndarray, batch_size: int
) -> dict[str, np.ndarray]:
    """For every row x_u: mean_j R(x_u, acts_j, nexts_j), per reward; evaluated in chunks of ≈ batch_size."""
    m = acts.shape[0]
    out = {name: np.empty(x.shape[0]) for name in rewards}
    general = {name: fn for name, fn in rewards.items() if not ignores_obs(fn)}
    for name in rewards.keys() - general.keys():
        # R(x, A_j, S'_j) does not depend on x: one pass over the M samples serves every row
        values = _eval_chunked({name: rewards[name]}, np.repeat(x[:1], m, axis=0), acts, nexts, batch_size)[name]
        out[name][:] = values.mean()
    if not general:
        return out
    per_chunk = max(1, batch_size // m)
    for lo in range(0, x.shape[0], per_chunk):
        xs = x[lo : lo + per_chunk]
        u = xs.shape[0]
        obs = np.repeat(xs, m, axis=0)
        act = np.tile(acts, (u,) + (1,) * (acts.ndim - 1))
        nxt = np.tile(nexts, (u,) + (1,) * (nexts.ndim - 1))
        for name, fn in general.items():
            out[name][lo : lo + u] = _eval(fn, name, obs, act, nxt).reshape(u, m).mean(axis=1)
    return out


def ignores_obs(reward: RewardFn) -> bool:
    """True when `reward` declares (attribute ``ignores_obs = True``) that it reads only (action, next_obs).

    Such rewards need M instead of 2·N·M evaluations for EPIC's inner means (reward programs, the env
    reward, state-only models).
    """
    return bool(getattr(reward, "ignores_obs", False))


def _eval_chunked(
    rewards: Mapping[str, RewardFn], obs: np.ndarray, act: np.ndarray, nxt: np.ndarray, batch_size: int
) -> dict[str, np.ndarray]:
    out = {name: np.empty(obs.shape[0]) for name in rewards}
    for lo in range(0, obs.shape[0], batch_size):
        sl = slice(lo, lo + batch_size)
        for name, fn in rewards.items():
            out[name][sl] = _eval(fn, name, obs[sl], act[sl], nxt[sl])
    return out


def _max_abs(values: Mapping[str, np.ndarray]) -> dict[str, float]:
    return {k: float(np.max(np.abs(v))) if v.size else 0.0 for k, v in values.items()}


def _draw(rng: np.random.Generator, n_total: int, n: int) -> np.ndarray:
    """n indices into n_total rows: without replacement when possible (the whole set when n >= n_total)."""
    if n >= n_total:
        return np.arange(n_total)
    return rng.choice(n_total, size=n, replace=False)


# --------------------------------------------------------------------------------------------------
# canonicalisations (one seed)


def epic_canonical_sampled(
    rewards: Mapping[str, RewardFn],
    obs: np.ndarray,
    action: np.ndarray,
    next_obs: np.ndarray,
    gamma: float,
    state_samples: np.ndarray,
    action_samples: np.ndarray,
    batch_size: int = 65536,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """EPIC canonical rewards [N] (up to one constant per reward) of N transitions, per reward.

    `state_samples` [M, ...] and `action_samples` [M, ...] are paired row by row as (A_j, S'_j).
    Costs (2M + 1)·N reward evaluations per reward, N + M for rewards that declare `ignores_obs`. Also
    returns max |R| on the transitions per reward, the scale below which a canonical reward counts as constant.
    """
    direct = _eval_chunked(rewards, obs, action, next_obs, batch_size)
    both = np.concatenate([obs, next_obs], axis=0)
    means = _mean_over_samples(rewards, both, action_samples, state_samples, batch_size)
    n = obs.shape[0]
    return {k: direct[k] + gamma * means[k][n:] - means[k][:n] for k in rewards}, _max_abs(direct)


def dard_canonical_sampled(
    rewards: Mapping[str, RewardFn],
    obs: np.ndarray,
    action: np.ndarray,
    next_obs: np.ndarray,
    gamma: float,
    state: np.ndarray,
    next_state: np.ndarray,
    sample_next: SampleNext,
    action_samples: np.ndarray,
    k: int,
    rng: np.random.Generator,
    batch_size: int = 65536,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """DARD canonical rewards [N] of N transitions (and max |R| per reward), with k draws per transition.

    For transition i and draw j: A_ij from `action_samples`, S'_ij = sample_next(state_i, A_ij),
    S''_ij = sample_next(next_state_i, A_ij) — the same action in all three terms.
    """
    n = obs.shape[0]
    acts = action_samples[rng.integers(0, action_samples.shape[0], size=n * k)]
    s_rep, ns_rep = np.repeat(state, k, axis=0), np.repeat(next_state, k, axis=0)
    s1 = _sample_one(sample_next, s_rep, acts, batch_size, "state")
    s2 = _sample_one(sample_next, ns_rep, acts, batch_size, "next_state")
    o_rep, no_rep = np.repeat(obs, k, axis=0), np.repeat(next_obs, k, axis=0)
    direct = _eval_chunked(rewards, obs, action, next_obs, batch_size)
    t1 = _eval_chunked(rewards, no_rep, acts, s2, batch_size)
    t2 = _eval_chunked(rewards, o_rep, acts, s1, batch_size)
    t3 = _eval_chunked(rewards, s1, acts, s2, batch_size)
    canon = {
        name: direct[name] + (gamma * t1[name] - t2[name] - gamma * t3[name]).reshape(n, k).mean(axis=1)
        for name in rewards
    }
    return canon, _max_abs(direct)


def _sample_one(
    sample_next: SampleNext, states: np.ndarray, acts: np.ndarray, batch_size: int, what: str
) -> np.ndarray:
    parts = []
    for lo in range(0, states.shape[0], batch_size):
        sl = slice(lo, lo + batch_size)
        nxt = np.asarray(sample_next(states[sl], acts[sl], 1))
        if nxt.shape[:2] != (states[sl].shape[0], 1):
            raise ValueError(f"sample_next: returned shape {nxt.shape} for {states[sl].shape[0]} {what}s and k=1")
        parts.append(nxt[:, 0])
    return np.concatenate(parts, axis=0)


def make_features(
    kind: str | FeatureFn,
    obs: np.ndarray,
    n_features: int,
    rng: np.random.Generator,
    obs_lookup: Callable[[np.ndarray], np.ndarray] | None = None,
) -> FeatureFn:
    """Feature map for the STARC value fit, standardised on `obs` [N, ...] (after `obs_lookup`, if given).

    "linear": [1, z]; "rff": [1, z, sqrt(2/F)·cos(W z + b)] with W ~ N(0, 1/d) (bandwidth sqrt(d), d = dim z),
    b ~ U[0, 2π); z = (obs − mean)/std per flattened dimension (constant dimensions are dropped).
    """
    look = obs_lookup if obs_lookup is not None else (lambda x: x)
    if callable(kind):
        return lambda x: kind(look(x))
    if kind not in ("linear", "rff"):
        raise ValueError(f"value_features: unknown {kind!r}; choose linear, rff or pass a callable")
    flat = np.asarray(look(obs), dtype=np.float64).reshape(obs.shape[0], -1)
    mean, std = flat.mean(axis=0), flat.std(axis=0)
    keep = std > 1e-12 * (1.0 + np.abs(mean))
    mean, std = mean[keep], std[keep]
    d = int(keep.sum())
    W = rng.normal(0.0, 1.0 / np.sqrt(max(d, 1)), size=(d, n_features)) if kind == "rff" else None
    b = rng.uniform(0.0, 2 * np.pi, size=n_features)

    def features(x: np.ndarray) -> np.ndarray:
        z = (np.asarray(look(x), dtype=np.float64).reshape(x.shape[0], -1)[:, keep] - mean) / std
        cols = [np.ones((z.shape[0], 1)), z]
        if W is not None:
            cols.append(np.sqrt(2.0 / n_features) * np.cos(z @ W + b))
        return np.concatenate(cols, axis=1)

    return features


def fit_value_lstd(
    phi: np.ndarray, next_phi: np.ndarray, reward: np.ndarray, terminated: np.ndarray, gamma: float, ridge: float
) -> np.ndarray:
    """LSTD(0) weights θ with V = φθ: (Φᵀ(Φ − γ(1−d)Φ') + λ·tr/F·I) θ = Φᵀ r, all averages over N.

    The ridge is relative to the mean diagonal of ΦᵀΦ/N so it does not depend on feature scale.
    """
    n, f = phi.shape
    nxt = next_phi * (1.0 - terminated.astype(np.float64))[:, None]
    A = phi.T @ (phi - gamma * nxt) / n
    lam = ridge * float(np.einsum("ij,ij->", phi, phi)) / (n * f)
    A[np.diag_indices(f)] += lam
    b = phi.T @ reward / n
    try:
        return np.linalg.solve(A, b)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(A, b, rcond=None)[0]


def starc_canonical_sampled(
    rewards: Mapping[str, RewardFn],
    coverage: Coverage,
    batch_idx: np.ndarray,
    gamma: float,
    features: FeatureFn,
    ridge: float,
    batch_size: int = 65536,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Value-adjusted levelling R(s,a,s') − V(s) + γ(1 − d)V(s') on coverage rows `batch_idx`, per reward.

    V is fitted by LSTD on the whole coverage set (its behaviour policy is the π of the levelling).
    Also returns max |R| / (1 − γ) over the coverage set per reward (the scale of "zero").
    """
    r_all = _eval_chunked(rewards, coverage.obs, coverage.action, coverage.next_obs, batch_size)
    phi, next_phi = features(coverage.obs), features(coverage.next_obs)
    term = np.asarray(coverage.terminated, dtype=bool)
    keep = 1.0 - term[batch_idx].astype(np.float64)
    out = {}
    for name, r in r_all.items():
        theta = fit_value_lstd(phi, next_phi, r, term, gamma, ridge)
        v, v_next = phi[batch_idx] @ theta, next_phi[batch_idx] @ theta
        out[name] = r[batch_idx] - v + gamma * keep * v_next
    return out, {k: v / (1.0 - gamma) for k, v in _max_abs(r_all).items()}


# --------------------------------------------------------------------------------------------------
# distances from canonical values, with bootstrap weights


def _gram(W: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Weighted second moments [B, K, K]: Σ_n W[b, n] C[i, n] C[j, n] (batched matmul, no einsum loop)."""
    G = (W[:, None, :] * C[None, :, :]) @ C.T
    return 0.5 * (G + np.swapaxes(G, 1, 2))  # exact symmetry: d(i, j) == d(j, i) bit for bit


def _pearson_weighted(C: np.ndarray, W: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Pearson distances [B, K, K] from canonical values C [K, n] under row weights W [B, n]."""
    C = C - C.mean(axis=1, keepdims=True)  # centre first: the moment formula then loses no precision
    W = W / W.sum(axis=1, keepdims=True)
    mean = W @ C.T  # [B, K]
    second = _gram(W, C)
    cov = second - mean[:, :, None] * mean[:, None, :]
    var = np.clip(np.diagonal(cov, axis1=1, axis2=2), 0.0, None)
    std = np.sqrt(var)
    const = std <= _ZERO_RTOL * scales[None, :]
    denom = std[:, :, None] * std[:, None, :]
    rho = np.where(denom > 0, cov / np.where(denom > 0, denom, 1.0), 0.0)
    d = np.sqrt((1.0 - np.clip(rho, -1.0, 1.0)) / 2.0)
    both = const[:, :, None] & const[:, None, :]
    one = const[:, :, None] ^ const[:, None, :]
    d = np.where(both, 0.0, np.where(one, np.sqrt(0.5), d))
    idx = np.arange(C.shape[0])
    d[:, idx, idx] = 0.0
    return d


def _starc_weighted(C: np.ndarray, W: np.ndarray, norm: str, scales: np.ndarray) -> np.ndarray:
    """STARC distances [B, K, K] from canonical values C [K, n] under row weights W [B, n]."""
    W = W / W.sum(axis=1, keepdims=True)
    K = C.shape[0]
    if norm == "l2":
        gram = _gram(W, C)
        n = np.sqrt(np.clip(np.diagonal(gram, axis1=1, axis2=2), 0.0, None))  # [B, K]
        zero = n <= _ZERO_RTOL * scales[None, :]
        inv = np.where(zero, 0.0, 1.0 / np.where(zero, 1.0, n))
        cos = gram * inv[:, :, None] * inv[:, None, :]
        sq = (1.0 - zero)[:, :, None] + (1.0 - zero)[:, None, :] - 2.0 * cos
        d = 0.5 * np.sqrt(np.clip(sq, 0.0, None))
    else:
        B = W.shape[0]
        d = np.zeros((B, K, K))
        for b in range(B):
            w = W[b]
            support = w > 0
            if norm == "l1":
                n = np.abs(C) @ w
            else:
                n = np.abs(C[:, support]).max(axis=1)
            zero = n <= _ZERO_RTOL * scales
            S = np.where(zero[:, None], 0.0, C / np.where(zero, 1.0, n)[:, None])
            diff = S[:, None, :] - S[None, :, :]
            if norm == "l1":
                d[b] = 0.5 * np.abs(diff) @ w
            else:
                d[b] = 0.5 * np.abs(diff[:, :, support]).max(axis=2)
    idx = np.arange(K)
    d[:, idx, idx] = 0.0
    return np.minimum(d, 1.0)


def _distances(C: np.ndarray, W: np.ndarray, metric: str, norm: str, scales: np.ndarray) -> np.ndarray:
    if metric == "starc":
        return _starc_weighted(C, W, norm, scales)
    return _pearson_weighted(C, W, scales)


# --------------------------------------------------------------------------------------------------
# public API


def compare_sampled(
    rewards: Mapping[str, RewardFn],
    coverage: Coverage,
    gamma: float,
    metric: str = "starc",
    *,
    n_transitions: int = 4096,
    n_samples: int | None = 4096,
    n_seeds: int = 3,
    state_samples: np.ndarray | None = None,
    action_samples: np.ndarray | None = None,
    paired_samples: bool = False,
    sample_next: SampleNext | None = None,
    dard_samples: int = 16,
    norm: str = "l2",
    value_features: str | FeatureFn = "rff",
    obs_lookup: Callable[[np.ndarray], np.ndarray] | None = None,
    n_features: int = 256,
    ridge: float = 1e-6,
    n_bootstrap: int = 1000,
    ci: float = 0.95,
    batch_size: int = 65536,
    seed: int = 0,
) -> SampledComparison:
    """Sample-based distance matrix between named batched rewards (see the module docstring).

    Args:
        rewards: name -> reward(obs [B, ...], action [B, ...], next_obs [B, ...]) -> [B]; at least two.
        coverage: transitions of the coverage distribution (rollouts of the policies of interest).
        gamma: discount in [0, 1) (the learner's).
        metric: "starc" (value-adjusted levelling, default), "epic" or "dard".
        n_transitions: transitions drawn per seed (all of them when the coverage set is smaller).
        n_samples: EPIC's (A, S') pairs per seed for the inner means, drawn independently from the two pools;
            None = use the pools as given with row j of `action_samples` paired with row j of `state_samples`
            (they must then have equal length), e.g. to enumerate a finite product exactly.
        n_seeds: independent repetitions; the reported distance is their mean.
        state_samples, action_samples: pools for D_S and D_A (default: coverage next_obs and action).
        paired_samples: draw EPIC's (A_j, S'_j) as one row j of both pools (e.g. a recorded transition's
            action and next state) instead of independently. Still shaping-invariant (any fixed joint law
            of (A, S') is); lets rewards known only on recorded transitions (the env reward) be evaluated.
        sample_next: draws next observations from the simulator; required for "dard".
        dard_samples: (A, S', S'') draws per transition for "dard".
        norm: STARC norm over the drawn transitions: "l1" | "l2" | "linf".
        value_features, n_features, ridge: STARC value fit (see `make_features`, `fit_value_lstd`).
        obs_lookup: maps the `obs` rows given to rewards (e.g. state ids) to numeric observations for the
            value features (default: identity).
        n_bootstrap, ci: percentile bootstrap replicates and level.
        batch_size: rows per reward call.
        seed: base seed; seed i uses `seed + i`.

    Raises:
        ValueError: a one-line message naming the bad argument.
    """
    names = list(rewards)
    if len(names) < 2:
        raise ValueError(f"rewards: need at least two rewards to compare, got {len(names)}")
    if metric not in SAMPLED_METRICS:
        raise ValueError(f"metric: unknown metric {metric!r}; choose one of {', '.join(SAMPLED_METRICS)}")
    if norm not in ("l1", "l2", "linf"):
        raise ValueError(f"norm: unknown norm {norm!r}; choose one of l1, l2, linf")
    try:
        g = float(gamma)
    except (TypeError, ValueError):
        raise ValueError(f"gamma: must be a number in [0, 1), got {gamma!r}") from None
    if not 0.0 <= g < 1.0:
        raise ValueError(f"gamma: must be in [0, 1), got {g}")
    if n_samples is None and metric == "epic" and (state_samples is None) != (action_samples is None):
        raise ValueError("n_samples: None needs both state_samples and action_samples (paired row by row)")
    for arg, value in (
        ("n_transitions", n_transitions),
        ("n_samples", n_samples or 1),
        ("n_seeds", n_seeds),
        ("dard_samples", dard_samples),
        ("batch_size", batch_size),
    ):
        if int(value) < 1:
            raise ValueError(f"{arg}: must be >= 1, got {value}")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci: must be in (0, 1), got {ci}")
    if metric == "dard" and sample_next is None:
        raise ValueError("sample_next: required for metric 'dard' (next states drawn from the simulator)")
    pool_s = coverage.next_obs if state_samples is None else np.asarray(state_samples)
    pool_a = coverage.action if action_samples is None else np.asarray(action_samples)
    if (n_samples is None or paired_samples) and metric == "epic" and pool_s.shape[0] != pool_a.shape[0]:
        raise ValueError(
            f"state_samples: {pool_s.shape[0]} rows but action_samples has {pool_a.shape[0]} (paired row by row)"
        )
    if pool_s.shape[0] == 0 or pool_a.shape[0] == 0:
        raise ValueError("state_samples: empty pool" if pool_s.shape[0] == 0 else "action_samples: empty pool")

    per_seed, canon = [], []
    for i in range(n_seeds):
        rng = np.random.default_rng(seed + i)
        idx = _draw(rng, len(coverage), n_transitions)
        if metric == "starc":
            feats = make_features(value_features, coverage.obs, n_features, rng, obs_lookup)
            c, sc = starc_canonical_sampled(rewards, coverage, idx, g, feats, ridge, batch_size)
        elif metric == "epic":
            if n_samples is None:  # the pools as given, row j paired with row j (exact enumerations)
                sa, aa = pool_s, pool_a
            elif paired_samples:
                j = rng.integers(0, pool_s.shape[0], size=n_samples)
                sa, aa = pool_s[j], pool_a[j]
            else:
                sa = pool_s[rng.integers(0, pool_s.shape[0], size=n_samples)]
                aa = pool_a[rng.integers(0, pool_a.shape[0], size=n_samples)]
            c, sc = epic_canonical_sampled(
                rewards, coverage.obs[idx], coverage.action[idx], coverage.next_obs[idx], g, sa, aa, batch_size
            )
        else:
            assert sample_next is not None
            st = coverage.obs if coverage.state is None else np.asarray(coverage.state)
            nst = coverage.next_obs if coverage.next_state is None else np.asarray(coverage.next_state)
            c, sc = dard_canonical_sampled(
                rewards,
                coverage.obs[idx],
                coverage.action[idx],
                coverage.next_obs[idx],
                g,
                st[idx],
                nst[idx],
                sample_next,
                pool_a,
                dard_samples,
                rng,
                batch_size,
            )
        C = np.stack([c[name] for name in names])
        scales = np.array([sc[name] for name in names])
        canon.append((C, scales))
        per_seed.append(_distances(C, np.ones((1, C.shape[1])), metric, norm, scales)[0])

    per = np.stack(per_seed)
    lo, hi = _bootstrap(canon, metric, norm, n_bootstrap, ci, np.random.default_rng(seed + 10_007))
    settings = {
        "gamma": g,
        "n_transitions": int(min(n_transitions, len(coverage))),
        "coverage_size": len(coverage),
        "n_samples": None if n_samples is None else int(n_samples),
        "paired_samples": bool(paired_samples),
        "n_seeds": int(n_seeds),
        "seed": int(seed),
        "n_bootstrap": int(n_bootstrap),
        "ci": ci,
        "norm": norm if metric == "starc" else None,
        "value_features": (value_features if isinstance(value_features, str) else "callable")
        if metric == "starc"
        else None,
        "n_features": int(n_features) if metric == "starc" else None,
        "ridge": ridge if metric == "starc" else None,
        "dard_samples": int(dard_samples) if metric == "dard" else None,
    }
    return SampledComparison(names, metric, per.mean(axis=0), lo, hi, per, settings)


def _bootstrap(
    canon: Sequence[tuple[np.ndarray, np.ndarray]],
    metric: str,
    norm: str,
    n_bootstrap: int,
    ci: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap: each replicate picks a seed, then resamples its transitions with replacement."""
    K = canon[0][0].shape[0]
    if n_bootstrap < 1:
        nan = np.full((K, K), np.nan)
        return nan, nan
    seeds = rng.integers(0, len(canon), size=n_bootstrap)
    reps = []
    for s, (C, scales) in enumerate(canon):
        b = int(np.sum(seeds == s))
        n = C.shape[1]
        for lo in range(0, b, 256):  # bounded memory: [256, n] count weights at a time
            m = min(256, b - lo)
            W = rng.multinomial(n, np.full(n, 1.0 / n), size=m).astype(np.float64)
            reps.append(_distances(C, W, metric, norm, scales))
    allr = np.concatenate(reps, axis=0)
    alpha = (1.0 - ci) / 2.0
    return np.quantile(allr, alpha, axis=0), np.quantile(allr, 1.0 - alpha, axis=0)


def _pair(result: SampledComparison) -> Estimate:
    return Estimate(
        float(result.distance[0, 1]),
        float(result.ci_low[0, 1]),
        float(result.ci_high[0, 1]),
        tuple(float(x) for x in result.per_seed[:, 0, 1]),
    )


def sampled_epic(r1: RewardFn, r2: RewardFn, coverage: Coverage, gamma: float, **kwargs: Any) -> Estimate:
    """Sample-based EPIC distance between two rewards (arguments as `compare_sampled`)."""
    return _pair(compare_sampled({"r1": r1, "r2": r2}, coverage, gamma, "epic", **kwargs))


def sampled_dard(
    r1: RewardFn, r2: RewardFn, coverage: Coverage, gamma: float, sample_next: SampleNext, **kwargs: Any
) -> Estimate:
    """Sample-based DARD distance between two rewards (arguments as `compare_sampled`)."""
    return _pair(compare_sampled({"r1": r1, "r2": r2}, coverage, gamma, "dard", sample_next=sample_next, **kwargs))


def sampled_starc(r1: RewardFn, r2: RewardFn, coverage: Coverage, gamma: float, **kwargs: Any) -> Estimate:
    """Sample-based STARC (value-adjusted levelling) distance between two rewards (as `compare_sampled`)."""
    return _pair(compare_sampled({"r1": r1, "r2": r2}, coverage, gamma, "starc", **kwargs))
