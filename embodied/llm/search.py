"""Eureka-style reward search: sample K programs per iteration, validate, train briefly, keep the best,
feed back reward reflection and the errors of failed samples; re-evaluate the winner on ≥ 3 seeds.

Everything goes under ``reward_models/<task>/search-<id>/``::

    search.json                 config, progress, best so far, time split (rewritten atomically)
    iter-00/prompt.json         messages + prompt hash
    iter-00/sample-00/response.json     completion (or the LLM error)
    iter-00/sample-00/program.py        extracted code (when there was any)
    iter-00/sample-00/validation.json   static + dry-run log, or the rejection
    iter-00/sample-00/train.json        fitness and per-component training statistics
    iter-00/summary.json        fitness of every sample, failures fed to the next prompt (iteration done)
    best.py, best.json          the winner with metadata and its re-evaluation
    fitness.json                best and all fitness values per iteration

A search resumes from that folder: finished iterations are read back, an interrupted one reuses
every response, validation and training result already on disk, so nothing paid for is lost.

Training runs through a `Trainer`: ``trainer(program_path, steps, seed) -> TrainResult``.
`SB3Trainer` is the real one (Stable-Baselines3 via `embodied.train`); tests inject fast fakes.
Parallel training uses a process pool (spawn); ``executor="ray"`` uses Ray tasks when Ray is installed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from embodied.llm.client import Completion, LLMClient, LLMError
from embodied.llm.prompts import ComponentStats, prompt_hash, reflection_messages, reflection_text

# --------------------------------------------------------------------------------------------------
# training results and trainers


@dataclass
class TrainResult:
    """What one short training run of a program says about it.

    Attributes:
        success_rate: fitness, success rate on held-out evaluation seeds, in [0, 1].
        components: per-component statistics over training (means per rollout, in order).
        success_curve: success rate per rollout during training.
        env_return: mean environment return on the evaluation episodes (tie-breaker), if known.
        run_dir: the training run folder, if one was written.
        wall_s: wall time of the training and evaluation.
    """

    success_rate: float
    components: list[ComponentStats] = field(default_factory=list)
    success_curve: list[float] = field(default_factory=list)
    env_return: float | None = None
    run_dir: str | None = None
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["components"] = [
            {"name": c.name, "values": list(c.values), "corr_success": c.corr_success} for c in self.components
        ]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainResult:
        comps = [ComponentStats(c["name"], tuple(c["values"]), c.get("corr_success")) for c in d.get("components", [])]
        return cls(
            success_rate=float(d["success_rate"]),
            components=comps,
            success_curve=[float(x) for x in d.get("success_curve", [])],
            env_return=d.get("env_return"),
            run_dir=d.get("run_dir"),
            wall_s=float(d.get("wall_s", 0.0)),
        )


Trainer = Callable[[Path, int, int], TrainResult]
"""(program_path, steps, seed) -> TrainResult. Must be picklable for parallel workers."""


def _pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    n = min(len(xs), len(ys))
    if n < 3:
        return None
    xs, ys = list(xs[-n:]), list(ys[-n:])
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx <= 1e-18 or syy <= 1e-18:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / math.sqrt(sxx * syy)


def stats_from_history(history: Sequence[dict[str, float]]) -> tuple[list[ComponentStats], list[float]]:
    """Component statistics and the success curve from a run's `metrics.json` history rows
    (``component/<name>`` and ``ep_success_mean`` per rollout)."""
    names: list[str] = []
    for row in history:
        for key in row:
            if key.startswith("component/") and key[len("component/") :] not in names:
                names.append(key[len("component/") :])
    success = [float(row["ep_success_mean"]) for row in history if "ep_success_mean" in row]
    comps = []
    for name in names:
        values = [float(row[f"component/{name}"]) for row in history if f"component/{name}" in row]
        paired_s = [
            float(row["ep_success_mean"]) for row in history if f"component/{name}" in row and "ep_success_mean" in row
        ]
        paired_v = [
            float(row[f"component/{name}"])
            for row in history
            if f"component/{name}" in row and "ep_success_mean" in row
        ]
        comps.append(ComponentStats(name, tuple(values), _pearson(paired_v, paired_s)))
    return comps, success


@dataclass
class SB3Trainer:
    """Train a program with Stable-Baselines3 (`embodied.train.sb3.train`) and evaluate it on
    held-out seeds (`embodied.train.evaluate.evaluate`). Picklable, so it runs in worker processes.

    Attributes:
        task: task name or path of its TOML file.
        root: folder for the training runs (inside the search folder by default).
        algo: "ppo" or "sac".
        envs: parallel envs per training run.
        eval_episodes: held-out episodes for the fitness.
        hyperparams: learner overrides, e.g. {"n_steps": 64}.
    """

    task: str
    root: str
    algo: str = "ppo"
    envs: int = 1
    eval_episodes: int = 5
    hyperparams: dict[str, Any] = field(default_factory=dict)

    def __call__(self, program_path: Path, steps: int, seed: int) -> TrainResult:
        from embodied.tasks.spec import load_task
        from embodied.train.config import TrainConfig
        from embodied.train.evaluate import evaluate
        from embodied.train.sb3 import train

        t0 = time.perf_counter()
        program_path = Path(program_path).resolve()
        spec = load_task(self.task)
        tag = (
            f"{program_path.parent.parent.name}-{program_path.parent.name}"
            if program_path.stem == "program"
            else program_path.stem
        )
        run = f"{tag}-s{seed}"
        root = Path(self.root)
        run_dir = root / run
        if not (run_dir / "metrics.json").is_file():
            partial = root / f".{run}.partial"
            if partial.exists():  # an interrupted earlier attempt: start it over
                shutil.rmtree(partial)
            cfg = TrainConfig(
                run=run, task=spec, reward=f"program:{program_path}", algo=self.algo, steps=steps, seed=seed,
                envs=self.envs, gamma=spec.gamma, checkpoint_every=max(steps, 1), hyperparams=dict(self.hyperparams),
            )  # fmt: skip
            run_dir = train(cfg, root, progress=False)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        ev = evaluate(run_dir, episodes=self.eval_episodes, root=root)
        comps, curve = stats_from_history(metrics.get("history", []))
        return TrainResult(
            success_rate=float(ev["success_rate"]),
            components=comps,
            success_curve=curve,
            env_return=float(ev["env_return"]),
            run_dir=str(run_dir),
            wall_s=time.perf_counter() - t0,
        )


# --------------------------------------------------------------------------------------------------
# search


@dataclass
class SearchConfig:
    """Search settings (saved in search.json; a resumed search must match them).

    Attributes:
        samples: K programs sampled per iteration.
        iterations: I iterations.
        steps: environment steps per training run.
        seed: base seed; sample k of iteration i asks the LLM with seed `seed + i*K + k` and trains with `seed`.
        reeval_seeds: training seeds for re-evaluating the winner (≥ 3).
        temperature, max_tokens: LLM sampling.
        few_shot: include an expert program of another task in the prompt.
        validate_timeout_s: wall-clock limit of each dry run.
        dry_run_samples: recorded transitions per dry run.
        workers: parallel trainings (1 = in this process).
        executor: "process" (a spawn process pool) or "ray".
    """

    samples: int = 4
    iterations: int = 3
    steps: int = 20_000
    seed: int = 0
    reeval_seeds: tuple[int, ...] = (1, 2, 3)
    temperature: float = 1.0
    max_tokens: int = 2048
    few_shot: bool = False
    validate_timeout_s: float = 10.0
    dry_run_samples: int = 32
    workers: int = 1
    executor: str = "process"

    def __post_init__(self) -> None:
        if self.samples < 1 or self.iterations < 1 or self.steps < 1:
            raise ValueError("--samples, --iterations and --steps must be at least 1")
        if len(set(self.reeval_seeds)) < 3:
            raise ValueError("the winner is re-evaluated with at least 3 distinct seeds (reeval_seeds)")
        if self.executor not in ("process", "ray"):
            raise ValueError(f"executor must be 'process' or 'ray', got {self.executor!r}")
        self.reeval_seeds = tuple(self.reeval_seeds)


@dataclass
class SampleOutcome:
    """One sampled program: where it failed, or its fitness."""

    iteration: int
    index: int
    path: str
    status: str  # "trained" | "llm_error" | "rejected" | "train_error"
    error: dict[str, Any] | None = None
    fitness: float | None = None
    env_return: float | None = None

    def feedback(self) -> str | None:
        if self.error is None:
            return None
        line = f" at line {self.error['line']}" if self.error.get("line") else ""
        return f"[{self.error.get('kind', self.status)}]{line}: {self.error.get('reason', '')}"


@dataclass
class SearchResult:
    """Outcome of a search.

    Attributes:
        directory: the search folder.
        best_path: the winning program (`best.py`), or None when no sample ever trained.
        best_fitness: its fitness in the search.
        reeval: success rate per re-evaluation seed.
        timings: seconds spent in "llm", "validation", "training" and "reeval".
        outcomes: every sample.
    """

    directory: Path
    best_path: Path | None
    best_fitness: float | None
    reeval: list[float]
    timings: dict[str, float]
    outcomes: list[SampleOutcome]

    @property
    def reeval_mean(self) -> float | None:
        return sum(self.reeval) / len(self.reeval) if self.reeval else None


def _write_json(path: Path, data: Any) -> None:
    """Write atomically (temp + rename), so an interrupted search never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def new_search_id() -> str:
    """A sortable id: UTC date and time to the second."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime())


def _run_trainings(
    trainer: Trainer, jobs: list[tuple[Path, int, int]], cfg: SearchConfig
) -> list[TrainResult | Exception]:
    """Run trainer(*job) for every job; an exception is kept in the job's slot, not raised."""

    def safe(job: tuple[Path, int, int]) -> TrainResult | Exception:
        try:
            return trainer(*job)
        except Exception as exc:
            return exc

    if not jobs:
        return []
    if cfg.workers <= 1 or len(jobs) == 1:
        return [safe(j) for j in jobs]
    if cfg.executor == "ray":
        return _ray_map(trainer, jobs, cfg.workers)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(
        max_workers=min(cfg.workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        futures = [pool.submit(trainer, *job) for job in jobs]
        out: list[TrainResult | Exception] = []
        for fut in futures:
            try:
                out.append(fut.result())
            except Exception as exc:
                out.append(exc)
        return out


def _ray_map(trainer: Trainer, jobs: list[tuple[Path, int, int]], workers: int) -> list[TrainResult | Exception]:
    try:
        import ray
    except ImportError:
        raise ValueError("executor 'ray' needs the ray package") from None
    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):  # join the cluster (`ray start --head`); it has its own CPU count
            ray.init(ignore_reinit_error=True, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    remote = ray.remote(num_cpus=1)(lambda t, p, s, sd: t(p, s, sd))
    refs = [remote.remote(trainer, *job) for job in jobs]
    out: list[TrainResult | Exception] = []
    for ref in refs:
        try:
            out.append(ray.get(ref))
        except Exception as exc:
            out.append(exc)
    return out


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


class Search:
    """One reward search in its folder. `run()` does (or resumes) the whole thing."""

    def __init__(
        self,
        task: str,
        client: LLMClient,
        config: SearchConfig,
        *,
        trainer: Trainer | None = None,
        root: Path = Path("reward_models"),
        search_id: str | None = None,
        dry_run_samples: list[Any] | None = None,
        interface: Any = None,
        examples_root: Path | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        from embodied.tasks.spec import load_task

        self.spec = load_task(task)
        self.task_arg = task
        self.client = client
        self.cfg = config
        self.root = Path(root)
        self.id = search_id or new_search_id()
        self.dir = self.root / self.spec.name / f"search-{self.id}"
        self.trainer = trainer or SB3Trainer(task=str(task), root=str((self.dir / "runs").resolve()))
        self._samples = dry_run_samples
        self._interface = interface
        self.examples_root = examples_root or self.root
        self.log = log or (lambda msg: None)
        self.timings = {"llm": 0.0, "validation": 0.0, "training": 0.0, "reeval": 0.0}

    # -- state --------------------------------------------------------------------------------------

    def _config_dict(self) -> dict[str, Any]:
        return {"task": self.spec.name, **asdict(self.cfg)}

    def _load_or_start(self) -> dict[str, Any]:
        state = _read_json(self.dir / "search.json")
        if state is None:
            state = {
                "id": self.id,
                "config": self._config_dict(),
                "model": self.client.model,
                "iterations_done": 0,
                "best": None,
                "timings": self.timings,
                "status": "running",
            }
            _write_json(self.dir / "search.json", state)
            return state
        saved = dict(state["config"])
        current = json.loads(json.dumps(self._config_dict()))
        keys = ("task", "samples", "steps", "seed", "temperature", "max_tokens", "few_shot")
        changed = [k for k in keys if saved.get(k) != current.get(k)]
        if changed:
            raise ValueError(
                f"search {self.dir} was started with different settings ({', '.join(changed)}); "
                "use a new --id or the original settings"
            )
        state["config"] = current  # more iterations or new re-evaluation seeds are fine
        self.timings = {**self.timings, **state.get("timings", {})}
        self.log(f"resuming search {self.id} after {state['iterations_done']} finished iteration(s)")
        return state

    def _save_state(self, state: dict[str, Any]) -> None:
        state["timings"] = {k: round(v, 3) for k, v in self.timings.items()}
        _write_json(self.dir / "search.json", state)

    # -- pieces -------------------------------------------------------------------------------------

    def samples(self) -> list[Any]:
        if self._samples is None:
            from embodied.rewards.code import task_samples

            self._samples = task_samples(self.spec, n=self.cfg.dry_run_samples, seed=self.cfg.seed)
        return self._samples

    def interface(self) -> Any:
        if self._interface is None:
            from embodied.llm.prompts import task_interface

            self._interface = task_interface(self.spec)
        return self._interface

    def _messages(self, best: dict[str, Any] | None, failures: list[str]) -> list[dict[str, str]]:
        best_code = reflection = None
        if best is not None:
            best_code = Path(best["path"]).read_text()
            result = TrainResult.from_dict(best["train"])
            reflection = reflection_text(result.success_rate, result.components, result.success_curve)
        return reflection_messages(
            self.spec,
            best_code,
            reflection,
            failures,
            few_shot=self.cfg.few_shot,
            examples_root=self.examples_root,
            interface=self.interface(),
        )

    def _sample(self, it: int, messages: list[dict[str, str]], it_dir: Path) -> list[Completion | LLMError]:
        """K completions, reusing responses already saved by an interrupted run."""
        k = self.cfg.samples
        out: list[Completion | LLMError | None] = [None] * k
        for i in range(k):
            saved = _read_json(it_dir / f"sample-{i:02d}" / "response.json")
            if saved is not None and "completion" in saved:
                out[i] = Completion.from_dict(saved["completion"])
        missing = [i for i in range(k) if out[i] is None]
        if missing:
            t0 = time.perf_counter()
            base = self.cfg.seed + it * k

            def one(i: int) -> Completion | LLMError:
                try:
                    return self.client.complete(
                        messages, seed=base + i, temperature=self.cfg.temperature, max_tokens=self.cfg.max_tokens
                    )
                except LLMError as exc:
                    return exc

            with ThreadPoolExecutor(max_workers=min(4, len(missing))) as pool:
                for i, res in zip(missing, pool.map(one, missing), strict=True):
                    out[i] = res
                    rec: dict[str, Any] = {"seed": base + i}
                    if isinstance(res, Completion):
                        rec["completion"] = res.to_dict()
                    else:
                        rec["error"] = str(res)
                    _write_json(it_dir / f"sample-{i:02d}" / "response.json", rec)
            self.timings["llm"] += time.perf_counter() - t0
        return [o for o in out if o is not None]

    def _validate(self, it: int, i: int, res: Completion | LLMError, it_dir: Path) -> SampleOutcome:
        from embodied.rewards.code import RewardCodeError, extract_code, load_program

        sdir = it_dir / f"sample-{i:02d}"
        path = sdir / "program.py"
        outcome = SampleOutcome(it, i, str(path), "rejected")
        if isinstance(res, LLMError):
            outcome.status = "llm_error"
            outcome.error = {"kind": "llm", "reason": str(res), "line": None}
            _write_json(sdir / "validation.json", {"ok": False, "error": outcome.error})
            return outcome
        saved = _read_json(sdir / "validation.json")
        if saved is not None:
            outcome.status = "valid" if saved["ok"] else "rejected"
            outcome.error = saved.get("error")
            return outcome
        try:
            if res.truncated:
                raise RewardCodeError(
                    "truncated", f"the response was cut off (finish_reason={res.finish_reason!r}); "
                    "write shorter code", program=f"iter {it} sample {i}",
                )  # fmt: skip
            code = extract_code(res.text)
            path.write_text(code)
            program = load_program(code, self.samples(), self.cfg.validate_timeout_s, name=f"iter{it}-sample{i}")
        except RewardCodeError as exc:
            outcome.error = exc.to_dict()
            _write_json(sdir / "validation.json", {"ok": False, "error": outcome.error})
            return outcome
        outcome.status = "valid"
        _write_json(sdir / "validation.json", {"ok": True, "report": program.report.to_dict()})
        return outcome

    # -- the loop -----------------------------------------------------------------------------------

    def run(self) -> SearchResult:
        """Run (or resume) every iteration, then re-evaluate the winner."""
        self.dir.mkdir(parents=True, exist_ok=True)
        state = self._load_or_start()
        outcomes: list[SampleOutcome] = []
        failures: list[str] = []
        for it in range(state["iterations_done"]):
            summary = _read_json(self.dir / f"iter-{it:02d}" / "summary.json") or {}
            outcomes += [SampleOutcome(**o) for o in summary.get("outcomes", [])]
            failures = summary.get("failures", [])
        for it in range(state["iterations_done"], self.cfg.iterations):
            it_outcomes, failures = self._iteration(it, state, failures)
            outcomes += it_outcomes
            state["iterations_done"] = it + 1
            self._save_state(state)
            self._write_fitness(outcomes)
        reeval = self._reevaluate(state)
        state["status"] = "done"
        self._save_state(state)
        best = state.get("best")
        return SearchResult(
            directory=self.dir,
            best_path=(self.dir / "best.py") if best else None,
            best_fitness=best["fitness"] if best else None,
            reeval=reeval,
            timings=dict(self.timings),
            outcomes=outcomes,
        )

    def _iteration(self, it: int, state: dict[str, Any], failures: list[str]) -> tuple[list[SampleOutcome], list[str]]:
        it_dir = self.dir / f"iter-{it:02d}"
        messages = self._messages(state.get("best"), failures)
        _write_json(it_dir / "prompt.json", {"hash": prompt_hash(messages), "messages": messages})
        responses = self._sample(it, messages, it_dir)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=min(4, len(responses))) as pool:  # dry runs are child processes
            outcomes = list(pool.map(lambda a: self._validate(it, a[0], a[1], it_dir), enumerate(responses)))
        self.timings["validation"] += time.perf_counter() - t0
        self.log(f"iteration {it}: {sum(o.status == 'valid' for o in outcomes)}/{len(outcomes)} programs valid")

        jobs, owners = [], []
        for o in outcomes:
            if o.status != "valid":
                continue
            saved = _read_json(Path(o.path).parent / "train.json")
            if saved is not None and "success_rate" in saved:
                self._record_training(o, TrainResult.from_dict(saved), state)
                continue
            jobs.append((Path(o.path).resolve(), self.cfg.steps, self.cfg.seed))
            owners.append(o)
        t0 = time.perf_counter()
        results = _run_trainings(self.trainer, jobs, self.cfg)
        self.timings["training"] += time.perf_counter() - t0
        for o, res in zip(owners, results, strict=True):
            if isinstance(res, Exception):
                o.status = "train_error"
                o.error = {"kind": "training", "reason": _one_line(res), "line": None}
                _write_json(Path(o.path).parent / "train.json", {"error": o.error})
            else:
                _write_json(Path(o.path).parent / "train.json", res.to_dict())
                self._record_training(o, res, state)
        new_failures = [f"sample {o.index}: {o.feedback()}" for o in outcomes if o.feedback()]
        _write_json(it_dir / "summary.json", {
            "iteration": it,
            "prompt_hash": prompt_hash(messages),
            "outcomes": [asdict(o) for o in outcomes],
            "failures": new_failures,
            "best_fitness": state["best"]["fitness"] if state.get("best") else None,
        })  # fmt: skip
        fit = [o.fitness for o in outcomes if o.fitness is not None]
        self.log(
            f"iteration {it}: fitness {fit}; best so far {state['best']['fitness'] if state.get('best') else None}"
        )
        return outcomes, new_failures

    def _record_training(self, o: SampleOutcome, res: TrainResult, state: dict[str, Any]) -> None:
        o.status, o.fitness, o.env_return = "trained", res.success_rate, res.env_return
        best = state.get("best")
        key = (res.success_rate, res.env_return if res.env_return is not None else -math.inf)
        if best is None or key > (best["fitness"], best.get("env_return") or -math.inf):
            state["best"] = {
                "iteration": o.iteration,
                "sample": o.index,
                "path": o.path,
                "fitness": res.success_rate,
                "env_return": res.env_return,
                "train": res.to_dict(),
            }
            self._publish_best(state["best"])
            self._save_state(state)

    def _publish_best(self, best: dict[str, Any]) -> None:
        src = Path(best["path"])
        sdir = src.parent
        response = _read_json(sdir / "response.json") or {}
        prompt = _read_json(sdir.parent / "prompt.json") or {}
        shutil.copyfile(src, self.dir / "best.tmp.py")
        os.replace(self.dir / "best.tmp.py", self.dir / "best.py")
        _write_json(self.dir / "best.json", {
            "task": self.spec.name,
            "search": self.id,
            "source": str(src),
            "iteration": best["iteration"],
            "sample": best["sample"],
            "fitness": best["fitness"],
            "env_return": best.get("env_return"),
            "model": (response.get("completion") or {}).get("model", self.client.model),
            "prompt_hash": prompt.get("hash"),
            "response": (response.get("completion") or {}).get("text"),
            "validation": _read_json(sdir / "validation.json"),
            "train": best["train"],
        })  # fmt: skip

    def _write_fitness(self, outcomes: list[SampleOutcome]) -> None:
        per_it: dict[int, list[float | None]] = {}
        for o in outcomes:
            per_it.setdefault(o.iteration, []).append(o.fitness)
        curve, best = [], -math.inf
        for it in sorted(per_it):
            vals = [v for v in per_it[it] if v is not None]
            best = max([best, *vals]) if vals else best
            curve.append({"iteration": it, "fitness": per_it[it], "best_so_far": None if best == -math.inf else best})
        _write_json(self.dir / "fitness.json", curve)

    def _reevaluate(self, state: dict[str, Any]) -> list[float]:
        best = state.get("best")
        if best is None:
            self.log("no sample trained successfully; nothing to re-evaluate")
            return []
        done: dict[str, float] = {str(k): v for k, v in (best.get("reeval") or {}).items()}
        todo = [s for s in self.cfg.reeval_seeds if str(s) not in done]
        if todo:
            t0 = time.perf_counter()
            path = (self.dir / "best.py").resolve()
            reeval_dir = self.dir / "reeval"
            reeval_dir.mkdir(exist_ok=True)
            # A stable file per search so run names do not collide with the sample's own runs.
            target = reeval_dir / "program.py"
            shutil.copyfile(path, target)
            results = _run_trainings(self.trainer, [(target.resolve(), self.cfg.steps, s) for s in todo], self.cfg)
            self.timings["reeval"] += time.perf_counter() - t0
            for s, res in zip(todo, results, strict=True):
                if isinstance(res, Exception):
                    self.log(f"re-evaluation with seed {s} failed: {_one_line(res)}")
                    continue
                done[str(s)] = res.success_rate
            best["reeval"] = done
            self._save_state(state)
        values = [done[str(s)] for s in self.cfg.reeval_seeds if str(s) in done]
        meta = _read_json(self.dir / "best.json") or {}
        meta["reeval"] = {
            "seeds": list(self.cfg.reeval_seeds),
            "success_rate": values,
            "mean": sum(values) / len(values) if values else None,
        }
        _write_json(self.dir / "best.json", meta)
        return values


def search(
    task: str,
    client: LLMClient,
    config: SearchConfig,
    *,
    trainer: Trainer | None = None,
    root: Path = Path("reward_models"),
    search_id: str | None = None,
    **kwargs: Any,
) -> SearchResult:
    """Run (or resume, when `search_id` names an existing folder) a reward search. See `Search`."""
    return Search(task, client, config, trainer=trainer, root=root, search_id=search_id, **kwargs).run()
