"""Architectures, configuration, losses, masks and augmentation of the trainer (CPU, tiny sizes)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from realtime_swap.errors import ConfigError
from realtime_swap.train.archs import DFModel, LIAEModel, build_model, count_parameters
from realtime_swap.train.augment import apply_warp, reinhard_transfer, sample_warp_params
from realtime_swap.train.config import Arch, ModelConfig, Preset, TrainConfig, model_config_for
from realtime_swap.train.losses import (
    LossWeights,
    PatchDiscriminator,
    dssim,
    gan_discriminator_loss,
    reconstruction_loss,
    ssim,
)
from realtime_swap.train.masks import LEFT_EYE, LIPS_OUTER, RIGHT_EYE, eyes_mouth_mask, face_hull_mask
from realtime_swap.train.sample_faces import jittered_crops

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.mark.parametrize("arch", list(Arch))
@pytest.mark.parametrize("resolution", [64, 80])
def test_architectures_map_faces_to_faces_and_masks(arch: Arch, resolution: int) -> None:
    torch.manual_seed(0)
    model = build_model(model_config_for(arch, Preset.TINY, resolution))
    assert isinstance(model, DFModel if arch is Arch.DF else LIAEModel)
    x = torch.rand(2, 3, resolution, resolution)
    with torch.no_grad():
        rec = model.reconstruct(x, x.flip(0))
        out = model.swap(x)
    for face, mask in ((rec.src_face, rec.src_mask), (rec.dst_face, rec.dst_mask)):
        assert face.shape == (2, 3, resolution, resolution) and mask.shape == (2, 1, resolution, resolution)
        assert float(face.min()) >= 0.0 and float(face.max()) <= 1.0
    assert out.celeb_face.shape == (2, 3, resolution, resolution)
    assert out.celeb_mask.shape == out.dst_mask.shape == (2, 1, resolution, resolution)


def test_swap_uses_the_source_decoder_on_the_destination_code() -> None:
    torch.manual_seed(0)
    model = build_model(model_config_for(Arch.DF, Preset.TINY))
    assert isinstance(model, DFModel)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        swapped = model.swap(x)
        rec = model.reconstruct(x, x)  # src path of x == swap of x for DF (shared encoder + inter)
    torch.testing.assert_close(swapped.celeb_face, rec.src_face)
    torch.testing.assert_close(swapped.dst_mask, rec.dst_mask)


def test_widths_follow_the_config() -> None:
    small = build_model(ModelConfig(Arch.DF, 64, e_dims=8, ae_dims=32, d_dims=8, d_mask_dims=4))
    wide = build_model(ModelConfig(Arch.DF, 64, e_dims=8, ae_dims=64, d_dims=16, d_mask_dims=4))
    assert count_parameters(wide) > 2 * count_parameters(small)
    assert isinstance(small, DFModel) and small.inter.dense1.out_features == 32


@pytest.mark.parametrize("resolution", [48, 72, 336, 100])
def test_bad_resolutions_are_refused(resolution: int) -> None:
    with pytest.raises(ConfigError, match=r"64\.\.320 px in steps of 16"):
        model_config_for(Arch.DF, Preset.TINY, resolution)


def test_configs_round_trip_and_reject_unknown_keys() -> None:
    mc = model_config_for(Arch.LIAE, Preset.LIVE, 128)
    assert ModelConfig.from_dict(mc.to_dict()) == mc and mc.resolution == 128 and mc.preset == "live"
    tc = TrainConfig(iterations=5, lr=1e-3)
    assert TrainConfig.from_dict(tc.to_dict()) == tc
    with pytest.raises(ConfigError, match="unknown keys"):
        ModelConfig.from_dict({**mc.to_dict(), "depth": 5})
    with pytest.raises(ConfigError, match="color_transfer"):
        TrainConfig(color_transfer=2.0)
    other = model_config_for(Arch.DF, Preset.LIVE, 160)
    assert mc.differences(other) == ["arch df != liae", "resolution 160 != 128"]


def test_dssim_is_zero_for_equal_images_and_grows_with_noise() -> None:
    face = torch.from_numpy(jittered_crops("astronaut", 1, 128)[0]).permute(2, 0, 1)[None].float() / 255
    noise = torch.randn(face.shape, generator=torch.Generator().manual_seed(0))
    assert float(dssim(face, face)[0]) == pytest.approx(0.0, abs=1e-6)
    small, large = (float(dssim(face, (face + s * noise).clamp(0, 1))[0]) for s in (0.02, 0.2))
    assert 0 < small < large <= 1
    # 128 px is multi-scale: the mean of the 11 px and 5 px windows
    noisy = (face + 0.1 * noise).clamp(0, 1)
    expected = ((1 - ssim(face, noisy, 11)) / 2 + (1 - ssim(face, noisy, 5)) / 2) / 2
    torch.testing.assert_close(dssim(face, noisy), expected)


def _mesh_like_landmarks(size: int) -> np.ndarray:
    """468 points: everything on a face-sized ellipse, eyes and lips on small circles where faces have them."""
    t = np.linspace(0, 2 * np.pi, 468, endpoint=False)
    pts = np.stack([size / 2 + 0.4 * size * np.cos(t), size / 2 + 0.45 * size * np.sin(t)], 1).astype(np.float32)
    for loop, centre, radius in (
        (RIGHT_EYE, (0.35, 0.4), 0.05),
        (LEFT_EYE, (0.65, 0.4), 0.05),
        (LIPS_OUTER, (0.5, 0.72), 0.08),
    ):
        a = np.linspace(0, 2 * np.pi, len(loop), endpoint=False)
        pts[list(loop)] = np.stack([centre[0] + radius * np.cos(a), centre[1] + radius * np.sin(a)], 1) * size
    return pts


def test_landmark_masks_cover_the_face_and_the_eyes_and_mouth() -> None:
    lms = _mesh_like_landmarks(64)
    hull = face_hull_mask(lms, 64)
    em = eyes_mouth_mask(lms, 64)
    assert hull[32, 32] == 1 and hull[1, 1] == 0
    assert em[int(0.4 * 64), int(0.35 * 64)] > 0.9 and em[int(0.72 * 64), 32] > 0.9
    assert em[32, 32] < 0.05 and em[5, 5] == 0  # cheek/nose and background are not boosted
    assert 0.03 < em.mean() < 0.2


def test_eyes_and_mouth_errors_weigh_more() -> None:
    size = 64
    em = torch.from_numpy(eyes_mouth_mask(_mesh_like_landmarks(size), size))[None, None]
    target = torch.full((1, 3, size, size), 0.5)
    mask = torch.ones(1, 1, size, size)
    region = em > 0.5
    inside, outside = target.clone(), target.clone()
    inside[region.expand_as(target)] += 0.2
    n = int(region.sum())
    flat = outside.view(-1)
    flat[torch.nonzero((em == 0).expand_as(target).reshape(-1))[: 3 * n, 0]] += 0.2  # same error count
    w = LossWeights()
    loss_in = reconstruction_loss(inside, mask, target, mask, em, w, masked=False)
    loss_out = reconstruction_loss(outside, mask, target, mask, em, w, masked=False)
    assert float(loss_out.eyes_mouth[0]) == 0.0 and float(loss_in.eyes_mouth[0]) > 0
    assert float(loss_in.mse[0]) == pytest.approx(float(loss_out.mse[0]), rel=1e-4)
    assert float(loss_in.total[0]) > 2 * float(loss_out.total[0])


def test_mask_loss_and_masked_training() -> None:
    target = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(2, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    pred = target.clone()
    pred[..., :4, :4] = 1 - pred[..., :4, :4]  # wrong only far outside the (blurred) mask
    w = LossWeights()
    em = torch.zeros_like(mask)
    masked = reconstruction_loss(pred, mask, target, mask, em, w, masked=True)
    plain = reconstruction_loss(pred, mask, target, mask, em, w, masked=False)
    assert float(masked.mse.max()) == 0.0 and float(plain.mse.min()) > 0
    assert float(masked.mask.max()) == 0.0
    wrong_mask = reconstruction_loss(pred, 1 - mask, target, mask, em, w, masked=True)
    assert float(wrong_mask.mask.min()) == pytest.approx(1.0)


def test_patch_discriminator_and_gan_losses() -> None:
    disc = PatchDiscriminator(16)
    logits = disc(torch.rand(2, 3, 64, 64))
    assert logits.shape == (2, 1, 8, 8)
    confident = gan_discriminator_loss(torch.full((2, 1, 8, 8), 10.0), torch.full((2, 1, 8, 8), -10.0))
    fooled = gan_discriminator_loss(torch.full((2, 1, 8, 8), -10.0), torch.full((2, 1, 8, 8), 10.0))
    assert float(confident) < 1e-3 < 5 < float(fooled)


def test_random_warp_is_seeded_and_keeps_targets_aligned() -> None:
    face = jittered_crops("t1_c", 1, 64)[0].astype(np.float32) / 255
    p1 = sample_warp_params(np.random.default_rng(5), 64)
    p2 = sample_warp_params(np.random.default_rng(5), 64)
    np.testing.assert_array_equal(p1.map_x, p2.map_x)
    np.testing.assert_array_equal(p1.matrix, p2.matrix)
    warped, target = apply_warp(face, p1, warp=True), apply_warp(face, p1, warp=False)
    assert warped.shape == target.shape == face.shape and warped.dtype == np.float32
    assert np.abs(warped - target).mean() > 0.01  # the local warp moves pixels
    expected = cv2.warpAffine(face, p1.matrix, (64, 64), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    np.testing.assert_allclose(target, expected, atol=1e-6)  # target: affine only
    flipped = sample_warp_params(np.random.default_rng(5), 64, flip_prob=1.0)
    np.testing.assert_allclose(apply_warp(face, flipped, warp=False), target[:, ::-1], atol=1e-6)


def test_reinhard_transfer_matches_reference_statistics() -> None:
    src = jittered_crops("astronaut", 1, 64)[0].astype(np.float32) / 255
    ref = jittered_crops("t1_d", 1, 64)[0].astype(np.float32) / 255
    out = reinhard_transfer(src, ref)
    assert out.shape == src.shape and out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    lab_out = cv2.cvtColor(out, cv2.COLOR_BGR2LAB).reshape(-1, 3)
    lab_ref = cv2.cvtColor(ref, cv2.COLOR_BGR2LAB).reshape(-1, 3)
    lab_src = cv2.cvtColor(src, cv2.COLOR_BGR2LAB).reshape(-1, 3)
    # colour statistics move to the reference's (clipping to the gamut leaves a small residue)
    assert np.abs(lab_out.mean(0) - lab_ref.mean(0)).max() < 2.0
    assert np.abs(lab_src.mean(0) - lab_ref.mean(0)).max() > 5.0
    np.testing.assert_allclose(lab_out.std(0), lab_ref.std(0), rtol=0.1, atol=1.0)
