"""The interface every frame source implements."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from realtime_swap.types import StreamInfo

if TYPE_CHECKING:
    from realtime_swap.sinks.video_file import AudioFeed


_S = TypeVar("_S", bound="Source")


@dataclass(frozen=True)
class SourceOutage:
    """What ``read`` of a reconnecting source returns, at the stream's frame rate, while no frame comes.

    pts: where a repeat of the last frame sits on the source's (continuous) clock, s; down_s: seconds since the
    last frame; reconnecting: the source was lost and is being reopened (False: it only stalls so far);
    attempts: reconnect attempts so far; reason: why, in a few words.
    """

    pts: float
    down_s: float
    reconnecting: bool
    attempts: int
    reason: str

    @property
    def notice(self) -> str:
        """A short line for the picture, e.g. 'source lost: reconnecting (attempt 3, 7 s)'."""
        if self.reconnecting:
            return f"source lost: reconnecting (attempt {self.attempts}, {self.down_s:.0f} s)"
        return f"no frames from the source for {self.down_s:.1f} s: waiting"


class Source(abc.ABC):
    """A stream of BGR frames. Constructing one opens it and fails fast (SourceError) when it cannot.

    ``read`` blocks until the next frame and returns ``(image, pts)``: image (H, W, 3) uint8 BGR, pts the
    frame's presentation time in seconds (source clock for files and streams, time since the first frame for
    live sources); ``None`` at the end of the stream. Paced sources (``info.live``) sleep inside ``read``.
    A source that survives outages (``sources.reconnect``) returns a ``SourceOutage`` instead of a frame while
    it is down. ``corrupt_count``: packets or frames that could not be decoded and were skipped so far.
    """

    info: StreamInfo
    paced_ms: float = 0.0  # ms the last ``read`` slept for pacing (not work: kept out of capture timings)
    corrupt_count: int = 0

    @abc.abstractmethod
    def read(self) -> tuple[np.ndarray, float] | SourceOutage | None:
        """The next frame and its pts in seconds, or None at the end of the stream."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device, file or connection. Safe to call twice."""

    def stats(self) -> dict[str, float | int | str]:
        """Counters for the end-of-run report (reconnects, seconds down, ...); {} when none."""
        return {}

    @property
    def audio_url(self) -> str | None:
        """A path/URL from which a recording sink can demux this source's audio, or None."""
        return None

    def audio_feed(self) -> AudioFeed | None:
        """For a source whose audio cannot be demuxed a second time (a live stream): its audio packets, handed
        over from now on while frames are read; None when it has no audio or ``audio_url`` is the way."""
        return None

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
