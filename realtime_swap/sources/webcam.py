"""Webcams through OpenCV: by index or device path, MJPG and a 1-frame driver buffer where the driver allows."""

from __future__ import annotations

import glob
import logging
import sys
import time

import cv2
import numpy as np

from realtime_swap.errors import SourceError
from realtime_swap.sources.base import Source
from realtime_swap.types import StreamInfo

log = logging.getLogger(__name__)


def _backend() -> int:
    if sys.platform.startswith("linux"):
        return cv2.CAP_V4L2
    if sys.platform == "win32":
        return cv2.CAP_DSHOW
    if sys.platform == "darwin":
        return cv2.CAP_AVFOUNDATION
    return cv2.CAP_ANY


def list_video_devices() -> list[str]:
    """Camera device nodes visible on this machine (Linux); empty elsewhere."""
    return sorted(glob.glob("/dev/video*"))


class WebcamSource(Source):
    """A camera by index (``0``) or device path (``/dev/video2``).

    width/height/fps: requested; what the driver actually delivers is read back, logged, and put in ``info``.
    The camera keeps its own clock, so frames are always live (the pipeline drops stale ones).
    """

    def __init__(
        self,
        device: int | str,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        open_timeout_s: float = 5.0,
    ) -> None:
        self.device = device
        label = f"camera {device}"
        if sys.platform.startswith("linux"):
            node = f"/dev/video{device}" if isinstance(device, int) else device
            if not glob.glob(node):
                found = ", ".join(list_video_devices()) or "none"
                raise SourceError(f"{label}: no such device {node} (devices found: {found})")
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # we report a failed open, in one line
        cap = cv2.VideoCapture(device, _backend())
        if not cap.isOpened():
            cap.release()
            found = ", ".join(list_video_devices()) or "none"
            raise SourceError(f"{label}: cannot open (devices found: {found})")
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            cap.set(cv2.CAP_PROP_FPS, fps)
        self._cap = cap
        deadline = time.perf_counter() + open_timeout_s
        first = None
        while first is None and time.perf_counter() < deadline:
            ok, image = cap.read()
            first = image if ok else None
        if first is None:
            cap.release()
            raise SourceError(f"{label}: opened but delivered no frame within {open_timeout_s:g} s")
        actual_w, actual_h = first.shape[1], first.shape[0]
        actual_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if (width and width != actual_w) or (height and height != actual_h) or (fps and abs(fps - actual_fps) > 1):
            log.warning(
                "%s: asked for %sx%s@%s, the driver gives %dx%d@%.1f",
                label,
                width,
                height,
                fps,
                actual_w,
                actual_h,
                actual_fps,
            )
        self._pending: np.ndarray | None = first
        self._t0 = time.perf_counter()
        self.info = StreamInfo(actual_w, actual_h, actual_fps, live=True, name=label)

    def read(self) -> tuple[np.ndarray, float] | None:
        if self._pending is not None:
            image, self._pending = self._pending, None
        else:
            ok, grabbed = self._cap.read()
            if not ok:
                raise SourceError(f"{self.info.name}: stopped delivering frames (unplugged or in use?)")
            image = grabbed
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        return image, time.perf_counter() - self._t0

    def close(self) -> None:
        self._cap.release()
