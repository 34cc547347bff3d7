"""A sink that discards frames (benchmarks, metrics-only runs)."""

from __future__ import annotations

from realtime_swap.sinks.base import Sink
from realtime_swap.types import Frame, StreamInfo


class NullSink(Sink):
    """Counts frames and drops them."""

    name = "null"

    def __init__(self) -> None:
        self.frames = 0

    def open(self, info: StreamInfo) -> None:
        self.frames = 0

    def write(self, frame: Frame) -> None:
        self.frames += 1
