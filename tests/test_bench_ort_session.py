"""Options of the ONNX Runtime session factory added for the benchmark and the GPU path: device id, CUDA
graphs, a caller's CUDA stream, CPU thread count from the affinity mask, spinning off for shared cores."""

from __future__ import annotations

import os

import onnxruntime as ort
import pytest

from realtime_swap.errors import ConfigError
from realtime_swap.infer import session as session_module
from realtime_swap.infer.session import Backend, create_ort_session, ort_providers_for, usable_cores
from realtime_swap.swap.synthetic import build_dfm_model


@pytest.fixture
def gpu_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend this onnxruntime build has the GPU providers (only the provider *lists* are checked)."""
    names = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: names)


def _spinning(options: ort.SessionOptions) -> str | None:
    try:
        return str(options.get_session_config_entry("session.intra_op.allow_spinning"))
    except RuntimeError:  # onnxruntime raises for a key that was never set
        return None


def test_usable_cores_follows_the_affinity_mask() -> None:
    assert usable_cores() == len(os.sched_getaffinity(0))


def test_default_threads_and_spinning() -> None:
    model = build_dfm_model(32, width=8, ae_dims=16)
    default: object = create_ort_session(model, Backend.ORT_CPU)
    options = default.get_session_options()  # type: ignore[attr-defined]
    assert options.intra_op_num_threads == usable_cores()
    assert _spinning(options) == "0"  # idle threads sleep: the engine runs several sessions at once
    spinning: object = create_ort_session(model, Backend.ORT_CPU, 1, allow_spinning=True)
    options = spinning.get_session_options()  # type: ignore[attr-defined]
    assert options.intra_op_num_threads == 1
    assert _spinning(options) == "1"
    onnxruntime_default: object = create_ort_session(model, Backend.ORT_CPU, allow_spinning=None)
    assert _spinning(onnxruntime_default.get_session_options()) is None  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="intra_op_threads must be >= 1"):
        create_ort_session(model, Backend.ORT_CPU, 0)


def test_cpu_provider_refuses_gpu_options() -> None:
    assert ort_providers_for(Backend.ORT_CPU) == ["CPUExecutionProvider"]
    for options in ({"device_id": 1}, {"cuda_graph": True}, {"user_compute_stream": 1234}):
        with pytest.raises(ConfigError, match="ort-cpu"):
            ort_providers_for(Backend.ORT_CPU, **options)
    with pytest.raises(ConfigError, match="device_id must be >= 0"):
        ort_providers_for(Backend.ORT_CPU, device_id=-1)


def test_gpu_provider_defaults_are_plain_names(gpu_build: None) -> None:
    # ort_runtime rewrites the plain "CUDAExecutionProvider" entry to add CUDA graphs: keep it a name by default
    assert ort_providers_for(Backend.ORT_CUDA) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    trt = ort_providers_for(Backend.ORT_TRT)
    assert trt[1:] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert isinstance(trt[0], tuple) and trt[0][0] == "TensorrtExecutionProvider"
    assert "trt_cuda_graph_enable" not in trt[0][1] and "device_id" not in trt[0][1]


def test_gpu_provider_options(gpu_build: None, tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REALTIME_SWAP_CACHE", str(tmp_path))
    cuda = ort_providers_for(Backend.ORT_CUDA, device_id=1, cuda_graph=True, user_compute_stream=4096)
    assert cuda == [
        (
            "CUDAExecutionProvider",
            {
                "device_id": "1",
                "enable_cuda_graph": "1",
                "has_user_compute_stream": "1",
                "user_compute_stream": "4096",
            },
        ),
        "CPUExecutionProvider",
    ]
    trt = ort_providers_for(Backend.ORT_TRT, device_id=1, cuda_graph=True, user_compute_stream=4096)
    assert isinstance(trt[0], tuple)
    name, options = trt[0]
    assert name == "TensorrtExecutionProvider" and options["trt_fp16_enable"] == "True"
    assert options["device_id"] == "1" and options["trt_cuda_graph_enable"] == "True"
    assert options["user_compute_stream"] == "4096" and options["trt_engine_cache_path"].startswith(str(tmp_path))
    # the CUDA EP only runs what TensorRT rejects: same device and stream, no second graph capture
    assert trt[1] == (
        "CUDAExecutionProvider",
        {"device_id": "1", "has_user_compute_stream": "1", "user_compute_stream": "4096"},
    )
    assert trt[2] == "CPUExecutionProvider"
    auto = ort_providers_for(Backend.AUTO, cuda_graph=True)
    assert isinstance(auto[0], tuple) and auto[0][0] == "TensorrtExecutionProvider"


def test_auto_without_gpu_refuses_gpu_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert session_module.ort_providers_for(Backend.AUTO) == ["CPUExecutionProvider"]
    with pytest.raises(ConfigError, match="need a GPU provider"):
        session_module.ort_providers_for(Backend.AUTO, device_id=1)


def test_trt_caches_go_where_asked(gpu_build: None, tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REALTIME_SWAP_CACHE", "/nonexistent-default")
    folder = os.path.join(str(tmp_path), "my-cache")
    trt = ort_providers_for(Backend.ORT_TRT, cache_dir=session_module.Path(folder))
    assert isinstance(trt[0], tuple)
    options = trt[0][1]
    assert options["trt_engine_cache_path"] == folder and options["trt_timing_cache_path"] == folder
    assert os.path.isdir(folder)


@pytest.mark.parametrize(
    ("installed", "needle"),
    [
        ({"onnxruntime", "onnxruntime-gpu"}, "both onnxruntime and onnxruntime-gpu are installed"),
        ({"onnxruntime"}, "pip uninstall -y onnxruntime && pip install onnxruntime-gpu"),
    ],
)
def test_missing_gpu_provider_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, installed: set[str], needle: str
) -> None:
    from importlib import metadata

    def version(dist: str) -> str:
        if dist not in installed:
            raise metadata.PackageNotFoundError(dist)
        return "1.20.0"

    monkeypatch.setattr(metadata, "version", version)
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ConfigError, match="CUDAExecutionProvider") as info:
        ort_providers_for(Backend.ORT_CUDA)
    assert needle in str(info.value)
