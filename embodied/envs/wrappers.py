"""Gymnasium wrappers that turn a simulator env into a task env.

`TaskWrapper` checks the task's views against the observation space and reports
`info["success"]` from the task's success rule; `FrameCapture` renders the requested cameras
inside the sub-env after every reset and step, so a frame always shows the state it belongs to
(vector envs autoreset after the step that ended an episode, which would otherwise show a reset frame).
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from embodied.tasks.expr import ExprError, compile_expr
from embodied.tasks.spec import TaskError, TaskSpec
from embodied.tasks.views import View, ViewError, make_getter


def view_getters(spec: TaskSpec, space: gym.Space) -> dict[str, Any]:
    """Compile every view of `spec` against `space`; errors name the file and view."""
    getters = {}
    for name, view in spec.views.items():
        try:
            getters[name], _ = make_getter(view.expr, f"{spec.source or spec.name}: views.{name}", space)
        except ViewError as exc:
            raise TaskError(str(exc)) from None
    return getters


def compile_rule(spec: TaskSpec, source: str, field: str) -> tuple[Any, set[str]]:
    """Compile a rule over views and `info`; returns (evaluate, names it uses)."""
    names = set(spec.views) | {"info"}
    try:
        fn = compile_expr(source, names, f"{spec.source or spec.name}: {field}")
    except ExprError as exc:
        raise TaskError(str(exc)) from None
    used = {n.id for n in ast.walk(ast.parse(source.strip(), mode="eval")) if isinstance(n, ast.Name)} & names
    return fn, used


class TaskWrapper(gym.Wrapper):
    """Adds `info["success"]` (bool) from the task's success rule and exposes the task's views."""

    def __init__(self, env: gym.Env, spec: TaskSpec) -> None:
        super().__init__(env)
        self.task = spec
        self.getters = view_getters(spec, env.observation_space)
        self._success, used = compile_rule(spec, spec.success, "success")
        self._success_views = sorted(used - {"info"})

    def view(self, obs: Any) -> View:
        """Named views of `obs` (one observation or a batch)."""
        return View(self.getters, obs)

    def _mark(self, obs: Any, info: dict) -> dict:
        scope = {name: self.getters[name](obs) for name in self._success_views}
        scope["info"] = info
        try:
            info["success"] = bool(np.all(self._success(scope)))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise TaskError(
                f"{self.task.source or self.task.name}: field 'success': {self.task.success!r} failed: {exc!r}"
            ) from None
        return info

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        obs, info = self.env.reset(**kwargs)
        info = dict(info)
        info["success"] = False
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, self._mark(obs, dict(info))


def _preload_triton() -> None:
    """Load Triton (if installed) before the first GL context.

    Mesa's llvmpipe and Triton both carry LLVM; when Triton is first imported after an EGL context
    exists (torch imports it lazily, e.g. when an optimizer is built) the process segfaults.
    Loading it first is safe and costs ~0.1 s once.
    """
    import importlib.util

    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401


RenderQuality = Literal["fast", "full"]


def set_render_quality(model: Any, quality: RenderQuality) -> None:
    """ "fast": no MSAA, shadows or reflections; "full": the model's own settings (left untouched).

    On Mesa's software EGL (CPU machines) "fast" renders a Meta-World frame in ~7 ms instead of
    ~150 ms; images differ only by shadows, reflections and edge smoothing. Must run before the GL
    context is made (MSAA is fixed then). Scorers should see frames rendered like their training frames.
    """
    if quality == "full":
        return
    if quality != "fast":
        raise TaskError(f"render quality must be 'fast' or 'full', got {quality!r}")
    model.vis.quality.offsamples = 0
    model.light_castshadow[:] = 0
    model.mat_reflectance[:] = 0.0


class MujocoCameras:
    """Renders named cameras of a MuJoCo model at a fixed size (uint8 [H, W, 3] each).

    The renderer is created on first use, so envs that never render never open a GL context.
    Camera ``"default"`` is MuJoCo's free camera.
    """

    def __init__(
        self,
        sim: Any,
        cameras: Sequence[str],
        size: tuple[int, int],
        flip: bool = False,
        quality: RenderQuality = "fast",
    ) -> None:
        model = sim.model
        known = {model.camera(i).name for i in range(model.ncam)} | {"default"}
        unknown = [c for c in cameras if c not in known]
        if unknown:
            raise TaskError(f"unknown camera(s) {unknown}; this model has {sorted(known)}")
        if quality not in ("fast", "full"):
            raise TaskError(f"render quality must be 'fast' or 'full', got {quality!r}")
        self.sim, self.cameras, self.size, self.flip, self.quality = sim, tuple(cameras), size, flip, quality
        self._renderer: Any = None

    def render(self) -> dict[str, np.ndarray]:
        import mujoco

        if self._renderer is None:
            _preload_triton()
            h, w = self.size
            model = self.sim.model
            set_render_quality(model, self.quality)
            model.vis.global_.offheight = max(model.vis.global_.offheight, h)
            model.vis.global_.offwidth = max(model.vis.global_.offwidth, w)
            self._renderer = mujoco.Renderer(model, h, w)
        frames = {}
        for cam in self.cameras:
            self._renderer.update_scene(self.sim.data, camera=-1 if cam == "default" else cam)
            img = self._renderer.render()
            frames[cam] = np.ascontiguousarray(img[::-1, ::-1]) if self.flip else img.copy()
        return frames

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None


class FrameCapture(gym.Wrapper):
    """Puts `info["frames"] = {camera: uint8 [H, W, 3]}` into every reset and step info.

    Rendering happens here, inside the sub-env, before any vector autoreset can replace the state.
    """

    def __init__(
        self, env: gym.Env, cameras: Sequence[str], size: tuple[int, int], quality: RenderQuality = "fast"
    ) -> None:
        super().__init__(env)
        base = env.unwrapped
        if not hasattr(base, "model") or not hasattr(base, "data"):
            raise TaskError(f"{type(base).__name__} has no MuJoCo model, so cameras {list(cameras)} cannot be rendered")
        self.cameras = MujocoCameras(base, cameras, size, flip=getattr(base, "flip_frames", False), quality=quality)
        h, w = size
        self.frame_space = gym.spaces.Box(0, 255, (h, w, 3), np.uint8)

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        obs, info = self.env.reset(**kwargs)
        return obs, {**info, "frames": self.cameras.render()}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, "frames": self.cameras.render()}

    def close(self) -> None:
        self.cameras.close()
        super().close()
