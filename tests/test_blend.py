"""Paste-back: region-only warp and composite, masks, seamless clone, sharpen."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import data

from realtime_swap.blend import (
    BlendMode,
    combine_masks,
    face_region,
    paste_back_full_frame,
    paste_back_roi,
    process_mask,
)

S = 256


def _frame(width: int = 960, height: int = 720) -> np.ndarray:
    """The astronaut photo (a real face) scaled into a larger BGR frame."""
    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    return cv2.resize(astronaut, (width, height), interpolation=cv2.INTER_AREA)


def _matrix(cx: float, cy: float, side: float, angle: float = 12.0) -> np.ndarray:
    """frame px -> crop px: a square of ``side`` frame px around (cx, cy), rotated, onto the S x S crop."""
    m = cv2.getRotationMatrix2D((cx, cy), angle, S / side)
    m[:, 2] += np.array([S / 2, S / 2]) - np.array([cx, cy])
    return m


def _face_mask() -> np.ndarray:
    mask = np.zeros((S, S), np.float32)
    cv2.ellipse(mask, (128, 140), (80, 105), 0, 0, 360, 1.0, -1)
    return mask


def _warped_alpha(mask: np.ndarray, matrix: np.ndarray, shape: tuple[int, ...], **kw: int) -> np.ndarray:
    """The processed mask in frame space, computed independently of paste_back's region logic."""
    return cv2.warpAffine(
        process_mask(mask, kw.get("erode_px", 0), kw.get("blur_px", 8)),
        matrix,
        (shape[1], shape[0]),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
    )


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    frame = _frame()
    matrix = _matrix(425, 165, 250)  # the astronaut's face, about 1:1 in scale
    return frame, matrix, _face_mask()


@pytest.mark.parametrize("crop_dtype", [np.uint8, np.float32], ids=["u8", "f32"])
def test_identity_model_returns_the_frame(scene, crop_dtype: type) -> None:
    frame, matrix, mask = scene
    crop = cv2.warpAffine(frame, matrix, (S, S), flags=cv2.INTER_LINEAR)  # "the model changed nothing"
    if crop_dtype is np.float32:
        crop = crop.astype(np.float32) / 255.0
    out = paste_back_roi(frame.copy(), crop, mask, matrix)
    diff = np.abs(out.astype(np.int16) - frame.astype(np.int16)).max(axis=2)
    alpha = _warped_alpha(mask, matrix, frame.shape)
    inside = alpha > 0.99
    assert inside.sum() > 20000
    # Inside the mask, only resampling (frame -> crop -> frame, bilinear both ways) separates the two: the
    # pasted face equals OpenCV's own inverse warp of the crop up to rounding ...
    crop_u8 = crop if crop.dtype == np.uint8 else (crop * 255 + 0.5).astype(np.uint8)
    inverse = cv2.warpAffine(
        crop_u8, matrix, (frame.shape[1], frame.shape[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    assert np.abs(out[inside].astype(np.int16) - inverse[inside]).max() <= 1
    # ... and that round trip's error is the interpolation error: small on average, larger on sharp detail.
    assert diff[inside].mean() < 3.0 and np.percentile(diff[inside], 99) < 20
    # Outside the mask: bit-exact.
    assert np.all(diff[alpha == 0.0] == 0)


def test_no_pixel_outside_the_face_region_is_touched(scene) -> None:
    frame, matrix, mask = scene
    crop = np.full((S, S, 3), (20, 200, 60), np.uint8)  # a face that differs everywhere
    out = paste_back_roi(frame.copy(), crop, mask, matrix)
    region = face_region(process_mask(mask, 0, 8), matrix, frame.shape)
    assert region is not None
    outside = np.ones(frame.shape[:2], bool)
    outside[region.y0 : region.y1, region.x0 : region.x1] = False
    assert np.array_equal(out[outside], frame[outside])
    changed = np.any(out != frame, axis=2)
    assert changed.sum() > 20000
    # The region is tight: it is the face's, not the frame's (and every changed pixel has a non-zero mask).
    assert region.width * region.height < 0.25 * frame.shape[0] * frame.shape[1]
    assert np.all(_warped_alpha(mask, matrix, frame.shape)[changed] > 0.0)


@pytest.mark.parametrize("mode", list(BlendMode), ids=lambda m: m.value)
def test_region_and_full_frame_paste_agree(scene, mode: BlendMode) -> None:
    frame, matrix, mask = scene
    crop = cv2.warpAffine(frame, matrix, (S, S)) // 2 + 60
    roi = paste_back_roi(frame.copy(), crop, mask, matrix, mode=mode, sharpen=0.5, erode_px=3, blur_px=10)
    full = paste_back_full_frame(frame.copy(), crop, mask, matrix, mode=mode, sharpen=0.5, erode_px=3, blur_px=10)
    assert np.abs(roi.astype(np.int16) - full.astype(np.int16)).max() <= 1
    assert not np.array_equal(roi, frame)


def test_opacity_scales_the_composite(scene) -> None:
    frame, matrix, mask = scene
    colour = np.array([30, 90, 250], np.float32)
    crop = np.full((S, S, 3), colour, np.uint8)
    assert np.array_equal(paste_back_roi(frame.copy(), crop, mask, matrix, opacity=0.0), frame)
    half = paste_back_roi(frame.copy(), crop, mask, matrix, opacity=0.5)
    inside = _warped_alpha(mask, matrix, frame.shape) > 0.999
    expected = (frame[inside].astype(np.float32) + colour) / 2
    assert np.abs(half[inside] - expected).max() <= 1.0


def test_erode_and_blur_shape_the_mask(scene) -> None:
    frame, matrix, mask = scene
    crop = np.full((S, S, 3), 255, np.uint8)

    def changed(erode_px: int) -> int:
        out = paste_back_roi(frame.copy(), crop, mask, matrix, erode_px=erode_px, blur_px=0)
        return int(np.any(out != frame, axis=2).sum())

    assert changed(12) < changed(0) < changed(-12)
    hard = process_mask(mask, 0, 0)
    soft = process_mask(mask, 0, 12)
    assert set(np.unique(hard)) <= {0.0, 1.0}
    assert 0.05 < np.mean((soft > 0.0) & (soft < 1.0)) < 0.3  # a feathered band along the edge
    assert np.mean(soft == 1.0) > 0.2 and np.all((soft == 0.0) | (soft > 0.9 / 255))
    assert soft[0].max() == soft[-1].max() == soft[:, 0].max() == soft[:, -1].max() == 0.0
    full = process_mask(np.ones((S, S), np.float32), 0, 12)
    assert full.max() == pytest.approx(1.0) and full[0].max() == 0.0  # even a full mask fades out before the edge


def test_seamless_mode_removes_a_colour_offset(scene) -> None:
    frame, matrix, mask = scene
    original = cv2.warpAffine(frame, matrix, (S, S), flags=cv2.INTER_LINEAR)
    shifted = np.clip(original.astype(np.int16) + np.array([40, -30, 25], np.int16), 0, 255).astype(np.uint8)
    alpha = paste_back_roi(frame.copy(), shifted, mask, matrix, mode=BlendMode.ALPHA, blur_px=4)
    seamless = paste_back_roi(frame.copy(), shifted, mask, matrix, mode=BlendMode.SEAMLESS, blur_px=4)
    inside = _warped_alpha(mask, matrix, frame.shape, blur_px=4) > 0.99
    err_alpha = np.abs(alpha[inside].astype(np.float32) - frame[inside]).mean()
    err_seamless = np.abs(seamless[inside].astype(np.float32) - frame[inside]).mean()
    assert err_alpha > 20.0 and err_seamless < 0.5 * err_alpha


def test_sharpen_adds_detail(scene) -> None:
    frame, matrix, mask = scene
    crop = cv2.GaussianBlur(cv2.warpAffine(frame, matrix, (S, S)), (0, 0), 2.0)
    plain = paste_back_roi(frame.copy(), crop, mask, matrix, blur_px=4)
    sharp = paste_back_roi(frame.copy(), crop, mask, matrix, blur_px=4, sharpen=1.5)
    inside = _warped_alpha(mask, matrix, frame.shape, blur_px=4) > 0.99

    def detail(image: np.ndarray) -> float:
        return float(np.abs(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_32F))[inside].mean())

    assert detail(sharp) > 1.15 * detail(plain)


def test_faces_partly_or_wholly_outside_the_frame() -> None:
    frame = _frame(640, 480)
    crop = np.full((S, S, 3), 200, np.uint8)
    mask = _face_mask()
    corner = paste_back_roi(frame.copy(), crop, mask, _matrix(20, 10, 300))  # centred near the corner
    assert not np.array_equal(corner, frame)
    gone = paste_back_roi(frame.copy(), crop, mask, _matrix(-900, -900, 300))
    assert np.array_equal(gone, frame)
    assert face_region(mask, _matrix(-900, -900, 300), frame.shape) is None
    assert face_region(np.zeros((S, S), np.float32), _matrix(320, 240, 300), frame.shape) is None


@settings(max_examples=25, deadline=None)
@given(
    width=st.integers(16, 400),
    height=st.integers(16, 300),
    cx=st.floats(-100, 500),
    cy=st.floats(-100, 400),
    side=st.floats(8, 600),
    angle=st.floats(-180, 180),
    blur=st.integers(0, 12),
    erode=st.integers(-6, 6),
)
def test_paste_back_only_writes_inside_the_region(
    width: int, height: int, cx: float, cy: float, side: float, angle: float, blur: int, erode: int
) -> None:
    rng = np.random.default_rng(width * 1000 + height)
    frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    crop = rng.random((S, S, 3), dtype=np.float32)
    mask = _face_mask()
    matrix = _matrix(cx, cy, side, angle)
    out = paste_back_roi(frame.copy(), crop, mask, matrix, blur_px=blur, erode_px=erode)
    region = face_region(process_mask(mask, erode, blur), matrix, frame.shape)
    changed = np.any(out != frame, axis=2)
    if region is None:
        assert not changed.any()
        return
    outside = np.ones(frame.shape[:2], bool)
    outside[region.y0 : region.y1, region.x0 : region.x1] = False
    assert not changed[outside].any()


def test_combine_masks() -> None:
    rng = np.random.default_rng(1)
    learned, landmark, mouth = (rng.random((64, 64)).astype(np.float32) for _ in range(3))
    assert np.allclose(combine_masks(learned), learned)
    assert np.allclose(combine_masks(learned, landmark), learned * landmark)
    combined = combine_masks(learned, landmark, mouth)
    assert combined.dtype == np.float32 and np.allclose(combined, learned * landmark * (1 - mouth))
    assert np.all(combine_masks(learned * 3, None, np.ones((64, 64), np.float32)) == 0.0)  # mouth kept
    with pytest.raises(ValueError, match="landmark mask"):
        combine_masks(learned, landmark[:10])


def test_invalid_arguments_raise(scene) -> None:
    frame, matrix, mask = scene
    crop = np.zeros((S, S, 3), np.uint8)
    with pytest.raises(ValueError, match="frame must be"):
        paste_back_roi(frame[:, :, 0], crop, mask, matrix)
    with pytest.raises(ValueError, match="frame must be"):
        paste_back_roi(frame[:, ::2], crop, mask, matrix)  # not contiguous: cannot be written in place
    with pytest.raises(ValueError, match="crop must be"):
        paste_back_roi(frame.copy(), crop[:, :100], mask, matrix)
    with pytest.raises(ValueError, match="mask must be"):
        paste_back_roi(frame.copy(), crop, mask[:10], matrix)
    with pytest.raises(ValueError, match="matrix must be"):
        paste_back_roi(frame.copy(), crop, mask, np.eye(3))
    with pytest.raises(ValueError, match="opacity"):
        paste_back_roi(frame.copy(), crop, mask, matrix, opacity=2.0)
