"""GPU benchmark for the shared reward service (issue 7): a CLIP reward actor on one GPU feeding 8+ EnvRunners.

For a machine with ~16 CPU cores and 1 NVIDIA GPU (it was NOT run in the development session, which
had no GPU; a CPU smoke run is `python bench/gpu_rllib.py --smoke`). Three parts, results in
bench/results/gpu_rllib.json:

1. CLIP throughput: the bare model (bf16 autocast) on batches of 8..256 frames: frames/s ceiling.
2. Reward service under load: N client actors (1 CPU each, default N = 1, 8, 16), each sending batches
   of real Meta-World frames (4 envs × 1 camera, 224×224) to ONE CLIP actor holding `--reward-gpus` of
   the GPU; frames/s, frames per flush, GPU busy fraction. Compared with in-runner scoring: every client
   holds its own CLIP, on CPU (what a 0-GPU EnvRunner silently does) and on a 1/N GPU share.
3. End to end: `embodied train metaworld-reach --backend rllib --env-runners 8 --envs-per-runner 4
   --shaping <CLIP potential> --reward-service actor` for `--steps` env steps; env steps/s and the
   service's batching statistics. With `--clip-spec` (e.g. `clip:model=ViT-B-32,pretrained=laion2b_s34b_b79k`)
   the project's `clip:` reward kind (`embodied.rewards.clip`) is trained through the registry; otherwise
   this file's `ClipPotential` is served via `reward_factory`.

Weights: `--pretrained laion2b_s34b_b79k` (open_clip downloads it, or finds it in the HF cache), or
`--checkpoint PATH` (a local open_clip checkpoint), or `--random-init` (no download; throughput is the
same, the rewards are meaningless). Usage on the GPU machine:

    MUJOCO_GL=egl python bench/gpu_rllib.py --model ViT-B-32 --pretrained laion2b_s34b_b79k
    MUJOCO_GL=egl python bench/gpu_rllib.py --random-init --quick      # ~3 minutes, no download
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import embodied  # noqa: E402  (MUJOCO_GL=egl before MuJoCo)
from embodied.rewards.base import Requirements, RewardModel, RewardOutput, TransitionBatch  # noqa: E402

OUT = ROOT / "bench" / "results" / "gpu_rllib.json"
GOAL = "a robot gripper touching a red ball"
BASELINE = "a robot arm above a table"


class ClipPotential(RewardModel):
    """Φ(s) = cosine similarity of the camera frame's CLIP embedding with the goal prompt (VLM-RM, α = 0).

    Frames arrive at the model's input size (the task renders 224×224), so preprocessing is only the
    model's own mean/std normalisation, done on the device in one batch.
    """

    state_only = True

    def __init__(
        self,
        model: str = "ViT-B-32",
        pretrained: str | None = None,
        checkpoint: str | None = None,
        camera: str = "corner",
        goal: str = GOAL,
    ) -> None:
        import open_clip
        import torch

        self.torch, self.camera, self.name = torch, camera, f"clip:{model}"
        self.requires = Requirements((camera,), (224, 224))
        self.model, _, preprocess = open_clip.create_model_and_transforms(
            model, pretrained=None if checkpoint else pretrained
        )
        if checkpoint:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            self.model.load_state_dict(state.get("state_dict", state))
        self.model.eval()
        norm = next(t for t in preprocess.transforms if type(t).__name__ == "Normalize")
        self.mean = torch.tensor(norm.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(norm.std).view(1, 3, 1, 1)
        with torch.inference_mode():
            text = self.model.encode_text(open_clip.get_tokenizer(model)([goal]))
        self.goal = torch.nn.functional.normalize(text.float(), dim=-1)
        self.device = "cpu"

    def to(self, device: str) -> ClipPotential:
        self.model = self.model.to(device)
        self.mean, self.std, self.goal = self.mean.to(device), self.std.to(device), self.goal.to(device)
        self.device = device
        return self

    def potential(self, obs: Any, frames: dict[str, np.ndarray] | None = None) -> np.ndarray:
        torch = self.torch
        x = torch.as_tensor(frames[self.camera]).to(self.device, non_blocking=True)
        x = (x.permute(0, 3, 1, 2).float().div_(255.0) - self.mean) / self.std
        with (
            torch.inference_mode(),
            torch.autocast(self.device.split(":")[0], torch.bfloat16, enabled=self.device != "cpu"),
        ):
            emb = self.model.encode_image(x)
        emb = torch.nn.functional.normalize(emb.float(), dim=-1)
        return (emb @ self.goal.T).squeeze(1).double().cpu().numpy()

    def compute_reward(self, batch: TransitionBatch) -> RewardOutput:
        return RewardOutput(self.potential(batch.next_obs, batch.frames))


def clip_factory(args: argparse.Namespace):
    """A picklable zero-argument factory (runs inside the reward actor)."""
    kw = {
        "model": args.model,
        "pretrained": None if args.random_init else args.pretrained,
        "checkpoint": args.checkpoint,
    }
    return lambda: (None, ClipPotential(**kw))


def meta_world_frames(n: int, seed: int, camera: str = "corner") -> dict[str, np.ndarray]:
    """n real 224×224 frames of Meta-World reach under random actions."""
    vec = embodied.make_vec("metaworld-reach", 4, frames=[camera])
    vec.reset(seed=seed)
    rng = np.random.default_rng(seed)
    frames = []
    while len(frames) * 4 < n:
        _, _, _, _, info = vec.step(rng.uniform(-1, 1, size=(4, 4)).astype(np.float32))
        frames.append(info["frames"][camera])
    vec.close()
    return {camera: np.concatenate(frames)[:n]}


class Client:
    """An EnvRunner's worth of reward requests (batches of `batch` frames), served or scored in place."""

    def __init__(self, seed: int, batch: int, service: str | None, factory: Any = None, device: str = "cpu") -> None:
        self.frames, self.obs = meta_world_frames(batch, seed), np.zeros((batch, 39))
        if service is None:
            from embodied.train.reward_service import place

            _, self.model = factory()
            place(self.model, device)
        else:
            from embodied.train.reward_service import ServiceClient

            self.client = ServiceClient(service, timeout_s=600)

    def run(self, requests: int, start_at: float) -> tuple[float, float]:
        while time.time() < start_at:
            time.sleep(0.001)
        t0 = time.time()
        for _ in range(requests):
            if hasattr(self, "model"):
                self.model.potential(self.obs, self.frames)
            else:
                self.client.call("phi", self.obs, self.frames)
        return t0, time.time()


def bare_rates(args: argparse.Namespace, device: str) -> list[dict[str, float]]:
    _, model = clip_factory(args)()
    model.to(device)
    rows = []
    for batch in (8, 32, 128, 256) if not args.smoke else (8,):
        frames = meta_world_frames(batch, 0)
        model.potential(None, frames)
        reps = 3 if args.smoke else 20
        if device != "cpu":
            model.torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(reps):
            model.potential(None, frames)
        rows.append({"batch": batch, "frames_per_s": reps * batch / (time.perf_counter() - t0)})
        print(f"bare CLIP {args.model} batch {batch}: {rows[-1]['frames_per_s']:.0f} frames/s on {device}", flush=True)
    return rows


def service_rates(args: argparse.Namespace, clients: int, mode: str, gpus: float) -> dict[str, Any]:
    import ray

    from embodied.train.reward_service import start_service

    handle, name = None, None
    if mode == "actor":
        name = f"clip-bench-{clients}-{time.time_ns()}"
        handle = start_service(clip_factory(args), name, gpus, expected_clients=clients, max_wait_s=0.01, timeout_s=600)
    device = "cuda:0" if mode == "in-runner-gpu" else "cpu"
    opts = {"num_cpus": 1, "num_gpus": (gpus / clients) if mode == "in-runner-gpu" else 0}
    actors = [
        ray.remote(**opts)(Client).remote(k, args.batch, name, None if name else clip_factory(args), device)
        for k in range(clients)
    ]
    ray.get([a.run.remote(1, 0.0) for a in actors], timeout=900)
    start_at = time.time() + 2.0
    spans = ray.get([a.run.remote(args.requests, start_at) for a in actors], timeout=1800)
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    row: dict[str, Any] = {
        "mode": mode,
        "clients": clients,
        "frames_per_s": clients * args.requests * args.batch / wall,
    }
    if handle is not None:
        stats = handle.stats()
        row.update(
            device=handle.info["device"],
            mean_frames_per_flush=stats["mean_rows_per_flush"],
            mean_requests_per_flush=stats["mean_requests_per_flush"],
            busy_fraction=stats["busy_s"] / wall,
        )
        handle.stop()
    for a in actors:
        ray.kill(a)
    print(f"{mode:14s} {clients:2d} clients: {row['frames_per_s']:.0f} frames/s", flush=True)
    return row


def end_to_end(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from embodied.cli.main import build_config
    from embodied.train import rllib

    spec = args.clip_spec or f"clip:{args.model}"  # recorded in the config; served by `reward_factory` if no spec
    run = f"gpu-{time.time_ns()}"
    cfg = build_config(
        "metaworld-reach", "env", spec, 1.0, "ppo", args.steps, 0, args.envs_per_runner, None, 10**9, run,
        backend="rllib", env_runners=args.env_runners, reward_service="actor", reward_gpus=args.reward_gpus,
        learners=1 if args.learner_gpus else 0, gpus_per_learner=args.learner_gpus,
    )  # fmt: skip
    lines: list[str] = []
    out = rllib.train(
        cfg, root, progress=False, log=lambda s: (lines.append(s), print(s, flush=True)),
        reward_factory=None if args.clip_spec else clip_factory(args),
    )  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        k: metrics[k]
        for k in ("timesteps", "wall_s", "steps_per_s", "env_runners", "envs_per_runner", "reward_service")
    } | {"log": lines}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="laion2b_s34b_b79k")
    parser.add_argument("--checkpoint", default=None, help="local open_clip checkpoint (no download)")
    parser.add_argument("--random-init", action="store_true", help="no weights: throughput only")
    parser.add_argument("--clip-spec", default=None, help="use the registry's clip: kind with this spec instead")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--batch", type=int, default=4, help="frames per request (envs per runner × cameras)")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--reward-gpus", type=float, default=0.5)
    parser.add_argument("--learner-gpus", type=float, default=0.5)
    parser.add_argument("--env-runners", type=int, default=8)
    parser.add_argument("--envs-per-runner", type=int, default=4)
    parser.add_argument("--steps", type=int, default=64_000)
    parser.add_argument("--quick", action="store_true", help="fewer requests and steps (~3 minutes)")
    parser.add_argument(
        "--smoke", action="store_true", help="CPU smoke run of every code path (tiny model, tiny numbers)"
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=["bare", "service", "train"])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.quick:
        args.requests, args.steps = 30, 16_000
    if args.smoke:
        args.model, args.random_init, args.clients, args.requests = "RN50", True, [1, 2], 2
        args.env_runners, args.envs_per_runner, args.steps, args.reward_gpus, args.learner_gpus = 1, 1, 64, 0.0, 0.0

    import ray
    import torch

    from embodied.train.rllib import connect

    session = connect(None)
    logging.getLogger("ray").setLevel(logging.ERROR)
    print(session.describe(), flush=True)
    if session.gpus < 1 and not args.smoke:
        raise SystemExit("no GPU in the Ray cluster: this benchmark is for a GPU machine (use --smoke for a CPU check)")
    device = "cuda:0" if torch.cuda.is_available() else "cpu"
    result: dict[str, Any] = {
        "model": args.model,
        "weights": "random-init" if args.random_init else (args.checkpoint or args.pretrained),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cluster": {"cpus": session.cpus, "gpus": session.gpus},
        "batch_per_request": args.batch,
        "command": " ".join(["python", "bench/gpu_rllib.py", *sys.argv[1:]]),
    }
    try:
        if "bare" not in args.skip:
            result["bare"] = bare_rates(args, device)
        if "service" not in args.skip:
            rows = []
            for c in args.clients:
                rows.append(service_rates(args, c, "actor", args.reward_gpus))
                if session.gpus >= 1:
                    rows.append(service_rates(args, c, "in-runner-gpu", args.reward_gpus))
                if c <= 8:  # CLIP on CPU in every runner: what a 0-GPU EnvRunner silently does
                    rows.append(service_rates(args, c, "in-runner-cpu", 0.0))
            result["service"] = rows
        if "train" not in args.skip:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="gpu-rllib-") as tmp:
                result["train"] = end_to_end(args, Path(tmp))
    finally:
        session.close()
        if ray.is_initialized():
            ray.shutdown()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    os.environ.setdefault("MUJOCO_GL", "egl")
    main()
