"""The trainer on real faces: loss goes down, artefacts are written, resume is exact, Ctrl-C saves,
bad checkpoints are refused. Tiny preset at 64 px, batch 4, one torch thread."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from realtime_swap.errors import ConfigError, ModelError
from realtime_swap.train import command
from realtime_swap.train.checkpoint import load_model, read_state
from realtime_swap.train.config import Arch, Preset, TrainConfig, model_config_for
from realtime_swap.train.data import TrainingSet
from realtime_swap.train.faceset import Faceset, FacesetWriter
from realtime_swap.train.masks import LEFT_EYE, LIPS_OUTER, RIGHT_EYE
from realtime_swap.train.sample_faces import jittered_crops, write_packaged_faceset
from realtime_swap.train.trainer import Trainer
from realtime_swap.types import FaceType

RES = 64


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def facesets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Faceset, Faceset]:
    """src: 6 jittered crops of the astronaut; dst: 6 of a man from insightface's t1.jpg."""
    root = tmp_path_factory.mktemp("facesets")
    src = write_packaged_faceset(root / "src", ["astronaut"], 6, RES, seed=1)
    dst = write_packaged_faceset(root / "dst", ["t1_c"], 6, RES, seed=2)
    return Faceset.load(src), Faceset.load(dst)


def _config(**kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        iterations=4, batch_size=4, lr=5e-4, device="cpu", preview_every=1000, save_every=1000, log_every=2
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_training_lowers_the_loss_and_writes_artefacts(facesets: tuple[Faceset, Faceset], tmp_path: Path) -> None:
    src, dst = facesets
    out = tmp_path / "run"
    trainer = Trainer(
        src,
        dst,
        out,
        model_config_for(Arch.DF, Preset.TINY),
        _config(iterations=40, preview_every=20, log_every=10),
        progress=False,
    )
    before = trainer.evaluate()
    result = trainer.run()
    after = trainer.evaluate()
    # Same seed, same faces: 40 steps must cut the loss on the fixed un-augmented faces by at least 25 %.
    assert after[0] < 0.75 * before[0], (before, after)
    assert after[1] < 0.75 * before[1], (before, after)
    assert result.iteration == 40 and result.start_iteration == 0 and not result.interrupted
    assert len(result.losses) == 40 and result.its_per_s > 0
    assert sorted(p.name for p in (out / "previews").iterdir()) == ["preview_0000020.png", "preview_0000040.png"]
    grid = cv2.imread(str(result.preview))
    assert grid is not None and grid.shape[1] == 6 * RES and grid.shape[0] > 4 * RES  # 4 rows + labels
    with (out / "loss.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["iteration"]) for r in rows] == [10, 20, 30, 40]
    assert (out / "loss.png").stat().st_size > 1000
    state = read_state(out)
    assert state.iteration == 40 and state.model_config == model_config_for(Arch.DF, Preset.TINY)
    model, _ = load_model(out)
    for key, value in trainer.model.state_dict().items():  # the saved weights are the trained ones
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_resume_continues_iterations_and_optimizer_state_exactly(
    facesets: tuple[Faceset, Faceset], tmp_path: Path
) -> None:
    src, dst = facesets
    mc = model_config_for(Arch.LIAE, Preset.TINY)
    straight = Trainer(src, dst, tmp_path / "a", mc, _config(iterations=4), progress=False)
    straight.run()
    first = Trainer(src, dst, tmp_path / "b", mc, _config(iterations=2), progress=False)
    assert first.run().iteration == 2
    resumed = Trainer(src, dst, tmp_path / "b", mc, _config(iterations=4), resume=True, progress=False)
    assert resumed.iteration == 2
    state = resumed.optimizer.state_dict()["state"]
    assert float(state[0]["step"]) == 2.0  # Adam's step count came back with its moments
    result = resumed.run()
    assert (result.start_iteration, result.iteration) == (2, 4)
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=1e-6, msg=key)
    a, b = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert float(b[0]["step"]) == 4.0
    for pid in a:
        torch.testing.assert_close(b[pid]["exp_avg_sq"], a[pid]["exp_avg_sq"], rtol=0, atol=1e-9)
    with (tmp_path / "b" / "loss.csv").open() as fh:
        assert [int(r["iteration"]) for r in csv.DictReader(fh)] == [2, 4]


def test_gan_state_is_checkpointed(facesets: tuple[Faceset, Faceset], tmp_path: Path) -> None:
    src, dst = facesets
    mc = model_config_for(Arch.DF, Preset.TINY)
    trainer = Trainer(src, dst, tmp_path / "g", mc, _config(iterations=2, gan_power=0.1, gan_start=1), progress=False)
    trainer.run()
    tensors = load_file(str(tmp_path / "g" / "optimizer.safetensors"))
    assert any(k.startswith("disc_model.") for k in tensors) and any(k.startswith("disc.") for k in tensors)
    with (tmp_path / "g" / "loss.csv").open() as fh:
        row = list(csv.DictReader(fh))[-1]
    assert float(row["gan_d"]) > 0  # the discriminator trained on iteration 1 (gan_start=1)
    resumed = Trainer(src, dst, tmp_path / "g", mc, _config(iterations=3, gan_power=0.1), resume=True, progress=False)
    assert resumed.disc_optimizer is not None and resumed.disc_optimizer.state_dict()["state"]


def test_ctrl_c_saves_a_checkpoint(
    facesets: tuple[Faceset, Faceset], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = facesets
    mc = model_config_for(Arch.DF, Preset.TINY)
    trainer = Trainer(src, dst, tmp_path / "k", mc, _config(iterations=50), progress=False)
    real_step = trainer.step

    def step_then_interrupt(iteration: int, *args: object) -> object:
        if iteration == 3:
            raise KeyboardInterrupt
        return real_step(iteration, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(trainer, "step", step_then_interrupt)
    result = trainer.run()
    assert result.interrupted and result.iteration == 3 and read_state(tmp_path / "k").iteration == 3

    second = Trainer(src, dst, tmp_path / "k", mc, _config(iterations=50), resume=True, progress=False)
    real = second.step

    def step_then_request_stop(iteration: int, *args: object) -> object:
        out = real(iteration, *args)  # type: ignore[arg-type]
        if iteration == 4:
            second.request_stop()  # what the first Ctrl-C does: finish this iteration, then save
        return out

    monkeypatch.setattr(second, "step", step_then_request_stop)
    result = second.run()
    assert result.interrupted and result.iteration == 5 and read_state(tmp_path / "k").iteration == 5


def test_bad_checkpoints_and_folders_are_refused(facesets: tuple[Faceset, Faceset], tmp_path: Path) -> None:
    src, dst = facesets
    df = model_config_for(Arch.DF, Preset.TINY)
    out = tmp_path / "c"
    Trainer(src, dst, out, df, _config(iterations=1), progress=False).run()
    with pytest.raises(ConfigError, match="already holds a checkpoint"):
        Trainer(src, dst, out, df, _config(), progress=False)
    with pytest.raises(ConfigError, match="no checkpoint"):
        Trainer(src, dst, tmp_path / "empty", df, _config(), resume=True, progress=False)
    with pytest.raises(ModelError, match=r"state\.json is of another architecture: arch df != liae"):
        Trainer(src, dst, out, model_config_for(Arch.LIAE, Preset.TINY), _config(), resume=True, progress=False)
    with pytest.raises(ModelError, match="resolution 64 != 80"):
        Trainer(src, dst, out, model_config_for(Arch.DF, Preset.TINY, 80), _config(), resume=True, progress=False)

    model_file = out / "model.safetensors"
    good = model_file.read_bytes()
    model_file.write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelError, match=r"corrupt checkpoint: .*model\.safetensors"):
        Trainer(src, dst, out, df, _config(), resume=True, progress=False)
    model_file.write_bytes(good)
    state = json.loads((out / "state.json").read_text())
    state["checksums"]["model.safetensors"] = "0" * 64  # a checksum-consistent but foreign tensor file:
    (out / "state.json").write_text(json.dumps(state))
    with pytest.raises(ModelError, match="does not match its checksum"):
        load_model(out)
    (out / "state.json").write_text("{not json")
    with pytest.raises(ModelError, match=r"corrupt checkpoint: .*state\.json is not valid JSON"):
        load_model(out)


def test_facesets_of_different_face_types_are_refused(facesets: tuple[Faceset, Faceset], tmp_path: Path) -> None:
    src, _ = facesets
    with FacesetWriter(tmp_path / "full", RES, FaceType.FULL) as writer:
        writer.add(jittered_crops("t1_e", 1, RES)[0])
    with pytest.raises(ConfigError, match="both must use one face type"):
        Trainer(src, Faceset.load(tmp_path / "full"), tmp_path / "x", model_config_for(Arch.DF, Preset.TINY), _config())


def test_facesets_are_resized_and_landmarks_become_masks(tmp_path: Path) -> None:
    crops = jittered_crops("t1_f", 2, RES, seed=0)
    t = np.linspace(0, 2 * np.pi, 468, endpoint=False)
    oval = np.stack([32 + 24 * np.cos(t), 32 + 28 * np.sin(t)], 1).astype(np.float32)  # a face-sized ellipse
    lms = oval.copy()
    for loop, (cx, cy) in ((RIGHT_EYE, (22, 26)), (LEFT_EYE, (42, 26)), (LIPS_OUTER, (32, 46))):
        a = np.linspace(0, 2 * np.pi, len(loop), endpoint=False)
        lms[list(loop)] = np.stack([cx + 3 * np.cos(a), cy + 2 * np.sin(a)], 1)
    with FacesetWriter(tmp_path / "lm", RES, FaceType.WHOLE_FACE) as writer:
        writer.add(crops[0], landmarks=lms)
        writer.add(crops[1])
    data = TrainingSet.from_faceset(Faceset.load(tmp_path / "lm"), 80)  # model at 80 px: x1.25
    assert data.images.shape == (2, 80, 80, 3)
    assert data.masks[0, 40, 40] == 255 and data.masks[0, 2, 2] == 0  # landmark hull, scaled
    assert data.masks[1].min() == 255  # no landmarks, no mask file: the whole crop
    assert data.eyes_mouth[0, round(26 * 1.25), round(22 * 1.25)] > 200 and data.eyes_mouth[0, 40, 40] == 0
    assert data.eyes_mouth[1].max() == 0


def test_train_command(facesets: tuple[Faceset, Faceset], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, dst = facesets
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    argv = ["train", "--src", str(src.path), "--dst", str(dst.path), "--out", str(tmp_path / "cli")]
    argv += ["--preset", "tiny", "--iterations", "2", "--batch", "2", "--device", "cpu", "--quiet"]
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    assert read_state(tmp_path / "cli").iteration == 2
    args = parser.parse_args([*argv[:-5], "--iterations", "3", "--resume", "--device", "cpu", "--quiet"])
    assert args.func(args) == 0  # resumes with the checkpoint's architecture when none is given
    assert "done at iteration 3" in capsys.readouterr().out
    args = parser.parse_args([*argv[:-5], "--iterations", "4", "--resume", "--arch", "liae", "--quiet"])
    with pytest.raises(ModelError, match="arch df != liae"):
        args.func(args)
    custom = ["--src", str(src.path), "--dst", str(dst.path), "--out", str(tmp_path / "custom"), "--preset", "tiny"]
    args = parser.parse_args(["train", *custom, "--ae-dims", "16", "--iterations", "1", "--device", "cpu", "--quiet"])
    assert args.func(args) == 0
    state = read_state(tmp_path / "custom")
    assert state.model_config.preset == "custom" and state.model_config.ae_dims == 16
    with pytest.raises(SystemExit):
        parser.parse_args([*argv, "--arch", "xyz"])
