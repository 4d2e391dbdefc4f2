"""Exact reward-function distances for tabular MDPs: EPIC, DARD and STARC.

Conventions (see docs/compare.md for the full guide):

* A reward is an array ``R[s, a, s']`` of shape ``[S, A, S]``; transitions ``P[s, a, s']`` have the
  same shape and every row ``P[s, a, :]`` sums to 1; the discount ``gamma`` lies in ``[0, 1)``.
* ``weights[s, a, s']`` (non-negative, shape ``[S, A, S]``, default uniform) is the coverage
  distribution: it weights the Pearson correlation of EPIC/DARD and the norms of STARC. Only ratios
  matter, so it need not sum to 1.
* EPIC and DARD: distance = ``sqrt((1 - rho) / 2)`` with ``rho`` the weighted Pearson correlation of
  the canonical rewards. Range ``[0, 1]``; ``R`` vs ``-R`` gives 1. A canonical reward that is
  constant on the support of ``weights`` has no defined correlation: two such rewards are at
  distance 0, one such reward and a non-constant one at ``sqrt(1/2)`` (treated as uncorrelated).
* STARC: ``s(R) = c(R) / n(c(R))`` (or ``0`` when ``n(c(R)) = 0``), distance ``= n(s(R1) - s(R2)) / 2``,
  so the range is ``[0, 1]``: 0 for rewards equal up to positive scale, potential shaping and
  S'-redistribution, 1 for ``R`` vs ``-R``, 0.5 between a zero-norm (trivial) reward and any other.
* Norms over ``[S, A, S']`` weighted by ``weights``: ``l1 = sum w|x| / sum w``,
  ``l2 = sqrt(sum w x^2 / sum w)``, ``linf = max |x|`` over triples with ``w > 0``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg

Canonical = Literal["val", "minimal"]
Norm = Literal["l1", "l2", "linf"]
CANONICALS: tuple[str, ...] = ("val", "minimal")
NORMS: tuple[str, ...] = ("l1", "l2", "linf")
METRICS: tuple[str, ...] = ("starc", "epic", "dard")

_ROW_ATOL = 1e-6  # tolerance on probability rows summing to 1
_ZERO_RTOL = 1e-10  # a canonical reward is "zero"/"constant" below this fraction of the reward's scale
_SPARSE_DENSITY = 0.05  # use scipy.sparse for P when fewer than this fraction of entries is non-zero
_DENSE_SOLVE_MAX = 3000  # V^π by a dense solve up to this many states


# --------------------------------------------------------------------------------------------------
# validation


def _as_float_array(x: object, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: not a numeric array") from None
    return arr


def _check_gamma(gamma: object) -> float:
    try:
        g = float(gamma)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"gamma: must be a number in [0, 1), got {gamma!r}") from None
    if not (0.0 <= g < 1.0):
        raise ValueError(f"gamma: must be in [0, 1), got {g}")
    return g


def _check_reward(R: object, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    arr = _as_float_array(R, name)
    if arr.ndim != 3 or arr.shape[0] != arr.shape[2] or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name}: expected shape [S, A, S] with S, A >= 1, got {arr.shape}")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name}: shape {arr.shape} does not match R1 shape {shape}")
    if not np.all(np.isfinite(arr)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{name}: non-finite value {arr[bad]} at index {bad}")
    return arr


def _check_prob_rows(x: object, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Non-negative finite array of `shape` whose last axis sums to 1."""
    arr = _as_float_array(x, name)
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or inf")
    if np.any(arr < 0):
        bad = tuple(int(i) for i in np.argwhere(arr < 0)[0])
        raise ValueError(f"{name}: negative probability {arr[bad]} at index {bad}")
    sums = arr.sum(axis=-1)
    off = np.abs(sums - 1.0) > _ROW_ATOL
    if np.any(off):
        bad = tuple(int(i) for i in np.argwhere(np.atleast_1d(off))[0])
        where = f" at index {bad}" if arr.ndim > 1 else ""
        raise ValueError(f"{name}: rows must sum to 1, got {np.atleast_1d(sums)[bad]:.6g}{where}")
    return arr


def _check_weights(weights: object, shape: tuple[int, ...]) -> np.ndarray | None:
    if weights is None:
        return None
    w = _as_float_array(weights, "weights")
    if w.shape != shape:
        raise ValueError(f"weights: expected shape {shape}, got {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("weights: contains NaN or inf")
    if np.any(w < 0):
        bad = tuple(int(i) for i in np.argwhere(w < 0)[0])
        raise ValueError(f"weights: negative weight {w[bad]} at index {bad}")
    if not np.any(w > 0):
        raise ValueError("weights: all zero")
    return w


def _check_choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name}: unknown {name} {value!r}; choose one of {', '.join(choices)}")
    return value


def _scale(R: np.ndarray, gamma: float) -> float:
    # values and advantages of R are bounded by max|R| / (1 - gamma): the reference for "zero"
    return float(np.max(np.abs(R))) / (1.0 - gamma)


# --------------------------------------------------------------------------------------------------
# weighted statistics


def _wsum(x: np.ndarray, w: np.ndarray | None) -> float:
    return float(np.sum(x)) if w is None else float(np.vdot(w.ravel(), x.ravel()))


def _wdot(x: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> float:
    """Σ w x y without allocating more than one temporary (BLAS dot when unweighted)."""
    if w is None:
        return float(np.vdot(x.ravel(), y.ravel()))
    return float(np.vdot((w * x).ravel(), y.ravel()))


def _wtotal(x: np.ndarray, w: np.ndarray | None) -> float:
    return float(x.size) if w is None else float(np.sum(w))


def _center_inplace(x: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, float]:
    """Subtract the weighted mean from `x` (in place; `x` must be owned) and return it with its weighted std."""
    total = _wtotal(x, w)
    x -= _wsum(x, w) / total
    return x, float(np.sqrt(max(_wdot(x, x, w) / total, 0.0)))


def pearson_distance(C1: np.ndarray, C2: np.ndarray, weights: np.ndarray | None = None, scale: float = 1.0) -> float:
    """sqrt((1 - rho) / 2) of the `weights`-weighted Pearson correlation of two arrays of one shape.

    A standard deviation at or below ``1e-10 * scale`` counts as zero (constant array): two constants
    are at distance 0, a constant and a non-constant array at sqrt(1/2).
    """
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    c1, c2 = np.array(C1, dtype=np.float64), np.array(C2, dtype=np.float64)  # copies: centred in place
    return _pair_pearson(c1, c2, w, scale, scale)


def weighted_norm(x: np.ndarray, norm: str = "l2", weights: np.ndarray | None = None) -> float:
    """Norm of `x` over its entries weighted by `weights` (same shape; None = uniform).

    l1 = sum w|x| / sum w, l2 = sqrt(sum w x^2 / sum w), linf = max |x| over entries with w > 0.
    """
    _check_choice(norm, "norm", NORMS)
    if norm == "linf":
        ax = np.abs(x) if weights is None else np.abs(x[weights > 0])
        return float(ax.max()) if ax.size else 0.0
    total = _wtotal(x, weights)
    if norm == "l1":
        return _wsum(np.abs(x), weights) / total
    return float(np.sqrt(max(_wsum(x * x, weights) / total, 0.0)))


# --------------------------------------------------------------------------------------------------
# canonicalisations


def epic_canonical(
    R: np.ndarray, gamma: float, state_dist: np.ndarray | None = None, action_dist: np.ndarray | None = None
) -> np.ndarray:
    """EPIC canonical reward [S, A, S]: R(s,a,s') + E[γR(s',A,S') − R(s,A,S') − γR(S,A,S')].

    S, S' ~ `state_dist` [S] and A ~ `action_dist` [A], independent (default uniform). Inputs are
    assumed validated.
    """
    n_s, n_a, _ = R.shape
    p = np.full(n_s, 1.0 / n_s) if state_dist is None else state_dist
    q = np.full(n_a, 1.0 / n_a) if action_dist is None else action_dist
    # m(x) = E_{A,S'}[R(x, A, S')]: two small mat-vecs instead of one 3-way einsum
    m = (R.reshape(n_s * n_a, n_s) @ p).reshape(n_s, n_a) @ q
    const = gamma * float(p @ m)
    C = R + (gamma * m)[None, None, :]
    C -= (m + const)[:, None, None]
    return C


def _transition_blocks(P: np.ndarray) -> list[np.ndarray | scipy.sparse.csr_matrix]:
    """P[:, a, :] per action, as CSR matrices when P is sparse enough to profit from it."""
    n_a = P.shape[1]
    sparse = np.count_nonzero(P) < _SPARSE_DENSITY * P.size
    blocks: list[np.ndarray | scipy.sparse.csr_matrix] = []
    for a in range(n_a):
        Pa = np.ascontiguousarray(P[:, a, :])
        blocks.append(scipy.sparse.csr_matrix(Pa) if sparse else Pa)
    return blocks


def dard_canonical(R: np.ndarray, P: np.ndarray, gamma: float, action_dist: np.ndarray | None = None) -> np.ndarray:
    """DARD canonical reward [S, A, S]: R(s,a,s') + E[γR(s',A,S'') − R(s,A,S') − γR(S',A,S'')].

    A ~ `action_dist` (default uniform), S' ~ P(s, A), S'' ~ P(s', A), the same A in all three terms
    (Wulfe et al. 2022). The last term is Σ_a q(a) [P_a R_a P_aᵀ](s, s'). Inputs assumed validated.
    """
    n_s, n_a, _ = R.shape
    q = np.full(n_a, 1.0 / n_a) if action_dist is None else action_dist
    rbar_q = np.einsum("sax,sax->sa", P, R) @ q  # E_{A, S'~P(s,A)} R(s, A, S')
    cross = np.zeros((n_s, n_s))
    for a, Pa in enumerate(_transition_blocks(P)):
        if q[a] == 0.0:
            continue
        PR = Pa @ np.ascontiguousarray(R[:, a, :])
        cross += q[a] * np.asarray((Pa @ PR.T).T)  # (P_a R_a) P_aᵀ without densifying a sparse P_a
    C = R + (gamma * rbar_q)[None, None, :] - rbar_q[:, None, None]
    C -= (gamma * cross)[:, None, :]
    return C


def policy_value(R: np.ndarray, P: np.ndarray, gamma: float, policy: np.ndarray | None = None) -> np.ndarray:
    """V^π [S] of reward R under dynamics P by one linear solve (I − γP_π) V = r_π; π uniform by default."""
    n_s, n_a, _ = R.shape
    pi = np.full((n_s, n_a), 1.0 / n_a) if policy is None else policy
    rbar = np.einsum("sax,sax->sa", P, R)
    return _values(rbar[:, :, None], P, gamma, pi)[:, 0]


def _values(rbar: np.ndarray, P: np.ndarray, gamma: float, pi: np.ndarray) -> np.ndarray:
    """V^π [S, K] for K expected rewards rbar [S, A, K]: one factorisation of I − γP_π serves all K."""
    n_s = rbar.shape[0]
    r_pi = np.einsum("sa,sak->sk", pi, rbar)
    P_pi = np.einsum("sa,sax->sx", pi, P)
    # dense LU up to a few thousand states: sparse LU of random graphs fills in and is slower there
    if n_s > _DENSE_SOLVE_MAX and np.count_nonzero(P_pi) < _SPARSE_DENSITY * P_pi.size:
        A = scipy.sparse.identity(n_s, format="csc") - gamma * scipy.sparse.csc_matrix(P_pi)
        return np.asarray(scipy.sparse.linalg.splu(A).solve(r_pi))
    # numpy's LAPACK gesv: scipy.linalg.solve adds a condition-number estimate that doubles the cost
    return np.linalg.solve(np.eye(n_s) - gamma * P_pi, r_pi)


def _val_canonicals(Rs: list[np.ndarray], P: np.ndarray, gamma: float, policy: np.ndarray | None) -> list[np.ndarray]:
    n_s, n_a, _ = P.shape
    pi = np.full((n_s, n_a), 1.0 / n_a) if policy is None else policy
    rbar = np.stack([np.einsum("sax,sax->sa", P, R) for R in Rs], axis=2)  # [S, A, K]
    V = _values(rbar, P, gamma, pi)  # [S, K]
    next_v = (P.reshape(n_s * n_a, n_s) @ V).reshape(n_s, n_a, -1)
    c = rbar - V[:, None, :] + gamma * next_v
    return [c[:, :, k] for k in range(len(Rs))]


def val_canonical_sa(R: np.ndarray, P: np.ndarray, gamma: float, policy: np.ndarray | None = None) -> np.ndarray:
    """Value-adjusted levelling as an [S, A] array (it does not depend on s').

    c(R)(s,a,s') = E_{S'~P(s,a)}[R(s,a,S') − V^π(s) + γV^π(S')] = A^π(s, a), the advantage of π
    (uniform unless `policy[s, a]` is given). Inputs assumed validated.
    """
    return _val_canonicals([R], P, gamma, policy)[0]


def val_canonical(R: np.ndarray, P: np.ndarray, gamma: float, policy: np.ndarray | None = None) -> np.ndarray:
    """Value-adjusted levelling broadcast to [S, A, S] (see `val_canonical_sa`)."""
    c = val_canonical_sa(R, P, gamma, policy)
    return np.broadcast_to(c[:, :, None], R.shape).copy()


def minimal_canonical(R: np.ndarray, P: np.ndarray, gamma: float, weights: np.ndarray | None = None) -> np.ndarray:
    """Minimal canonicalisation [S, A, S] under the `weights`-weighted L2 norm.

    The orthogonal projection (inner product Σ w x y) of R onto the complement of
    N = {γΦ(s') − Φ(s)} + {D : E_{S'~P(s,a)} D(s,a,S') = 0}, i.e. the element of R's equivalence
    class (shaping + S'-redistribution) with the least weighted L2 norm. Computed in two steps:
    within a row (s, a) the cheapest reward with mean m under P is m·P/(w·κ), κ = Σ_{s'} P²/w, at
    squared cost m²/κ; then Φ minimises Σ (r̄ + γP_aΦ − Φ)² / κ, a weighted least squares in S
    unknowns. Rows where P puts mass on a zero-weight s' are free (κ = ∞): the canonical reward is
    0 on their weighted entries. Inputs assumed validated.
    """
    return _minimal_canonicals([R], P, gamma, weights)[0]


def _minimal_canonicals(
    Rs: list[np.ndarray], P: np.ndarray, gamma: float, weights: np.ndarray | None
) -> list[np.ndarray]:
    n_s, n_a, _ = P.shape
    support = P > 0
    if weights is None:
        kappa = np.einsum("sax,sax->sa", P, P)
        free = np.zeros((n_s, n_a), dtype=bool)
    else:
        free = np.any(support & (weights <= 0), axis=2)
        safe_w = np.where(weights > 0, weights, 1.0)
        kappa = np.einsum("sax,sax->sa", P, P / safe_w)
    inv_kappa = np.where(free, 0.0, 1.0 / kappa)
    rbar = np.stack([np.einsum("sax,sax->sa", P, R) for R in Rs], axis=2)  # [S, A, K]
    phi = _shaping_lstsq(rbar, P, gamma, inv_kappa)  # [S, K]
    next_phi = (P.reshape(n_s * n_a, n_s) @ phi).reshape(n_s, n_a, -1)
    coef = (rbar + gamma * next_phi - phi[:, None, :]) * inv_kappa[:, :, None]  # row mean / κ
    out = []
    for k in range(len(Rs)):
        C = coef[:, :, k, None] * P
        if weights is not None:
            C = np.where(weights > 0, C / np.where(weights > 0, weights, 1.0), 0.0)
        out.append(C)
    return out


def _shaping_lstsq(rbar: np.ndarray, P: np.ndarray, gamma: float, row_w: np.ndarray) -> np.ndarray:
    """Φ [S, K] = argmin_Φ Σ_{s,a} row_w(s,a) · (r̄_k(s,a) + γ(P_aΦ)(s) − Φ(s))² for each of K rewards rbar [S, A, K].

    Normal matrix G = Σ_a (γP_a − I)ᵀ D_a (γP_a − I), D_a = diag(row_w[:, a]), does not depend on the
    reward: assembled per action (sparse when P is) and factorised once. lstsq when G is singular.
    """
    n_s = rbar.shape[0]
    blocks = _transition_blocks(P)
    sparse = scipy.sparse.issparse(blocks[0])
    G = scipy.sparse.csr_matrix((n_s, n_s)) if sparse else np.zeros((n_s, n_s))
    rhs = np.zeros((n_s, rbar.shape[2]))
    eye = scipy.sparse.identity(n_s, format="csr") if sparse else np.eye(n_s)
    for a, Pa in enumerate(blocks):
        d = row_w[:, a]
        Ma = gamma * Pa - eye  # residual = r̄_a + M_a Φ
        DMa = scipy.sparse.diags(d) @ Ma if sparse else d[:, None] * Ma
        G = G + Ma.T @ DMa
        rhs -= np.asarray(DMa.T @ rbar[:, a, :])
    if sparse:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", scipy.sparse.linalg.MatrixRankWarning)
            try:
                phi = np.asarray(scipy.sparse.linalg.splu(G.tocsc()).solve(rhs))
            except RuntimeError:  # exactly singular
                phi = np.full_like(rhs, np.nan)
        if np.all(np.isfinite(phi)):
            return phi
        G = G.toarray()
    try:
        return np.linalg.solve(G, rhs)
    except np.linalg.LinAlgError:
        # singular: some states appear in no weighted row; any minimiser gives the same residuals
        return scipy.linalg.lstsq(G, rhs, check_finite=False)[0]


# --------------------------------------------------------------------------------------------------
# public distances


def epic_distance(
    R1: np.ndarray,
    R2: np.ndarray,
    gamma: float,
    weights: np.ndarray | None = None,
    state_dist: np.ndarray | None = None,
    action_dist: np.ndarray | None = None,
) -> float:
    """EPIC distance (Gleave et al. 2021) between two tabular rewards, in [0, 1].

    Args:
        R1, R2: rewards [S, A, S].
        gamma: discount in [0, 1).
        weights: coverage weights [S, A, S] for the Pearson correlation (default uniform over triples).
        state_dist: D_S [S] for S and S' of the canonicalisation (default uniform).
        action_dist: D_A [A] (default uniform).

    Returns:
        sqrt((1 − ρ)/2), ρ the weighted Pearson correlation of the EPIC-canonical rewards.

    Raises:
        ValueError: a one-line message naming the bad argument.
    """
    R1 = _check_reward(R1, "R1")
    R2 = _check_reward(R2, "R2", R1.shape)
    g = _check_gamma(gamma)
    n_s, n_a, _ = R1.shape
    w = _check_weights(weights, R1.shape)
    p = None if state_dist is None else _check_prob_rows(state_dist, "state_dist", (n_s,))
    q = None if action_dist is None else _check_prob_rows(action_dist, "action_dist", (n_a,))
    C1 = epic_canonical(R1, g, p, q)
    C2 = epic_canonical(R2, g, p, q)
    return _pair_pearson(C1, C2, w, _scale(R1, g), _scale(R2, g))


def _pair_pearson(C1: np.ndarray, C2: np.ndarray, w: np.ndarray | None, scale1: float, scale2: float) -> float:
    """Pearson distance of two owned arrays (they are centred in place)."""
    d1, s1 = _center_inplace(C1, w)
    d2, s2 = _center_inplace(C2, w)
    return _pearson_from_centered(d1, s1, scale1, d2, s2, scale2, w)


def _pearson_from_centered(
    d1: np.ndarray, s1: float, scale1: float, d2: np.ndarray, s2: float, scale2: float, w: np.ndarray | None
) -> float:
    const1, const2 = s1 <= _ZERO_RTOL * scale1, s2 <= _ZERO_RTOL * scale2
    if const1 and const2:
        return 0.0
    if const1 or const2:
        return float(np.sqrt(0.5))
    rho = _wdot(d1, d2, w) / _wtotal(d1, w) / (s1 * s2)
    return float(np.sqrt((1.0 - min(1.0, max(-1.0, rho))) / 2.0))


def dard_distance(
    R1: np.ndarray,
    R2: np.ndarray,
    P: np.ndarray,
    gamma: float,
    weights: np.ndarray | None = None,
    action_dist: np.ndarray | None = None,
) -> float:
    """DARD distance (Wulfe et al. 2022) between two tabular rewards, in [0, 1].

    Like EPIC, but the canonicalisation draws next states from the transition model P [S, A, S]
    instead of a fixed state distribution; A ~ `action_dist` [A] (default uniform). Correlation
    weighted by `weights` [S, A, S] (default uniform over triples).

    Raises:
        ValueError: a one-line message naming the bad argument.
    """
    R1 = _check_reward(R1, "R1")
    R2 = _check_reward(R2, "R2", R1.shape)
    P = _check_prob_rows(P, "P", R1.shape)
    g = _check_gamma(gamma)
    w = _check_weights(weights, R1.shape)
    q = None if action_dist is None else _check_prob_rows(action_dist, "action_dist", (R1.shape[1],))
    C1 = dard_canonical(R1, P, g, q)
    C2 = dard_canonical(R2, P, g, q)
    return _pair_pearson(C1, C2, w, _scale(R1, g), _scale(R2, g))


@dataclass(frozen=True)
class _Standardised:
    """s(R) for STARC: the normalised canonical reward, [S, A] for "val" or [S, A, S] for "minimal"."""

    value: np.ndarray
    zero: bool


def _starc_standardise(
    Rs: list[np.ndarray],
    P: np.ndarray,
    gamma: float,
    canonical: str,
    norm: str,
    w: np.ndarray | None,
    w_sa: np.ndarray | None,
    policy: np.ndarray | None,
) -> list[_Standardised]:
    """s(R) for every reward; canonicalised together so one factorisation serves all."""
    if canonical == "val":
        cs = _val_canonicals(Rs, P, gamma, policy)
        wn = w_sa  # constant in s': the weighted norm over triples equals the norm over (s, a) under Σ_{s'} w
    else:
        cs = _minimal_canonicals(Rs, P, gamma, w)
        wn = w
    out = []
    for R, c in zip(Rs, cs, strict=True):
        n = weighted_norm(c, norm, wn)
        zero = n <= _ZERO_RTOL * _scale(R, gamma)
        out.append(_Standardised(np.zeros_like(c) if zero else c / n, bool(zero)))
    return out


def starc_distance(
    R1: np.ndarray,
    R2: np.ndarray,
    P: np.ndarray,
    gamma: float,
    canonical: str = "val",
    norm: str = "l2",
    weights: np.ndarray | None = None,
    policy: np.ndarray | None = None,
) -> float:
    """STARC distance (Skalse et al. 2023) between two tabular rewards, in [0, 1].

    d = ½ · n(s(R1) − s(R2)), s(R) = c(R)/n(c(R)) (0 when n(c(R)) = 0).

    Args:
        R1, R2: rewards [S, A, S].
        P: transitions [S, A, S], rows sum to 1.
        gamma: discount in [0, 1).
        canonical: "val" — value-adjusted levelling c(R) = E_{S'~P}[R − V^π(s) + γV^π(S')] with π =
            `policy` [S, A] (default uniform); "minimal" — the weighted-L2 projection removing shaping
            and S'-redistribution (see `minimal_canonical`).
        norm: "l1" | "l2" | "linf", used for both n and the metric, weighted by `weights`.
        weights: [S, A, S] non-negative (default uniform over triples).
        policy: π [S, A] for "val" (rows sum to 1).

    Raises:
        ValueError: a one-line message naming the bad argument.
    """
    R1 = _check_reward(R1, "R1")
    R2 = _check_reward(R2, "R2", R1.shape)
    P = _check_prob_rows(P, "P", R1.shape)
    g = _check_gamma(gamma)
    _check_choice(canonical, "canonical", CANONICALS)
    _check_choice(norm, "norm", NORMS)
    w = _check_weights(weights, R1.shape)
    pi = None if policy is None else _check_prob_rows(policy, "policy", R1.shape[:2])
    w_sa = None if w is None else w.sum(axis=2)
    s1, s2 = _starc_standardise([R1, R2], P, g, canonical, norm, w, w_sa, pi)
    return _starc_pair(s1, s2, norm, w if canonical == "minimal" else w_sa)


def _starc_pair(s1: _Standardised, s2: _Standardised, norm: str, w: np.ndarray | None) -> float:
    if s1.zero and s2.zero:
        return 0.0
    return min(1.0, 0.5 * weighted_norm(s1.value - s2.value, norm, w))


# --------------------------------------------------------------------------------------------------
# matrices (canonicalise each reward once)


def distance_matrix(
    rewards: Mapping[str, np.ndarray],
    gamma: float,
    metric: str = "starc",
    P: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    canonical: str = "val",
    norm: str = "l2",
    policy: np.ndarray | None = None,
    state_dist: np.ndarray | None = None,
    action_dist: np.ndarray | None = None,
) -> np.ndarray:
    """Symmetric [K, K] matrix of `metric` distances between K named rewards [S, A, S].

    Same conventions and arguments as `starc_distance`, `epic_distance` and `dard_distance`; each
    reward is canonicalised once. P is required for "starc" and "dard".
    """
    _check_choice(metric, "metric", METRICS)
    names = list(rewards)
    if not names:
        raise ValueError("rewards: no rewards given")
    first = _check_reward(rewards[names[0]], f"R_{names[0]}")
    Rs = [first] + [_check_reward(rewards[n], f"R_{n}", first.shape) for n in names[1:]]
    g = _check_gamma(gamma)
    n_s, n_a, _ = first.shape
    w = _check_weights(weights, first.shape)
    if metric in ("starc", "dard"):
        if P is None:
            raise ValueError(f"P: required for metric {metric!r}")
        P = _check_prob_rows(P, "P", first.shape)
    K = len(Rs)
    D = np.zeros((K, K))
    if metric == "starc":
        _check_choice(canonical, "canonical", CANONICALS)
        _check_choice(norm, "norm", NORMS)
        pi = None if policy is None else _check_prob_rows(policy, "policy", (n_s, n_a))
        w_sa = None if w is None else w.sum(axis=2)
        assert P is not None
        std = _starc_standardise(Rs, P, g, canonical, norm, w, w_sa, pi)
        for i in range(K):
            for j in range(i + 1, K):
                D[i, j] = D[j, i] = _starc_pair(std[i], std[j], norm, w if canonical == "minimal" else w_sa)
        return D
    q = None if action_dist is None else _check_prob_rows(action_dist, "action_dist", (n_a,))
    if metric == "epic":
        p = None if state_dist is None else _check_prob_rows(state_dist, "state_dist", (n_s,))
        cents = [_center_inplace(epic_canonical(R, g, p, q), w) for R in Rs]
    else:
        assert P is not None
        cents = [_center_inplace(dard_canonical(R, P, g, q), w) for R in Rs]
    scales = [_scale(R, g) for R in Rs]
    for i in range(K):
        for j in range(i + 1, K):
            d1, s1 = cents[i]
            d2, s2 = cents[j]
            D[i, j] = D[j, i] = _pearson_from_centered(d1, s1, scales[i], d2, s2, scales[j], w)
    return D


# --------------------------------------------------------------------------------------------------
# file format


@dataclass
class TabularProblem:
    """Rewards and dynamics loaded from an npz file (see `load_tabular`)."""

    rewards: dict[str, np.ndarray]
    P: np.ndarray | None
    gamma: float | None
    weights: np.ndarray | None = None
    policy: np.ndarray | None = None
    state_dist: np.ndarray | None = None
    action_dist: np.ndarray | None = None


def load_tabular(path: str | Path) -> TabularProblem:
    """Read a tabular comparison problem from an ``.npz`` file.

    Format (``np.savez(path, ...)``):
        ``R_<name>``: one reward [S, A, S] per array (the name follows ``R_``), and/or
        ``R``: a stack [K, S, A, S], named by ``names`` (K strings) or ``R0 .. R{K-1}``;
        ``P``: transitions [S, A, S] (needed by STARC and DARD);
        ``gamma``: scalar discount (or pass one explicitly);
        optional ``weights`` [S, A, S], ``policy`` [S, A], ``state_dist`` [S], ``action_dist`` [A].
    Unknown keys are an error (so a typo does not silently drop an input).
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"tabular: no such file {p}")
    try:
        data = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"tabular: {p} is not a readable npz file ({exc})") from None
    known = {"R", "names", "P", "gamma", "weights", "policy", "state_dist", "action_dist"}
    with data:
        keys = set(data.files)
        unknown = sorted(k for k in keys - known if not k.startswith("R_"))
        if unknown:
            raise ValueError(f"tabular: {p} has unknown arrays {unknown}; expected R_<name>, R, names, P, gamma, ...")
        rewards: dict[str, np.ndarray] = {}
        if "R" in keys:
            stack = np.asarray(data["R"])
            if stack.ndim != 4:
                raise ValueError(f"tabular: array 'R' must be [K, S, A, S], got shape {stack.shape}")
            names = [str(n) for n in data["names"]] if "names" in keys else [f"R{i}" for i in range(stack.shape[0])]
            if len(names) != stack.shape[0]:
                raise ValueError(f"tabular: 'names' has {len(names)} entries but 'R' stacks {stack.shape[0]} rewards")
            rewards.update(zip(names, stack, strict=True))
        for key in sorted(k for k in keys if k.startswith("R_")):
            name = key[2:]
            if name in rewards:
                raise ValueError(f"tabular: reward name {name!r} appears twice")
            rewards[name] = np.asarray(data[key])
        if len(rewards) < 2:
            raise ValueError(f"tabular: {p} holds {len(rewards)} reward(s); need at least two (R_<name> or R)")

        def opt(key: str) -> np.ndarray | None:
            return np.asarray(data[key]) if key in keys else None

        gamma = float(np.asarray(data["gamma"]).reshape(())) if "gamma" in keys else None
        return TabularProblem(
            rewards, opt("P"), gamma, opt("weights"), opt("policy"), opt("state_dist"), opt("action_dist")
        )
