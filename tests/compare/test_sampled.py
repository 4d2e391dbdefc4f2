"""Sample-based EPIC, DARD and STARC: agreement with the exact tabular values and invariances."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from embodied.compare.sampled import Coverage, compare_sampled, sampled_dard, sampled_epic, sampled_starc
from embodied.compare.tabular import dard_distance, epic_distance, starc_distance

GAMMA = 0.9


def lookup(R: np.ndarray):
    """A tabular reward as a batched callable over integer state/action ids."""
    return lambda o, a, n: R[o, a, n]


def all_triples(n_s: int, n_a: int) -> Coverage:
    s, a, t = (np.array(x) for x in zip(*itertools.product(range(n_s), range(n_a), range(n_s)), strict=True))
    return Coverage(s, a, t)


# --------------------------------------------------------------------------------------------------
# agreement with tabular values


def test_epic_matches_tabular_exactly_with_enumerated_samples() -> None:
    rng = np.random.default_rng(0)
    n_s, n_a = 5, 3
    R1, R2 = rng.normal(size=(n_s, n_a, n_s)), rng.normal(size=(n_s, n_a, n_s))
    cov = all_triples(n_s, n_a)
    pairs = np.arange(n_s * n_a)  # (S', A) enumerates the product uniformly
    est = sampled_epic(
        lookup(R1), lookup(R2), cov, GAMMA, n_samples=None, state_samples=pairs // n_a, action_samples=pairs % n_a
    )
    exact = epic_distance(R1, R2, GAMMA)
    assert est.distance == pytest.approx(exact, abs=1e-12)
    assert est.per_seed == pytest.approx((exact,) * 3, abs=1e-12)
    assert est.ci_low <= exact <= est.ci_high


def test_dard_close_to_tabular_with_stochastic_simulator() -> None:
    rng = np.random.default_rng(0)
    n_s, n_a = 4, 2
    P = rng.dirichlet(np.full(n_s, 0.3), size=(n_s, n_a))  # peaked rows: DARD and EPIC disagree
    R1, R2 = rng.normal(size=P.shape), rng.normal(size=P.shape)
    cdf = np.cumsum(P, axis=2)
    sim = np.random.default_rng(2)

    def sample_next(state: np.ndarray, action: np.ndarray, k: int) -> np.ndarray:
        u = sim.random((state.shape[0], k, 1))
        return np.minimum((u > cdf[state, action][:, None, :]).sum(axis=2), n_s - 1)

    cov = all_triples(n_s, n_a)
    est = sampled_dard(lookup(R1), lookup(R2), cov, GAMMA, sample_next, dard_samples=4000, n_seeds=2)
    exact = dard_distance(R1, R2, P, GAMMA)
    assert est.distance == pytest.approx(exact, abs=0.005)
    assert abs(exact - epic_distance(R1, R2, GAMMA)) > 0.05  # the two metrics differ here: the test can tell


def test_starc_matches_tabular_on_deterministic_mdp_with_one_hot_features() -> None:
    rng = np.random.default_rng(3)
    n_s, n_a, n = 6, 3, 3000
    nxt = rng.integers(0, n_s, size=(n_s, n_a))
    P = np.zeros((n_s, n_a, n_s))
    P[np.arange(n_s)[:, None], np.arange(n_a)[None, :], nxt] = 1.0
    R1, R2 = rng.normal(size=P.shape), rng.normal(size=P.shape)
    s, a = rng.integers(0, n_s, size=n), rng.integers(0, n_a, size=n)
    cov = Coverage(s, a, nxt[s, a])
    counts = np.zeros(P.shape)
    np.add.at(counts, (s, a, nxt[s, a]), 1.0)
    pi_hat = counts.sum(axis=2) / counts.sum(axis=(1, 2))[:, None]  # the coverage (behaviour) policy
    for norm in ("l1", "l2", "linf"):
        exact = starc_distance(R1, R2, P, GAMMA, norm=norm, weights=counts, policy=pi_hat)
        est = sampled_starc(
            lookup(R1), lookup(R2), cov, GAMMA, norm=norm, value_features=lambda x: np.eye(n_s)[x], ridge=1e-12
        )
        assert est.distance == pytest.approx(exact, abs=1e-7), norm


# --------------------------------------------------------------------------------------------------
# a continuous toy simulator: linear dynamics, rewards on observations


A_DYN = np.array([[0.9, 0.1, 0.0], [0.0, 0.95, 0.1], [0.05, 0.0, 0.9]])
B_DYN = np.array([[0.2, 0.0], [0.0, 0.3], [0.1, -0.1]])
GOAL = np.array([0.5, -0.2, 0.3])


def step(s: np.ndarray, a: np.ndarray) -> np.ndarray:
    return s @ A_DYN.T + a @ B_DYN.T


def rollouts(n_episodes: int = 40, horizon: int = 25, seed: int = 0) -> Coverage:
    rng = np.random.default_rng(seed)
    obs, act, nxt, term = [], [], [], []
    for _ in range(n_episodes):
        s = rng.normal(size=3)
        for t in range(horizon):
            a = rng.uniform(-1, 1, size=2)
            s2 = step(s[None], a[None])[0]
            obs.append(s), act.append(a), nxt.append(s2)
            done = t == horizon - 1 and rng.random() < 0.5  # some episodes end by termination
            term.append(done)
            s = s2
    return Coverage(np.array(obs), np.array(act), np.array(nxt), np.array(term))


def r_goal(o: np.ndarray, a: np.ndarray, n: np.ndarray) -> np.ndarray:
    return -np.linalg.norm(n - GOAL, axis=1)


def r_ctrl(o: np.ndarray, a: np.ndarray, n: np.ndarray) -> np.ndarray:
    return -np.sum(a * a, axis=1) + 0.3 * n[:, 0]


THETA = np.array([1.5, -2.0, 0.7])


def shaped(reward, scale: float, gamma: float, zero_at_terminal: Coverage | None = None):
    """scale·R + γΦ(s') − Φ(s) with Φ linear in the observation."""

    def fn(o: np.ndarray, a: np.ndarray, n: np.ndarray) -> np.ndarray:
        return scale * reward(o, a, n) + gamma * n @ THETA - o @ THETA

    return fn


def deterministic_next(state: np.ndarray, action: np.ndarray, k: int) -> np.ndarray:
    return np.repeat(step(state, action)[:, None, :], k, axis=1)


@pytest.fixture(scope="module")
def coverage() -> Coverage:
    return rollouts()


def test_scaling_and_shaping_give_zero(coverage: Coverage) -> None:
    other = shaped(r_goal, 3.0, GAMMA)
    epic = sampled_epic(r_goal, other, coverage, GAMMA, n_transitions=300, n_samples=200)
    dard = sampled_dard(r_goal, other, coverage, GAMMA, deterministic_next, n_transitions=300, dard_samples=8)
    assert epic.distance == pytest.approx(0.0, abs=1e-7) and epic.ci_high == pytest.approx(0.0, abs=1e-7)
    assert dard.distance == pytest.approx(0.0, abs=1e-7)
    # the value fit absorbs a potential in its feature span; terminated rows must not bootstrap
    cov = Coverage(coverage.obs, coverage.action, coverage.next_obs)  # no terminations here
    for features in ("linear", "rff"):
        st = sampled_starc(r_goal, other, cov, GAMMA, value_features=features)
        assert st.distance == pytest.approx(0.0, abs=1e-4), features


def test_starc_value_fit_respects_termination(coverage: Coverage) -> None:
    term = coverage.terminated.astype(float)

    def shaped_episodic(o: np.ndarray, a: np.ndarray, n: np.ndarray) -> np.ndarray:
        # Φ(s') := 0 on terminated transitions, as shaping must do
        return r_goal(o, a, n) + GAMMA * (1 - term[: len(o)]) * (n @ THETA) - o @ THETA

    # evaluate on the whole set in one batch so `term` lines up with the rows
    est = sampled_starc(r_goal, shaped_episodic, coverage, GAMMA, value_features="linear", n_transitions=10**6)
    assert coverage.terminated.sum() > 5
    assert est.distance == pytest.approx(0.0, abs=1e-4)
    wrong = Coverage(coverage.obs, coverage.action, coverage.next_obs)  # forgets the terminations
    assert sampled_starc(r_goal, shaped_episodic, wrong, GAMMA, value_features="linear").distance > 1e-3


def test_negation_gives_one_and_different_rewards_are_in_between(coverage: Coverage) -> None:
    neg = lambda o, a, n: -r_goal(o, a, n)  # noqa: E731
    kw = {"n_transitions": 300}
    assert sampled_epic(r_goal, neg, coverage, GAMMA, n_samples=100, **kw).distance == pytest.approx(1.0, abs=1e-12)
    d = sampled_dard(r_goal, neg, coverage, GAMMA, deterministic_next, dard_samples=4, **kw)
    assert d.distance == pytest.approx(1.0, abs=1e-12)
    assert sampled_starc(r_goal, neg, coverage, GAMMA, **kw).distance == pytest.approx(1.0, abs=1e-12)
    mid = sampled_starc(r_goal, r_ctrl, coverage, GAMMA, **kw)
    assert 0.1 < mid.distance < 0.9
    assert mid.ci_low < mid.distance < mid.ci_high


def test_shaping_with_wrong_gamma_is_detected(coverage: Coverage) -> None:
    deltas = shaped(r_goal, 1.0, 1.0)  # progress deltas compared at γ = 0.9
    assert sampled_epic(r_goal, deltas, coverage, GAMMA, n_transitions=300, n_samples=200).distance > 0.05
    assert sampled_starc(r_goal, deltas, coverage, GAMMA, value_features="linear").distance > 0.05


def test_matrix_result_and_json(coverage: Coverage) -> None:
    rewards = {"goal": r_goal, "ctrl": r_ctrl, "goal_shaped": shaped(r_goal, 2.0, GAMMA)}
    res = compare_sampled(
        rewards, coverage, GAMMA, "epic", n_transitions=200, n_samples=100, n_seeds=4, n_bootstrap=300
    )
    assert res.names == ["goal", "ctrl", "goal_shaped"]
    assert res.per_seed.shape == (4, 3, 3) and res.distance.shape == (3, 3)
    np.testing.assert_allclose(res.distance, res.distance.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(res.distance), 0.0)
    assert res.distance[0, 2] == pytest.approx(0.0, abs=1e-7)
    assert res.distance[0, 1] == pytest.approx(res.distance[1, 2], abs=1e-7)  # shaping is invisible
    assert np.all(res.ci_low <= res.distance + 1e-12) and np.all(res.distance <= res.ci_high + 1e-12)
    payload = json.loads(json.dumps(res.to_dict()))
    assert payload["metric"] == "epic" and payload["settings"]["n_seeds"] == 4


def test_rewards_are_called_in_bounded_batches(coverage: Coverage) -> None:
    sizes: list[int] = []

    def counting(o: np.ndarray, a: np.ndarray, n: np.ndarray) -> np.ndarray:
        sizes.append(o.shape[0])
        return r_goal(o, a, n)

    compare_sampled(
        {"a": counting, "b": r_ctrl},
        coverage,
        GAMMA,
        "epic",
        n_transitions=50,
        n_samples=64,
        n_seeds=1,
        batch_size=1000,
        n_bootstrap=10,
    )
    assert max(sizes) <= 1000
    assert sum(sizes) == 50 + 2 * 50 * 64  # direct values + two inner means per transition


def test_obs_independent_rewards_take_the_shortcut_with_identical_results(coverage: Coverage) -> None:
    calls: list[int] = []

    def plain(o: np.ndarray, a: np.ndarray, n: np.ndarray) -> np.ndarray:
        calls.append(o.shape[0])
        return r_ctrl(o, a, n)

    def declared(o: np.ndarray, a: np.ndarray, n: np.ndarray) -> np.ndarray:
        return plain(o, a, n)

    declared.ignores_obs = True  # type: ignore[attr-defined]
    kw = {"n_transitions": 40, "n_samples": 30, "n_seeds": 2, "n_bootstrap": 50}
    full = compare_sampled({"goal": r_goal, "ctrl": plain}, coverage, GAMMA, "epic", **kw)
    n_full = sum(calls)
    calls.clear()
    fast = compare_sampled({"goal": r_goal, "ctrl": declared}, coverage, GAMMA, "epic", **kw)
    np.testing.assert_allclose(fast.per_seed, full.per_seed, atol=1e-12)
    assert n_full == 2 * (40 + 2 * 40 * 30) and sum(calls) == 2 * (40 + 30)


def test_paired_samples_keep_shaping_invariance(coverage: Coverage) -> None:
    est = sampled_epic(
        r_goal, shaped(r_goal, 0.5, GAMMA), coverage, GAMMA, n_transitions=200, n_samples=300, paired_samples=True
    )
    assert est.distance == pytest.approx(0.0, abs=1e-7)


# --------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"metric": "kl"}, "metric: unknown metric 'kl'"),
        ({"metric": "dard"}, "sample_next: required"),
        ({"gamma": 1.0}, "gamma: must be in [0, 1)"),
        ({"norm": "l7"}, "norm: unknown norm 'l7'"),
        ({"n_seeds": 0}, "n_seeds: must be >= 1"),
        ({"rewards": {"only": r_goal}}, "rewards: need at least two"),
        ({"rewards": {"a": r_goal, "bad": lambda o, a, n: np.zeros(3)}}, "reward 'bad': returned 3 values"),
        ({"rewards": {"a": r_goal, "nan": lambda o, a, n: np.full(len(o), np.nan)}}, "reward 'nan': returned a non"),
        ({"value_features": "poly"}, "value_features: unknown 'poly'"),
    ],
)
def test_bad_input(coverage: Coverage, kwargs: dict, message: str) -> None:
    args = {"rewards": {"a": r_goal, "b": r_ctrl}, "coverage": coverage, "gamma": GAMMA} | kwargs
    with pytest.raises(ValueError) as info:
        compare_sampled(**args)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_coverage_row_mismatch() -> None:
    with pytest.raises(ValueError, match=r"^coverage.next_obs: 3 rows, expected 4"):
        Coverage(np.zeros((4, 2)), np.zeros((4, 1)), np.zeros((3, 2)))


# --------------------------------------------------------------------------------------------------
# simulator layer: coverage from a task, restored MuJoCo states, registry rewards


def _shaped_env_kind(scale: float = 2.0):
    """Reward kind 'shaped': scale·env + γ(1 − terminated)Φ(s') − Φ(s), Φ linear in the observation."""
    from embodied.rewards.base import RewardModel, RewardOutput

    class ShapedEnv(RewardModel):
        name = "shaped"

        def __init__(self, gamma: float, dim: int) -> None:
            self.gamma, self.theta = gamma, np.linspace(-1.0, 2.0, dim)

        def compute_reward(self, batch):
            phi = lambda o: np.asarray(o, dtype=float) @ self.theta  # noqa: E731
            keep = 1.0 - np.asarray(batch.terminated, dtype=float)
            r = scale * batch.env_reward + self.gamma * keep * phi(batch.next_obs) - phi(batch.obs)
            return RewardOutput(r)

    def factory(arg: str, task) -> ShapedEnv:
        return ShapedEnv(task.gamma, 2 if task.suite == "scripted" else 39)

    return factory


@pytest.fixture(scope="module")
def reach_sim():
    from embodied.compare.simulator import collect_coverage

    sim = collect_coverage("metaworld-reach", ("random", "expert:0.3"), n_transitions=160, episode_steps=40)
    yield sim
    sim.close()


def test_restored_states_reproduce_recorded_steps(reach_sim) -> None:
    from embodied.compare.simulator import make_sample_next

    cov, table = reach_sim.coverage, reach_sim.table
    assert len(cov) == 160 and reach_sim.episodes == 4
    ids = make_sample_next(reach_sim)(cov.obs[:80], cov.action[:80], 2)
    assert ids.shape == (80, 2) and np.all(ids[:, 0] == ids[:, 1]) and ids.min() >= len(cov)
    np.testing.assert_allclose(table.numeric_obs(ids[:, 0]), table.numeric_obs(cov.next_obs[:80]), atol=1e-9)
    rec = np.asarray(table.env_reward)[cov.next_obs[:80]]
    np.testing.assert_allclose(np.asarray(table.env_reward)[ids[:, 0]], rec, atol=1e-9)


@pytest.mark.parametrize("metric", ["starc", "epic", "dard"])
def test_compare_task_sees_through_shaping(metric: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from embodied.compare.simulator import compare_task

    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    program = "program:reward_models/metaworld-reach/expert.py"
    res = compare_task(
        "metaworld-reach", ["env", "shaped", program], metric, n_transitions=240, n_samples=60, n_seeds=2,
        dard_samples=2, episode_steps=40, extra_kinds={"shaped": _shaped_env_kind()},
    )  # fmt: skip
    D = res.distance
    tol = 1e-3 if metric == "starc" else 1e-6  # STARC: ridge in the value fit; EPIC/DARD cancel exactly
    assert D[0, 1] == pytest.approx(0.0, abs=tol)
    assert D[0, 2] > 0.02 and D[1, 2] == pytest.approx(D[0, 2], abs=10 * tol)
    assert res.settings["task"] == "metaworld-reach" and res.settings["paired_samples"] is True


def test_chain_task_terminations_and_no_dard(chain_task: Path) -> None:
    from embodied.compare.simulator import compare_task

    kinds = {"shaped": _shaped_env_kind(3.0)}
    res = compare_task(chain_task, ["env", "shaped"], "starc", n_transitions=300, n_seeds=2, extra_kinds=kinds)
    assert res.distance[0, 1] == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(ValueError, match=r"^metric: 'dard' needs a simulator whose state can be restored"):
        compare_task(chain_task, ["env", "shaped"], "dard", n_transitions=50, extra_kinds=kinds)


def test_state_table_frames_follow_next_states(monkeypatch: pytest.MonkeyPatch) -> None:
    from embodied.compare import simulator
    from embodied.compare.simulator import StateTable, reward_callable
    from embodied.rewards.base import Requirements, RewardModel, RewardOutput

    table = StateTable(cameras=("cam",))
    for i in range(4):
        table.add(np.array([float(i)]), {"frames": {"cam": np.full((2, 2, 3), i, np.uint8)}, "k": i}, env_reward=i)

    class Brightness(RewardModel):
        name = "brightness"
        requires = Requirements(cameras=("cam",))

        def compute_reward(self, batch):
            assert [info["k"] for info in batch.infos] == list(batch.next_obs[:, 0].astype(int))
            return RewardOutput(batch.frames["cam"].mean(axis=(1, 2, 3)))

    fn = reward_callable(Brightness(), table)
    np.testing.assert_allclose(fn(np.array([0, 0]), np.zeros((2, 1)), np.array([3, 1])), [3.0, 1.0])
    monkeypatch.setattr(simulator, "FRAME_CHUNK", 2)  # frame models are called in bounded chunks
    chunked = reward_callable(Brightness(), table)
    ids = np.array([1, 2, 3, 0, 2])
    np.testing.assert_allclose(chunked(ids, np.zeros((5, 1)), ids), ids.astype(float))
    with pytest.raises(ValueError, match="cameras: env gave no frame for camera 'cam'"):
        table.add(np.array([9.0]), {})

    class Other(Brightness):
        requires = Requirements(cameras=("top",))

    with pytest.raises(ValueError, match=r"needs cameras \['top'\] that were not captured"):
        reward_callable(Other(), table)


def test_policies_are_validated() -> None:
    from embodied.compare.simulator import collect_coverage

    with pytest.raises(ValueError, match=r"^policies: unknown policy 'greedy'"):
        collect_coverage("metaworld-reach", ("greedy",), n_transitions=5)
    with pytest.raises(ValueError, match=r"^policies: bad noise level"):
        collect_coverage("metaworld-reach", ("expert:x",), n_transitions=5)
