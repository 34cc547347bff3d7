"""Training options for CUDA that run on the CPU too: the AMP dtype choice, channels_last, ``--init-from``
(2-step runs, tiny preset at 64 px); the AMP run itself is a ``gpu`` test."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from realtime_swap.errors import ConfigError, ModelError
from realtime_swap.train import command
from realtime_swap.train.config import Arch, Preset, TrainConfig, model_config_for
from realtime_swap.train.faceset import Faceset
from realtime_swap.train.trainer import Trainer, amp_dtype_for

RES = 64

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _config(**kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        iterations=2, batch_size=2, lr=5e-4, device="cpu", preview_every=1000, save_every=1000, log_every=1
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_amp_dtype_is_bf16_from_ampere_on_and_fp16_before() -> None:
    assert amp_dtype_for((9, 0)) is torch.bfloat16  # Hopper (H100, H200)
    assert amp_dtype_for((8, 0)) is torch.bfloat16  # Ampere
    assert amp_dtype_for((7, 5)) is torch.float16  # Turing: fp16 with a gradient scaler
    assert amp_dtype_for(None) is torch.float16


def test_channels_last_trains_like_the_default_layout(facesets: tuple[Faceset, Faceset], tmp_path: Path) -> None:
    src, dst = facesets
    mc = model_config_for(Arch.DF, Preset.TINY, RES)
    plain = Trainer(src, dst, tmp_path / "a", mc, _config(channels_last=False), progress=False)
    nhwc = Trainer(src, dst, tmp_path / "b", mc, _config(channels_last=True), progress=False)
    assert not plain.amp and not plain.scaler.is_enabled()  # AMP is CUDA only
    convs = [p for p in nhwc.model.parameters() if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    a, b = plain.run(), nhwc.run()
    for (_, sa, da), (_, sb, db) in zip(a.losses, b.losses, strict=True):
        assert sa == pytest.approx(sb, rel=1e-3) and da == pytest.approx(db, rel=1e-3)


def test_init_from_starts_from_the_pretrained_weights(facesets: tuple[Faceset, Faceset], tmp_path: Path) -> None:
    src, dst = facesets
    mc = model_config_for(Arch.LIAE, Preset.TINY, RES)
    Trainer(src, dst, tmp_path / "pre", mc, _config(), progress=False).run()
    fresh = Trainer(src, dst, tmp_path / "own", mc, _config(seed=5), progress=False, init_from=tmp_path / "pre")
    from realtime_swap.train.checkpoint import load_model

    reference, _ = load_model(tmp_path / "pre")
    for (name, got), want in zip(fresh.model.state_dict().items(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(got, want, msg=name)
    assert fresh.iteration == 0
    result = fresh.run()
    assert result.start_iteration == 0 and result.iteration == 2


def test_init_from_refuses_another_architecture_and_resume(facesets: tuple[Faceset, Faceset], tmp_path: Path) -> None:
    src, dst = facesets
    Trainer(src, dst, tmp_path / "df", model_config_for(Arch.DF, Preset.TINY, RES), _config(), progress=False).run()
    liae = model_config_for(Arch.LIAE, Preset.TINY, RES)
    with pytest.raises(ModelError, match="another architecture"):
        Trainer(src, dst, tmp_path / "x", liae, _config(), progress=False, init_from=tmp_path / "df")
    with pytest.raises(ConfigError, match="cannot be combined with --resume"):
        Trainer(src, dst, tmp_path / "df", liae, _config(), resume=True, progress=False, init_from=tmp_path / "df")


def test_train_command_takes_init_from(facesets: tuple[Faceset, Faceset], tmp_path: Path) -> None:
    src, dst = facesets
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    command.register(sub)
    base = ["train", "--src", str(src.path), "--dst", str(dst.path), "--preset", "tiny", "--iterations", "2"]
    base += ["--batch", "2", "--device", "cpu", "--quiet"]
    first = parser.parse_args([*base, "--out", str(tmp_path / "pre")])
    assert first.func(first) == 0
    second = parser.parse_args([*base, "--out", str(tmp_path / "own"), "--init-from", str(tmp_path / "pre")])
    assert second.init_from == tmp_path / "pre" and second.func(second) == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs torch with a CUDA device")
def test_amp_training_on_cuda_and_a_checkpoint_that_moves_between_devices(
    facesets: tuple[Faceset, Faceset], tmp_path: Path
) -> None:
    src, dst = facesets
    mc = model_config_for(Arch.DF, Preset.TINY, RES)
    cpu = Trainer(src, dst, tmp_path / "run", mc, _config(), progress=False).run()
    gpu = Trainer(src, dst, tmp_path / "run", mc, _config(iterations=4, device="cuda"), resume=True, progress=False)
    expected = amp_dtype_for(torch.cuda.get_device_capability())
    assert gpu.amp and gpu.amp_dtype is expected and gpu.channels_last
    assert gpu.scaler.is_enabled() == (expected is torch.float16)
    result = gpu.run()
    assert result.start_iteration == cpu.iteration == 2 and result.iteration == 4
    back = Trainer(src, dst, tmp_path / "run", mc, _config(iterations=5), resume=True, progress=False).run()
    assert back.iteration == 5 and all(torch.isfinite(torch.tensor(loss)) for _, loss, _ in back.losses)


def test_worker_processes_prepare_the_same_batches_as_the_thread(facesets: tuple[Faceset, Faceset]) -> None:
    import numpy as np

    from realtime_swap.train.data import AugmentSettings, BatchPrefetcher, TrainingSet

    src, dst = (TrainingSet.from_faceset(f, RES) for f in facesets)
    settings = AugmentSettings(True, True, 0.5)
    thread = BatchPrefetcher(src, dst, 2, settings, seed=3, start=5, stop=9)
    pool = BatchPrefetcher(src, dst, 2, settings, seed=3, start=5, stop=9, workers=2)
    try:
        for it in range(5, 9):
            for a, b in zip(thread.get(it), pool.get(it), strict=True):
                for field in ("warped", "target", "mask", "eyes_mouth"):
                    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    finally:
        thread.close()
        pool.close()
    with pytest.raises(ConfigError, match="workers must be"):
        TrainConfig(workers=-1)


def test_progress_bar_shows_iterations_per_second(
    facesets: tuple[Faceset, Faceset], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = facesets
    Trainer(src, dst, tmp_path / "run", model_config_for(Arch.DF, Preset.TINY, RES), _config(), progress=True).run()
    bar = capsys.readouterr().err
    assert "it/s=" in bar and "2/2" in bar
