"""Real-time pacing shared by sources that produce frames faster than a clock would."""

from __future__ import annotations

import time


class Pacer:
    """Sleeps so that frame ``pts`` values are released on the wall clock (first frame at once)."""

    def __init__(self) -> None:
        self._t0: float | None = None
        self._pts0 = 0.0

    def wait(self, pts: float) -> float:
        """Sleep until ``pts`` is due; return the ms slept (kept out of the capture stage's timing)."""
        now = time.perf_counter()
        if self._t0 is None:
            self._t0, self._pts0 = now, pts
            return 0.0
        delay = self._t0 + (pts - self._pts0) - now
        if delay > 0:
            time.sleep(delay)
            return delay * 1000.0
        if delay < -0.5:  # we fell far behind (paused, stalled): re-anchor rather than burst
            self._t0, self._pts0 = now, pts
        return 0.0
