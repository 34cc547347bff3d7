"""Augmentation on the training device (``augment_torch``) against the numpy/OpenCV path: the same geometry and
colour transfer, masks aligned, reproducible batches; the trainer's ``--augment-on`` choice, its memory guard and
a run that resumes with the other choice. Real packaged faces at 64 px, torch on the CPU, one thread."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from realtime_swap.errors import ConfigError
from realtime_swap.train import trainer as trainer_module
from realtime_swap.train.augment import WarpParams, apply_warp, reinhard_transfer
from realtime_swap.train.augment_torch import (
    DeviceAugmenter,
    DeviceTrainingSet,
    WarpDraws,
    affine_matrices,
    batch_generator,
    make_device_batch,
    reinhard_transfer_torch,
    sampling_grids,
)
from realtime_swap.train.config import Arch, AugmentOn, Preset, TrainConfig, model_config_for
from realtime_swap.train.data import AugmentSettings, TrainingSet
from realtime_swap.train.faceset import Faceset
from realtime_swap.train.trainer import Trainer, choose_augment_on

RES = 64
CPU = torch.device("cpu")
LEVEL = 1.0 / 255.0

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def sets(facesets: tuple[Faceset, Faceset]) -> tuple[TrainingSet, TrainingSet]:
    return TrainingSet.from_faceset(facesets[0], RES), TrainingSet.from_faceset(facesets[1], RES)


def _hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy()


def _sample(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)


def test_affine_and_flip_match_opencv(sets: tuple[TrainingSet, TrainingSet]) -> None:
    data = sets[0]
    draws = WarpDraws.draw(torch.Generator().manual_seed(3), 4, RES, flip_prob=0.5)
    draws = WarpDraws(draws.divisor, draws.nodes, draws.angle, draws.zoom, draws.shift, torch.tensor([1, 0, 1, 0]) > 0)
    _, target_grid = sampling_grids(draws, RES, CPU)
    images = torch.from_numpy(data.images[:4]).permute(0, 3, 1, 2).float() / 255.0
    got = _sample(images, target_grid)
    matrices = affine_matrices(draws.angle, draws.zoom, draws.shift, RES).numpy()
    inner = slice(4, RES - 4)
    for b in range(4):
        params = WarpParams(np.empty(0), np.empty(0), matrices[b], bool(draws.flip[b]))
        want = apply_warp(data.images[b].astype(np.float32) / 255.0, params, warp=False)
        unwarped = data.images[b].astype(np.float32) / 255.0
        assert np.abs(want - unwarped).max() > 20 * LEVEL  # the affine moved the face: the check means something
        diff = np.abs(_hwc(got[b]) - want)[inner, inner]
        assert diff.max() < LEVEL, (b, diff.max() * 255)


def test_local_warp_moves_pixels_like_the_numpy_warp(sets: tuple[TrainingSet, TrainingSet]) -> None:
    """The composed grid against cv2.remap of the same node grid (resized as augment.py does), then the affine:
    one interpolation against two, so close on average rather than to the level."""
    import cv2

    data = sets[0]
    draws = WarpDraws.draw(torch.Generator().manual_seed(7), 3, RES)
    warped_grid, target_grid = sampling_grids(draws, RES, CPU)
    images = torch.from_numpy(data.images[:3]).permute(0, 3, 1, 2).float() / 255.0
    warped, target = _sample(images, warped_grid), _sample(images, target_grid)
    matrices = affine_matrices(draws.angle, draws.zoom, draws.shift, RES).numpy()
    axis = np.arange(RES, dtype=np.float32)
    for b in range(3):
        cell = RES // int(draws.divisor[b])
        n = RES // cell + 1
        nodes = np.zeros((2, n, n), np.float32)
        nodes[:, 1:-1, 1:-1] = draws.nodes[b, :, : n - 2, : n - 2].numpy() * (cell * 0.24)
        map_x = axis[None, :] + cv2.resize(nodes[0], (RES, RES), interpolation=cv2.INTER_LINEAR)
        map_y = axis[:, None] + cv2.resize(nodes[1], (RES, RES), interpolation=cv2.INTER_LINEAR)
        want = apply_warp(data.images[b].astype(np.float32) / 255.0, WarpParams(map_x, map_y, matrices[b], False), True)
        moved = np.abs(_hwc(target[b]) - want).mean()
        diff = np.abs(_hwc(warped[b]) - want).mean()
        assert diff < 4 * LEVEL and diff < moved / 2, (b, diff * 255, moved * 255)


def test_mask_and_eyes_mouth_stay_aligned_with_the_face(sets: tuple[TrainingSet, TrainingSet]) -> None:
    """Masks made from the image's own channels must come out equal to the warped image's channels."""
    data = sets[0]
    aligned = TrainingSet(data.images, data.images[..., 1].copy(), data.images[..., 2].copy())
    device_set = DeviceTrainingSet.upload(aligned, CPU)
    batch = make_device_batch(batch_generator(0, 5, 0), device_set, 6, AugmentSettings(True, True, 0.0))
    torch.testing.assert_close(batch.mask[:, 0], batch.target[:, 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(batch.eyes_mouth[:, 0], batch.target[:, 2], atol=1e-5, rtol=0)
    assert (batch.warped - batch.target).abs().mean() > 2 * LEVEL  # the input is warped, the target not


def test_colour_transfer_matches_reinhard_transfer(sets: tuple[TrainingSet, TrainingSet]) -> None:
    src, dst = sets
    refs = DeviceTrainingSet.upload(dst, CPU)
    images = src.images[:3].astype(np.float32) / 255.0
    picks = [2, 0, 3]
    got = reinhard_transfer_torch(
        torch.from_numpy(images).permute(0, 3, 1, 2), refs.lab_mean[picks], refs.lab_std[picks]
    )
    for b, ref in enumerate(picks):
        want = reinhard_transfer(images[b], dst.images[ref].astype(np.float32) / 255.0)
        assert np.abs(want - images[b]).max() > 10 * LEVEL
        assert np.abs(_hwc(got[b]) - want).max() < 0.05 * LEVEL


def test_batches_are_reproducible_and_differ_across_iterations(sets: tuple[TrainingSet, TrainingSet]) -> None:
    src, dst = sets
    settings = AugmentSettings(True, True, 0.5)
    first, again = DeviceAugmenter(src, dst, 4, settings, 3, CPU), DeviceAugmenter(src, dst, 4, settings, 3, CPU)
    a_src, a_dst = first.get(7)
    b_src, b_dst = again.get(7)
    for name in ("warped", "target", "mask", "eyes_mouth"):
        torch.testing.assert_close(getattr(a_src, name), getattr(b_src, name), rtol=0, atol=0)
        torch.testing.assert_close(getattr(a_dst, name), getattr(b_dst, name), rtol=0, atol=0)
    next_src, _ = first.get(8)
    other_seed, _ = DeviceAugmenter(src, dst, 4, settings, 4, CPU).get(7)
    assert not torch.equal(a_src.warped, next_src.warped) and not torch.equal(a_src.warped, other_seed.warped)
    assert not torch.equal(a_src.warped, a_dst.warped)
    assert a_src.warped.shape == (4, 3, RES, RES) and a_src.mask.shape == (4, 1, RES, RES)
    assert a_src.warped.dtype == torch.float32 and 0 <= float(a_src.warped.min()) <= float(a_src.warped.max()) <= 1


def test_choice_of_where_to_augment(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda")
    free = {"bytes": 1000}
    monkeypatch.setattr(trainer_module, "free_device_memory", lambda device: free["bytes"])
    assert choose_augment_on(AugmentOn.AUTO, CPU, 0, 10)[0] is AugmentOn.CPU
    assert choose_augment_on(AugmentOn.AUTO, cuda, 2, 10)[0] is AugmentOn.CPU
    assert choose_augment_on(AugmentOn.AUTO, cuda, 0, 10)[0] is AugmentOn.DEVICE
    assert choose_augment_on(AugmentOn.CPU, cuda, 0, 10)[0] is AugmentOn.CPU
    assert choose_augment_on(AugmentOn.DEVICE, cuda, 4, 250)[0] is AugmentOn.DEVICE
    where, why = choose_augment_on(AugmentOn.DEVICE, cuda, 0, 251)
    assert where is AugmentOn.CPU and "25%" in why
    with pytest.raises(ConfigError, match="--augment-on must be one of auto, cpu, device"):
        TrainConfig(augment_on="gpu")  # type: ignore[arg-type]


def _config(**kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        iterations=2, batch_size=2, lr=5e-4, device="cpu", preview_every=1000, save_every=1000, log_every=1
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_memory_guard_falls_back_to_the_cpu_with_a_message(
    facesets: tuple[Faceset, Faceset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(trainer_module, "free_device_memory", lambda device: 1024)
    mc = model_config_for(Arch.DF, Preset.TINY, RES)
    with caplog.at_level(logging.INFO, logger=trainer_module.__name__):
        trainer = Trainer(*facesets, tmp_path / "run", mc, _config(augment_on="device"), progress=False)
    assert trainer.augment_on is AugmentOn.CPU and trainer.device_augmenter is None
    (line,) = [r.getMessage() for r in caplog.records if "augmenting batches" in r.getMessage()]
    assert line.startswith("augmenting batches on cpu") and "MiB free" in line


def test_training_on_device_batches_resumes_on_cpu_batches(facesets: tuple[Faceset, Faceset], tmp_path: Path) -> None:
    mc = model_config_for(Arch.LIAE, Preset.TINY, RES)
    out = tmp_path / "run"
    first = Trainer(*facesets, out, mc, _config(augment_on="device", flip=True), progress=False)
    assert first.augment_on is AugmentOn.DEVICE and first.device_augmenter is not None
    done = first.run()
    assert done.iteration == 2 and all(np.isfinite([s, d]).all() for _, s, d in done.losses)
    resumed = Trainer(*facesets, out, mc, _config(iterations=4, augment_on="cpu"), resume=True, progress=False)
    assert resumed.augment_on is AugmentOn.CPU and resumed.iteration == 2
    more = resumed.run()
    assert more.start_iteration == 2 and more.iteration == 4
    assert all(np.isfinite([s, d]).all() for _, s, d in more.losses)


def test_train_command_takes_augment_on(facesets: tuple[Faceset, Faceset], tmp_path: Path) -> None:
    import argparse

    from realtime_swap.train import command
    from realtime_swap.train.checkpoint import read_state

    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    argv = ["train", "--src", str(facesets[0].path), "--dst", str(facesets[1].path), "--out", str(tmp_path / "cli")]
    argv += ["--preset", "tiny", "--iterations", "1", "--batch", "2", "--device", "cpu", "--quiet"]
    args = parser.parse_args([*argv, "--augment-on", "device"])
    assert args.func(args) == 0
    assert read_state(tmp_path / "cli").train_config.augment_on is AugmentOn.DEVICE
    with pytest.raises(SystemExit):
        parser.parse_args([*argv, "--augment-on", "gpu"])
