"""Frames for CLIP: validation, crop-not-squash, each model's own normalisation, cheap rendering."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embodied.rewards.frames import (
    OPENAI_MEAN,
    OPENAI_STD,
    FrameError,
    FrameSpec,
    crop_box,
    set_render_quality,
    stack_views,
    to_tensor,
    validate_frames,
)


def _smooth(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([127 + 120 * np.sin(xx / 13.0), 127 + 120 * np.cos(yy / 9.0), 127 + 100 * np.sin((xx + yy) / 17.0)])
    return img.transpose(1, 2, 0).astype(np.uint8)


@pytest.mark.parametrize(
    ("frames", "needle"),
    [
        (np.zeros((2, 8, 8, 3), np.float32), "dtype must be uint8"),
        (np.zeros((2, 3, 8, 8), np.uint8), "channels-first"),
        (np.zeros((2, 8, 8, 4), np.uint8), "4 channels"),
        (np.zeros((8, 8, 3), np.uint8), "one frame"),
        (np.zeros((2, 8, 8), np.uint8), "expected 4 dims"),
        ([[0]], "numpy uint8 array"),
    ],
)
def test_bad_frames_are_one_line_errors(frames: object, needle: str) -> None:
    with pytest.raises(FrameError, match=needle) as info:
        validate_frames(frames)
    assert "\n" not in str(info.value)


def test_crop_box_keeps_the_aspect_ratio() -> None:
    assert crop_box(480, 640, (224, 224)) == (0, 80, 480, 480)
    assert crop_box(100, 50, (32, 32)) == (25, 0, 50, 50)
    assert crop_box(64, 64, (32, 32)) == (0, 0, 64, 64)
    assert crop_box(60, 100, (30, 40)) == (0, 10, 60, 80)  # non-square target: same 3:4 region


def test_same_size_is_exact_normalisation() -> None:
    frames = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    spec = FrameSpec((16, 16), mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 0.125))
    x = to_tensor(frames, spec).numpy()
    expected = (frames.transpose(0, 3, 1, 2) / 255.0 - np.array(spec.mean)[:, None, None]) / np.array(spec.std)[
        :, None, None
    ]
    assert x.shape == (3, 3, 16, 16) and x.dtype == np.float32
    np.testing.assert_allclose(x, expected, atol=1e-5)


def test_crop_not_squash() -> None:
    # a 64 x 128 frame: red left quarter, green middle half, blue right quarter. Cropping keeps only green;
    # squashing would mix all three colours into the output.
    frame = np.zeros((1, 64, 128, 3), np.uint8)
    frame[..., :32, 0] = 255
    frame[..., 32:96, 1] = 255
    frame[..., 96:, 2] = 255
    spec = FrameSpec((32, 32))
    x = to_tensor(frame, spec)[0].numpy()
    green = (np.array([0.0, 1.0, 0.0]) - np.array(OPENAI_MEAN)) / np.array(OPENAI_STD)
    np.testing.assert_allclose(x, np.broadcast_to(green[:, None, None], x.shape), atol=1e-5)


def test_matches_open_clip_eval_transform() -> None:
    from open_clip.transform import image_transform
    from PIL import Image

    tf = image_transform(64, is_train=False)  # PIL: short side -> 64 (bicubic, antialiased), centre crop
    square = _smooth(128, 128)
    np.testing.assert_allclose(
        to_tensor(square[None], FrameSpec((64, 64)))[0].numpy(), tf(Image.fromarray(square)), atol=1e-5
    )
    img = _smooth(120, 200)
    ref = tf(Image.fromarray(img)).numpy()
    ours = to_tensor(img[None], FrameSpec((64, 64)))[0].numpy()
    squash = torch.nn.functional.interpolate(
        torch.from_numpy(img).permute(2, 0, 1)[None].float(), size=(64, 64), mode="bicubic", antialias=True
    )[0].numpy()
    squash = (squash / 255 - np.array(OPENAI_MEAN)[:, None, None]) / np.array(OPENAI_STD)[:, None, None]
    assert np.abs(ours - ref).mean() < 0.01  # cropping before resizing shifts the grid by < 1 source pixel
    assert np.abs(squash - ref).mean() > 0.5  # squashing is a different image


def test_model_own_normalisation_and_transform_parsing() -> None:
    from open_clip.transform import image_transform

    from embodied.rewards.clip_adapt import small_clip

    model, preprocess, _ = small_clip(
        preprocess_cfg={"mean": (0.4, 0.5, 0.6), "std": (0.2, 0.3, 0.4)},
        image_size=32, patch_size=8, width=32, layers=1, embed_dim=16, text_width=32, text_layers=1,
    )  # fmt: skip
    spec = FrameSpec.from_model(model)
    assert spec.size == (32, 32) and spec.mean == (0.4, 0.5, 0.6) and spec.std == (0.2, 0.3, 0.4)
    assert FrameSpec.from_transform(preprocess) == spec
    siglip_like = image_transform(48, is_train=False, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert FrameSpec.from_transform(siglip_like) == FrameSpec((48, 48), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    with pytest.raises(FrameError, match="cannot tell"):
        FrameSpec.from_model(torch.nn.Linear(2, 2))


def test_stack_views_is_camera_major() -> None:
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = np.ones((2, 4, 4, 3), np.uint8)
    stacked, n = stack_views({"a": a, "b": b}, ("b", "a"))
    assert n == 2 and stacked[:2].max() == 1 and stacked[2:].max() == 0
    with pytest.raises(FrameError, match="no frames for camera"):
        stack_views({"a": a}, ("a", "c"))
    with pytest.raises(FrameError, match="different shapes"):
        stack_views({"a": a, "b": b[:, :2]}, ("a", "b"))


def test_fast_rendering_before_first_frame() -> None:
    import embodied

    env = embodied.make("metaworld-reach", frames=["corner"], frame_size=(24, 32))
    set_render_quality(env, "fast")
    try:
        model = env.unwrapped.model
        assert model.vis.quality.offsamples == 0 and not model.light_castshadow.any()
        _, info = env.reset(seed=0)
        frame = info["frames"]["corner"]
        assert frame.shape == (24, 32, 3) and frame.dtype == np.uint8 and frame.std() > 5
    finally:
        env.close()
    with pytest.raises(FrameError, match="fast' or 'full"):
        set_render_quality(env, "ultra")  # type: ignore[arg-type]
