"""A browser session's media ends: its camera track as a ``Source``, the engine's output as a WebRTC track.

Both hand-offs are newest-wins (``LatestSlot``): a frame the engine has not taken yet is replaced by a newer one,
and a swapped frame the encoder has not sent yet likewise, so a remote stream never queues stale frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time

import av
import cv2
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from realtime_swap.handoff import CLOSED, LatestSlot
from realtime_swap.sinks.base import Sink
from realtime_swap.sources.base import Source
from realtime_swap.stages import Controls
from realtime_swap.types import Frame, StreamInfo

VIDEO_CLOCK_HZ = 90000
_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_HZ)


class TrackSource(Source):
    """Frames pushed from a WebRTC track (``push`` from the event loop), read by the engine's capture thread.

    info: the stream as the first frame showed it (later frames of another size are scaled to it: browsers
    lower the resolution under load). ``read`` returns None once ``close``d or after ``idle_timeout_s``
    without a frame (the client vanished), which ends the session's engine.
    """

    def __init__(self, first: av.VideoFrame, name: str, fps: float = 30.0, idle_timeout_s: float = 10.0) -> None:
        self.info = StreamInfo(first.width, first.height, fps, True, name)
        self.idle_timeout_s = idle_timeout_s
        self._slot: LatestSlot[av.VideoFrame] = LatestSlot()
        self._slot.put(first)
        self._t0: float | None = None
        self.received = 0
        self.replaced = 0

    def push(self, frame: av.VideoFrame) -> None:
        """Hand over the newest frame from the track (thread-safe, never blocks)."""
        self.received += 1
        if self._slot.put(frame):
            self.replaced += 1

    def read(self) -> tuple[np.ndarray, float] | None:
        deadline = time.monotonic() + self.idle_timeout_s
        while True:
            got = self._slot.get(0.25)
            if got is CLOSED:
                return None
            if got is not None:
                break
            if time.monotonic() > deadline:
                return None
        image: np.ndarray = got.to_ndarray(format="bgr24")
        if image.shape[1] != self.info.width or image.shape[0] != self.info.height:
            image = cv2.resize(image, (self.info.width, self.info.height), interpolation=cv2.INTER_LINEAR)
        now = time.perf_counter()
        if self._t0 is None:
            self._t0 = now
        return np.ascontiguousarray(image), now - self._t0

    def close(self) -> None:
        self._slot.close()

    def stats(self) -> dict[str, float | int | str]:
        return {"frames_received": self.received, "frames_replaced_before_capture": self.replaced}


class SwappedTrack(MediaStreamTrack):
    """The outgoing video track: the newest frame the engine finished, sent as it comes (pts on a 90 kHz clock
    from the session's start)."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._event_loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        self._image: np.ndarray | None = None
        self._ended = False
        self._t0 = time.perf_counter()

    def offer(self, image: np.ndarray) -> None:
        """Called from any thread: ``image`` (H, W, 3) uint8 BGR is the next frame to send (newest wins)."""
        with contextlib.suppress(RuntimeError):  # the event loop is closed: the session is gone
            self._event_loop.call_soon_threadsafe(self._set, image)

    def finish(self) -> None:
        """No more frames (thread-safe): the next ``recv`` ends the track."""
        with contextlib.suppress(RuntimeError):
            self._event_loop.call_soon_threadsafe(self._end)

    def _set(self, image: np.ndarray) -> None:
        self._image = image
        self._ready.set()

    def _end(self) -> None:
        self._ended = True
        self._ready.set()

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await self._ready.wait()
        self._ready.clear()
        if self._ended or self._image is None:
            self.stop()
            raise MediaStreamError
        frame = av.VideoFrame.from_ndarray(self._image, format="bgr24")
        frame.pts = int((time.perf_counter() - self._t0) * VIDEO_CLOCK_HZ)
        frame.time_base = _TIME_BASE
        return frame


class TrackSink(Sink):
    """The engine's output into a ``SwappedTrack``; draws the face masks when ``controls.show_mask``."""

    name = "webrtc"

    def __init__(self, track: SwappedTrack, controls: Controls | None = None) -> None:
        self.track = track
        self.controls = controls
        self.frames = 0

    def open(self, info: StreamInfo) -> None:
        self.frames = 0

    def write(self, frame: Frame) -> None:
        image = frame.image
        if self.controls is not None and self.controls.show_mask and frame.faces:
            from realtime_swap.sinks.window import draw_masks

            image = image.copy()
            draw_masks(image, frame.faces)
        self.frames += 1
        self.track.offer(image)

    def close(self) -> None:
        self.track.finish()

    def stats(self) -> dict[str, float | int | str]:
        return {"frames_sent": self.frames}
