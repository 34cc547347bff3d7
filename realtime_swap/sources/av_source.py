"""Video files and network streams through PyAV (FFmpeg): mp4/mkv/avi/..., rtsp, rtmp, http(s), udp, srt, tcp."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import av
import numpy as np

from realtime_swap.errors import SourceError
from realtime_swap.sources.base import Source
from realtime_swap.sources.pacing import Pacer
from realtime_swap.types import StreamInfo

log = logging.getLogger(__name__)

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "srt", "tcp")

# Low-latency demuxing for live streams: a short probe (0.5 s) and low-delay decoding. Not ``fflags nobuffer``:
# it discards the probed packets, and with them the first keyframe. FFmpeg ignores options a protocol lacks.
_LOW_DELAY = {"flags": "low_delay", "analyzeduration": "500000", "probesize": "500000"}
_NETWORK_OPTIONS = {
    "rtsp": {**_LOW_DELAY, "rtsp_transport": "tcp"},
    "udp": {**_LOW_DELAY, "overrun_nonfatal": "1", "fifo_size": "1000000"},
}
_DEFAULT_NETWORK_OPTIONS = _LOW_DELAY
_MAX_DEMUX_ERRORS = 32  # consecutive container read errors a file is read past before it counts as unreadable


def is_url(spec: str) -> bool:
    """True when ``spec`` looks like ``scheme://...`` (a URL, not a Windows drive path)."""
    scheme = urlsplit(spec).scheme
    return "://" in spec and len(scheme) > 1


def check_url(url: str) -> str:
    """Return the URL's scheme; raise SourceError for one the engine does not read."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "file":
        return scheme
    if scheme not in NETWORK_SCHEMES:
        raise SourceError(f"unsupported URL scheme '{scheme}' in {url} (supported: {', '.join(NETWORK_SCHEMES)}, file)")
    return scheme


class AudioTap:
    """Audio packets of a live stream, handed from the source's demuxer (capture thread) to a recording (output
    thread). Bounded: when nobody takes them, the oldest go first (max_packets ~ 40 s of AAC at 48 kHz)."""

    def __init__(self, stream: av.AudioStream, max_packets: int = 2048) -> None:
        self.stream = stream
        self._packets: deque[av.Packet] = deque(maxlen=max_packets)

    def push(self, packet: av.Packet) -> None:
        self._packets.append(packet)

    def take(self) -> list[av.Packet]:
        """The packets pushed since the last call, in order (never blocks; pushes meanwhile wait for the next)."""
        return [self._packets.popleft() for _ in range(len(self._packets))]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


class AVSource(Source):
    """Decodes the first video stream of a file or URL to BGR frames.

    realtime: release frames on their timestamps (files; network streams are paced by the sender anyway) or
    decode as fast as possible (default for files). open_timeout_s/read_timeout_s bound network waits so a dead
    URL fails with a message instead of hanging. loop: restart a file at its end.
    """

    def __init__(
        self,
        spec: str | Path,
        realtime: bool = False,
        loop: bool = False,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
        options: dict[str, str] | None = None,
    ) -> None:
        self.spec = str(spec)
        self._network = is_url(self.spec) and check_url(self.spec) != "file"
        if not self._network:
            path = Path(self.spec.removeprefix("file://"))
            if not path.exists():
                raise SourceError(f"input not found: {path}")
            if not path.is_file():
                raise SourceError(f"input is not a file: {path}")
        self._loop = loop and not self._network
        opts = dict(options or {})
        if self._network:
            scheme = urlsplit(self.spec).scheme.lower()
            opts = {**_NETWORK_OPTIONS.get(scheme, _DEFAULT_NETWORK_OPTIONS), **opts}
        self._open_args = (opts, (open_timeout_s, read_timeout_s))
        self._container = self._open()
        stream = self._stream
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        width, height = stream.codec_context.width, stream.codec_context.height
        live = self._network or realtime
        self.info = StreamInfo(width, height, fps, live=live, name=self.spec)
        self._pacer = Pacer() if realtime and not self._network else None
        self._has_audio = bool(self._container.streams.audio)
        self._audio_tap: AudioTap | None = None
        self._frames = self._decode()
        self._pts_offset = 0.0
        self._last_pts = 0.0
        self._count = 0

    def _open(self) -> av.container.InputContainer:
        opts, timeout = self._open_args
        try:
            container = av.open(self.spec, mode="r", options=opts, timeout=timeout)
        except av.error.ExitError as exc:  # FFmpeg's "Immediate exit requested": our open timeout fired
            raise SourceError(
                f"cannot open {self.spec}: nothing received within {timeout[0]:g} s (is the sender running?)"
            ) from exc
        except (av.error.FFmpegError, OSError) as exc:
            raise SourceError(f"cannot open {self.spec}: {_first_line(exc)}") from exc
        if not container.streams.video:
            container.close()
            raise SourceError(f"{self.spec}: no video stream")
        self._stream = container.streams.video[0]
        self._stream.thread_type = "AUTO"
        return container

    def _decode(self) -> Iterator[av.VideoFrame]:
        """Video frames in decode order. A packet the decoder rejects is skipped and counted (``corrupt_count``);
        audio packets demuxed alongside go to the audio tap when one was asked for."""
        tap = self._audio_tap
        streams = [self._stream] if tap is None else [self._stream, tap.stream]
        demux_errors = 0
        while True:
            try:
                for packet in self._container.demux(*streams):
                    demux_errors = 0
                    if packet.stream.type == "audio":
                        if tap is not None and packet.dts is not None:
                            tap.push(packet)
                        continue
                    try:
                        frames = packet.decode()
                    except av.error.FFmpegError as exc:
                        self._skip_corrupt(exc)
                        continue
                    for frame in frames:
                        if isinstance(frame, av.VideoFrame):
                            yield frame
                return
            except av.error.FFmpegError as exc:
                # A damaged spot in a file's container is read past (a few times, not forever); on a stream
                # this is the connection failing, for the caller to handle.
                if self._network or isinstance(exc, av.error.ExitError) or demux_errors >= _MAX_DEMUX_ERRORS:
                    raise
                demux_errors += 1
                self._skip_corrupt(exc)

    def _skip_corrupt(self, exc: BaseException) -> None:
        self.corrupt_count += 1
        log.debug("%s: skipped a corrupt packet after %d frames: %s", self.spec, self._count, _first_line(exc))

    @property
    def audio_url(self) -> str | None:
        return self.spec if self._has_audio and not self._network else None

    def audio_feed(self) -> AudioTap | None:
        if not (self._has_audio and self._network):
            return None
        if self._audio_tap is None:
            self._audio_tap = AudioTap(self._container.streams.audio[0])
            self._frames = self._decode()
        return self._audio_tap

    def read(self) -> tuple[np.ndarray, float] | None:
        while True:
            try:
                frame = next(self._frames)
                break
            except StopIteration:
                if self._count == 0 and self.corrupt_count:
                    raise SourceError(
                        f"{self.spec}: nothing decodable ({self.corrupt_count} corrupt packets, no frame)"
                    ) from None
                if not self._loop or self._count == 0:
                    return None
                self._container.close()
                self._container = self._open()
                self._frames = self._decode()
                self._pts_offset = self._last_pts + (1.0 / self.info.fps if self.info.fps else 0.0)
            except av.error.ExitError as exc:  # our read timeout fired: nothing arrived for read_timeout_s
                raise SourceError(
                    f"{self.spec}: no data for {self._open_args[1][1]:g} s after {self._count} frames"
                ) from exc
            except av.error.FFmpegError as exc:
                raise SourceError(
                    f"{self.spec}: reading failed after {self._count} frames: {_first_line(exc)}"
                ) from exc
        self._count += 1
        pts = self._pts_offset + (
            float(frame.time) if frame.time is not None else self._count / (self.info.fps or 30.0)
        )
        self._last_pts = pts
        image = frame.to_ndarray(format="bgr24")
        if self._pacer is not None:
            self.paced_ms = self._pacer.wait(pts)
        return image, pts

    def close(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            container.close()
            self._container = None  # type: ignore[assignment]
