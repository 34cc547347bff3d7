"""A live source that survives drops: a network stream that ends, errors or stalls, a camera that is unplugged.

``ReconnectingSource`` reads the real source in its own thread. When that source fails, ends, or delivers nothing
for ``stall_timeout_s``, it is closed and reopened with exponential back-off, without the engine noticing
anything but a gap. Meanwhile ``read`` keeps returning at the stream's frame rate: frames while they come, and a
``SourceOutage`` (the engine repeats the last good frame with a notice) while none does, so the outputs — a
virtual camera in a call — never stop. Timestamps stay on one continuous clock across reconnects.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import cv2
import numpy as np

from realtime_swap.errors import SourceError
from realtime_swap.handoff import CLOSED, LatestSlot
from realtime_swap.sources.base import Source, SourceOutage

if TYPE_CHECKING:
    from realtime_swap.sinks.video_file import AudioFeed

log = logging.getLogger(__name__)

_READ_ERRORS = (SourceError, OSError)


class ReconnectingSource(Source):
    """Wraps ``first`` (already open) and reopens it with ``reopen`` when it is lost.

    stall_timeout_s: no frame for this long counts as lost (the inner source should also time its reads out
    after about this long); hold_after_s: no frame for this long and ``read`` starts returning outages
    (default: 3 frame intervals, at least 0.2 s); reconnect_timeout_s: give up (``read`` raises SourceError)
    after being down this long (None: never); backoff_s: (first, longest) wait between reopen attempts, doubling.
    """

    def __init__(
        self,
        first: Source,
        reopen: Callable[[], Source],
        stall_timeout_s: float = 5.0,
        reconnect_timeout_s: float | None = None,
        backoff_s: tuple[float, float] = (0.25, 1.0),
        hold_after_s: float | None = None,
    ) -> None:
        if stall_timeout_s <= 0:
            raise SourceError(f"stall timeout must be > 0 s, got {stall_timeout_s:g}")
        if reconnect_timeout_s is not None and reconnect_timeout_s <= 0:
            raise SourceError(f"reconnect timeout must be > 0 s, got {reconnect_timeout_s:g}")
        self.info = first.info
        self._reopen = reopen
        self._stall_s = stall_timeout_s
        self._give_up_s = reconnect_timeout_s
        self._backoff = backoff_s
        self._interval = 1.0 / first.info.fps if first.info.fps > 0 else 1.0 / 30.0
        self._hold_after = hold_after_s if hold_after_s is not None else max(0.2, 3 * self._interval)
        self._slot: LatestSlot[tuple[np.ndarray, float]] = LatestSlot()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._current: Source | None = first
        self._corrupt_closed = 0  # corrupt packets counted by sources already closed
        self._failure: SourceError | None = None
        # state shared with the reader thread (under _lock)
        self._lost_at: float | None = None  # when the current outage began (perf_counter), None while up
        self._attempts = 0
        self._reason = ""
        self._reconnects = 0
        self._down_total_s = 0.0
        self._outages = 0
        # consumer-side clock
        self._last_frame_t = time.perf_counter()
        self._last_pts = 0.0
        self._pts_offset = 0.0
        self._rebase = False
        self._resized_from: tuple[int, int] | None = None
        self._audio = False
        # started by the first read, so that audio_feed() can still set the first source up undisturbed
        self._thread = threading.Thread(target=self._reader, name="source-reader", daemon=True)

    @property
    def audio_url(self) -> str | None:
        return None  # a live stream or camera: its audio can only come through audio_feed

    def audio_feed(self) -> AudioFeed | None:
        """The first connection's audio (a recording keeps it until the first drop; a reopened stream's audio
        starts a clock of its own, so it is not spliced in). Call before the first ``read``."""
        if self._thread.is_alive() or self._current is None:
            return None
        feed = self._current.audio_feed()
        self._audio = feed is not None
        return feed

    # -- consumer (the engine's capture thread) ------------------------------------------------------------------
    def read(self) -> tuple[np.ndarray, float] | SourceOutage | None:
        if self._thread.ident is None:
            self._last_frame_t = time.perf_counter()
            self._thread.start()
        while True:
            now = time.perf_counter()
            silent = now - self._last_frame_t
            wait = self._interval if silent >= self._hold_after else max(self._hold_after - silent, 0.001)
            item = self._slot.get(wait)
            if item is CLOSED:
                if self._failure is not None:
                    raise self._failure
                return None
            if item is not None:
                return self._frame(item)
            if time.perf_counter() - self._last_frame_t >= self._hold_after:
                return self._outage()

    def _frame(self, item: tuple[np.ndarray, float]) -> tuple[np.ndarray, float]:
        image, pts = item
        size = (self.info.width, self.info.height)
        if (image.shape[1], image.shape[0]) != size:  # reopened in another mode: the outputs keep their size
            if self._resized_from != (image.shape[1], image.shape[0]):
                self._resized_from = (image.shape[1], image.shape[0])
                log.warning("%s came back at %dx%d; scaling to %dx%d", self.info.name, *self._resized_from, *size)
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        with self._lock:
            rebase, self._rebase = self._rebase, False
        if rebase:  # a reopened stream starts its own clock again: continue ours one frame after the last
            self._pts_offset = self._last_pts + self._interval - pts
        out_pts = max(pts + self._pts_offset, self._last_pts + 1e-6)
        self._last_pts = out_pts
        self._last_frame_t = time.perf_counter()
        return image, out_pts

    def _outage(self) -> SourceOutage:
        now = time.perf_counter()
        self._last_pts += self._interval
        with self._lock:
            reconnecting = self._lost_at is not None
            attempts, reason = self._attempts, self._reason or "no frames"
        return SourceOutage(
            pts=self._last_pts,
            down_s=now - self._last_frame_t,
            reconnecting=reconnecting,
            attempts=attempts,
            reason=reason,
        )

    @property
    def corrupt_count(self) -> int:  # type: ignore[override]
        current = self._current
        return self._corrupt_closed + (current.corrupt_count if current is not None else 0)

    def stats(self) -> dict[str, float | int | str]:
        """reconnects, down_s (seconds lost, the current outage included), outages, last_error."""
        with self._lock:
            down = self._down_total_s + (time.perf_counter() - self._lost_at if self._lost_at is not None else 0.0)
            return {
                "reconnects": self._reconnects,
                "down_s": round(down, 3),
                "outages": self._outages,
                "last_error": self._reason,
            }

    def close(self) -> None:
        self._closing.set()
        if self._thread.ident is None:  # never read
            self._close_current()
            return
        self._thread.join(timeout=self._stall_s + 1.0)
        if self._thread.is_alive():  # blocked in a native read: closing under it could crash; leave it
            log.warning("%s: reader still blocked; leaving it", self.info.name)
            return
        self._close_current()

    # -- reader thread -------------------------------------------------------------------------------------------
    def _reader(self) -> None:
        backoff = self._backoff[0]
        while not self._closing.is_set():
            source = self._current
            if source is None:
                source = self._try_reopen(backoff)
                if source is None:
                    if self._failure is not None:
                        self._slot.close()
                        return
                    backoff = min(backoff * 2, self._backoff[1])
                    continue
                backoff = self._backoff[0]
            try:
                got = source.read()
            except _READ_ERRORS as exc:
                self._lost(str(exc))
                continue
            if got is None:
                self._lost("the stream ended")
                continue
            if isinstance(got, SourceOutage):  # a wrapped reconnecting source: nothing to hand on
                continue
            self._slot.put(got)
        self._slot.close()

    def _lost(self, reason: str) -> None:
        with self._lock:
            first = self._lost_at is None
            if first:
                self._lost_at = time.perf_counter()
                self._outages += 1
                self._attempts = 0
            self._reason = reason
        if first:
            log.warning("%s lost (%s); reconnecting", self.info.name, reason)
        self._close_current()

    def _close_current(self) -> None:
        source, self._current = self._current, None
        if source is None:
            return
        self._corrupt_closed += source.corrupt_count
        try:
            source.close()
        except Exception as exc:
            log.debug("closing %s: %s", self.info.name, exc)

    def _try_reopen(self, backoff: float) -> Source | None:
        """One attempt after ``backoff`` s; the new source, or None (``_failure`` set when giving up)."""
        with self._lock:
            lost_at = self._lost_at if self._lost_at is not None else time.perf_counter()
        if self._give_up_s is not None and time.perf_counter() - lost_at + backoff > self._give_up_s:
            self._closing.wait(max(0.0, self._give_up_s - (time.perf_counter() - lost_at)))
            with self._lock:
                reason = self._reason
            self._failure = SourceError(
                f"{self.info.name}: did not come back within {self._give_up_s:g} s (last error: {reason})"
            )
            return None
        if self._closing.wait(backoff):
            return None
        with self._lock:
            self._attempts += 1
        try:
            source = self._reopen()
        except _READ_ERRORS as exc:
            with self._lock:
                self._reason = str(exc)
            log.debug("%s: reconnect attempt failed: %s", self.info.name, exc)
            return None
        down = time.perf_counter() - lost_at
        if self._audio:
            log.warning(
                "%s: the recording's audio stopped at the drop (a reopened stream is not spliced in)", self.info.name
            )
            self._audio = False
        with self._lock:
            self._lost_at = None
            self._reconnects += 1
            self._down_total_s += down
            self._rebase = True
        log.warning("%s back after %.1f s", self.info.name, down)
        self._current = source
        return source
