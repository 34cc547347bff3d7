"""Backend selection: what `auto` picks on this machine and why, clear errors for absent backends and misfit options."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from realtime_swap.errors import ConfigError
from realtime_swap.infer.ort_runtime import OrtRunner
from realtime_swap.infer.runner import Precision
from realtime_swap.infer.session import Backend
from realtime_swap.swap import BackendOptions, SwapModel, unavailable_reason
from realtime_swap.swap.synthetic import build_dfm_model


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


CPU_ONLY = "CUDAExecutionProvider" not in ort.get_available_providers() and not _has_cuda()
cpu_only = pytest.mark.skipif(not CPU_ONLY, reason="checks the choice on a machine without CUDA")


@pytest.fixture(scope="module")
def dfm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("b") / "tiny.dfm"
    path.write_bytes(build_dfm_model(32, width=8, ae_dims=32))
    return path


@cpu_only
def test_auto_picks_ort_cpu_and_says_why(dfm_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="realtime_swap.swap.backends"):
        model = SwapModel.load(dfm_path)
    assert model.backend is Backend.ORT_CPU
    notes = dict(note.split(": ", 1) for note in model.notes)
    assert set(notes) == {"tensorrt", "ort-trt", "ort-cuda", "torch"}
    assert "TensorrtExecutionProvider not in this onnxruntime build" in notes["ort-trt"]
    assert "CUDAExecutionProvider not in this onnxruntime build" in notes["ort-cuda"]
    assert "tensorrt" in notes["tensorrt"]
    assert "no CUDA device" in notes["torch"]
    logged = caplog.text
    assert "backend auto -> ort-cpu" in logged and "TensorrtExecutionProvider" in logged


@cpu_only
@pytest.mark.parametrize("backend", [Backend.ORT_CUDA, Backend.ORT_TRT, Backend.TENSORRT])
def test_absent_backend_is_a_clear_error(dfm_path: Path, backend: Backend) -> None:
    with pytest.raises(ConfigError, match=f"backend '{backend.value}' is not available: ") as info:
        SwapModel.load(dfm_path, backend)
    reason = unavailable_reason(backend)
    assert reason is not None and reason in str(info.value)


@cpu_only
def test_tensorrt_reason_names_the_missing_piece() -> None:
    reason = unavailable_reason(Backend.TENSORRT)
    assert reason is not None
    assert "tensorrt" in reason or "CUDA" in reason


def test_engine_file_needs_tensorrt(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\x00" * 64)
    with pytest.raises(ConfigError, match="runs on backend 'tensorrt' only"):
        SwapModel.load(engine, Backend.ORT_CPU)
    if unavailable_reason(Backend.TENSORRT) is not None:
        with pytest.raises(ConfigError, match="no backend can run"):
            SwapModel.load(engine)


@pytest.mark.parametrize(
    ("backend", "options", "needle"),
    [
        (Backend.ORT_CPU, BackendOptions(torch_compile=True), "torch.compile applies to backend 'torch'"),
        (Backend.ORT_CPU, BackendOptions(cuda_graph=True), "CUDA graphs apply to backends"),
        (Backend.ORT_CPU, BackendOptions(precision=Precision.FP16), "runs the model's own precision"),
        (Backend.TORCH, BackendOptions(precision=Precision.FP16), "fp16 runs on CUDA only"),
    ],
)
def test_options_that_do_not_fit_the_backend(
    dfm_path: Path, backend: Backend, options: BackendOptions, needle: str
) -> None:
    if backend is Backend.TORCH:
        pytest.importorskip("torch")
        if _has_cuda():
            pytest.skip("fp16 torch is valid where CUDA is present")
    with pytest.raises(ConfigError, match=needle):
        SwapModel.load(dfm_path, backend, options=options)


def test_auto_ignores_options_of_other_backends(dfm_path: Path) -> None:
    model = SwapModel.load(dfm_path, options=BackendOptions(cuda_graph=True, torch_compile=True))
    faces, _ = model.swap(np.full((1, 32, 32, 3), 0.5, np.float32))
    assert faces.shape == (1, 32, 32, 3)


def test_ort_cpu_threads_and_host_only(dfm_path: Path) -> None:
    runner = OrtRunner(dfm_path, Backend.ORT_CPU, threads=1)
    assert runner.device == "cpu" and runner.fixed_batch is None
    assert [i.name for i in runner.inputs] == ["in_face:0"]
    with pytest.raises(ConfigError, match="keeps tensors on the host"):
        runner.run_into({}, {}, {})


def test_auto_falls_back_when_a_faster_backend_cannot_build_the_model(
    dfm_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A TensorRT parse/build failure is a ModelError: ``auto`` logs it and takes the next backend."""
    from realtime_swap.errors import ModelError
    from realtime_swap.swap import backends

    real_open, real_reason = backends._open, backends.unavailable_reason
    opened: list[Backend] = []

    def fake_reason(backend: Backend, *, engine_file: bool = False) -> str | None:
        return None if backend is Backend.TENSORRT else real_reason(backend, engine_file=engine_file)

    def fake_open(path: Path, backend: Backend, options: backends.BackendOptions, engine_file: bool):  # type: ignore[no-untyped-def]
        opened.append(backend)
        if backend is Backend.TENSORRT:
            raise ModelError(f"TensorRT could not parse {path.name}: In node 3 (Conv): unsupported")
        return real_open(path, backend, options, engine_file)

    monkeypatch.setattr(backends, "unavailable_reason", fake_reason)
    monkeypatch.setattr(backends, "_open", fake_open)
    with caplog.at_level(logging.INFO, logger="realtime_swap.swap.backends"):
        model = SwapModel.load(dfm_path)
    assert opened[0] is Backend.TENSORRT and model.backend is not Backend.TENSORRT
    notes = dict(note.split(": ", 1) for note in model.notes)
    assert "could not parse" in notes["tensorrt"]
    assert "backend auto: tensorrt cannot run tiny.dfm (TensorRT could not parse" in caplog.text
    model.close()


def test_auto_on_a_bad_file_raises_the_model_error(tmp_path: Path) -> None:
    from realtime_swap.errors import ModelError

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(ModelError):
        SwapModel.load(bad)


def test_auto_picks_torch_on_a_cuda_machine_whose_onnxruntime_is_the_cpu_build(
    dfm_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU machine: torch with CUDA, the CPU build of onnxruntime, no tensorrt. ``auto`` must take torch on CUDA
    (CUDA is faked: the runner is asked for "cuda" and opened on the CPU)."""
    import sys

    import torch

    from realtime_swap.infer import torch_runtime

    asked: list[str] = []
    real = torch_runtime.TorchRunner

    def runner(path: Path, *, device: str, **kw: object) -> object:
        asked.append(device)
        return real(path, device="cpu")

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt raises ImportError
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    monkeypatch.setattr(torch_runtime, "TorchRunner", runner)
    model = SwapModel.load(dfm_path)
    assert model.backend is Backend.TORCH and asked == ["cuda"]
    assert [note.split(":", 1)[0] for note in model.notes] == ["tensorrt", "ort-trt", "ort-cuda"]
    assert "not installed" in model.notes[0] and "CUDAExecutionProvider not in" in model.notes[2]
