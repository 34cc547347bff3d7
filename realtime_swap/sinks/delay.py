"""A constant-latency delay in front of the outputs (DeepFaceLive's "target delay").

A call app gets the microphone straight from the system and the video from the virtual camera, later by the
engine's latency — which varies with the faces in view. ``DelaySink`` holds every frame until
``t_capture + delay`` so the video leaves at a constant latency; delaying the microphone by the same amount
(e.g. in the OS mixer or OBS) puts them back in sync.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence

import numpy as np

from realtime_swap.errors import SinkError, SinkUnavailableError
from realtime_swap.sinks.base import Sink, SinkEvent
from realtime_swap.types import Frame, StreamInfo

log = logging.getLogger(__name__)

MAX_HELD_FPS = 240  # bound of the hold queue: delay_s x this many frames (a source faster than this is dropped)


class DelaySink(Sink):
    """Writes every frame to ``sinks`` at ``frame.t_capture + delay_s`` (perf_counter s), in order.

    Frames that reach it later than that (the engine was slower than the delay) go out at once and are counted
    as late. ``write`` never blocks: a release thread owns the inner sinks' ``write`` calls, and an exception
    there is raised by the next ``write`` or ``close``. Inner main-thread sinks (the window) are serviced through
    ``service``. An inner sink that is unavailable (``SinkUnavailableError``) is left out with a warning.
    """

    name = "delay"

    def __init__(self, sinks: Sequence[Sink], delay_s: float) -> None:
        if delay_s <= 0:
            raise SinkError(f"delay must be > 0 s, got {delay_s}")
        if not sinks:
            raise SinkError("delay: no outputs to delay")
        self.sinks = list(sinks)
        self.delay_s = delay_s
        self.main_thread = any(s.main_thread for s in self.sinks)
        self._cond = threading.Condition()
        self._held: deque[Frame] = deque()
        self._closing = False
        self._failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._opened: list[Sink] = []  # open and not closed yet
        self.outputs: list[Sink] = []  # the outputs that were opened (kept after close, for stats)
        self.unavailable: list[str] = []  # inner outputs left out at open, with the reason
        self._lateness_ms: deque[float] = deque(maxlen=10000)
        self.frames_out = 0
        self.frames_late = 0
        self.frames_dropped = 0

    def open(self, info: StreamInfo) -> None:
        for sink in self.sinks:
            try:
                sink.open(info)
            except SinkUnavailableError as exc:
                log.warning("output %s unavailable, running without it: %s", sink.name, exc)
                self.unavailable.append(f"{sink.name}: {exc}")
                continue
            except BaseException:
                self._close_inner()
                raise
            self._opened.append(sink)
        self.outputs = list(self._opened)
        if not self._opened:
            raise SinkUnavailableError("delay: none of the delayed outputs is available")
        self._bound = max(8, int(self.delay_s * MAX_HELD_FPS) + 8)
        self._thread = threading.Thread(target=self._release, name="delay", daemon=True)
        self._thread.start()

    def write(self, frame: Frame) -> None:
        self._raise_failure()
        with self._cond:
            if len(self._held) >= self._bound:
                self._held.popleft()
                self.frames_dropped += 1
            self._held.append(frame)
            self._cond.notify()

    def service(self) -> SinkEvent | None:
        event = None
        for sink in self._opened:
            if sink.main_thread:
                event = sink.service() or event
        return event

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            with self._cond:
                self._closing = True
                self._cond.notify()
            thread.join()
        self._close_inner()
        self._raise_failure()

    def stats(self) -> dict[str, float | int | str]:
        """Frames released, late (the engine took longer than the delay), dropped (hold queue full), the release
        error: p50/p99 of (release time - due time) in ms over the last 10000 frames; then the delayed outputs'
        own stats as ``name.key`` and the ones left out (``left_out``)."""
        lateness = np.asarray(self._lateness_ms) if self._lateness_ms else np.zeros(1)
        out: dict[str, float | int | str] = {
            "delay_ms": self.delay_s * 1000.0,
            "frames_out": self.frames_out,
            "frames_late": self.frames_late,
            "frames_dropped": self.frames_dropped,
            "release_error_p50_ms": float(np.percentile(lateness, 50)),
            "release_error_p99_ms": float(np.percentile(lateness, 99)),
        }
        for sink in self.outputs:
            out.update({f"{sink.name}.{k}": v for k, v in sink.stats().items()})
        if self.unavailable:
            out["left_out"] = "; ".join(self.unavailable)
        return out

    # -- release thread ----------------------------------------------------------------------------------------
    def _release(self) -> None:
        while True:
            with self._cond:
                while not self._held and not self._closing:
                    self._cond.wait()
                if not self._held:
                    return
                frame = self._held[0]
                wait = frame.t_capture + self.delay_s - time.perf_counter()
                if wait > 0:
                    # the wait is cut short by a new frame only to re-check; the head stays the same
                    self._cond.wait(wait)
                    if time.perf_counter() < frame.t_capture + self.delay_s:
                        continue
                self._held.popleft()
            late_ms = (time.perf_counter() - frame.t_capture - self.delay_s) * 1000.0
            if wait <= 0:
                self.frames_late += 1
            self._lateness_ms.append(late_ms)
            try:
                for sink in self._opened:
                    sink.write(frame)
            except BaseException as exc:
                self._failure = exc
                with self._cond:
                    self._held.clear()
                return
            self.frames_out += 1

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise SinkError(f"delayed output failed: {self._failure}") from self._failure

    def _close_inner(self) -> None:
        opened, self._opened = self._opened, []
        first: BaseException | None = None
        for sink in opened:
            try:
                sink.close()
            except Exception as exc:
                log.warning("closing output %s: %s", sink.name, exc)
                first = first or exc
        if first is not None and self._failure is None:
            self._failure = first
