"""Recording to a video file through PyAV: H.264 in mp4/mkv/mov with the source's timestamps and audio.

mp4/mov are written *fragmented* (moof per keyframe) and each fragment is flushed to disk when complete, so a
recording cut short by a crash or a kill is still playable up to its last fragment; a normal stop (end, Ctrl-C,
SIGTERM, error) flushes everything.

The source's audio is copied (not re-encoded) onto the recording's clock: from a file by a second demux of it
(``set_audio_source``), from a live stream by packets its one demuxer hands over (``set_audio_feed``).
"""

from __future__ import annotations

import abc
import logging
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Protocol, cast

import av
import cv2
import numpy as np
from av.bitstream import BitStreamFilterContext

from realtime_swap.errors import SinkError
from realtime_swap.sinks.base import Sink
from realtime_swap.types import Frame, StreamInfo

log = logging.getLogger(__name__)

CONTAINER_SUFFIXES = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
TIME_BASE = Fraction(1, 90000)


def pick_h264_encoder() -> str:
    """The best H.264 encoder this FFmpeg build has (libx264, else FFmpeg's native, else MPEG-4 Part 2)."""
    for name in ("libx264", "h264", "libopenh264", "mpeg4"):
        if name in av.codecs_available:
            try:
                av.codec.Codec(name, "w")
                return name
            except (av.error.FFmpegError, ValueError):
                continue
    raise SinkError("this FFmpeg build has no H.264 or MPEG-4 encoder")


def bgr_to_yuv420p_frame(image: np.ndarray) -> av.VideoFrame:
    """(H, W, 3) uint8 BGR with even H and W → a yuv420p VideoFrame (BT.601 limited range, like swscale's
    default), converted by OpenCV: ~5x faster than letting the encoder call swscale on bgr24."""
    i420: np.ndarray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2YUV_I420)
    return av.VideoFrame.from_ndarray(i420, format="yuv420p")


def check_writable(path: Path, what: str) -> Path:
    """Resolve ``path`` and make sure a file can be created there; SinkError naming it otherwise."""
    path = path.expanduser()
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise SinkError(f"cannot write {what} {path}: folder {parent} does not exist")
    if path.is_dir():
        raise SinkError(f"cannot write {what} {path}: it is a folder")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise SinkError(f"cannot write {what} {path}: permission denied")
    return path


class AudioFeed(Protocol):
    """Audio packets of a source that only one reader can demux (a live stream), handed over while it runs.

    stream: the source's audio stream (the template of the recording's audio stream; packet times are on its
    time_base and on the same clock as the source's frame pts). take: the packets demuxed since the last call,
    in demux order (never blocks).
    """

    @property
    def stream(self) -> av.AudioStream: ...

    def take(self) -> list[av.Packet]: ...


class _AudioPassthrough(abc.ABC):
    """Copies audio packets into the recording, shifted onto its clock (0 = the first frame's pts)."""

    def __init__(self, template: av.AudioStream, output: av.container.OutputContainer, start_s: float) -> None:
        self._out = output.add_stream_from_template(template)
        self._tb = template.time_base or Fraction(1, 48000)
        self._offset = round(start_s / self._tb)
        self._held: av.Packet | None = None

    @abc.abstractmethod
    def _next(self) -> av.Packet | None:
        """The next packet in demux order, or None when there is none (yet)."""

    def mux_until(self, output: av.container.OutputContainer, until_s: float | None) -> None:
        """Mux every audio packet whose time is <= until_s on the recording clock (None: all of them)."""
        while True:
            packet = self._held or self._next()
            self._held = None
            if packet is None:
                return
            if packet.dts is None or packet.pts is None:
                continue
            t = float((packet.pts - self._offset) * self._tb)
            if until_s is not None and t > until_s:
                self._held = packet
                return
            if t < 0:
                continue
            packet.pts -= self._offset
            packet.dts -= self._offset
            for out in self._convert(packet):
                out.stream = self._out
                output.mux(out)

    def _convert(self, packet: av.Packet) -> list[av.Packet]:
        """The packets to mux for ``packet`` (a bitstream filter may change them)."""
        return [packet]

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the input, if this passthrough opened one."""


class _FileAudio(_AudioPassthrough):
    """The audio track of a file, demuxed a second time (the video demuxer is the source's)."""

    def __init__(self, url: str, output: av.container.OutputContainer, start_s: float) -> None:
        self._input = av.open(url, "r")
        try:
            in_stream = self._input.streams.audio[0]
            super().__init__(in_stream, output, start_s)
        except BaseException:
            self._input.close()
            raise
        self._packets: Iterator[av.Packet] = self._input.demux(in_stream)

    def _next(self) -> av.Packet | None:
        return next(self._packets, None)

    def close(self) -> None:
        self._input.close()


class _FeedAudio(_AudioPassthrough):
    """Audio packets a live source hands over (see ``AudioFeed``).

    AAC from a stream (MPEG-TS, RTSP) comes as ADTS frames without a global header, which mp4/mkv do not take:
    ``aac_adtstoasc`` turns them into raw AAC, and the AudioSpecificConfig it derives comes with the first
    packet, so mp4/mov write their moov late for such a feed (``needs_late_header``).
    """

    def __init__(self, feed: AudioFeed, output: av.container.OutputContainer, start_s: float) -> None:
        super().__init__(feed.stream, output, start_s)
        self._feed = feed
        self._pending: list[av.Packet] = []
        self._bsf = BitStreamFilterContext("aac_adtstoasc", feed.stream) if needs_late_header(feed) else None

    def _next(self) -> av.Packet | None:
        if not self._pending:
            self._pending = self._feed.take()[::-1]
        return self._pending.pop() if self._pending else None

    def _convert(self, packet: av.Packet) -> list[av.Packet]:
        # filtered only when muxed: the first packet out carries the AAC header, so it must not be skipped
        return list(self._bsf.filter(packet)) if self._bsf is not None else [packet]


def needs_late_header(feed: AudioFeed) -> bool:
    """Whether ``feed`` is AAC whose AudioSpecificConfig only arrives with its first packet (ADTS)."""
    ctx = feed.stream.codec_context
    return ctx.name == "aac" and not ctx.extradata


class VideoFileSink(Sink):
    """Encodes frames to ``path`` (mp4, m4v, mov, mkv) with H.264 and the frames' own timestamps.

    crf/preset: x264 quality and speed; audio_from: a file whose audio track is copied in, in sync (or see
    ``set_audio_feed`` for a live stream's audio).
    Frames of odd width/height lose their last column/row (4:2:0 needs even sizes).
    """

    name = "record"

    def __init__(
        self,
        path: str | Path,
        crf: int = 20,
        preset: str = "veryfast",
        audio_from: str | None = None,
        codec: str | None = None,
    ) -> None:
        self.path = check_writable(Path(path), "recording")
        fmt = CONTAINER_SUFFIXES.get(self.path.suffix.lower())
        if fmt is None:
            raise SinkError(
                f"cannot write recording {self.path}: unknown container '{self.path.suffix}' "
                f"(use {', '.join(sorted(CONTAINER_SUFFIXES))})"
            )
        self._format = fmt
        self._codec = codec or pick_h264_encoder()
        self._crf, self._preset = crf, preset
        self._audio_from = audio_from
        self._audio_feed: AudioFeed | None = None
        self._container: av.container.OutputContainer | None = None
        self._audio: _AudioPassthrough | None = None
        self._pts0: float | None = None
        self._last_pts = -1
        self.frames_written = 0

    def set_audio_source(self, url: str) -> None:
        """Copy the audio of ``url`` (the source file) into the recording."""
        self._audio_from = url

    def set_audio_feed(self, feed: AudioFeed) -> None:
        """Copy the audio packets a live source hands over (``feed``) into the recording."""
        self._audio_feed = feed

    def open(self, info: StreamInfo) -> None:
        options = {}
        if self._format in ("mp4", "mov"):
            options["movflags"] = "frag_keyframe+empty_moov+default_base_moof"
            options["flush_packets"] = "1"  # each finished fragment goes to disk now, not when 32 KB have piled up
            if self._audio_feed is not None and needs_late_header(self._audio_feed):
                options["movflags"] += "+delay_moov"  # the moov waits for the AAC header in the first packet
        try:
            self._container = av.open(str(self.path), "w", format=self._format, options=options)
        except (av.error.FFmpegError, OSError) as exc:
            raise SinkError(f"cannot write recording {self.path}: {exc}") from exc
        fps = info.fps if info.fps > 0 else 30.0
        stream = cast(av.VideoStream, self._container.add_stream(self._codec, rate=Fraction(round(fps * 1000), 1000)))
        stream.width, stream.height = info.width - info.width % 2, info.height - info.height % 2
        stream.pix_fmt = "yuv420p"
        stream.time_base = TIME_BASE
        stream.codec_context.time_base = TIME_BASE
        stream.codec_context.gop_size = max(1, round(fps * 2))
        if self._codec == "libx264":
            stream.options = {"crf": str(self._crf), "preset": self._preset}
        self._stream = stream
        self._size = (stream.width, stream.height)
        self._pending_audio_from = self._audio_from

    def write(self, frame: Frame) -> None:
        assert self._container is not None, "open() first"
        if self._pts0 is None:
            self._pts0 = frame.pts
            try:
                if self._pending_audio_from:
                    self._audio = _FileAudio(self._pending_audio_from, self._container, frame.pts)
                elif self._audio_feed is not None:
                    self._audio = _FeedAudio(self._audio_feed, self._container, frame.pts)
            except (av.error.FFmpegError, ValueError, IndexError) as exc:
                log.warning("recording %s: audio not passed through (%s)", self.path, exc)
        pts = round((frame.pts - self._pts0) / TIME_BASE)
        pts = max(pts, self._last_pts + 1)
        self._last_pts = pts
        w, h = self._size
        image = frame.image if frame.image.shape[:2] == (h, w) else frame.image[:h, :w]
        video_frame = bgr_to_yuv420p_frame(image)
        video_frame.pts = pts
        video_frame.time_base = TIME_BASE
        try:
            for packet in self._stream.encode(video_frame):
                self._container.mux(packet)
            if self._audio is not None:
                self._audio.mux_until(self._container, frame.pts - self._pts0)
        except (av.error.FFmpegError, OSError) as exc:
            raise SinkError(f"writing recording {self.path} failed: {exc}") from exc
        self.frames_written += 1

    def close(self) -> None:
        container, self._container = self._container, None
        if container is None:
            return
        try:
            for packet in self._stream.encode(None):
                container.mux(packet)
            if self._audio is not None:
                last = self._last_pts * TIME_BASE if self._last_pts >= 0 else 0
                self._audio.mux_until(container, float(last))
        finally:
            if self._audio is not None:
                self._audio.close()
            container.close()
