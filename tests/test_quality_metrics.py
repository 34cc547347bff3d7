"""The quality report's figures on synthetic input whose value is known."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from realtime_swap.quality.metrics import (
    FlickerAccumulator,
    delta_e_between,
    delta_e_to_ring,
    landmark_jitter,
    landmark_static_rms,
    masked_ssim,
    seam_energy,
    skin_pixels,
)


def _texture(seed: int = 0, size: tuple[int, int] = (160, 200)) -> np.ndarray:
    """A BGR image of fine, even texture (blurred noise around mid-grey)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 25.0, (*size, 3)).astype(np.float32)
    return np.clip(128.0 + cv2.GaussianBlur(noise, (0, 0), 1.0), 0, 255).astype(np.uint8)


def _square(size: tuple[int, int] = (160, 200)) -> np.ndarray:
    alpha = np.zeros(size, np.float32)
    alpha[40:120, 50:150] = 1.0
    return alpha


def _paste(background: np.ndarray, face: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return np.clip(face * a + background * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)


def test_seam_energy_is_high_for_a_hard_paste_lower_feathered_and_about_one_without_a_seam() -> None:
    background = _texture(0)
    face = np.clip(_texture(1).astype(np.int16) + 40, 0, 255).astype(np.uint8)  # another, brighter texture
    hard = _square()
    feathered = np.clip(cv2.GaussianBlur(hard, (0, 0), 4.0), 0.0, 1.0)
    e_hard = seam_energy(_paste(background, face, hard), hard)
    e_feathered = seam_energy(_paste(background, face, feathered), feathered)
    e_none = seam_energy(background, hard)  # the same picture across the edge: nothing pasted
    assert e_hard is not None and e_feathered is not None and e_none is not None
    assert e_hard > 3.0
    assert e_feathered < 0.6 * e_hard
    assert 0.8 < e_none < 1.25
    assert seam_energy(background, np.zeros((160, 200), np.float32)) is None  # no region, no edge


def test_delta_e_is_zero_for_a_matching_face_and_the_ciede2000_lightness_term_for_a_grey_step() -> None:
    from skimage.color import rgb2lab

    alpha = _square()
    same = np.full((160, 200, 3), 120, np.uint8)
    value = delta_e_to_ring(same, alpha)
    assert value is not None and value < 1e-6
    step = same.copy()
    step[alpha >= 0.5] = 140
    l_out = rgb2lab(np.full((1, 1, 3), 120 / 255.0))[0, 0, 0]
    l_in = rgb2lab(np.full((1, 1, 3), 140 / 255.0))[0, 0, 0]
    mean_l = 0.5 * (l_in + l_out)
    s_l = 1.0 + 0.015 * (mean_l - 50.0) ** 2 / np.sqrt(20.0 + (mean_l - 50.0) ** 2)  # CIEDE2000's S_L
    value = delta_e_to_ring(step, alpha)
    assert value == pytest.approx(abs(l_in - l_out) / s_l, rel=1e-6)
    # the same step between two whole images, over the face region: the swapped face vs the original face
    assert delta_e_between(same, same, alpha) == pytest.approx(0.0, abs=1e-9)
    brighter = np.full((160, 200, 3), 140, np.uint8)
    assert delta_e_between(brighter, same, alpha) == pytest.approx(abs(l_in - l_out) / s_l, rel=1e-6)


def test_delta_e_ring_keeps_only_skin_pixels_when_asked() -> None:
    alpha = _square()
    region = alpha >= 0.5
    image = np.full((160, 200, 3), (200, 60, 20), np.uint8)  # blue background (BGR)
    image[region] = (110, 140, 200)  # a skin tone
    image[30:130, 40:160][~region[30:130, 40:160]] = (120, 150, 205)  # a skin ring (neck, forehead) around it
    skin = skin_pixels(image)
    assert skin[region].all() and not skin[0, 0]
    with_skin = delta_e_to_ring(image, alpha, skin)
    assert with_skin is not None and with_skin < 5.0  # face vs the skin ring: close
    everything = delta_e_to_ring(image, alpha)
    assert everything is not None and everything > 2 * with_skin  # the blue background pulls the ring's mean away
    assert delta_e_to_ring(image, alpha, np.zeros_like(skin)) is None  # no skin in the ring


def _clip(frames: int = 8) -> list[np.ndarray]:
    """A source clip whose face region changes a little each frame (lighting drift over texture)."""
    base = _texture(2).astype(np.int16)
    return [np.clip(base + 3 * i, 0, 255).astype(np.uint8) for i in range(frames)]


def test_flicker_ratio_is_one_when_the_swap_adds_nothing() -> None:
    alpha = _square()
    acc = FlickerAccumulator()
    for frame in _clip():
        acc.add(frame, frame, alpha)
    assert acc.pairs == 7
    assert acc.ratio == pytest.approx(1.0)


def test_flicker_ratio_is_zero_for_a_frozen_face_and_above_one_for_a_noisy_one() -> None:
    alpha = _square()
    region = alpha >= 0.5
    frozen, noisy = FlickerAccumulator(), FlickerAccumulator()
    rng = np.random.default_rng(3)
    clip = _clip()
    for frame in clip:
        still = frame.copy()
        still[region] = clip[0][region]
        frozen.add(frame, still, alpha)
        jitter = frame.astype(np.int16) + rng.integers(-12, 13, frame.shape)
        noisy.add(frame, np.clip(jitter, 0, 255).astype(np.uint8), alpha)
    assert frozen.ratio == pytest.approx(0.0)
    assert noisy.ratio is not None and noisy.ratio > 1.5


def test_a_frame_without_a_face_breaks_the_pair() -> None:
    alpha = _square()
    clip = _clip(4)
    acc = FlickerAccumulator()
    acc.add(clip[0], clip[0], alpha)
    acc.add(clip[1], clip[1], None)
    acc.add(clip[2], clip[2], alpha)
    acc.add(clip[3], clip[3], alpha)
    assert acc.pairs == 1


def test_landmark_jitter_ignores_smooth_motion_and_measures_frame_to_frame_shake() -> None:
    t = np.arange(60, dtype=np.float64)[:, None, None]
    points = np.random.default_rng(4).uniform(0, 300, (1, 20, 2))
    moving = points + t * np.array([1.5, -0.7])  # straight-line motion
    assert landmark_jitter(moving) == pytest.approx(0.0, abs=1e-9)
    shake = np.where(np.arange(60) % 2 == 0, 0.8, -0.8)[:, None, None] * np.array([1.0, 0.0])
    # alternate +-0.8 px in x: all of it is high frequency (the 3-sigma-truncated Gaussian passes < 0.1 % of it)
    assert landmark_jitter(moving + shake) == pytest.approx(0.8, rel=1e-3)
    assert landmark_static_rms(points + shake) == pytest.approx(0.8)
    assert landmark_jitter(moving[:5]) is None  # too short to separate motion from shake


def test_masked_ssim_is_one_for_identical_faces_and_looks_only_inside_the_mask() -> None:
    a = _texture(5, (64, 64))
    mask = np.zeros((64, 64), np.float32)
    mask[16:48, 16:48] = 1.0
    b = a.copy()
    b[:8] = 0  # differs far outside the mask (more than SSIM's 7 px window)
    assert masked_ssim(a, a, mask) == pytest.approx(1.0)
    assert masked_ssim(a, b, mask) == pytest.approx(1.0)
    assert masked_ssim(a, _texture(6, (64, 64)), mask) < 0.5
    with pytest.raises(ValueError, match="empty"):
        masked_ssim(a, a, np.zeros((64, 64), np.float32))
