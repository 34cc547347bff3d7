"""The GPU-resident swap + blend path, run on torch's CPU device: it must give the CPU path's pixels.

Tolerances (8-bit levels): OpenCV warps and blurs uint8 in fixed point (1/32 px coordinates, 1/1024 weights)
where torch computes in float32, so a warped pixel may differ by 1 level; the end-to-end frame may differ by at
most 2 levels anywhere and by less than 0.01 level on average over the pixels the swap changed.
"""

from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch

from realtime_swap.blend import OPENCV_OPS, BlendMode, process_mask, sharpen_face
from realtime_swap.color import ColorMode, color_transfer, measure_color_stats
from realtime_swap.compose import ComposeStage
from realtime_swap.detect.stage import DetectStage
from realtime_swap.detect.tracker import TrackerOptions
from realtime_swap.errors import ConfigError
from realtime_swap.gpu import GpuSwapComposeStage, gpu_resident_stages, ops, resolve_device
from realtime_swap.sources.demo import DemoSource
from realtime_swap.stages import Controls
from realtime_swap.swap.model import SwapModel
from realtime_swap.swap.stage import SwapStage
from realtime_swap.swap.synthetic import build_dfm_model
from realtime_swap.types import Frame

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gpu") / "tiny.dfm"
    path.write_bytes(build_dfm_model(64, width=8, ae_dims=32))
    return path


@pytest.fixture(scope="module")
def detected(model_path: Path) -> list[Frame]:
    """Six consecutive 320x240 demo frames with two faces, through the real detect stage (64 px whole-face crops)."""
    source = DemoSource(320, 240, realtime=False, faces=2)
    stage = DetectStage(TrackerOptions(max_faces=2), size=64)
    stage.warmup(source.info)
    frames = []
    for i in range(6):
        got = source.read()
        assert got is not None
        frames.append(stage.process(Frame(i, got[0], 0.0, got[1]), Controls()))
    assert all(len(f.faces) == 2 and all(face.aligned is not None for face in f.faces) for f in frames)
    return frames


def test_warp_crop_matches_opencv() -> None:
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    frame = np.asarray(
        cv2.GaussianBlur(noise, (5, 5), 1.5), np.uint8
    )  # natural images are smooth; noise is the worst case for rounding
    for angle, scale, tx, ty in ((0.0, 1.0, -20.0, -10.0), (17.0, 1.7, 10.0, -40.0), (-33.0, 0.6, -150.0, 30.0)):
        matrix = cv2.getRotationMatrix2D((80.0, 60.0), angle, scale)
        matrix[:, 2] += np.array([tx, ty])  # the last one reaches outside the frame: the border is replicated
        want = cv2.warpAffine(frame, matrix, (64, 64), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        got = ops.warp_crop(torch.from_numpy(frame), matrix, 64).numpy()
        diff = np.abs(got - want.astype(np.float32))
        assert got.shape == (64, 64, 3)
        assert diff.max() <= 1.0, (angle, diff.max())
        assert (diff > 0).mean() < 0.05


def test_rct_matches_the_numpy_reference() -> None:
    rng = np.random.default_rng(1)
    source = rng.random((64, 64, 3), dtype=np.float32)
    target = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), np.float32)
    mask[10:50, 8:60] = 1.0
    stats = measure_color_stats(ColorMode.RCT, source, target, mask, reference=True)
    t_stats, count = ops.rct_moments(torch.from_numpy(target / np.float32(255.0)), torch.from_numpy(mask))
    s_stats, _ = ops.rct_moments(torch.from_numpy(source), torch.from_numpy(mask))
    assert int(count) == stats.count
    np.testing.assert_allclose(t_stats.numpy(), stats.target, atol=1e-4)
    assert stats.source is not None
    np.testing.assert_allclose(s_stats.numpy(), stats.source, atol=1e-4)
    want = color_transfer(ColorMode.RCT, source, target, mask, 0.8, reference=True)
    got = ops.rct_apply(torch.from_numpy(source), s_stats, t_stats, 0.8).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_rct_on_an_empty_mask_leaves_the_face() -> None:
    smoother = ops.DeviceRctSmoother(0.25)
    source = torch.rand(32, 32, 3)
    out = smoother.transfer(0, source, torch.rand(32, 32, 3), torch.zeros(32, 32), 1.0, 0.0)
    assert torch.equal(out, source)


@pytest.mark.parametrize(("erode", "blur"), [(0, 0), (0, 4), (2, 4), (-3, 2)])
def test_process_mask_matches_the_host(erode: int, blur: int) -> None:
    rng = np.random.default_rng(2)
    mask = cv2.GaussianBlur((rng.random((64, 64)) > 0.3).astype(np.float32), (9, 9), 3)
    got = ops.process_mask(torch.from_numpy(mask), erode, blur).numpy()
    np.testing.assert_allclose(got, process_mask(mask, erode, blur), atol=1e-5)


def test_sharpen_matches_the_host_within_a_level() -> None:
    face = np.random.default_rng(4).integers(0, 256, (40, 40, 3)).astype(np.uint8)
    got = ops.sharpen(torch.from_numpy(face.astype(np.float32)), 0.5).numpy()
    assert np.abs(got - sharpen_face(face, 0.5, OPENCV_OPS)).max() <= 1.0


def _cpu_path(model: SwapModel, frames: list[Frame], compose: ComposeStage) -> list[np.ndarray]:
    swap = SwapStage(model)
    compose.warmup(DemoSource(320, 240).info)
    controls = Controls()
    return [compose.process(swap.process(copy.deepcopy(f), controls), controls).image for f in frames]


def _gpu_path(stage: GpuSwapComposeStage, frames: list[Frame]) -> list[np.ndarray]:
    stage.warmup(DemoSource(320, 240).info)
    return [stage.process(copy.deepcopy(f), Controls()).image for f in frames]


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"erode_px": 3, "blur_px": 4, "opacity": 0.7, "sharpen": 0.5, "color_amount": 0.6},
    ],
    ids=["defaults", "erode-blur-opacity-sharpen"],
)
def test_stage_matches_the_cpu_path(model_path: Path, detected: list[Frame], options: dict[str, float]) -> None:
    model = SwapModel.load(model_path)
    want = _cpu_path(model, detected, ComposeStage(**options))  # type: ignore[arg-type]
    got = _gpu_path(GpuSwapComposeStage(model, device=CPU, **options), detected)  # type: ignore[arg-type]
    for frame, a, b in zip(detected, want, got, strict=True):
        changed = np.any(a != frame.image, axis=-1)
        assert changed.sum() > 2000  # both faces were pasted
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
        assert diff.max() <= 2
        assert diff[changed].mean() < 0.01


def test_stage_never_writes_the_received_image(model_path: Path, detected: list[Frame]) -> None:
    stage = GpuSwapComposeStage(SwapModel.load(model_path), device=CPU)
    frame = copy.deepcopy(detected[0])
    original = frame.image
    before = original.copy()
    out = stage.process(frame, Controls())
    assert out.swapped and out.image is not original
    assert np.array_equal(original, before)
    assert not np.array_equal(out.image, before)


def test_host_colour_modes_take_a_round_trip(model_path: Path, detected: list[Frame]) -> None:
    model = SwapModel.load(model_path)
    controls = Controls(color_mode=ColorMode.LCT.value)
    compose, swap = ComposeStage(), SwapStage(model)
    stage = GpuSwapComposeStage(model, device=CPU)
    a = compose.process(swap.process(copy.deepcopy(detected[0]), controls), controls).image
    b = stage.process(copy.deepcopy(detected[0]), controls).image
    assert np.abs(a.astype(np.int16) - b.astype(np.int16)).max() <= 2


def test_swap_disabled_passes_the_frame(model_path: Path, detected: list[Frame]) -> None:
    stage = GpuSwapComposeStage(SwapModel.load(model_path), device=CPU)
    frame = copy.deepcopy(detected[0])
    image = frame.image
    assert stage.process(frame, Controls(swap_enabled=False)).image is image


def test_seamless_is_refused(model_path: Path) -> None:
    with pytest.raises(ConfigError, match="seamless"):
        GpuSwapComposeStage(SwapModel.load(model_path), device=CPU, mode=BlendMode.SEAMLESS)


def test_wiring_replaces_swap_and_blend(model_path: Path) -> None:
    model = SwapModel.load(model_path)
    detect = DetectStage(TrackerOptions(), size=64)
    stages = [detect, SwapStage(model, morph=None), ComposeStage(blur_px=5, opacity=0.5)]
    out = gpu_resident_stages(stages, "cpu")
    assert out[0] is detect and len(out) == 2
    gpu = out[1]
    assert isinstance(gpu, GpuSwapComposeStage)
    assert (gpu.blur_px, gpu.opacity, gpu.model) == (5, 0.5, model)
    with pytest.raises(ConfigError, match="no swap \\+ blend pair"):
        gpu_resident_stages([detect], "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_asked_without_cuda_is_a_clear_error(model_path: Path) -> None:
    model = SwapModel.load(model_path)
    for requested in ("auto", "cuda"):
        with pytest.raises(ConfigError, match="no CUDA device"):
            resolve_device(model, requested)


ORT_CUDA_READY = torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()


@pytest.mark.gpu
@pytest.mark.parametrize(
    "backend",
    [
        pytest.param(
            "ort-cuda",
            marks=pytest.mark.skipif(not ORT_CUDA_READY, reason="needs a CUDA GPU and onnxruntime-gpu (none here)"),
        ),
        pytest.param(
            "torch", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs torch with a CUDA device")
        ),
    ],
)
def test_cuda_stage_matches_the_cpu_path(model_path: Path, detected: list[Frame], backend: str) -> None:
    from realtime_swap.infer.runner import Precision
    from realtime_swap.infer.session import Backend
    from realtime_swap.swap import BackendOptions

    cpu_model = SwapModel.load(model_path, Backend.ORT_CPU)
    want = _cpu_path(cpu_model, detected, ComposeStage())
    options = BackendOptions(precision=Precision.FP32) if backend == "torch" else BackendOptions()
    cuda_model = SwapModel.load(model_path, Backend(backend), options=options)
    got = _gpu_path(GpuSwapComposeStage(cuda_model, device=resolve_device(cuda_model, "auto")), detected)
    for a, b in zip(want, got, strict=True):
        diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
        assert diff.max() <= 3  # cuDNN's convolutions differ from MLAS's by float rounding
        assert diff.mean() < 0.01


# --- the frame uploaded once: the detector reads it on the device, swap + blend reuses it ---------------------


@pytest.mark.parametrize(("height", "width"), [(480, 640), (384, 512), (1080, 1920), (90, 100), (37, 301)])
def test_device_letterbox_matches_the_host(height: int, width: int) -> None:
    from realtime_swap.detect.blazeface import BlazeFaceDetector, BlazeFaceModel
    from realtime_swap.detect.engine import DetectEngine
    from realtime_swap.infer.session import Backend

    rng = np.random.default_rng(height * width)
    image = cv2.GaussianBlur(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), (0, 0), 1.5)
    detector = BlazeFaceDetector(BlazeFaceModel.SHORT_RANGE, DetectEngine(Backend.TORCH, "cpu"))
    want, _ = detector.letterbox(image)
    new_w, new_h, ox, oy, _ = detector._geometry(height, width)
    got = ops.letterbox(torch.from_numpy(image), detector.input_size, new_w, new_h, ox, oy).numpy()
    assert got.shape == want.shape == (1, 128, 128, 3)
    # INTER_AREA (shrinking) and INTER_LINEAR (the 90 x 100 frame grows) in float: at most one 8-bit level
    assert np.abs(got - want).max() * 127.5 <= 1.0 + 1e-4


def test_area_weights_average_whole_and_fractional_spans() -> None:
    w = ops.area_weights(6, 4, CPU).numpy()  # each output pixel covers 1.5 input pixels
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(w[0], [2 / 3, 1 / 3, 0, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(w[1], [0, 1 / 3, 2 / 3, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(ops.area_weights(8, 2, CPU).numpy()[1], [0, 0, 0, 0, 0.25, 0.25, 0.25, 0.25])


def test_device_crops_match_the_landmarkers_host_crops() -> None:
    from realtime_swap.detect.engine import DetectEngine
    from realtime_swap.detect.facemesh import FaceMeshLandmarker, Roi
    from realtime_swap.infer.session import Backend

    image = cv2.GaussianBlur(np.random.default_rng(3).integers(0, 256, (240, 320, 3), dtype=np.uint8), (0, 0), 2)
    landmarker = FaceMeshLandmarker(DetectEngine(Backend.TORCH, "cpu"))
    rois = [Roi(160.0, 120.0, 150.0, 0.3), Roi(10.0, 230.0, 90.0, -1.0)]  # the second reads past the frame's edge
    got = ops.rgb_crops(torch.from_numpy(image), [r.matrix(192) for r in rois], 192).numpy()
    want = np.stack([landmarker.crop(image, r)[..., ::-1] for r in rois]).astype(np.float32) / 255.0
    assert np.abs(got - want).max() * 255.0 <= 1.0 + 1e-4


@pytest.mark.usefixtures("torch_one_thread")
@pytest.mark.parametrize("scale", [1.0, 2.5, 0.4])
def test_detector_reading_a_device_frame_finds_what_the_host_finds(scale: float) -> None:
    from skimage import data

    from realtime_swap.detect.blazeface import BlazeFaceDetector, BlazeFaceModel
    from realtime_swap.detect.engine import DetectEngine
    from realtime_swap.detect.facemesh import FaceMeshLandmarker, roi_from_detection
    from realtime_swap.infer.session import Backend

    image = cv2.resize(np.ascontiguousarray(data.astronaut()[:, :, ::-1]), None, fx=scale, fy=scale * 0.75)
    engine = DetectEngine(Backend.TORCH, "cpu")
    detector, landmarker = BlazeFaceDetector(BlazeFaceModel.SHORT_RANGE, engine), FaceMeshLandmarker(engine)
    assert detector.reads_device_frames and landmarker.reads_device_frames
    pixels = torch.from_numpy(image.copy())
    (host,) = detector.detect(image)
    (device,) = detector.detect(image, pixels)
    assert abs(host.score - device.score) < 1e-3
    np.testing.assert_allclose(device.box, host.box, atol=0.1 * max(scale, 1.0))  # frame px
    np.testing.assert_allclose(device.keypoints, host.keypoints, atol=0.1 * max(scale, 1.0))
    roi = roi_from_detection(host)
    (mesh_host,) = landmarker.landmark(image, [roi])
    (mesh_device,) = landmarker.landmark(image, [roi], pixels)
    assert mesh_host.score > 0.9
    np.testing.assert_allclose(mesh_device.landmarks, mesh_host.landmarks, atol=0.01)


def _engine_stages(model_path: Path, detect_backend: str) -> tuple[DetectStage, GpuSwapComposeStage]:
    from realtime_swap.detect.engine import DetectEngine
    from realtime_swap.infer.session import Backend

    engine = DetectEngine(Backend.TORCH, "cpu") if detect_backend == "torch" else DetectEngine(Backend.ORT_CPU)
    detect = DetectStage(TrackerOptions(max_faces=2, engine=engine), size=64)
    stages = gpu_resident_stages([detect, SwapStage(SwapModel.load(model_path)), ComposeStage()], "cpu")
    gpu = stages[1]
    assert stages[0] is detect and isinstance(gpu, GpuSwapComposeStage)
    return detect, gpu


def _run_stages(detect: DetectStage, gpu: GpuSwapComposeStage, count: int, faces: int = 2) -> list[Frame]:
    source = DemoSource(320, 240, realtime=False, faces=faces)
    detect.warmup(source.info)
    gpu.warmup(source.info)
    out = []
    for i in range(count):
        got = source.read()
        assert got is not None
        frame = detect.process(Frame(i, got[0], 0.0, got[1]), Controls())
        out.append(gpu.process(frame, Controls()))
    return out


@pytest.mark.usefixtures("torch_one_thread")
@pytest.mark.parametrize("detect_backend", ["torch", "ort"])
def test_the_frame_goes_up_once_and_swap_blend_reuses_it(model_path: Path, detect_backend: str) -> None:
    detect, gpu = _engine_stages(model_path, detect_backend)
    assert detect.staging is not None and detect.staging.device == gpu.device
    frames = _run_stages(detect, gpu, 4)
    assert all(f.swapped and len(f.faces) == 2 and f.device_image is None for f in frames)
    assert detect.staging.uploads == 4  # one per frame, by the detect stage ...
    assert gpu.staging.uploads == 0  # ... and none by swap + blend


@pytest.mark.usefixtures("torch_one_thread")
def test_reusing_the_uploaded_frame_gives_the_same_pixels(model_path: Path, detected: list[Frame]) -> None:
    detect, gpu = _engine_stages(model_path, "torch")
    frames = _run_stages(detect, gpu, 3)
    alone = GpuSwapComposeStage(SwapModel.load(model_path), device=CPU)  # uploads the frame itself
    source = DemoSource(320, 240, realtime=False, faces=2)
    alone.warmup(source.info)
    for i, frame in enumerate(frames):
        got = source.read()
        assert got is not None
        again = Frame(i, got[0], 0.0, got[1], faces=copy.deepcopy(frame.faces))
        assert np.array_equal(alone.process(again, Controls()).image, frame.image)
    assert alone.staging.uploads == 3


def test_a_frame_without_faces_is_not_uploaded_for_a_host_detector(model_path: Path) -> None:
    detect, _ = _engine_stages(model_path, "ort")
    source = DemoSource(320, 240, realtime=False, faces=1)
    detect.warmup(source.info)
    blank = detect.process(Frame(0, np.zeros((240, 320, 3), np.uint8), 0.0, 0.0), Controls())
    assert blank.faces == [] and blank.device_image is None and detect.staging.uploads == 0


def test_a_stale_device_copy_is_not_used(model_path: Path) -> None:
    detect, gpu = _engine_stages(model_path, "torch")
    source = DemoSource(320, 240, realtime=False, faces=2)
    detect.warmup(source.info)
    gpu.warmup(source.info)
    got = source.read()
    assert got is not None
    frame = detect.process(Frame(0, got[0], 0.0, got[1]), Controls())
    assert frame.on_device(CPU) is not None
    frame.image = frame.image.copy()  # a stage in between replaced the picture: the device copy is stale
    assert frame.on_device(CPU) is None
    assert gpu.process(frame, Controls()).swapped
    assert gpu.staging.uploads == 1


class _FakeEvent:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def record(self) -> None:
        self.log.append("record")

    def synchronize(self) -> None:
        self.log.append("wait")


def test_staging_waits_for_a_buffers_copy_before_writing_it_again() -> None:
    log: list[str] = []
    staging = ops.HostStaging(CPU, pin=True, alloc=lambda shape, dtype, pin: torch.empty(shape, dtype=dtype),
                              depth=2, event=lambda: _FakeEvent(log))  # fmt: skip
    frames = [np.full((4, 5, 3), i, np.uint8) for i in range(3)]
    ups = [staging.upload(f) for f in frames]
    assert [int(u[0, 0, 0]) for u in ups] == [0, 1, 2]  # each upload is its own tensor
    ring = staging._up[(4, 5, 3)]
    assert len(ring) == 2  # two buffers for this shape, the third frame reused the first
    assert log == ["wait", "record", "wait", "record", "wait", "record"]
    assert staging.uploads == 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs torch with a CUDA device")
def test_cuda_detector_reads_the_uploaded_frame_and_matches_the_cpu_path(model_path: Path) -> None:
    from realtime_swap.detect.engine import DetectEngine
    from realtime_swap.detect.stage import align_faces
    from realtime_swap.infer.runner import Precision
    from realtime_swap.infer.session import Backend
    from realtime_swap.swap import BackendOptions
    from realtime_swap.types import FaceType

    cuda_model = SwapModel.load(model_path, Backend.TORCH, options=BackendOptions(precision=Precision.FP32))
    detect = DetectStage(TrackerOptions(max_faces=2, engine=DetectEngine(Backend.TORCH, cuda_model.runner.device)),
                         size=64)  # fmt: skip
    stages = gpu_resident_stages([detect, SwapStage(cuda_model), ComposeStage()], "cuda")
    gpu = stages[1]
    assert isinstance(gpu, GpuSwapComposeStage) and detect.staging is not None
    got = _run_stages(detect, gpu, 4)
    assert detect.staging.uploads == 4 and gpu.staging.uploads == 0  # the frame went up once, in detect
    cpu_detect = DetectStage(TrackerOptions(max_faces=2), size=64)
    swap, compose = SwapStage(SwapModel.load(model_path, Backend.ORT_CPU)), ComposeStage()
    source = DemoSource(320, 240, realtime=False, faces=2)
    for stage in (cpu_detect, swap, compose):
        stage.warmup(source.info)
    for i, frame in enumerate(got):
        read = source.read()
        assert read is not None
        image, pts = read
        on_cpu = cpu_detect.process(Frame(i, image, 0.0, pts), Controls())
        for a, b in zip(frame.faces, on_cpu.faces, strict=True):
            # cuDNN (TF32 by default for fp32 convolutions) against MLAS, through the tracker: frame px
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=0.5)
        # the pixels: the CPU swap + blend of the faces the GPU found, so detection differences do not count
        faces = copy.deepcopy(frame.faces)
        align_faces(image, faces, FaceType.WHOLE_FACE, 64)
        want = compose.process(swap.process(Frame(i, image, 0.0, pts, faces=faces), Controls()), Controls())
        diff = np.abs(frame.image.astype(np.int16) - want.image.astype(np.int16))
        assert diff.max() <= 4 and diff.mean() < 0.05


def test_the_host_crop_is_not_cut_for_the_gpu_path(model_path: Path) -> None:
    detect, gpu = _engine_stages(model_path, "torch")
    assert not detect.host_crops
    (frame,) = _run_stages(detect, gpu, 1)
    for face in frame.faces:
        assert face.aligned is not None and face.aligned.size == 64
        assert face.aligned.image.strides[:2] == (0, 0) and not face.aligned.image.any()  # a view, no pixels
    assert frame.swapped


@pytest.mark.usefixtures("torch_one_thread")
def test_tiled_detection_on_the_device_finds_what_the_host_finds() -> None:
    from realtime_swap.detect.blazeface import BlazeFaceDetector, BlazeFaceModel
    from realtime_swap.detect.engine import DetectEngine
    from realtime_swap.infer.session import Backend

    image, _ = DemoSource(1280, 720, faces=4, realtime=False).read()  # type: ignore[misc]
    detector = BlazeFaceDetector(BlazeFaceModel.SHORT_RANGE, DetectEngine(Backend.TORCH, "cpu"))
    host = detector.detect(image, tiled=True)
    device = detector.detect(image, torch.from_numpy(image.copy()), tiled=True)  # tiles are views of the tensor
    assert len(host) == len(device) == 4
    for a, b in zip(host, device, strict=True):  # frame px; a level's rounding in a letterbox 10x smaller
        np.testing.assert_allclose(b.box, a.box, atol=0.2)
        np.testing.assert_allclose(b.keypoints, a.keypoints, atol=0.2)
