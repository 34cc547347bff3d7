"""GPU backends against the CPU reference: ort-cuda (IO binding, CUDA graphs), ort-trt, native TensorRT, torch CUDA.

Skipped, with the missing piece named, where there is no CUDA device / GPU onnxruntime / TensorRT.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from realtime_swap.infer.runner import Precision
from realtime_swap.infer.session import Backend
from realtime_swap.swap import BackendOptions, SwapModel, unavailable_reason
from realtime_swap.swap.synthetic import build_dfm_model

RES = 64


def _reason(backend: Backend) -> str:
    return unavailable_reason(backend) or ""


def _torch_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


needs_torch_cuda = pytest.mark.skipif(not _torch_cuda(), reason="needs torch with a CUDA device")
needs_ort_cuda = pytest.mark.skipif(
    bool(_reason(Backend.ORT_CUDA)) or not _torch_cuda(),
    reason=f"ort-cuda: {_reason(Backend.ORT_CUDA) or 'no torch CUDA'}",
)
needs_ort_trt = pytest.mark.skipif(bool(_reason(Backend.ORT_TRT)), reason=f"ort-trt: {_reason(Backend.ORT_TRT)}")
needs_tensorrt = pytest.mark.skipif(bool(_reason(Backend.TENSORRT)), reason=f"tensorrt: {_reason(Backend.TENSORRT)}")

pytestmark = pytest.mark.gpu


def crops(n: int) -> np.ndarray:
    import cv2
    import skimage.data

    bgr = np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1])
    out = [cv2.resize(bgr[20 + 6 * i : 220 + 6 * i, 150 - 5 * i : 350 - 5 * i], (RES, RES)) for i in range(n)]
    return np.stack(out).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def dfm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("g") / "gpu.dfm"
    path.write_bytes(build_dfm_model(RES, width=16, ae_dims=64))
    return path


@pytest.fixture(scope="module")
def morph_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DeepFaceLab AMP's morph sizes a slice from a float input: a CPU-side shape computation, fine for
    ORT's CUDA EP and torch; torch's CUDA graphs capture one graph per morph value, and native TensorRT (which
    takes no float shape input) gets the factor folded into the engine."""
    path = tmp_path_factory.mktemp("g") / "morph.dfm"
    path.write_bytes(build_dfm_model(RES, width=16, ae_dims=64, morph=True))
    return path


@pytest.fixture(scope="module")
def reference(dfm_path: Path) -> tuple[np.ndarray, np.ndarray]:
    return SwapModel.load(dfm_path, Backend.ORT_CPU).swap(crops(3))


@pytest.fixture(scope="module")
def morph_reference(morph_path: Path) -> tuple[np.ndarray, np.ndarray]:
    return SwapModel.load(morph_path, Backend.ORT_CPU).swap(crops(3), morph=0.6)


@needs_ort_cuda
def test_auto_prefers_a_gpu_backend(dfm_path: Path) -> None:
    assert SwapModel.load(dfm_path).backend is not Backend.ORT_CPU


@needs_ort_cuda
def test_ort_cuda_host_and_io_binding_paths(dfm_path: Path, reference: tuple[np.ndarray, np.ndarray]) -> None:
    import torch

    model = SwapModel.load(dfm_path, Backend.ORT_CUDA)
    faces, masks = model.swap(crops(3))
    np.testing.assert_allclose(faces, reference[0], atol=1e-4)
    device_faces, device_masks = model.swap(torch.from_numpy(crops(3)).cuda())
    assert device_faces.is_cuda and device_masks.shape == (3, RES, RES)
    np.testing.assert_allclose(device_faces.cpu().numpy(), faces, atol=1e-5)
    np.testing.assert_allclose(device_masks.cpu().numpy(), masks, atol=1e-5)
    value = ort.OrtValue.ortvalue_from_numpy(crops(3), "cuda", 0)
    ort_faces, ort_masks = model.swap(value)
    assert ort_masks.shape() == [3, RES, RES]
    np.testing.assert_allclose(ort_faces.numpy(), faces, atol=1e-5)


@needs_ort_cuda
def test_ort_cuda_morph_on_the_device_path(morph_path: Path, morph_reference: tuple[np.ndarray, np.ndarray]) -> None:
    import torch

    model = SwapModel.load(morph_path, Backend.ORT_CUDA)
    faces, masks = model.swap(torch.from_numpy(crops(3)).cuda(), morph=0.6)
    np.testing.assert_allclose(faces.cpu().numpy(), morph_reference[0], atol=1e-4)
    np.testing.assert_allclose(masks.cpu().numpy(), morph_reference[1], atol=1e-4)


@needs_ort_cuda
def test_ort_cuda_graphs_replay_per_batch_size(dfm_path: Path, reference: tuple[np.ndarray, np.ndarray]) -> None:
    model = SwapModel.load(dfm_path, Backend.ORT_CUDA, options=BackendOptions(cuda_graph=True))
    for _ in range(3):  # capture, then replays
        np.testing.assert_allclose(model.swap(crops(3))[0], reference[0], atol=1e-4)
        np.testing.assert_allclose(model.swap(crops(1))[0], reference[0][:1], atol=1e-4)


@needs_ort_trt
def test_ort_trt_fp16(dfm_path: Path, reference: tuple[np.ndarray, np.ndarray], tmp_path: Path) -> None:
    """TensorRT ran the whole graph (ORT's profile names the provider of every node; a node TensorRT rejected
    would show the CUDA EP), in fp16 (off the fp32 result by more than fp32 rounding, within fp16's)."""
    import json

    from realtime_swap.infer.session import ort_providers_for

    faces, masks = SwapModel.load(dfm_path, Backend.ORT_TRT).swap(crops(3))
    for got, want in ((faces, reference[0]), (masks, reference[1])):
        error = float(np.abs(got - want).max())
        assert 1e-5 < error < 2e-2, error
    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = str(tmp_path / "trt")
    providers = ort_providers_for(Backend.ORT_TRT, cache_dir=tmp_path / "cache")
    session = ort.InferenceSession(str(dfm_path), sess_options=opts, providers=providers)
    session.run(None, {"in_face:0": crops(3)})
    events = json.loads(Path(session.end_profiling()).read_text())
    ran = {e["args"]["provider"] for e in events if e.get("cat") == "Node" and "provider" in e.get("args", {})}
    assert ran == {"TensorrtExecutionProvider"}, ran


@needs_tensorrt
def test_native_tensorrt_runs_a_morph_dfm_with_the_factor_built_in(
    morph_path: Path, morph_reference: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    from realtime_swap.errors import ConfigError

    model = SwapModel.load(morph_path, Backend.TENSORRT, options=BackendOptions(cache_dir=tmp_path, morph=0.6))
    faces, masks = model.swap(crops(3), morph=0.6)
    np.testing.assert_allclose(faces, morph_reference[0], atol=2e-2)
    np.testing.assert_allclose(masks, morph_reference[1], atol=2e-2)
    with pytest.raises(ConfigError, match=r"built for morph_value:0 = 0\.6"):
        model.swap(crops(1), morph=0.3)


@needs_tensorrt
def test_native_tensorrt_build_cache_and_run(
    dfm_path: Path, reference: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    import torch

    options = BackendOptions(cache_dir=tmp_path, max_batch=4)
    model = SwapModel.load(dfm_path, Backend.TENSORRT, options=options)
    assert model.backend is Backend.TENSORRT and model.runner.max_batch == 4
    faces, masks = model.swap(crops(3))
    np.testing.assert_allclose(faces, reference[0], atol=2e-2)
    np.testing.assert_allclose(masks, reference[1], atol=2e-2)
    device_faces, _ = model.swap(torch.from_numpy(np.concatenate([crops(3)] * 2)).cuda())  # 6 > max_batch: split
    np.testing.assert_allclose(device_faces[:3].cpu().numpy(), faces, atol=1e-3)
    engines = list((tmp_path / "trt-native").glob("*.engine"))
    assert len(engines) == 1
    again = SwapModel.load(engines[0], Backend.TENSORRT)  # the serialized engine itself
    np.testing.assert_allclose(again.swap(crops(3))[0], faces, atol=1e-3)
    fp32 = SwapModel.load(
        dfm_path, Backend.TENSORRT, options=BackendOptions(cache_dir=tmp_path, precision=Precision.FP32)
    )
    np.testing.assert_allclose(fp32.swap(crops(3))[0], reference[0], atol=1e-3)


@needs_torch_cuda
@pytest.mark.parametrize(("precision", "atol"), [(Precision.FP16, 2e-2), (Precision.BF16, 5e-2)])
def test_torch_cuda_half(
    morph_path: Path, morph_reference: tuple[np.ndarray, np.ndarray], precision: Precision, atol: float
) -> None:
    import torch

    model = SwapModel.load(morph_path, Backend.TORCH, options=BackendOptions(precision=precision))
    faces, masks = model.swap(crops(3), morph=0.6)
    np.testing.assert_allclose(faces, morph_reference[0], atol=atol)
    np.testing.assert_allclose(masks, morph_reference[1], atol=atol)
    device_faces, device_masks = model.swap(torch.from_numpy(crops(3)).cuda(), morph=0.6)
    assert device_faces.is_cuda and device_faces.dtype == torch.float32
    np.testing.assert_allclose(device_faces.cpu().numpy(), faces, atol=1e-3)  # the device path, same pixels
    np.testing.assert_allclose(device_masks.cpu().numpy(), masks, atol=1e-3)
