"""The detector's own engine: chosen from the swap model's, torch through the ONNX→torch conversion matching ONNX
Runtime, and ``live`` / ``bench`` end to end on every backend this machine has (issue #12: ``--backend torch``
stopped in the detect stage, which only knew ONNX Runtime)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_cli
from skimage import data

from realtime_swap.detect.blazeface import BlazeFaceDetector, BlazeFaceModel
from realtime_swap.detect.engine import DetectBackend, DetectEngine, detect_engine_for
from realtime_swap.detect.facemesh import FaceMeshLandmarker, roi_from_detection
from realtime_swap.errors import ConfigError
from realtime_swap.infer import Backend
from realtime_swap.swap.backends import unavailable_reason
from realtime_swap.swap.synthetic import build_dfm_model

HERE_BACKENDS = [b.value for b in Backend if b is not Backend.AUTO and unavailable_reason(b) is None]
"""The swap backends this machine can run (ort-cpu and torch on the CPU at least, with the dev extras)."""


@pytest.mark.parametrize(
    ("requested", "swap_backend", "swap_device", "expected"),
    [
        (DetectBackend.AUTO, Backend.TORCH, "cuda:0", DetectEngine(Backend.TORCH, "cuda:0")),
        (DetectBackend.AUTO, Backend.TORCH, "cpu", DetectEngine(Backend.AUTO)),  # ORT is faster on the CPU
        (DetectBackend.AUTO, Backend.TENSORRT, "cuda:0", DetectEngine(Backend.AUTO)),
        (DetectBackend.AUTO, Backend.ORT_CUDA, "cuda:0", DetectEngine(Backend.ORT_CUDA)),
        (DetectBackend.AUTO, Backend.ORT_TRT, "cuda:0", DetectEngine(Backend.ORT_TRT)),
        (DetectBackend.AUTO, Backend.ORT_CPU, "cpu", DetectEngine(Backend.ORT_CPU)),
        (DetectBackend.AUTO, None, None, DetectEngine(Backend.AUTO)),
        (DetectBackend.ORT, Backend.TORCH, "cuda:0", DetectEngine(Backend.AUTO)),
        (DetectBackend.ORT, Backend.ORT_CUDA, "cuda:0", DetectEngine(Backend.ORT_CUDA)),
        (DetectBackend.TORCH, Backend.TORCH, "cpu", DetectEngine(Backend.TORCH, "cpu")),
        (DetectBackend.TORCH, Backend.TORCH, "cuda:1", DetectEngine(Backend.TORCH, "cuda:1")),
        (DetectBackend.TORCH, Backend.ORT_CUDA, "cuda:0", DetectEngine(Backend.TORCH, "cpu")),
        (DetectBackend.TORCH, None, None, DetectEngine(Backend.TORCH, "cpu")),
    ],
)
def test_detector_engine_follows_the_swap_model(
    requested: DetectBackend, swap_backend: Backend | None, swap_device: str | None, expected: DetectEngine
) -> None:
    assert detect_engine_for(requested, swap_backend, swap_device) == expected


def test_engines_the_detector_cannot_use_are_refused() -> None:
    with pytest.raises(ConfigError, match="runs swap models only"):
        DetectEngine(Backend.TENSORRT)
    with pytest.raises(ConfigError, match="applies to backend 'torch' only"):
        DetectEngine(Backend.ORT_CPU, "cuda:0")


@pytest.mark.usefixtures("torch_one_thread")
def test_torch_detector_and_landmarker_match_onnx_runtime_on_a_real_face() -> None:
    image = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    ort_engine, torch_engine = DetectEngine(Backend.ORT_CPU), DetectEngine(Backend.TORCH, "cpu")
    (ref,) = BlazeFaceDetector(BlazeFaceModel.SHORT_RANGE, ort_engine).detect(image)
    (got,) = BlazeFaceDetector(BlazeFaceModel.SHORT_RANGE, torch_engine).detect(image)
    assert abs(ref.score - got.score) < 1e-4
    np.testing.assert_allclose(got.box, ref.box, atol=0.01)  # frame px
    np.testing.assert_allclose(got.keypoints, ref.keypoints, atol=0.01)
    roi = roi_from_detection(ref)
    (mesh_ref,) = FaceMeshLandmarker(ort_engine).landmark(image, [roi])
    (mesh_got,) = FaceMeshLandmarker(torch_engine).landmark(image, [roi])
    assert mesh_ref.score > 0.9 and abs(mesh_ref.score - mesh_got.score) < 1e-4
    np.testing.assert_allclose(mesh_got.landmarks, mesh_ref.landmarks, atol=0.01)
    np.testing.assert_allclose(mesh_got.z, mesh_ref.z, atol=0.01)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("engine") / "tiny.onnx"
    path.write_bytes(build_dfm_model(64, width=8, ae_dims=32))
    return path


def _runs() -> list[tuple[str, str]]:
    runs = [(backend, "auto") for backend in ["auto", *HERE_BACKENDS]]
    if "torch" in HERE_BACKENDS:
        runs.append(("torch", "torch"))  # the torch detector on the CPU: the path a CUDA machine takes
    return runs


@pytest.mark.parametrize(("backend", "detect_backend"), _runs())
def test_live_runs_end_to_end_on_every_backend_here(
    tiny_model: Path, tmp_path: Path, backend: str, detect_backend: str
) -> None:
    metrics = tmp_path / "m.json"
    result = run_cli(
        "--model", str(tiny_model), "--backend", backend, "--detect-backend", detect_backend, "--null",
        "--frames", "4", "--metrics-json", str(metrics),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(metrics.read_text())
    # the demo is a live source: newest frame wins, so a busy machine may drop some
    assert report["frames_captured"] == 4 and report["stages"]["detect"]["count"] >= 1
    assert report["frames_processed"] >= 1


@pytest.mark.parametrize(("backend", "detect_backend"), _runs())
def test_bench_runs_end_to_end_on_every_backend_here(
    tiny_model: Path, tmp_path: Path, backend: str, detect_backend: str
) -> None:
    out = tmp_path / "bench.json"
    args = ["--resolution", "320x240", "--model", str(tiny_model), "--backend", backend, "--frames", "3"]
    args += ["--detect-backend", detect_backend, "--warmup", "1", "--inference-iters", "1", "--no-sequential"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(
        [sys.executable, "-m", "realtime_swap", "bench", *args, "--json", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(out.read_text())["results"]
    assert result["pipelined"]["frames_swapped"] == 3  # the demo face was found and swapped in every frame


@pytest.mark.gpu
def test_torch_detector_on_cuda_matches_onnx_runtime_on_the_cpu() -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs torch with a CUDA device")
    image = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    cpu, cuda = DetectEngine(Backend.ORT_CPU), DetectEngine(Backend.TORCH, "cuda:0")
    (ref,) = BlazeFaceDetector(BlazeFaceModel.SHORT_RANGE, cpu).detect(image)
    (got,) = BlazeFaceDetector(BlazeFaceModel.SHORT_RANGE, cuda).detect(image)
    # frame px: cuDNN's convolutions (TF32 by default in torch) round differently from MLAS's fp32
    np.testing.assert_allclose(got.box, ref.box, atol=0.5)
    (mesh_ref,) = FaceMeshLandmarker(cpu).landmark(image, [roi_from_detection(ref)])
    (mesh_got,) = FaceMeshLandmarker(cuda).landmark(image, [roi_from_detection(ref)])
    np.testing.assert_allclose(mesh_got.landmarks, mesh_ref.landmarks, atol=0.5)
