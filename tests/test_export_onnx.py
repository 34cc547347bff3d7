"""Export: PyTorch vs ONNX Runtime parity, the DFM signature and metadata, fp16, the formats table, the
TensorRT path (built where TensorRT and a GPU exist, its install hint elsewhere), bad input."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export import command
from export.formats import EXPORT_FORMATS, ExportFormat, format_table
from export.onnx_export import check_parity, export_onnx, read_metadata
from realtime_swap.errors import ConfigError, ModelError
from realtime_swap.infer.tensorrt_build import TRT_MISSING, build_engine, engine_cache_key
from realtime_swap.swap.dfm_io import DFM_INPUT, DFM_OUTPUTS
from realtime_swap.train.checkpoint import load_model
from realtime_swap.train.config import Arch, Preset, TrainConfig, model_config_for
from realtime_swap.train.faceset import Faceset
from realtime_swap.train.sample_faces import write_packaged_faceset
from realtime_swap.train.trainer import Trainer

RES = 64
HAS_TRT = importlib.util.find_spec("tensorrt") is not None


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> tuple[Faceset, Faceset]:
    root = tmp_path_factory.mktemp("export_facesets")
    src = Faceset.load(write_packaged_faceset(root / "src", ["astronaut"], 4, RES, seed=4))
    dst = Faceset.load(write_packaged_faceset(root / "dst", ["t1_e"], 4, RES, seed=5))
    return src, dst


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory, faces: tuple[Faceset, Faceset]) -> dict[Arch, Path]:
    """A 3-iteration tiny checkpoint per architecture (export needs trained weights, not a good model)."""
    src, dst = faces
    out = {}
    for arch in Arch:
        folder = tmp_path_factory.mktemp(f"ckpt_{arch.value}")
        config = TrainConfig(iterations=3, batch_size=2, lr=5e-4, device="cpu", preview_every=100, save_every=100)
        Trainer(src, dst, folder, model_config_for(arch, Preset.TINY), config, progress=False).run()
        out[arch] = folder
    return out


def _dims(value_info: onnx.ValueInfoProto) -> list[object]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.mark.parametrize("arch", list(Arch))
def test_fp32_round_trip_parity_on_real_faces(
    arch: Arch, checkpoints: dict[Arch, Path], faces: tuple[Faceset, Faceset], tmp_path: Path
) -> None:
    result = export_onnx(checkpoints[arch], tmp_path / "m.onnx", parity=True)
    assert result.parity is not None and result.parity.passed and result.parity.max_abs_error <= 1e-4
    # independently: real destination faces through both runtimes
    dst_faces = faces[1].images[:3].astype(np.float32) / 255.0
    model, _ = load_model(checkpoints[arch])
    report = check_parity(model, result.path, faces=dst_faces)
    assert report.batch == 3 and report.max_abs_error <= 1e-4, report.summary()


def test_dfm_signature_and_metadata(checkpoints: dict[Arch, Path], tmp_path: Path) -> None:
    path = export_onnx(checkpoints[Arch.LIAE], tmp_path / "m.onnx").path
    model = onnx.load(str(path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (inp,) = model.graph.input
    assert inp.name == DFM_INPUT and _dims(inp) == ["N", RES, RES, 3]
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [o.name for o in model.graph.output] == list(DFM_OUTPUTS)  # DeepFaceLive unpacks by position
    assert [_dims(o) for o in model.graph.output] == [["N", RES, RES, 1], ["N", RES, RES, 3], ["N", RES, RES, 1]]
    meta = read_metadata(path)
    assert meta["producer"] == "realtime_swap" and meta["resolution"] == str(RES)
    assert meta["face_type"] == "whole_face" and meta["architecture"] == "liae" and meta["preset"] == "tiny"
    assert meta["iterations"] == "3" and meta["precision"] == "fp32"
    recipe = json.loads(meta["recipe"])
    assert recipe["train"]["iterations"] == 3 and recipe["model"]["ae_dims"] == 32 and recipe["data"]["src_faces"] == 4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = session.run(None, {DFM_INPUT: np.random.default_rng(0).random((5, RES, RES, 3), dtype=np.float32)})
    assert [o.shape for o in outs] == [(5, RES, RES, 1), (5, RES, RES, 3), (5, RES, RES, 1)]  # dynamic batch
    assert all(o.min() >= 0.0 and o.max() <= 1.0 for o in outs)


def test_fp16_export_runs_on_onnxruntime_cpu(checkpoints: dict[Arch, Path], tmp_path: Path) -> None:
    fp32 = export_onnx(checkpoints[Arch.DF], tmp_path / "fp32.onnx")
    fp16 = export_onnx(checkpoints[Arch.DF], tmp_path / "fp16.onnx", fp16=True, parity=True)
    assert fp16.size_bytes < 0.6 * fp32.size_bytes
    assert fp16.parity is not None and fp16.parity.max_abs_error <= 2e-2
    model = onnx.load(str(fp16.path))
    weights = [t for t in model.graph.initializer if len(t.dims) > 1]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # I/O stays float32
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in model.graph.output)
    assert read_metadata(fp16.path)["precision"] == "fp16"
    x = np.random.default_rng(1).random((3, RES, RES, 3), dtype=np.float32)
    a = ort.InferenceSession(str(fp32.path), providers=["CPUExecutionProvider"]).run(None, {DFM_INPUT: x})
    b = ort.InferenceSession(str(fp16.path), providers=["CPUExecutionProvider"]).run(None, {DFM_INPUT: x})
    for want, got in zip(a, b, strict=True):
        assert got.dtype == np.float32 and np.abs(got - want).max() <= 2e-2


def test_export_command_writes_a_dfm(
    checkpoints: dict[Arch, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    out = tmp_path / "celeb.dfm"
    args = parser.parse_args(
        ["export", str(checkpoints[Arch.DF]), "--format", "dfm", "--out", str(out), "--check-parity"]
    )
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert out.is_file() and "parity ok" in text and "dfm" in text
    assert read_metadata(out)["architecture"] == "df"
    args = parser.parse_args(["export", str(checkpoints[Arch.DF])])
    assert args.func(args) == 0 and (checkpoints[Arch.DF] / "df_64.onnx").is_file()  # default output
    with pytest.raises(SystemExit):
        parser.parse_args(["export", str(out), "--format", "caffe"])


def test_missing_or_corrupt_checkpoint_is_a_model_error(checkpoints: dict[Arch, Path], tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"checkpoint not found: .*nowhere"):
        command.export_checkpoint(tmp_path / "nowhere", ExportFormat.ONNX, tmp_path / "x.onnx")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ModelError, match=r"state\.json is missing"):
        export_onnx(tmp_path / "plain", tmp_path / "x.onnx")
    with pytest.raises(ModelError, match="model not found"):
        read_metadata(tmp_path / "x.onnx")


def test_formats_table_describes_every_format() -> None:
    assert set(EXPORT_FORMATS) == set(ExportFormat)
    assert len({spec.suffix for spec in EXPORT_FORMATS.values()}) == len(ExportFormat)
    assert EXPORT_FORMATS[ExportFormat.TENSORRT].needs_gpu and not EXPORT_FORMATS[ExportFormat.ONNX].needs_gpu
    assert (
        EXPORT_FORMATS[ExportFormat.ONNX].metadata_inside and not EXPORT_FORMATS[ExportFormat.TENSORRT].metadata_inside
    )
    table = format_table()
    assert all(f.value in table for f in ExportFormat)


def test_engine_cache_key_tracks_model_gpu_version_and_precision() -> None:
    key = engine_cache_key(b"model", "NVIDIA H100", "10.3.0", True, (1, 1, 4))
    assert key == engine_cache_key(b"model", "NVIDIA H100", "10.3.0", True, (1, 1, 4)) and len(key) == 16
    others = {
        engine_cache_key(b"model2", "NVIDIA H100", "10.3.0", True, (1, 1, 4)),
        engine_cache_key(b"model", "NVIDIA RTX 3060", "10.3.0", True, (1, 1, 4)),
        engine_cache_key(b"model", "NVIDIA H100", "10.4.0", True, (1, 1, 4)),
        engine_cache_key(b"model", "NVIDIA H100", "10.3.0", False, (1, 1, 4)),
        engine_cache_key(b"model", "NVIDIA H100", "10.3.0", True, (1, 1, 8)),
    }
    assert key not in others and len(others) == 5


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here: the install hint does not apply")
def test_tensorrt_absent_gives_the_install_hint(checkpoints: dict[Arch, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        command.export_checkpoint(checkpoints[Arch.DF], ExportFormat.TENSORRT, tmp_path / "m.engine")
    assert str(info.value) == TRT_MISSING
    assert not (tmp_path / "m.onnx").exists()  # refused before doing any work
    with pytest.raises(ConfigError, match=r"pip install 'realtime_swap\[trt\]'"):
        build_engine(tmp_path / "m.onnx")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU: TensorRT engines are built on the GPU")
@pytest.mark.skipif(not HAS_TRT, reason="TensorRT is not installed (pip install 'realtime_swap[trt]')")
def test_tensorrt_engine_build_and_cache(checkpoints: dict[Arch, Path], tmp_path: Path) -> None:
    onnx_path = export_onnx(checkpoints[Arch.DF], tmp_path / "m.onnx").path
    first = build_engine(onnx_path, tmp_path / "m.engine", cache_dir=tmp_path / "cache")
    assert not first.cached and first.engine.stat().st_size > 0
    assert list((tmp_path / "cache" / "trt-native").glob("timing-*.cache"))
    second = build_engine(onnx_path, tmp_path / "m2.engine", cache_dir=tmp_path / "cache")
    assert second.cached and second.key == first.key and second.engine.read_bytes() == first.engine.read_bytes()
