"""The shared reward service on a local two-node Ray cluster: batching across concurrent clients,
back-pressure, restart with re-load, a clear error once restarts are spent, served rewards equal to the
SB3 adapter's, and GPU placement with explicit fall-backs."""

from __future__ import annotations

import json
import logging
import re
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from embodied.rewards.base import RewardError, RewardModel, RewardOutput, TransitionBatch
from embodied.tasks.spec import load_task
from embodied.train.reward_service import (
    PlacementWarning,
    RewardServiceError,
    RewardSetup,
    ServiceClient,
    concat_batches,
    plan_placement,
    split_output,
    start_service,
)

REPO = Path(__file__).resolve().parents[2]
CHAIN = REPO / "tests" / "data" / "chain.toml"


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """Two Ray nodes on this machine, 1 CPU each; the test process is connected as the driver."""
    import ray
    from ray import cloudpickle
    from ray.cluster_utils import Cluster

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors need this module's test models
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    ray.init(address=c.address, logging_level=logging.ERROR, log_to_driver=False)
    try:
        yield c.address
    finally:
        ray.shutdown()
        c.shutdown()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


class RowSum(RewardModel):
    """reward = Σ next_obs; records nothing (the service's own statistics are asserted)."""

    name = "rowsum"
    state_only = True

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    def compute_reward(self, batch: TransitionBatch) -> RewardOutput:
        time.sleep(self.delay_s)  # stands in for a GPU forward pass
        total = np.asarray(batch.next_obs, dtype=np.float64).sum(axis=1)
        return RewardOutput(total, {"double": 2 * total})

    def potential(self, obs, frames=None) -> np.ndarray:
        return np.asarray(obs, dtype=np.float64).sum(axis=1)


class Boom(RewardModel):
    name = "boom"

    def compute_reward(self, batch: TransitionBatch) -> RewardOutput:
        raise RewardError("boom: the model rejected this batch")


def rowsum_factory(delay_s: float = 0.0):
    return lambda: (RowSum(delay_s), RowSum(0.0))


def batch_of(values: np.ndarray) -> TransitionBatch:
    n = len(values)
    return TransitionBatch(
        obs=np.zeros((n, 2)),
        action=np.zeros((n, 1)),
        next_obs=np.asarray(values, dtype=np.float64),
        terminated=np.zeros(n, dtype=bool),
        truncated=np.zeros(n, dtype=bool),
        env_reward=np.zeros(n),
        infos=[{} for _ in range(n)],
    )


def run_clients(client: ServiceClient, clients: int, requests: int, rows: int) -> list[list[RewardOutput]]:
    """`clients` threads, each sending `requests` sequential requests of `rows` rows (distinct values)."""
    results: list[list[RewardOutput]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients)

    def work(k: int) -> None:
        try:
            barrier.wait()
            for j in range(requests):
                values = np.full((rows, 2), 100.0 * k + j)
                results[k].append(client.call("score", batch_of(values)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    return results


def test_concat_and_split_round_trip() -> None:
    a, b = batch_of(np.ones((2, 2))), batch_of(np.full((3, 2), 2.0))
    merged = concat_batches([a, b])
    assert len(merged) == 5 and len(merged.infos) == 5
    out = RowSum().compute_reward(merged)
    first, second = split_output(out, [2, 3])
    assert list(first.reward) == [2.0, 2.0] and list(second.reward) == [4.0, 4.0, 4.0]
    assert list(second.components["double"]) == [8.0, 8.0, 8.0]


@pytest.mark.parametrize("clients", [2, 4])
def test_service_batches_concurrent_clients(cluster: str, clients: int) -> None:
    """Every flush holds one request from each client: the model sees batches of clients × rows."""
    handle = start_service(rowsum_factory(), f"batch-{clients}", expected_clients=clients, max_wait_s=2.0)
    try:
        results = run_clients(handle.client(), clients, requests=5, rows=3)
        for k, outs in enumerate(results):  # each client got its own rows back, in order
            assert [float(o.reward[0]) for o in outs] == [2 * (100.0 * k + j) for j in range(5)]
            assert all(o.reward.shape == (3,) for o in outs)
        stats = handle.stats()
        assert stats["requests"] == 5 * clients and stats["rows"] == 15 * clients
        assert stats["flushes"] == 5 and stats["requests_per_flush"] == {str(clients): 5}
        assert stats["mean_rows_per_flush"] == 3 * clients
        assert handle.info["device"] == "cpu" and handle.info["reward"] == "rowsum"
    finally:
        handle.stop()


def test_back_pressure_makes_callers_wait_and_loses_nothing(cluster: str) -> None:
    """A slow model and a queue of one: callers block on the full queue, every answer is still right."""
    handle = start_service(rowsum_factory(delay_s=0.1), "slow", max_queue=1, max_wait_s=0.0, max_batch=1)
    try:
        results = run_clients(handle.client(), clients=4, requests=3, rows=1)
        assert [[float(o.reward[0]) for o in outs] for outs in results] == [
            [2 * (100.0 * k + j) for j in range(3)] for k in range(4)
        ]
        stats = handle.stats()
        assert stats["requests"] == 12 and stats["max_rows_per_flush"] == 1
        assert stats["blocked_puts"] > 0
    finally:
        handle.stop()


def test_restart_reloads_the_model_then_a_clear_error(cluster: str) -> None:
    import ray

    handle = start_service(rowsum_factory(), "phoenix", max_restarts=1, timeout_s=60)
    client = handle.client()
    first_pid = handle.info["pid"]
    assert handle.info["reconstructed"] is False
    ray.kill(handle.actor, no_restart=False)  # dies; Ray restarts it and re-runs the constructor
    out = client.call("score", batch_of(np.ones((2, 2))))  # retried on the new incarnation
    assert list(out.reward) == [2.0, 2.0]
    with pytest.warns(PlacementWarning, match="was restarted"):
        info = handle.check()
    assert info["reconstructed"] is True and info["pid"] != first_pid and handle.restarts_seen == 1
    ray.kill(handle.actor, no_restart=False)  # the one restart is spent
    with pytest.raises(RewardServiceError, match=r"reward service 'phoenix' died and was not restarted"):
        for _ in range(50):  # the death is noticed within a few calls
            client.call("score", batch_of(np.ones((1, 2))))
            time.sleep(0.1)


def test_model_errors_reach_the_caller_and_missing_parts_are_named(cluster: str) -> None:
    handle = start_service(lambda: (Boom(), None), "boom")
    try:
        with pytest.raises(RewardError, match="boom: the model rejected this batch"):
            handle.client().call("score", batch_of(np.ones((1, 2))))
        with pytest.raises(RewardServiceError, match="holds no potential"):
            handle.client().call("phi", np.ones((1, 2)))
    finally:
        handle.stop()
    with pytest.raises(RewardServiceError, match="'nobody' is not running"):
        ServiceClient("nobody")


def test_served_rewards_equal_in_runner_and_sb3(cluster: str, tmp_path: Path, reach_program: Path) -> None:
    """The same shaped rewards whether the EnvRunner scores itself, asks the shared actor, or SB3 scores."""
    from embodied.cli.main import build_config
    from embodied.train import rllib, sb3

    text = re.sub(
        r"max_episode_steps = \d+", "max_episode_steps = 20", (REPO / "envs/metaworld-reach.toml").read_text()
    )
    task = tmp_path / "reach20.toml"
    task.write_text(text.replace('name = "metaworld-reach"', 'name = "reach20"'))
    spec = f"program:{reach_program}"
    cfg = build_config(str(task), spec, spec, 1.0, "ppo", 100, 3, 2, None, 100, "srv", backend="rllib")
    setup = RewardSetup.from_config(cfg)
    handle = start_service(setup, "reach-srv", expected_clients=1)
    try:
        served = rllib.build_vector_env(setup, 2, cfg.seed, {"name": handle.name, "namespace": handle.namespace})
        local = rllib.build_vector_env(setup, 2, cfg.seed)
        venv = sb3.build_vec_env(cfg)
        actions = np.random.default_rng(1).uniform(-1, 1, size=(45, 2, 4)).astype(np.float32)
        served.reset(seed=cfg.seed)
        local.reset(seed=cfg.seed)
        venv.reset()
        rewards: dict[str, list] = {"served": [], "local": [], "sb3": []}
        for t in range(45):
            for key, env in (("served", served), ("local", local)):
                _, r, term, trunc, _ = env.step(actions[t])
                rewards[key].append(r)
                if (term | trunc).any():
                    env.step(actions[t])  # the autoreset step
            venv.step_async(actions[t])
            rewards["sb3"].append(venv.step_wait()[1])
        np.testing.assert_array_equal(np.array(rewards["served"]), np.array(rewards["local"]))
        np.testing.assert_allclose(np.array(rewards["served"]), np.array(rewards["sb3"]), rtol=0, atol=1e-6)
        stats = handle.stats()
        assert stats["requests"] > 0 and stats["rows"] >= 2 * 45
        served.close(), local.close(), venv.close()
    finally:
        handle.stop()


def test_setup_ships_the_run_folders_reward_files(tmp_path: Path) -> None:
    """Specs localized into a run folder rebuild on a worker without it: files travel with the setup."""
    from embodied.cli.main import build_config

    run = tmp_path / "run"
    (run / "programs").mkdir(parents=True)
    (run / "programs" / "p.py").write_text("def compute_reward(view, action):\n    return float(view.position), {}\n")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "big.pkl").write_bytes(b"x" * 100)
    (run / "metrics.json").write_text("{}")
    cfg = build_config(
        str(CHAIN), "program:programs/p.py", "program:programs/p.py", 2.0, "ppo", 10, 0, 1, None, 10, "r"
    )
    setup = RewardSetup.from_config(cfg, run)
    assert set(setup.files) == {"programs/p.py"}  # training outputs stay behind
    shipped = RewardSetup.from_dict(json.loads(json.dumps(setup.to_dict())))  # as RLlib's env_config
    shutil.rmtree(run)  # the worker never sees the driver's folder
    reward, potential = shipped.models()
    assert str(run) not in reward.name and Path(reward.name.removeprefix("program:")).is_file()
    assert list(potential.potential(np.array([[3.0, 1.0]]))) == [3.0]
    assert shipped.shaper(potential).phi(np.array([[3.0, 1.0]]))[0] == 6.0  # scale 2


def test_placement_asks_for_gpus_and_warns_on_fallback() -> None:
    task = load_task(CHAIN)
    clip = RewardSetup(task, reward="env", shaping="clip:goal=reach")
    cheap = RewardSetup(task, reward="program:x.py")

    p = plan_placement("auto", clip, cluster_gpus=1, env_runners=8)
    assert (p.mode, p.actor_gpus, p.warnings) == ("actor", 1.0, ())
    p = plan_placement("auto", clip, cluster_gpus=1, env_runners=8, learner_gpus=0.5)
    assert (p.mode, p.actor_gpus) == ("actor", 0.5)
    p = plan_placement("in-runner", clip, cluster_gpus=1, env_runners=4)
    assert (p.mode, p.runner_gpus, p.actor_gpus) == ("in-runner", 0.25, 0.0)
    p = plan_placement("auto", cheap, cluster_gpus=1, env_runners=2)
    assert (p.mode, p.runner_gpus, p.warnings) == ("in-runner", 0.0, ())

    p = plan_placement("auto", clip, cluster_gpus=0, env_runners=2)  # CPU-only cluster: explicit fall-back
    assert (p.mode, p.actor_gpus) == ("actor", 0.0)
    assert p.warnings == (
        "reward model 'clip:goal=reach' wants a GPU but the Ray cluster has none: scoring on CPU (slow)",
    )
    p = plan_placement("auto", clip, cluster_gpus=1, env_runners=2, learner_gpus=1)
    assert p.actor_gpus == 0.0 and "lower --gpus-per-learner" in p.warnings[0]
    p = plan_placement("actor", cheap, cluster_gpus=1, env_runners=2, reward_gpus=2)
    assert p.actor_gpus == 1.0 and p.warnings == (
        "--reward-gpus 2 exceeds the 1 GPU(s) the learners leave free: using 1",
    )
    with pytest.raises(RewardServiceError, match="--reward-service must be"):
        plan_placement("gpu", cheap, 0, 1)  # type: ignore[arg-type]
