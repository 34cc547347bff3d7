"""The interface every output implements."""

from __future__ import annotations

import abc
import enum

from realtime_swap.types import Frame, StreamInfo


class SinkEvent(enum.Enum):
    """What a sink serviced on the main thread asks the engine to do."""

    QUIT = "quit"


class Sink(abc.ABC):
    """An output of finished frames (window, file, virtual camera, stream, null).

    Constructing a sink validates its settings (e.g. that the output folder is writable) without opening
    anything; ``open`` is called once with the stream's info before the first frame; ``write`` receives every
    output frame in order from the output thread; ``close`` flushes and finalises (a recording stays playable)
    and is called once, also after an error or Ctrl-C. An optional output whose device does not exist here
    raises ``SinkUnavailableError`` from ``open``: the engine warns and runs on without it.

    Sinks that must run on the main thread (GUI windows) set ``main_thread = True``: their ``write`` only hands
    the frame over, and the engine calls ``service`` from the main thread to show it and read keys.
    """

    name: str = "sink"
    main_thread: bool = False

    @abc.abstractmethod
    def open(self, info: StreamInfo) -> None:
        """Prepare for frames of this stream; raise SinkError naming the output when it cannot."""

    @abc.abstractmethod
    def write(self, frame: Frame) -> None:
        """Output one frame (image (H, W, 3) uint8 BGR)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release; safe to call twice."""

    def service(self) -> SinkEvent | None:
        """Main-thread work (draw, read keys) for ``main_thread`` sinks; returns an event or None."""
        return None

    def stats(self) -> dict[str, float | int | str]:
        """Counters for the end-of-run report (frames sent, dropped, reconnects, ...); {} when none."""
        return {}
