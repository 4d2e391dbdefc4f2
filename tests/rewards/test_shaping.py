"""Potential-based shaping: invariance on random MDPs, terminal/truncation rules, exact numbers."""

from __future__ import annotations

import numpy as np
import pytest

import embodied
from embodied.rewards.shaping import Shaper, ShapingError, check_gamma, shaping_term


def value_iteration(R: np.ndarray, P: np.ndarray, gamma: float, terminal: np.ndarray | None = None) -> np.ndarray:
    """Q*[s, a] for R[s, a, s'], P[s, a, s']; terminal states have V = 0."""
    S, A, _ = R.shape
    Q = np.zeros((S, A))
    alive = np.ones(S) if terminal is None else (~terminal).astype(float)
    for _ in range(5000):
        V = Q.max(axis=1) * alive
        Q_new = np.einsum("sap,sap->sa", P, R + gamma * V[None, None, :])
        if np.max(np.abs(Q_new - Q)) < 1e-13:
            break
        Q = Q_new
    return Q_new


def shaping_tensor(phi: np.ndarray, gamma: float, terminal: np.ndarray | None = None) -> np.ndarray:
    S = phi.size
    term = np.zeros(S, bool) if terminal is None else terminal
    phi_s = np.broadcast_to(phi[:, None, None], (S, 1, S))
    phi_next = np.broadcast_to(phi[None, None, :], (S, 1, S))
    return shaping_term(phi_s, phi_next, np.broadcast_to(term[None, None, :], (S, 1, S)), gamma)


@pytest.mark.parametrize("seed", range(5))
def test_random_mdp_same_optimal_policy_and_q_shift(seed: int) -> None:
    rng = np.random.default_rng(seed)
    S, A, gamma = 7, 3, 0.9
    P = rng.dirichlet(np.ones(S), size=(S, A))
    R = rng.normal(size=(S, A, S))
    phi = rng.normal(scale=5.0, size=S)
    Q = value_iteration(R, P, gamma)
    Qs = value_iteration(R + shaping_tensor(phi, gamma), P, gamma)
    np.testing.assert_array_equal(Q.argmax(1), Qs.argmax(1))
    np.testing.assert_allclose(Qs, Q - phi[:, None], atol=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_episodic_mdp_with_terminals_zeroed_potential(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    S, A, gamma = 8, 3, 0.95
    terminal = np.zeros(S, bool)
    terminal[[0, 7]] = True
    P = rng.dirichlet(np.ones(S), size=(S, A))
    R = rng.normal(size=(S, A, S))
    phi = rng.normal(scale=3.0, size=S)  # non-zero at terminals: the shaping must zero it there
    Q = value_iteration(R, P, gamma, terminal)
    Qs = value_iteration(R + shaping_tensor(phi, gamma, terminal), P, gamma, terminal)
    live = ~terminal
    np.testing.assert_array_equal(Q[live].argmax(1), Qs[live].argmax(1))
    np.testing.assert_allclose(Qs[live], (Q - phi[:, None])[live], atol=1e-9)


def _discounted_return(env, actions: list[int], gamma: float) -> float:
    env.reset(seed=0)
    total, disc = 0.0, 1.0
    for a in actions:
        _, r, term, trunc, _ = env.step(a)
        total += disc * r
        disc *= gamma
        if term or trunc:
            break
    return total


def test_failure_terminal_with_high_potential_does_not_beat_slow_success(chain_task) -> None:
    """Chain: trap at -2 (2 steps left), goal at 4 (4 steps right, reward 1); Φ is 10 at the trap."""
    gamma = 0.9

    def phi(obs: np.ndarray) -> np.ndarray:
        pos = obs[:, 0]
        return np.where(pos <= -2, 10.0, 0.1 * pos)

    fail, success = [0, 0], [1, 1, 1, 1]
    env = embodied.shape(embodied.make(chain_task), phi, gamma)
    r_fail, r_success = _discounted_return(env, fail, gamma), _discounted_return(env, success, gamma)
    # Telescoping: γ^T·0 − Φ(s0) for both, plus the env reward γ^3·1 for success.
    assert r_fail == pytest.approx(0.0 - 0.0)
    assert r_success == pytest.approx(gamma**3 * 1.0)
    assert r_success > r_fail

    # The bug this prevents: keeping Φ(s_T) at a termination makes failing fast look better.
    buggy_fail = gamma**2 * 10.0 - 0.0
    buggy_success = gamma**3 + gamma**4 * 0.4 - 0.0
    assert buggy_fail > buggy_success


def test_truncation_keeps_potential_exact_numbers(chain_task) -> None:
    gamma = 0.9
    env = embodied.shape(embodied.make(chain_task, max_episode_steps=2), lambda o: o[:, 0] * 2.0, gamma)
    env.reset(seed=0)
    _, r1, term, trunc, _ = env.step(1)
    assert (term, trunc) == (False, False)
    assert r1 == pytest.approx(gamma * 2.0 - 0.0)
    _, r2, term, trunc, info2 = env.step(1)
    assert (term, trunc) == (False, True)
    assert r2 == pytest.approx(gamma * 4.0 - 2.0)  # Φ(s') kept on truncation
    assert info2["shaping"] == pytest.approx(r2) and info2["env_reward"] == 0.0
    ep = info2["reward_episode"]
    assert ep["shaping_residual"] == pytest.approx(0.0, abs=1e-12)
    assert ep["shaping_return"] == pytest.approx(gamma**2 * 4.0 - 0.0)


def test_termination_zeroes_potential_exact(chain_task) -> None:
    gamma = 0.9
    env = embodied.shape(embodied.make(chain_task), lambda o: o[:, 0] + 100.0, gamma, scale=0.5)
    env.reset(seed=0)
    rewards = [env.step(1)[1] for _ in range(4)]
    phis = [0.5 * (p + 100.0) for p in range(5)]
    expected = [gamma * phis[t + 1] - phis[t] for t in range(3)] + [1.0 + gamma * 0.0 - phis[3]]
    np.testing.assert_allclose(rewards, expected)


def test_scale_must_be_positive_and_gamma_mismatch_refused() -> None:
    with pytest.raises(ShapingError, match="scale"):
        Shaper(lambda o: o[:, 0], 0.9, scale=-1.0)
    with pytest.raises(ShapingError, match=r"gamma 0\.9 != learner gamma 0\.99"):
        check_gamma(0.9, 0.99)
    with pytest.raises(ShapingError, match="unknown shaping mode"):
        Shaper(lambda o: o[:, 0], 0.9, mode="clipped")  # type: ignore[arg-type]


def test_non_invariant_modes_warn_and_behave_as_named(chain_task) -> None:
    with pytest.warns(UserWarning, match="NOT policy-invariant"):
        env = embodied.shape(embodied.make(chain_task), lambda o: o[:, 0], 0.9, mode="progress_delta_not_invariant")
    env.reset(seed=0)
    assert env.step(1)[1] == pytest.approx(1.0)  # Φ(s') − Φ(s) = 1 − 0, no γ
    with pytest.warns(UserWarning, match="NOT policy-invariant"):
        env = embodied.shape(embodied.make(chain_task), lambda o: o[:, 0], 0.9, mode="raw_progress_not_invariant")
    env.reset(seed=0)
    assert env.step(1)[1] == pytest.approx(1.0)


def test_nonfinite_potential_is_an_error_naming_it(chain_task) -> None:
    def bad(obs: np.ndarray) -> np.ndarray:
        return np.full(len(obs), np.nan)

    env = embodied.shape(embodied.make(chain_task), bad, 0.9)
    with pytest.raises(ValueError, match="potential 'bad' returned a non-finite value"):
        env.reset(seed=0)
    env = embodied.shape(embodied.make(chain_task), lambda o: np.zeros(3), 0.9)
    with pytest.raises(ValueError, match=r"shape \(3,\), expected \(1,\)"):
        env.reset(seed=0)
