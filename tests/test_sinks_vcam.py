"""Virtual camera outputs: pyvirtualcam (through in-process backends registered with its public
``register_backend``) and the direct v4l2 route; a missing device leaves the engine running."""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import pytest
import pyvirtualcam
from pyvirtualcam.util import decode_fourcc

from realtime_swap.errors import SinkError, SinkUnavailableError, StageError
from realtime_swap.pipeline import Pipeline
from realtime_swap.sinks.null import NullSink
from realtime_swap.sinks.v4l2 import V4L2Sink
from realtime_swap.sinks.virtual_camera import (
    LINUX_INSTALL,
    FrameRateLimiter,
    VirtualCameraSink,
    bgr_to_i420,
    bgr_to_nv12,
    loopback_devices,
    resolve_linux_label,
)
from realtime_swap.sources.demo import DemoSource
from realtime_swap.types import Frame, StreamInfo

W, H, FPS = 320, 240, 30.0


class RecordingCamera:
    """A pyvirtualcam backend that keeps every frame it is sent; accepts only the formats in ``accepts``."""

    accepts: ClassVar[tuple[str, ...]] = ()
    opened: ClassVar[list[RecordingCamera]] = []

    def __init__(self, *, width: int, height: int, fps: float, fourcc: int, device: str | None, **kw: Any) -> None:
        fmt = decode_fourcc(fourcc)
        if fmt not in self.accepts:
            raise RuntimeError(f"pixel format {fmt} not supported")
        if device not in (None, "Test Camera"):
            raise RuntimeError(f"no camera named {device}")
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fmt
        self.frames: list[np.ndarray] = []
        self.closed = False
        RecordingCamera.opened.append(self)

    def send(self, frame: np.ndarray) -> None:
        self.frames.append(frame.copy())

    def close(self) -> None:
        self.closed = True

    def device(self) -> str:
        return "Test Camera"

    def native_fourcc(self) -> int | None:
        return None


@pytest.fixture
def backend() -> Iterator[Any]:
    """Registers ``make(name, formats)`` backends for one test and removes them afterwards."""
    names = []

    def make(name: str, *formats: str) -> str:
        pyvirtualcam.register_backend(name, type(name, (RecordingCamera,), {"accepts": formats}))
        names.append(name)
        return name

    RecordingCamera.opened.clear()
    yield make
    for name in names:
        pyvirtualcam.camera.BACKENDS.pop(name, None)


def frames(n: int, fps: float = FPS) -> list[Frame]:
    source = DemoSource(W, H, fps, realtime=False)
    out = []
    for i in range(n):
        got = source.read()
        assert got is not None
        out.append(Frame(i, got[0], float(i), got[1]))
    return out


def run_sink(sink: VirtualCameraSink, sent: list[Frame], fps: float = FPS) -> RecordingCamera:
    sink.open(StreamInfo(W, H, fps, live=True, name="test"))
    for frame in sent:
        sink.write(frame)
    sink.close()
    camera = RecordingCamera.opened[-1]
    assert camera.closed
    return camera


def test_bgr_frames_arrive_unchanged_in_order(backend: Any) -> None:
    name = backend("rs-test-bgr", "24BG")
    sent = frames(12)
    camera = run_sink(VirtualCameraSink(device="Test Camera", backend=name), sent)
    assert (camera.width, camera.height, camera.fps, camera.fourcc) == (W, H, FPS, "24BG")
    assert len(camera.frames) == len(sent)
    for got, frame in zip(camera.frames, sent, strict=True):
        assert got.dtype == np.uint8 and got.size == W * H * 3
        assert np.array_equal(got.reshape(H, W, 3), frame.image)


@pytest.mark.parametrize(
    ("fourcc", "decode"), [("I420", cv2.COLOR_YUV2BGR_I420), ("NV12", cv2.COLOR_YUV2BGR_NV12), ("raw ", None)]
)
def test_backend_that_wants_another_format_gets_it_converted(backend: Any, fourcc: str, decode: int | None) -> None:
    name = backend(f"rs-test-{fourcc.strip()}", fourcc)
    sent = frames(5)
    sink = VirtualCameraSink(backend=name)
    camera = run_sink(sink, sent)
    assert camera.fourcc == fourcc and len(camera.frames) == 5
    for got, frame in zip(camera.frames, sent, strict=True):
        if decode is None:  # RGB
            assert np.array_equal(got.reshape(H, W, 3)[..., ::-1], frame.image)
            continue
        assert got.size == W * H * 3 // 2
        back = cv2.cvtColor(got.reshape(H * 3 // 2, W), decode)
        mse = np.mean((back.astype(np.float64) - frame.image) ** 2)
        assert 10 * np.log10(255**2 / mse) > 35.0  # 4:2:0 chroma subsampling is the only loss
    assert sink.stats()["format"] in ("I420", "NV12", "RGB")


def test_nv12_is_i420_with_interleaved_chroma() -> None:
    image = frames(1)[0].image
    i420, nv12 = bgr_to_i420(image), bgr_to_nv12(image)
    assert np.array_equal(cv2.cvtColor(nv12, cv2.COLOR_YUV2BGR_NV12), cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420))


def test_camera_fps_is_honoured_and_size_can_be_set(backend: Any) -> None:
    name = backend("rs-test-fps", "24BG")
    sink = VirtualCameraSink(fps=15.0, size=(160, 120), backend=name)
    sent = frames(30, fps=30.0)  # one second at 30 fps into a 15 fps camera
    camera = run_sink(sink, sent, fps=30.0)
    assert camera.fps == 15.0 and (camera.width, camera.height) == (160, 120)
    assert len(camera.frames) == 15 and sink.stats()["frames_skipped"] == 15
    expected = cv2.resize(sent[2].image, (160, 120), interpolation=cv2.INTER_AREA)
    assert np.array_equal(camera.frames[1].reshape(120, 160, 3), expected)  # every other frame, in order


def test_frame_rate_limiter_keeps_a_grid() -> None:
    limiter = FrameRateLimiter(30.0)
    kept = [i for i in range(120) if limiter.admit(i / 60.0)]
    assert kept == list(range(0, 120, 2))
    jitter = FrameRateLimiter(30.0)
    rng = np.random.default_rng(0)
    assert all(jitter.admit(i / 30.0 + rng.uniform(-0.004, 0.004)) for i in range(100))
    limiter.admit(0.0)  # a jump back in time (a looped file) restarts the grid
    assert limiter.admit(1 / 30.0)


def test_missing_virtual_camera_says_what_to_install_and_the_engine_goes_on(caplog: Any) -> None:
    if platform.system() != "Linux" or loopback_devices():
        pytest.skip("this machine has a v4l2loopback device (or is not Linux): nothing is missing")
    null = NullSink()
    pipeline = Pipeline(DemoSource(W, H, FPS, realtime=False, frames=20), [], [VirtualCameraSink(), null])
    with caplog.at_level(logging.WARNING):
        report = pipeline.run()
    assert report.frames_processed == 20 and null.frames == 20
    assert len(report.extra["outputs_unavailable"]) == 1  # type: ignore[arg-type]
    message = report.extra["outputs_unavailable"][0]  # type: ignore[index]
    assert message == f"vcam: virtual camera: no v4l2loopback device here; create one with: {LINUX_INSTALL}"
    assert LINUX_INSTALL in caplog.text


def test_only_unavailable_outputs_is_an_error() -> None:
    if platform.system() != "Linux" or loopback_devices():
        pytest.skip("this machine has a v4l2loopback device (or is not Linux)")
    pipeline = Pipeline(DemoSource(W, H, FPS, realtime=False, frames=5), [], [VirtualCameraSink()])
    with pytest.raises(StageError, match="no output could be opened: vcam: virtual camera: no v4l2loopback device"):
        pipeline.run()


def test_unknown_backend_and_bad_settings_fail_at_construction() -> None:
    with pytest.raises(SinkError, match="unknown backend 'nope'"):
        VirtualCameraSink(backend="nope")
    with pytest.raises(SinkError, match="even"):
        VirtualCameraSink(size=(641, 480))
    with pytest.raises(SinkError, match="fps"):
        VirtualCameraSink(fps=0)


def test_loopback_devices_are_found_by_card_label(tmp_path: Path) -> None:
    sysfs = tmp_path / "class" / "video4linux"
    sysfs.mkdir(parents=True)
    for node, parent, label in (
        ("video7", "devices/virtual/video4linux", "realtime_swap"),
        ("video0", "devices/pci0000:00/usb1/1-1/video4linux", "Integrated Camera"),
    ):
        real = tmp_path / parent / node
        real.mkdir(parents=True)
        (real / "name").write_text(label + "\n")
        os.symlink(real, sysfs / node)
    devices = loopback_devices(sysfs)
    assert devices == [("/dev/video7", "realtime_swap")]
    assert resolve_linux_label("realtime_swap", devices) == "/dev/video7"
    with pytest.raises(SinkUnavailableError, match=r"found: /dev/video7 \(realtime_swap\)"):
        resolve_linux_label("OBS Cam", devices)
    with pytest.raises(SinkUnavailableError, match="modprobe v4l2loopback"):
        resolve_linux_label("realtime_swap", [])


@pytest.mark.skipif(platform.system() != "Linux", reason="video4linux2 exists on Linux only")
def test_v4l2_route_reports_a_missing_or_wrong_device(tmp_path: Path) -> None:
    info = StreamInfo(W, H, FPS, live=True, name="test")
    with pytest.raises(SinkUnavailableError, match=r"no such device.*modprobe v4l2loopback"):
        V4L2Sink("/dev/video63").open(info)
    not_a_device = tmp_path / "video0"
    not_a_device.write_bytes(b"")
    with pytest.raises(SinkUnavailableError, match="cannot write to it"):
        V4L2Sink(not_a_device).open(info)


@pytest.mark.skipif(not loopback_devices(), reason="no v4l2loopback device on this machine (modprobe v4l2loopback)")
def test_v4l2_route_writes_to_a_loopback_device() -> None:
    device = loopback_devices()[0][0]
    sink = V4L2Sink(device)
    sink.open(StreamInfo(W, H, FPS, live=True, name="test"))
    for frame in frames(10):
        sink.write(frame)
    sink.close()
    assert sink.stats()["frames_sent"] == 10
