"""Where the reward path runs on a Ray cluster: inside every EnvRunner, or in one shared, batching actor.

Two placements, chosen per run (`--reward-service`):

- ``in-runner``: every EnvRunner builds the reward model and potential itself and scores its own
  vector step. Cheap models (the env reward, reward programs) belong here. For GPU models each
  runner can be given a fraction of a GPU (`--reward-gpus` is split over the runners).
- ``actor``: one named Ray actor (`RewardService`) holds the models, on a (fractional) GPU when the
  cluster has one, and scores requests from all EnvRunners in large batches: requests wait in an
  asyncio queue and are flushed together when `max_batch` rows have arrived, when every known client
  has a request waiting, or after `max_wait_s`. The queue is bounded (back-pressure: a full queue
  makes callers wait instead of growing memory). The actor is restarted and re-loads its models if it
  dies (`max_restarts`); in-flight calls are retried on the new incarnation; once the restarts are
  spent, callers get a `RewardServiceError` naming the actor.

``auto`` picks ``actor`` when the reward or the potential is a model kind that wants a GPU
(`GPU_KINDS`), else ``in-runner``. Ray hides GPUs from actors that did not ask for one, so a model in
a 0-GPU EnvRunner silently scores on CPU: `plan_placement` asks for GPUs explicitly and warns (never
silently) when the cluster has none, and the device that actually scores is reported at start.

Both placements feed the same `RewardPipeline` inside the EnvRunner (the actor only replaces the
model calls), so rewards, shaping and episode statistics are identical for the same seeds and actions.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import itertools
import os
import shutil
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from embodied.rewards.base import (
    Obs,
    Requirements,
    RewardError,
    RewardModel,
    RewardOutput,
    TransitionBatch,
    batch_size,
    checked,
    frames_concat,
    obs_concat,
)
from embodied.rewards.registry import make_potential, make_reward, parse_spec
from embodied.rewards.shaping import Shaper, as_potential, check_gamma
from embodied.tasks.spec import TaskSpec

ServiceMode = Literal["auto", "in-runner", "actor"]
GPU_KINDS: frozenset[str] = frozenset({"clip", "progress"})
"""Reward spec kinds backed by neural models that should score on a GPU."""
NAMESPACE = "embodied"
"""Ray namespace of the named reward actors (EnvRunners look them up by name)."""

Factory = Callable[[], tuple[RewardModel | None, Any]]
"""Zero-argument builder of (reward model or None, potential or None); runs inside the actor."""


class RewardServiceError(RewardError):
    """The reward service is unreachable, died for good, or did not answer in time."""


class PlacementWarning(UserWarning):
    """A reward model will not score where it asked to (e.g. wants a GPU, the cluster has none)."""


# --------------------------------------------------------------------------------------------------
# What to build: a picklable description of the run's reward path (no files needed on the workers).


RUN_OUTPUTS = frozenset({"checkpoints", "tb", "model.zip", "metrics.json", "config.toml"})
"""Entries of a run folder that are training outputs, not files a reward spec points at."""
MAX_SHIPPED_BYTES = 256 * 2**20


@dataclass(frozen=True)
class RewardSetup:
    """The run's reward model and shaping, rebuildable in any process on any node.

    Specs saved with a run point into the run folder for the files they need (`runs.localize_spec`:
    `programs/`, `subgoals/`, ...). Those files travel with the setup (`files`: path relative to the run
    folder -> bytes) and are written to a private folder on the worker, where each kind's own
    `absolute_spec` points the spec at them; so EnvRunners and the reward actor on other nodes do not need
    the driver's run folder. Files a spec names outside the run folder (e.g. a CLIP checkpoint given by
    path) must exist at that path on every node that builds the model.
    """

    task: TaskSpec
    reward: str = "env"
    shaping: str | None = None
    shaping_scale: float = 1.0
    shaping_gamma: float = 0.99
    files: Mapping[str, bytes] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Any, run_dir: Path | None = None) -> RewardSetup:
        """From a `TrainConfig` whose specs may point into `run_dir` (None: specs used as they are)."""
        gamma = cfg.shaping_gamma if cfg.shaping_gamma is not None else cfg.gamma
        if cfg.shaping:
            check_gamma(gamma, cfg.gamma, "--shaping")
        return cls(cfg.task, cfg.reward, cfg.shaping, cfg.shaping_scale, float(gamma), _run_files(run_dir))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON types, files base64-encoded) for configs that get serialised: RLlib's `env_config`."""
        return {
            "task": self.task.model_dump(mode="json"),
            "reward": self.reward,
            "shaping": self.shaping,
            "shaping_scale": self.shaping_scale,
            "shaping_gamma": self.shaping_gamma,
            "files": {k: base64.b64encode(v).decode("ascii") for k, v in self.files.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RewardSetup:
        return cls(
            TaskSpec.model_validate(data["task"]),
            data["reward"],
            data.get("shaping"),
            float(data["shaping_scale"]),
            float(data["shaping_gamma"]),
            {k: base64.b64decode(v) for k, v in (data.get("files") or {}).items()},
        )

    @property
    def kinds(self) -> tuple[str, ...]:
        """Spec kinds of the reward and the potential (e.g. ("program", "clip"))."""
        return tuple(parse_spec(s)[0] for s in (self.reward, self.shaping) if s)

    @property
    def wants_gpu(self) -> bool:
        return any(k in GPU_KINDS for k in self.kinds)

    def _resolve(self, spec: str) -> str:
        if not self.files:
            return spec
        from embodied.train.runs import absolute_spec

        return absolute_spec(spec, _materialise(self.files)) or spec

    def models(self) -> tuple[RewardModel | None, RewardModel | None]:
        """Build (reward model or None for the env reward, potential model or None)."""
        reward = None if self.reward == "env" else make_reward(self._resolve(self.reward), self.task)
        potential = make_potential(self._resolve(self.shaping), self.task) if self.shaping else None
        return reward, potential

    def shaper(self, potential: Any) -> Shaper | None:
        """Potential-based shaping with the run's γ and scale (None without a potential)."""
        return None if potential is None else Shaper(potential, self.shaping_gamma, self.shaping_scale)

    def __call__(self) -> tuple[RewardModel | None, RewardModel | None]:
        """`RewardSetup` is itself a `Factory` for `RewardService`."""
        return self.models()


def _run_files(run_dir: Path | None) -> dict[str, bytes]:
    """Every file of a run folder except training outputs: what localized specs point at."""
    if run_dir is None or not run_dir.is_dir():
        return {}
    files: dict[str, bytes] = {}
    for entry in sorted(run_dir.iterdir()):
        if entry.name in RUN_OUTPUTS or entry.name.startswith("."):
            continue
        for path in [entry] if entry.is_file() else sorted(entry.rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                files[str(path.relative_to(run_dir))] = path.read_bytes()
    size = sum(len(v) for v in files.values())
    if size > MAX_SHIPPED_BYTES:
        raise RewardError(
            f"{run_dir}: the reward files to ship to the workers take {size / 2**20:.0f} MiB "
            f"(> {MAX_SHIPPED_BYTES / 2**20:.0f}); point the spec at a path that exists on every node instead"
        )
    return files


_MATERIALISED: dict[str, Path] = {}


def _materialise(files: Mapping[str, bytes]) -> Path:
    """Write shipped run files into a private folder of this process (same content -> same folder)."""
    import hashlib

    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(rel.encode() + b"\0" + files[rel] + b"\0")
    key = digest.hexdigest()[:16]
    if key not in _MATERIALISED:
        root = Path(tempfile.mkdtemp(prefix="embodied-run-files-"))
        atexit.register(shutil.rmtree, root, True)
        for rel, data in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        _MATERIALISED[key] = root
    return _MATERIALISED[key]


# --------------------------------------------------------------------------------------------------
# Where to run it.


@dataclass(frozen=True)
class Placement:
    """The chosen placement and the GPUs it asks Ray for.

    Attributes:
        mode: "in-runner" or "actor".
        actor_gpus: GPUs requested by the reward actor (0 on CPU).
        runner_gpus: GPUs requested by each EnvRunner for in-runner scoring (0 on CPU).
        reason: why this placement was chosen (printed at start).
        warnings: explicit fall-backs (e.g. "wants a GPU, the cluster has none").
    """

    mode: Literal["in-runner", "actor"]
    actor_gpus: float = 0.0
    runner_gpus: float = 0.0
    reason: str = ""
    warnings: tuple[str, ...] = ()


def plan_placement(
    mode: ServiceMode,
    setup: RewardSetup,
    cluster_gpus: float,
    env_runners: int,
    learner_gpus: float = 0.0,
    reward_gpus: float | None = None,
) -> Placement:
    """Decide where the reward path scores and how many GPUs to request; warn on every fall-back.

    Args:
        mode: "auto" (actor for `GPU_KINDS`, else in-runner), "in-runner" or "actor".
        setup: the run's reward path (its spec kinds decide whether it wants a GPU).
        cluster_gpus: GPUs in the Ray cluster (`ray.cluster_resources()["GPU"]`).
        env_runners: number of EnvRunners (in-runner GPUs are split over them).
        learner_gpus: GPUs the learners take (num_learners × gpus_per_learner).
        reward_gpus: GPUs for reward scoring in total; None = auto (up to one GPU for GPU kinds).
    """
    if mode not in ("auto", "in-runner", "actor"):
        raise RewardServiceError(f"--reward-service must be auto, in-runner or actor, got {mode!r}")
    heavy = setup.wants_gpu
    chosen: Literal["in-runner", "actor"]
    if mode == "auto":
        chosen = "actor" if heavy else "in-runner"
        reason = (
            f"auto: {'/'.join(k for k in setup.kinds if k in GPU_KINDS)} is a GPU model, so one shared actor batches it"
            if heavy
            else "auto: the reward path is cheap, so every EnvRunner scores its own envs"
        )
    else:
        chosen, reason = mode, f"--reward-service {mode}"
    free = max(cluster_gpus - learner_gpus, 0.0)
    want = float(reward_gpus) if reward_gpus is not None else (min(1.0, free) if heavy else 0.0)
    notes: list[str] = []
    what = " and ".join(s for s in (setup.reward if setup.reward != "env" else None, setup.shaping) if s) or "env"
    if heavy and cluster_gpus <= 0:
        notes.append(f"reward model {what!r} wants a GPU but the Ray cluster has none: scoring on CPU (slow)")
        want = 0.0
    elif want > 0 and cluster_gpus <= 0:
        notes.append(f"--reward-gpus {want:g} requested but the Ray cluster has no GPU: scoring on CPU")
        want = 0.0
    elif heavy and want <= 0 and reward_gpus is None:
        notes.append(
            f"reward model {what!r} wants a GPU but the learners take all {cluster_gpus:g}: scoring on CPU; "
            "lower --gpus-per-learner (e.g. 0.5) to share the GPU"
        )
    elif want > free:
        notes.append(f"--reward-gpus {want:g} exceeds the {free:g} GPU(s) the learners leave free: using {free:g}")
        want = free
    if chosen == "actor":
        gpus = float(int(want)) if want > 1 else want  # Ray: fractions only below one GPU
        return Placement("actor", actor_gpus=gpus, reason=reason, warnings=tuple(notes))
    per_runner = want / max(env_runners, 1)
    per_runner = float(int(per_runner)) if per_runner > 1 else per_runner
    return Placement("in-runner", runner_gpus=per_runner, reason=reason, warnings=tuple(notes))


def scoring_device() -> str:
    """The torch device this process can score on: "cuda:0" when Ray gave it a GPU torch can see, else "cpu".

    A GPU that Ray assigned but torch cannot use (CPU-only torch build, driver mismatch) is warned about.
    """
    gpu_ids: Sequence[Any] = []
    try:
        import ray

        if ray.is_initialized():
            gpu_ids = ray.get_gpu_ids()
    except ImportError:  # pragma: no cover - ray is a dependency
        pass
    if not gpu_ids:
        return "cpu"
    import torch  # only when a GPU was assigned: CPU-only reward programs never import torch

    if torch.cuda.is_available():
        return "cuda:0"
    warnings.warn(
        f"Ray assigned GPU(s) {list(gpu_ids)} but torch cannot use CUDA here: scoring on CPU",
        PlacementWarning,
        stacklevel=2,
    )
    return "cpu"


def place(part: Any, device: str) -> str:
    """Move a model to `device` when it supports `.to(device)`; returns the device it reports."""
    if part is None:
        return "-"
    mover = getattr(part, "to", None)
    if device != "cpu" and callable(mover):
        result = mover(device)
        part = result if result is not None else part
    return str(getattr(part, "device", device))


def place_parts(reward: Any, potential: Any, device: str) -> dict[str, Any]:
    """Move the reward model and potential to `device`; returns what scores where (start-up report)."""
    return {
        "device": device,
        "reward": getattr(reward, "name", None),
        "potential": getattr(potential, "name", None),
        "reward_device": place(reward, device),
        "potential_device": place(potential, device),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        "pid": os.getpid(),
    }


# --------------------------------------------------------------------------------------------------
# Batching helpers.


def concat_batches(batches: Sequence[TransitionBatch]) -> TransitionBatch:
    """One `TransitionBatch` holding the rows of `batches` in order."""
    if len(batches) == 1:
        return batches[0]
    first = batches[0]
    obs, next_obs = first.obs, first.next_obs
    frames = first.frames
    for b in batches[1:]:
        obs, next_obs = obs_concat(obs, b.obs), obs_concat(next_obs, b.next_obs)
        frames = frames_concat(frames, b.frames)
    return TransitionBatch(
        obs=obs,
        action=np.concatenate([np.asarray(b.action) for b in batches]),
        next_obs=next_obs,
        terminated=np.concatenate([np.asarray(b.terminated, dtype=bool) for b in batches]),
        truncated=np.concatenate([np.asarray(b.truncated, dtype=bool) for b in batches]),
        env_reward=np.concatenate([np.asarray(b.env_reward, dtype=np.float64) for b in batches]),
        infos=[info for b in batches for info in b.infos],
        frames=frames,
    )


def split_output(out: RewardOutput, sizes: Sequence[int]) -> list[RewardOutput]:
    """Undo `concat_batches` on a model's output."""
    parts, start = [], 0
    for n in sizes:
        comps = {k: v[start : start + n] for k, v in out.components.items()}
        parts.append(RewardOutput(out.reward[start : start + n], comps))
        start += n
    return parts


def _spec_of(part: Any) -> dict[str, Any] | None:
    if part is None:
        return None
    req = getattr(part, "requires", Requirements())
    return {"name": part.name, "requires": req, "state_only": bool(getattr(part, "state_only", True))}


# --------------------------------------------------------------------------------------------------
# The actor.


class RewardService:
    """A Ray actor that holds the reward model and potential and scores batched requests.

    Start it with `start_service`; the class is plain Python so it can be tested without Ray.

    Args:
        factory: builds (reward model or None, potential or None) inside the actor (e.g. a `RewardSetup`).
        max_batch: flush once this many rows (transitions or states) are waiting.
        max_wait_s: flush at the latest this long after the first request of a batch arrived.
        max_queue: requests waiting per kind before callers are made to wait (back-pressure).
        expected_clients: flush as soon as this many requests are waiting (each EnvRunner has at most
            one request in flight, so waiting longer cannot add rows); None disables the rule.
    """

    def __init__(
        self,
        factory: Factory,
        max_batch: int = 1024,
        max_wait_s: float = 0.005,
        max_queue: int = 256,
        expected_clients: int | None = None,
    ) -> None:
        t0 = time.perf_counter()
        reward, potential = factory()
        self.device = scoring_device()
        self.info_parts = place_parts(reward, potential, self.device)
        self.reward = reward
        self.potential = as_potential(potential) if potential is not None else None
        self._reward_spec, self._potential_spec = _spec_of(reward), _spec_of(self.potential)
        self.max_batch, self.max_wait_s, self.max_queue = int(max_batch), float(max_wait_s), int(max_queue)
        self.expected_clients = expected_clients
        self.load_s = time.perf_counter() - t0
        self.started = time.time()
        self.reconstructed = False
        self.node_ip = ""
        try:
            import ray

            if ray.is_initialized():
                ctx = ray.get_runtime_context()
                self.reconstructed = bool(ctx.was_current_actor_reconstructed)
                self.node_ip = ray.util.get_node_ip_address()
        except Exception:  # outside an actor: nothing to report
            pass
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reward-model")
        self._queues: dict[str, asyncio.Queue] = {}
        self._workers: dict[str, asyncio.Task] = {}
        self._stats: dict[str, Any] = {
            "flushes": 0,
            "requests": 0,
            "rows": 0,
            "max_rows": 0,
            "busy_s": 0.0,
            "blocked_puts": 0,
            "requests_per_flush": Counter(),
        }

    # -- public methods (Ray remote calls) ---------------------------------------------------------

    async def score(self, batch: TransitionBatch) -> RewardOutput:
        """Reward model output for `batch` (rows in order), computed in a shared batch."""
        if self.reward is None:
            raise RewardServiceError("this reward service holds no reward model (the run uses the env reward)")
        return await self._submit("reward", batch, len(batch))

    async def phi(self, obs: Obs, frames: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Unscaled potential Φ for a batch of states, float [N] (the client-side `Shaper` scales it)."""
        if self.potential is None:
            raise RewardServiceError("this reward service holds no potential (the run has no --shaping)")
        return await self._submit("phi", (obs, frames), batch_size(obs))

    def info(self) -> dict[str, Any]:
        """Parts, device, node, pid, whether this incarnation is a restart, model load time."""
        return {
            **self.info_parts,
            "reward_spec": self._reward_spec,
            "potential_spec": self._potential_spec,
            "node_ip": self.node_ip,
            "reconstructed": self.reconstructed,
            "load_s": round(self.load_s, 3),
            "started": self.started,
            "max_batch": self.max_batch,
            "max_wait_s": self.max_wait_s,
        }

    def stats(self) -> dict[str, Any]:
        """Batching statistics of this incarnation: flushes, requests and rows per flush, rows/s while busy."""
        s = self._stats
        flushes = max(s["flushes"], 1)
        return {
            "flushes": s["flushes"],
            "requests": s["requests"],
            "rows": s["rows"],
            "mean_requests_per_flush": s["requests"] / flushes,
            "mean_rows_per_flush": s["rows"] / flushes,
            "max_requests_per_flush": max(s["requests_per_flush"], default=0),
            "max_rows_per_flush": s["max_rows"],
            "requests_per_flush": {str(k): v for k, v in sorted(s["requests_per_flush"].items())},
            "busy_s": round(s["busy_s"], 4),
            "blocked_puts": s["blocked_puts"],
            "rows_per_busy_s": s["rows"] / s["busy_s"] if s["busy_s"] > 0 else 0.0,
        }

    def ping(self) -> tuple[int, float]:
        """(pid, start time) of this incarnation: a change means the actor was restarted."""
        return os.getpid(), self.started

    # -- batching ------------------------------------------------------------------------------------

    async def _submit(self, kind: str, payload: Any, rows: int) -> Any:
        if kind not in self._queues:
            self._queues[kind] = asyncio.Queue(maxsize=self.max_queue)
            self._workers[kind] = asyncio.get_running_loop().create_task(self._drain(kind))
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        queue = self._queues[kind]
        if queue.full():
            self._stats["blocked_puts"] += 1
        await queue.put((payload, rows, fut))  # waits while the queue is full: back-pressure
        return await fut

    async def _drain(self, kind: str) -> None:
        queue = self._queues[kind]
        loop = asyncio.get_running_loop()
        while True:
            items = [await queue.get()]
            rows = items[0][1]
            deadline = loop.time() + self.max_wait_s
            while rows < self.max_batch and (self.expected_clients is None or len(items) < self.expected_clients):
                if queue.empty():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(queue.get(), remaining)
                    except TimeoutError:
                        break
                else:
                    item = queue.get_nowait()
                items.append(item)
                rows += item[1]
            await self._flush(kind, items, rows)

    async def _flush(self, kind: str, items: list[tuple[Any, int, asyncio.Future]], rows: int) -> None:
        t0 = time.perf_counter()
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._compute, kind, [p for p, _, _ in items], [n for _, n, _ in items]
            )
        except Exception as exc:
            for _, _, fut in items:
                if not fut.done():
                    fut.set_exception(exc)
            return
        finally:
            s = self._stats
            s["flushes"] += 1
            s["requests"] += len(items)
            s["rows"] += rows
            s["max_rows"] = max(s["max_rows"], rows)
            s["busy_s"] += time.perf_counter() - t0
            s["requests_per_flush"][len(items)] += 1
        for (_, _, fut), result in zip(items, results, strict=True):
            if not fut.done():
                fut.set_result(result)

    def _compute(self, kind: str, payloads: list[Any], sizes: list[int]) -> list[Any]:
        """One model call for all payloads (runs in the single model thread)."""
        n = sum(sizes)
        if kind == "reward":
            merged = concat_batches(payloads)
            out = checked(self.reward.compute_reward(merged), n, self.reward.name)
            return split_output(out, sizes)
        obs, frames = payloads[0]
        for o, f in payloads[1:]:
            obs, frames = obs_concat(obs, o), frames_concat(frames, f)
        values = np.asarray(self.potential(obs, frames), dtype=np.float64).reshape(-1)
        if values.shape != (n,):
            raise RewardError(f"potential {self.potential.name!r} returned shape {values.shape}, expected ({n},)")
        bounds = np.cumsum([0, *sizes])
        return [values[a:b] for a, b in itertools.pairwise(bounds)]


@dataclass
class ServiceHandle:
    """The driver's view of a started reward service."""

    name: str
    namespace: str
    actor: Any
    gpus: float
    info: dict[str, Any]
    timeout_s: float = 120.0
    restarts_seen: int = 0
    _incarnation: tuple[int, float] | None = None

    def client(self) -> ServiceClient:
        return ServiceClient(self.name, self.namespace, self.timeout_s, self.actor)

    def check(self) -> dict[str, Any]:
        """Raise `RewardServiceError` if the actor is gone; notice (and count) restarts."""
        incarnation = self.client().call("ping")
        if self._incarnation is not None and tuple(incarnation) != tuple(self._incarnation):
            self.restarts_seen += 1
            self.info = self.client().call("info")
            warnings.warn(
                f"reward service {self.name!r} was restarted (pid {self._incarnation[0]} -> {incarnation[0]}); "
                f"models re-loaded in {self.info['load_s']:.1f} s on {self.info['device']}",
                PlacementWarning,
                stacklevel=2,
            )
        self._incarnation = tuple(incarnation)
        return self.info

    def stats(self) -> dict[str, Any]:
        return self.client().call("stats")

    def describe(self) -> str:
        where = f" on node {self.info['node_ip']}" if self.info.get("node_ip") else ""
        gpu = f", {self.gpus:g} GPU" if self.gpus else ""
        return f"shared actor {self.name!r}{where}{gpu}, scoring on {self.info['device']}"

    def stop(self) -> None:
        import ray

        try:
            ray.kill(self.actor, no_restart=True)
        except Exception:  # already gone
            pass


def start_service(
    factory: Factory,
    name: str,
    gpus: float = 0.0,
    *,
    max_batch: int = 1024,
    max_wait_s: float = 0.005,
    max_queue: int = 256,
    expected_clients: int | None = None,
    max_restarts: int = 3,
    timeout_s: float = 120.0,
    namespace: str = NAMESPACE,
) -> ServiceHandle:
    """Start the named reward actor and wait until its models are loaded.

    Args:
        factory: builds (reward model or None, potential or None) inside the actor; a `RewardSetup`
            or any picklable zero-argument callable.
        name: actor name; EnvRunners find it with `ray.get_actor(name, namespace)`.
        gpus: GPUs to request (fractional below one). 0 scores on CPU.
        max_batch, max_wait_s, max_queue, expected_clients: batching (see `RewardService`).
        max_restarts: restarts (with the models re-loaded) before callers get `RewardServiceError`.
        timeout_s: how long a caller waits for one answer (covers a restart and re-load).
    """
    import ray

    # 0 CPUs: the actor mostly waits on its queue; scoring runs on its GPU (or briefly on a CPU).
    actor_cls = ray.remote(RewardService).options(
        name=name,
        namespace=namespace,
        num_cpus=0,
        num_gpus=gpus,
        max_restarts=max_restarts,
        max_task_retries=max_restarts,
        max_concurrency=max(4 * max_queue, 64),
        get_if_exists=False,
    )
    try:
        actor = actor_cls.remote(factory, max_batch, max_wait_s, max_queue, expected_clients)
    except ValueError as exc:  # e.g. the name is taken
        raise RewardServiceError(f"cannot start reward service {name!r}: {exc}") from None
    handle = ServiceHandle(name, namespace, actor, gpus, {}, timeout_s)
    try:
        handle.info = ray.get(actor.info.remote(), timeout=timeout_s)
    except ray.exceptions.RayActorError as exc:
        raise RewardServiceError(f"reward service {name!r} failed to start: {_cause(exc)}") from None
    except ray.exceptions.GetTimeoutError:
        raise RewardServiceError(
            f"reward service {name!r} did not start within {timeout_s:g} s (no node has {gpus:g} free GPU?)"
        ) from None
    handle.check()
    return handle


def _cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    lines = [ln for ln in text if ln.strip() and not ln.startswith(" ")]
    return (lines[-1] if lines else type(exc).__name__)[:300]


class ServiceClient:
    """Synchronous calls to the reward actor with one-line errors (used inside EnvRunners)."""

    def __init__(self, name: str, namespace: str = NAMESPACE, timeout_s: float = 120.0, actor: Any = None) -> None:
        import ray

        self.name, self.namespace, self.timeout_s = name, namespace, timeout_s
        if actor is None:
            try:
                actor = ray.get_actor(name, namespace=namespace)
            except ValueError:
                raise RewardServiceError(
                    f"reward service {name!r} is not running in namespace {namespace!r} (did the driver stop?)"
                ) from None
        self.actor = actor

    def call(self, method: str, *args: Any) -> Any:
        import ray

        try:
            return ray.get(getattr(self.actor, method).remote(*args), timeout=self.timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise RewardServiceError(
                f"reward service {self.name!r} did not answer {method}() within {self.timeout_s:g} s "
                "(overloaded, or restarting and re-loading its models)"
            ) from None
        except ray.exceptions.RayActorError as exc:
            raise RewardServiceError(
                f"reward service {self.name!r} died and was not restarted (restarts used up): {_cause(exc)}"
            ) from None
        except ray.exceptions.RayTaskError as exc:  # the model raised: hand its own error to the caller
            cause = getattr(exc, "cause", None)
            if isinstance(cause, RewardError):
                raise cause from None
            raise RewardServiceError(
                f"reward service {self.name!r} failed in {method}(): {type(cause).__name__}: {cause}"
            ) from None


class RemoteReward(RewardModel):
    """A `RewardModel` whose `compute_reward` is answered by the reward service."""

    def __init__(self, client: ServiceClient, spec: Mapping[str, Any]) -> None:
        self.client = client
        self.name = str(spec["name"])
        self.requires = spec["requires"]
        self.state_only = bool(spec["state_only"])

    def compute_reward(self, batch: TransitionBatch) -> RewardOutput:
        return self.client.call("score", batch)

    def potential(self, obs: Obs, frames: dict[str, np.ndarray] | None = None) -> np.ndarray:
        raise RewardError(f"remote reward {self.name!r} is not served as a potential; use --shaping for that")


class RemotePotential:
    """A batched potential Φ answered by the reward service (satisfies the `Potential` protocol)."""

    def __init__(self, client: ServiceClient, spec: Mapping[str, Any]) -> None:
        self.client = client
        self.name = str(spec["name"])
        self.requires = spec["requires"]

    def __call__(self, obs: Obs, frames: dict[str, np.ndarray] | None = None) -> np.ndarray:
        if batch_size(obs) == 0:
            return np.zeros(0)
        return self.client.call("phi", obs, frames)


def served_parts(
    setup: RewardSetup, name: str, namespace: str = NAMESPACE, timeout_s: float = 120.0
) -> tuple[RewardModel | None, Shaper | None, dict[str, Any]]:
    """Client-side (reward, shaper, service info) for an EnvRunner whose reward path is served."""
    client = ServiceClient(name, namespace, timeout_s)
    info = client.call("info")
    reward = RemoteReward(client, info["reward_spec"]) if info["reward_spec"] else None
    potential = RemotePotential(client, info["potential_spec"]) if info["potential_spec"] else None
    return reward, setup.shaper(potential), info


__all__ = [
    "GPU_KINDS",
    "NAMESPACE",
    "Placement",
    "PlacementWarning",
    "RemotePotential",
    "RemoteReward",
    "RewardService",
    "RewardServiceError",
    "RewardSetup",
    "ServiceClient",
    "ServiceHandle",
    "concat_batches",
    "place_parts",
    "plan_placement",
    "scoring_device",
    "served_parts",
    "split_output",
    "start_service",
]
