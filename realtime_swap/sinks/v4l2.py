"""A virtual camera on Linux without pyvirtualcam: raw frames into a v4l2loopback device through PyAV's
video4linux2 output device (FFmpeg's ``-f v4l2``). The second route next to ``VirtualCameraSink``."""

from __future__ import annotations

import platform
from fractions import Fraction
from pathlib import Path
from typing import cast

import av

from realtime_swap.errors import SinkError, SinkUnavailableError
from realtime_swap.sinks.base import Sink
from realtime_swap.sinks.video_file import bgr_to_yuv420p_frame
from realtime_swap.sinks.virtual_camera import FrameRateLimiter, install_hint, loopback_devices, resolve_linux_label
from realtime_swap.types import Frame, StreamInfo

TIME_BASE = Fraction(1, 1_000_000)


class V4L2Sink(Sink):
    """Writes yuv420p frames to a v4l2loopback ``device`` (/dev/videoN or a card label) at ``fps`` (None: the
    stream's; faster streams are thinned on their timestamps)."""

    name = "v4l2"

    def __init__(self, device: str | Path, fps: float | None = None) -> None:
        if platform.system() != "Linux":
            raise SinkError(f"v4l2 output {device}: video4linux2 exists on Linux only (use the virtual camera)")
        if fps is not None and fps <= 0:
            raise SinkError(f"v4l2 output {device}: fps must be > 0, got {fps}")
        self.device = str(device)
        self._fps = fps
        self._container: av.container.OutputContainer | None = None
        self._limiter: FrameRateLimiter | None = None
        self.frames_sent = 0
        self.frames_skipped = 0

    def open(self, info: StreamInfo) -> None:
        path = self.device
        if not path.startswith("/"):
            path = resolve_linux_label(path, loopback_devices())
        if not Path(path).exists():
            raise SinkUnavailableError(f"v4l2 output {path}: no such device; {install_hint('Linux')}")
        fps = self._fps or (info.fps if info.fps > 0 else 30.0)
        try:
            container = av.open(path, "w", format="video4linux2")
            stream = cast(av.VideoStream, container.add_stream("rawvideo", rate=Fraction(round(fps * 1000), 1000)))
            stream.width, stream.height = info.width - info.width % 2, info.height - info.height % 2
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = TIME_BASE
            container.start_encoding()  # opens the device now, so a refusal is reported before the first frame
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise SinkUnavailableError(
                f"v4l2 output {path}: cannot write to it ({exc}); is it a v4l2loopback device? {install_hint('Linux')}"
            ) from exc
        self._container, self._stream, self._path = container, stream, path
        self._size = (stream.width, stream.height)
        self._limiter = FrameRateLimiter(fps)
        self._pts0: float | None = None
        self._last_pts = -1
        self.frames_sent = self.frames_skipped = 0

    def write(self, frame: Frame) -> None:
        assert self._container is not None and self._limiter is not None, "open() first"
        if not self._limiter.admit(frame.pts):
            self.frames_skipped += 1
            return
        if self._pts0 is None:
            self._pts0 = frame.pts
        w, h = self._size
        video_frame = bgr_to_yuv420p_frame(frame.image[:h, :w])
        video_frame.pts = self._last_pts = max(round((frame.pts - self._pts0) / TIME_BASE), self._last_pts + 1)
        video_frame.time_base = TIME_BASE
        try:
            self._container.mux(self._stream.encode(video_frame))
        except (av.error.FFmpegError, OSError) as exc:
            raise SinkError(f"v4l2 output {self._path}: writing a frame failed: {exc}") from exc
        self.frames_sent += 1

    def close(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            container.close()

    def stats(self) -> dict[str, float | int | str]:
        """Frames written and skipped (above the device's fps)."""
        return {"frames_sent": self.frames_sent, "frames_skipped": self.frames_skipped}
