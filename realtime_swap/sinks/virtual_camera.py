"""A virtual camera through pyvirtualcam: what call apps (Zoom, Meet, Teams, OBS) pick as a webcam.

Backends: v4l2loopback on Linux, OBS Virtual Camera on Windows/macOS, Unity Capture on Windows, or any backend
registered with ``pyvirtualcam.register_backend``. The frame format is negotiated: BGR is offered first (no
conversion on our side; the native backends convert in C), then I420, NV12 and RGB, converted here with OpenCV.

A machine without a virtual camera device is not an error of the run: ``open`` raises
``SinkUnavailableError`` with the exact install instructions, and the engine goes on with its other outputs.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from realtime_swap.errors import SinkError, SinkUnavailableError
from realtime_swap.sinks.base import Sink
from realtime_swap.types import Frame, StreamInfo

log = logging.getLogger(__name__)

LINUX_INSTALL = (
    "sudo apt install v4l2loopback-dkms && "
    'sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label="realtime_swap"'
)
WINDOWS_INSTALL = (
    "install OBS Studio (https://obsproject.com), click 'Start Virtual Camera' once, then close OBS; "
    "or install Unity Capture (https://github.com/schellingb/UnityCapture)"
)
MACOS_INSTALL = (
    "install OBS Studio 30 or newer (https://obsproject.com), click 'Start Virtual Camera' once and allow "
    "its system extension"
)
_V4L2_SYSFS = Path("/sys/class/video4linux")
BUILTIN_BACKENDS = ("v4l2loopback", "obs", "unitycapture")


def install_hint(system: str | None = None) -> str:
    """What to install so that a virtual camera device exists on ``system`` (default: this OS)."""
    system = system or platform.system()
    if system == "Linux":
        return f"create one with: {LINUX_INSTALL}"
    if system == "Windows":
        return WINDOWS_INSTALL
    if system == "Darwin":
        return MACOS_INSTALL
    return "no virtual camera backend is known for this OS"


def loopback_devices(sysfs: Path = _V4L2_SYSFS) -> list[tuple[str, str]]:
    """(device path, card label) of every v4l2loopback device on this Linux machine, sorted by path.

    Loopback devices are the video4linux devices with no hardware behind them (under /sys/devices/virtual).
    """
    if not sysfs.is_dir():
        return []
    found = []
    for entry in sysfs.iterdir():
        if not entry.name.startswith("video") or "/virtual/" not in os.path.realpath(entry):
            continue
        try:
            label = (entry / "name").read_text().strip()
        except OSError:
            label = ""
        found.append((f"/dev/{entry.name}", label))
    return sorted(found, key=lambda d: (len(d[0]), d[0]))


def resolve_linux_label(label: str, devices: list[tuple[str, str]]) -> str:
    """The /dev/videoN path of the loopback device whose card label is ``label``; SinkUnavailableError naming
    the devices that exist otherwise."""
    for path, name in devices:
        if name == label:
            return path
    if not devices:
        raise SinkUnavailableError(f"virtual camera '{label}': no v4l2loopback device found; {install_hint('Linux')}")
    listing = ", ".join(f"{p} ({n})" for p, n in devices)
    raise SinkUnavailableError(f"virtual camera '{label}': no loopback device with that label (found: {listing})")


def _one_line(exc: BaseException) -> str:
    return " / ".join(line.strip() for line in (str(exc) or type(exc).__name__).splitlines() if line.strip())


def bgr_to_i420(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR, even H and W → (H * 3 / 2, W) uint8 planar I420 (BT.601 limited range)."""
    return cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)


def bgr_to_nv12(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR, even H and W → (H * 3 / 2, W) uint8 NV12 (Y plane, then interleaved U, V)."""
    i420 = bgr_to_i420(image)
    h, w = image.shape[:2]
    out = np.empty_like(i420)
    out[:h] = i420[:h]
    quarter = (h // 2) * (w // 2)
    chroma = i420[h:].reshape(-1)
    uv = out[h:].reshape(-1)
    uv[0::2] = chroma[:quarter]
    uv[1::2] = chroma[quarter:]
    return out


def _rgb(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _identity(image: np.ndarray) -> np.ndarray:
    return image


class FrameRateLimiter:
    """Lets frames through at most ``fps`` times a second of their own timestamps (pts, s).

    Frames are kept on a grid of 1/fps from the first one, so a 60 fps stream into a 30 fps camera keeps every
    other frame instead of beating; a gap or a jump back in time restarts the grid.
    """

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.period = 1.0 / fps
        self._next: float | None = None

    def admit(self, pts: float) -> bool:
        """True when the frame at ``pts`` should be sent."""
        tolerance = 0.25 * self.period  # jitter of a source at exactly ``fps``
        if self._next is None or pts < self._next - self.period or pts > self._next + 2 * self.period:
            self._next = pts + self.period
            return True
        if pts < self._next - tolerance:
            return False
        self._next += self.period
        return True


class VirtualCameraSink(Sink):
    """Sends frames to a virtual camera at ``fps`` (None: the stream's), ``size`` (w, h; None: the stream's).

    device: a device path (/dev/video10), a v4l2loopback card label or a camera name (Windows/macOS); None picks
    the first one. backend: a pyvirtualcam backend name (None: every registered one, in order).
    """

    name = "vcam"
    # pyvirtualcam PixelFormat name → BGR converter, in the order they are offered to the backend
    FORMATS: tuple[tuple[str, Callable[[np.ndarray], np.ndarray]], ...] = (
        ("BGR", _identity),
        ("I420", bgr_to_i420),
        ("NV12", bgr_to_nv12),
        ("RGB", _rgb),
    )

    def __init__(
        self,
        device: str | None = None,
        fps: float | None = None,
        size: tuple[int, int] | None = None,
        backend: str | None = None,
    ) -> None:
        try:
            import pyvirtualcam
        except ImportError:
            pyvirtualcam = None  # reported by open(), like a missing device: the other outputs run on
        if pyvirtualcam is not None and backend is not None and backend not in pyvirtualcam.camera.BACKENDS:
            known = ", ".join(sorted(pyvirtualcam.camera.BACKENDS)) or "none"
            raise SinkError(f"virtual camera: unknown backend '{backend}' (this machine has: {known})")
        self._have_pyvirtualcam = pyvirtualcam is not None
        if fps is not None and fps <= 0:
            raise SinkError(f"virtual camera: fps must be > 0, got {fps}")
        if size is not None and (size[0] < 2 or size[1] < 2 or size[0] % 2 or size[1] % 2):
            raise SinkError(f"virtual camera: size must be even and >= 2x2, got {size[0]}x{size[1]}")
        self.device = device
        self._fps = fps
        self._size = size
        self._backend = backend
        self._camera: Any = None  # pyvirtualcam.Camera once open
        self._convert: Callable[[np.ndarray], np.ndarray] = _identity
        self._limiter: FrameRateLimiter | None = None
        self.format = ""
        self.device_in_use = ""
        self.backend_in_use = ""
        self.frames_sent = 0
        self.frames_skipped = 0

    def _resolve_device(self) -> str | None:
        """The device to ask pyvirtualcam for; on Linux a card label becomes its /dev/videoN, and a machine
        without any loopback device is reported here in one clear line."""
        import pyvirtualcam

        device = self.device
        only_v4l2 = self._backend == "v4l2loopback" or (
            self._backend is None and set(pyvirtualcam.camera.BACKENDS) == {"v4l2loopback"}
        )
        if platform.system() != "Linux" or not only_v4l2:
            return device
        devices = loopback_devices()
        if not devices:
            where = f" {device}" if device else ""
            raise SinkUnavailableError(f"virtual camera{where}: no v4l2loopback device here; {install_hint('Linux')}")
        if device and not device.startswith("/dev/"):
            return resolve_linux_label(device, devices)
        return device

    def open(self, info: StreamInfo) -> None:
        if not self._have_pyvirtualcam:
            raise SinkUnavailableError("virtual camera: the pyvirtualcam package is missing (pip install pyvirtualcam)")
        import pyvirtualcam

        device = self._resolve_device()
        width, height = self._size or (info.width - info.width % 2, info.height - info.height % 2)
        fps = self._fps or (info.fps if info.fps > 0 else 30.0)
        errors: list[str] = []
        for fmt_name, convert in self.FORMATS:
            try:
                camera = pyvirtualcam.Camera(
                    width,
                    height,
                    fps,
                    fmt=pyvirtualcam.PixelFormat[fmt_name],
                    device=device,
                    backend=self._backend,
                )
            except (RuntimeError, ValueError, OSError) as exc:
                errors.append(_one_line(exc))
                continue
            self._camera, self._convert, self.format = camera, convert, fmt_name
            break
        else:
            where = f" {self.device}" if self.device else ""
            hint = f"; {install_hint()}" if self._backend in (None, *BUILTIN_BACKENDS) else ""
            raise SinkUnavailableError(f"virtual camera{where} could not be opened: {errors[0]}{hint}")
        self.device_in_use, self.backend_in_use = str(self._camera.device), str(self._camera.backend)
        self._out_size = (width, height)
        self._limiter = FrameRateLimiter(fps)
        self.frames_sent = self.frames_skipped = 0
        log.info(
            "virtual camera %s (%s backend): %dx%d @ %.3g fps, %s frames",
            self.device_in_use,
            self.backend_in_use,
            width,
            height,
            fps,
            self.format,
        )

    def write(self, frame: Frame) -> None:
        assert self._camera is not None and self._limiter is not None, "open() first"
        if not self._limiter.admit(frame.pts):
            self.frames_skipped += 1
            return
        image = frame.image
        width, height = self._out_size
        if image.shape[:2] != (height, width):
            if image.shape[0] - image.shape[0] % 2 == height and image.shape[1] - image.shape[1] % 2 == width:
                image = image[:height, :width]  # an odd row/column less: crop, do not resample
            else:
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        try:
            self._camera.send(np.ascontiguousarray(self._convert(np.ascontiguousarray(image))))
        except (RuntimeError, ValueError, OSError) as exc:
            raise SinkError(f"virtual camera {self.device_in_use}: sending a frame failed: {_one_line(exc)}") from exc
        self.frames_sent += 1

    def close(self) -> None:
        camera, self._camera = self._camera, None
        if camera is not None:
            camera.close()

    def stats(self) -> dict[str, float | int | str]:
        """Frames sent and skipped (above the camera's fps), the device, backend and pixel format in use."""
        return {
            "frames_sent": self.frames_sent,
            "frames_skipped": self.frames_skipped,
            "device": self.device_in_use,
            "backend": self.backend_in_use,
            "format": self.format,
        }
