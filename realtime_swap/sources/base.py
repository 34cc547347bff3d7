"""The interface every frame source implements."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING

import numpy as np

from realtime_swap.types import StreamInfo

if TYPE_CHECKING:
    from realtime_swap.sinks.video_file import AudioFeed


class Source(abc.ABC):
    """A stream of BGR frames. Constructing one opens it and fails fast (SourceError) when it cannot.

    ``read`` blocks until the next frame and returns ``(image, pts)``: image (H, W, 3) uint8 BGR, pts the
    frame's presentation time in seconds (source clock for files and streams, time since the first frame for
    live sources); ``None`` at the end of the stream. Paced sources (``info.live``) sleep inside ``read``.
    """

    info: StreamInfo
    paced_ms: float = 0.0  # ms the last ``read`` slept for pacing (not work: kept out of capture timings)

    @abc.abstractmethod
    def read(self) -> tuple[np.ndarray, float] | None:
        """The next frame and its pts in seconds, or None at the end of the stream."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device, file or connection. Safe to call twice."""

    @property
    def audio_url(self) -> str | None:
        """A path/URL from which a recording sink can demux this source's audio, or None."""
        return None

    def audio_feed(self) -> AudioFeed | None:
        """For a source whose audio cannot be demuxed a second time (a live stream): its audio packets, handed
        over from now on while frames are read; None when it has no audio or ``audio_url`` is the way."""
        return None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
