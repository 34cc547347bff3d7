"""Network streams: H.264 over RTMP (flv), RTSP (push to a server), SRT, and MPEG-TS over UDP or TCP.

Encoding is tuned for latency: x264 ``tune=zerolatency`` (no lookahead, no B-frames), a short GOP (keyframe every
``gop_s``, default 1 s, so a receiver that joins or reconnects waits at most that long) and a bitrate cap; NVENC
(``h264_nvenc``, preset p1, ultra-low-latency tuning) is used when it opens on this machine.

Threads: ``write`` only hands the frame to a one-frame slot (newest wins, replaced frames are counted) and
returns; a sender thread encodes and sends, so a slow or dead network never blocks the engine's output thread.
A connection that fails or drops is re-established with exponential back-off; drops and reconnects are counted
in ``stats()``.

Transports: UDP and TCP MPEG-TS are sent from this process through Python sockets (waits release the GIL; TCP
writes time out). RTMP, RTSP and SRT need FFmpeg's protocol code, whose connect and handshake PyAV runs while
holding the GIL — a stalled server would freeze every thread of the engine — so they run in a small child
process (``python -m realtime_swap.sinks.network``) that remuxes the encoded stream, read as NUT from a pipe,
to the server; a child that stalls is killed and restarted.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import functools
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, cast

import av
import numpy as np

from realtime_swap.errors import SinkError
from realtime_swap.handoff import CLOSED, LatestSlot
from realtime_swap.sinks.base import Sink
from realtime_swap.sinks.stream_url import StreamEncoder, StreamProtocol, StreamTarget, parse_stream_url, redact
from realtime_swap.sinks.video_file import bgr_to_yuv420p_frame
from realtime_swap.types import Frame, StreamInfo

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 90000)
_BPP = 0.1  # default bitrate: bits per pixel per frame (720p30 ≈ 2.8 Mbit/s, 1080p30 ≈ 6.2 Mbit/s)

# the protocols FFmpeg's own code sends (in a child process)
_IN_CHILD = frozenset({StreamProtocol.RTMP, StreamProtocol.RTMPS, StreamProtocol.RTSP, StreamProtocol.SRT})


@functools.cache
def encoder_works(name: str) -> bool:
    """Whether the encoder ``name`` opens on this machine (NVENC needs an NVIDIA GPU and driver)."""
    if name not in av.codecs_available:
        return False
    try:
        ctx = av.CodecContext.create(name, "w")
        ctx.width, ctx.height, ctx.pix_fmt = 256, 144, "yuv420p"  # type: ignore[attr-defined]
        ctx.time_base = Fraction(1, 30)
        ctx.open()
    except (av.error.FFmpegError, OSError, ValueError):
        return False
    return True


def pick_stream_encoder(choice: StreamEncoder = StreamEncoder.AUTO) -> str:
    """The encoder to use for ``choice``; SinkError when an explicitly asked one does not open here."""
    if choice is StreamEncoder.AUTO:
        for name in (StreamEncoder.NVENC.value, StreamEncoder.LIBX264.value):
            if encoder_works(name):
                return name
        raise SinkError("stream: this FFmpeg build has neither h264_nvenc nor libx264")
    if not encoder_works(choice.value):
        raise SinkError(f"stream: encoder {choice.value} does not open on this machine")
    return choice.value


@functools.cache
def protocol_available(scheme: str) -> bool:
    """Whether this FFmpeg build has the ``scheme`` protocol (PyAV's wheels have no SRT, for one)."""
    try:
        av.open(f"{scheme}://127.0.0.1:9", "r", timeout=0.5).close()
    except av.error.ProtocolNotFoundError:
        return False
    except (av.error.FFmpegError, OSError):
        pass  # found, but nothing listens on the discard port: expected
    return True


# -- transports: where the muxed bytes go ------------------------------------------------------------------------


class _Transport(abc.ABC):
    """A byte sink for PyAV (``write``) that raises OSError when the peer is gone or stalls."""

    container: str = "mpegts"
    buffer_size: int = 32768

    @abc.abstractmethod
    def write(self, data: bytes) -> int: ...

    @property
    def established(self) -> bool:
        """True once the receiver is known to take the stream."""
        return True

    def close(self, timeout_s: float) -> None:  # noqa: B027 - optional hook
        """Release the connection; wait at most ``timeout_s`` for a clean end."""


class _UdpTransport(_Transport):
    """MPEG-TS datagrams of ``pkt_size`` bytes (a whole number of 188-byte TS packets each)."""

    def __init__(self, target: StreamTarget) -> None:
        info = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_DGRAM)[0]
        self._sock = socket.socket(info[0], socket.SOCK_DGRAM)
        self._addr = info[4]
        if target.ttl != 1:
            self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, target.ttl)
        self.buffer_size = target.pkt_size

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        for start in range(0, len(view), self.buffer_size):
            self._sock.sendto(view[start : start + self.buffer_size], self._addr)
        return len(data)

    def close(self, timeout_s: float) -> None:
        self._sock.close()


class _TcpTransport(_Transport):
    """MPEG-TS over one TCP connection; a write that makes no progress for ``write_timeout_s`` fails."""

    def __init__(self, target: StreamTarget, connect_timeout_s: float, write_timeout_s: float) -> None:
        self._sock = socket.create_connection((target.host, target.port), timeout=connect_timeout_s)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.settimeout(write_timeout_s)

    def write(self, data: bytes) -> int:
        self._sock.sendall(data)
        return len(data)

    def close(self, timeout_s: float) -> None:
        self._sock.close()


class _PusherTransport(_Transport):
    """Feeds a child process (``_push_main``) that sends the stream with FFmpeg's protocol code.

    The child reports on its stdout: ``connected`` once the server took the stream, ``error <why>`` before it
    exits on a failure. Bytes go to its stdin through a short queue and a feeder thread, so a child stuck in a
    handshake or on a dead server shows as a ``write`` that cannot queue for ``write_timeout_s``: it is killed.
    """

    container = "nut"
    buffer_size = 65536

    def __init__(self, target: StreamTarget, write_timeout_s: float) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "realtime_swap.sinks.network", target.url, target.container],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._timeout = write_timeout_s
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)  # ~8 packets: a short backlog at most
        self._connected = threading.Event()
        self._gone = threading.Event()
        self._error = ""
        self._threads = [
            threading.Thread(target=self._feed, name="stream-feed", daemon=True),
            threading.Thread(target=self._watch, name="stream-watch", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _feed(self) -> None:
        stdin = cast(IO[bytes], self._proc.stdin)
        while (data := self._queue.get()) is not None:
            try:
                stdin.write(data)
                stdin.flush()
            except (OSError, ValueError):  # the child is gone
                self._gone.set()
                return
        with contextlib.suppress(OSError):
            stdin.close()

    def _watch(self) -> None:
        for line in cast(IO[bytes], self._proc.stdout):
            text = line.decode(errors="replace").strip()
            if text == "connected":
                self._connected.set()
            elif text.startswith("error "):
                self._error = text.removeprefix("error ")
        self._gone.set()

    @property
    def established(self) -> bool:
        return self._connected.is_set()

    def _why(self) -> str:
        self._threads[1].join(1.0)  # the child's last words
        return self._error or f"sender process ended (exit code {self._proc.poll()})"

    def write(self, data: bytes) -> int:
        if self._gone.is_set():
            raise ConnectionError(self._why())
        try:
            self._queue.put(bytes(data), timeout=self._timeout)
        except queue.Full:
            self._proc.kill()
            raise TimeoutError(f"no progress for {self._timeout:.0f} s (server stalled?)") from None
        return len(data)

    def close(self, timeout_s: float) -> None:
        try:
            if not self.established:  # nothing reached a server: nothing to finish
                raise subprocess.TimeoutExpired("sender", 0)
            self._queue.put(None, timeout=min(timeout_s, self._timeout))  # a full queue: the child is stuck
            self._proc.wait(timeout_s)
        except (queue.Full, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()
        for thread in self._threads:
            thread.join(1.0)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


# -- one connection: encoder + muxer over a transport -----------------------------------------------------------


@dataclass(frozen=True)
class EncoderSettings:
    """encoder: an H.264 encoder name; bitrate_kbps: target and cap (None: 0.1 bit/pixel/frame); gop_s: seconds
    between keyframes; preset: x264 preset (NVENC uses p1)."""

    encoder: str = "libx264"
    bitrate_kbps: int | None = None
    gop_s: float = 1.0
    preset: str = "veryfast"

    def options(self, width: int, height: int, fps: float) -> dict[str, str]:
        """The codec options for a stream of this size and rate."""
        kbps = self.bitrate_kbps or max(500, min(20000, round(width * height * fps * _BPP / 1000)))
        common = {
            "g": str(max(1, round(fps * self.gop_s))),
            "bf": "0",
            "b": f"{kbps}k",
            "maxrate": f"{kbps}k",
            "bufsize": f"{max(1, kbps // 2)}k",  # half a second of VBV: short receiver buffers
        }
        if self.encoder == StreamEncoder.NVENC.value:
            return {**common, "preset": "p1", "tune": "ull", "zerolatency": "1", "rc": "cbr", "delay": "0"}
        if self.encoder == StreamEncoder.LIBX264.value:
            return {**common, "preset": self.preset, "tune": "zerolatency"}
        return common


def muxer_options(container: str) -> dict[str, str]:
    """Muxer options for low latency: every packet leaves at once; MPEG-TS video PES carry their length, so a
    receiver's demuxer hands a frame on when it is complete instead of when the next one starts (-1 frame)."""
    options = {"flush_packets": "1"}
    if container == "mpegts":
        options["omit_video_pes_length"] = "0"
    return options


class _Connection:
    """An encoder and a muxer writing to ``transport``; ``send`` raises OSError/FFmpegError when it fails."""

    def __init__(self, transport: _Transport, settings: EncoderSettings, size: tuple[int, int], fps: float) -> None:
        self.transport = transport
        self.container = av.open(
            transport,
            "w",
            format=transport.container,
            container_options=muxer_options(transport.container),
            buffer_size=transport.buffer_size,
        )
        try:
            stream = cast(
                av.VideoStream, self.container.add_stream(settings.encoder, rate=Fraction(round(fps * 1000), 1000))
            )
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
            stream.time_base = TIME_BASE
            ctx = stream.codec_context
            ctx.time_base = TIME_BASE
            ctx.colorspace = ctx.color_primaries = ctx.color_trc = 6  # BT.601 (SMPTE 170M), as converted
            ctx.color_range = 1  # limited (MPEG) range
            stream.options = cast("dict[str, object]", settings.options(size[0], size[1], fps))
        except BaseException:
            self.container.close()
            raise
        self.stream = stream
        self._size = size
        self._pts0: float | None = None
        self._last_pts = -1

    def send(self, image: np.ndarray, pts_s: float) -> None:
        if self._pts0 is None:
            self._pts0 = pts_s
        w, h = self._size
        frame = bgr_to_yuv420p_frame(image[:h, :w])
        frame.pts = self._last_pts = max(round((pts_s - self._pts0) / TIME_BASE), self._last_pts + 1)
        frame.time_base = TIME_BASE
        self.container.mux(self.stream.encode(frame))

    def close(self, flush: bool, timeout_s: float) -> None:
        try:
            if flush:
                self.container.mux(self.stream.encode(None))
            self.container.close()
        except (av.error.FFmpegError, OSError) as exc:
            log.debug("closing stream connection: %s", exc)
        finally:
            self.transport.close(timeout_s)


# -- the sink ----------------------------------------------------------------------------------------------------


class NetworkStreamSink(Sink):
    """Streams frames to ``url`` (see the module docstring) with low-latency H.264.

    encoder: AUTO (NVENC when it works, else libx264) or one explicitly; bitrate_kbps/gop_s/preset: see
    EncoderSettings. reconnect_min_s/reconnect_max_s: back-off between connection attempts (doubling);
    connect_timeout_s/write_timeout_s: how long a connect or a write without progress may take before the
    connection counts as failed; close_timeout_s: how long ``close`` waits for the last frames to go out.
    """

    def __init__(
        self,
        url: str,
        encoder: StreamEncoder = StreamEncoder.AUTO,
        bitrate_kbps: int | None = None,
        gop_s: float = 1.0,
        preset: str = "veryfast",
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        write_timeout_s: float = 5.0,
        close_timeout_s: float = 5.0,
    ) -> None:
        self.target = parse_stream_url(url)
        self.name = f"stream:{self.target.protocol.value}"
        self.url = redact(url)
        if self.target.protocol in _IN_CHILD and not protocol_available(self.target.protocol.value):
            raise SinkError(
                f"stream {self.url}: this FFmpeg build has no {self.target.protocol.value} protocol "
                "(PyAV's wheels are built without libsrt); use udp:// or tcp:// MPEG-TS, or a PyAV built on an "
                "FFmpeg with it"
            )
        if bitrate_kbps is not None and bitrate_kbps <= 0:
            raise SinkError(f"stream {self.url}: bitrate must be > 0 kbit/s, got {bitrate_kbps}")
        if gop_s <= 0:
            raise SinkError(f"stream {self.url}: gop must be > 0 s, got {gop_s}")
        if not 0 < reconnect_min_s <= reconnect_max_s:
            raise SinkError(f"stream {self.url}: need 0 < reconnect_min_s <= reconnect_max_s")
        self._encoder_choice = encoder
        self._settings = EncoderSettings(bitrate_kbps=bitrate_kbps, gop_s=gop_s, preset=preset)
        self._backoff = (reconnect_min_s, reconnect_max_s)
        self._timeouts = (connect_timeout_s, write_timeout_s, close_timeout_s)
        self._slot: LatestSlot[tuple[np.ndarray, float]] = LatestSlot()
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._lock = threading.Lock()
        self._send_ms: deque[float] = deque(maxlen=300)
        self._counts = {
            "frames_sent": 0,
            "frames_dropped": 0,
            "frames_offline": 0,
            "connect_failures": 0,
            "disconnects": 0,
            "reconnects": 0,
        }
        self.connected = False
        self.last_error = ""
        self._failing = False

    # -- output thread ---------------------------------------------------------------------------------------
    def open(self, info: StreamInfo) -> None:
        encoder = pick_stream_encoder(self._encoder_choice)
        self._settings = dataclasses.replace(self._settings, encoder=encoder)
        self._size = (info.width - info.width % 2, info.height - info.height % 2)
        self._fps = info.fps if info.fps > 0 else 30.0
        self._thread = threading.Thread(target=self._sender, name=f"{self.name}-sender", daemon=True)
        self._thread.start()
        options = self._settings.options(*self._size, self._fps)
        log.info("stream %s: %s %dx%d @ %.3g fps, %s bit/s", self.url, encoder, *self._size, self._fps, options["b"])

    def write(self, frame: Frame) -> None:
        if self._failure is not None:
            raise SinkError(f"stream {self.url}: sender failed: {self._failure}") from self._failure
        if self._slot.put((frame.image, frame.pts)):
            self._count("frames_dropped")

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._slot.close()
        thread.join(self._timeouts[2] + 1.0)
        if thread.is_alive():
            log.warning("stream %s: sender still blocked after %.0f s; leaving it", self.url, self._timeouts[2])

    def stats(self) -> dict[str, float | int | str]:
        """Counters: frames sent / dropped (replaced before sending) / offline (while disconnected), connect
        failures, disconnects, reconnects; connected (0/1), send_ms (mean encode+send over the last 300 frames),
        encoder, url (redacted), last_error."""
        with self._lock:
            out: dict[str, float | int | str] = dict(self._counts)
            out["send_ms"] = float(np.mean(self._send_ms)) if self._send_ms else 0.0
        out.update(connected=int(self.connected), encoder=self._settings.encoder, url=self.url)
        out["last_error"] = self.last_error
        return out

    def counts(self) -> dict[str, int]:
        """The counters of ``stats`` alone: frames_sent, frames_dropped, frames_offline, connect_failures,
        disconnects, reconnects."""
        with self._lock:
            return dict(self._counts)

    # -- sender thread ---------------------------------------------------------------------------------------
    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def _connect(self) -> _Connection:
        connect_timeout, write_timeout, _ = self._timeouts
        target = self.target
        transport: _Transport
        if target.protocol is StreamProtocol.UDP:
            transport = _UdpTransport(target)
        elif target.protocol is StreamProtocol.TCP:
            transport = _TcpTransport(target, connect_timeout, write_timeout)
        else:
            transport = _PusherTransport(target, max(write_timeout, connect_timeout))
        try:
            return _Connection(transport, self._settings, self._size, self._fps)
        except BaseException:
            transport.close(0.0)
            raise

    def _sender(self) -> None:
        try:
            self._send_loop()
        except BaseException as exc:  # a bug, not a network problem: surface it on the next write
            self._failure = exc
            log.error("stream %s: sender failed: %s", self.url, exc)

    def _send_loop(self) -> None:
        conn: _Connection | None = None
        backoff_min, backoff_max = self._backoff
        backoff, retry_at = backoff_min, 0.0
        ever_connected = False
        while True:
            item = self._slot.get(0.1)
            if item is CLOSED:
                break
            if item is None:
                continue
            if conn is None:
                if time.monotonic() < retry_at:
                    self._count("frames_offline")
                    continue
                try:
                    conn = self._connect()
                except (OSError, av.error.FFmpegError) as exc:
                    self._count("connect_failures")
                    self._note_failure("cannot connect", exc, backoff)
                    retry_at, backoff = time.monotonic() + backoff, min(backoff * 2, backoff_max)
                    continue
            t0 = time.perf_counter()
            try:
                conn.send(*item)
            except (OSError, av.error.FFmpegError) as exc:
                conn.close(flush=False, timeout_s=0.5)
                conn = None
                if self.connected:
                    self.connected = False
                    self._count("disconnects")
                    backoff = backoff_min
                    self._note_failure("connection lost", exc, backoff)
                else:
                    self._count("connect_failures")
                    self._note_failure("cannot connect", exc, backoff)
                retry_at, backoff = time.monotonic() + backoff, min(backoff * 2, backoff_max)
                continue
            with self._lock:
                self._counts["frames_sent"] += 1
                self._send_ms.append((time.perf_counter() - t0) * 1000.0)
            if not self.connected and conn.transport.established:
                self.connected, self._failing, backoff = True, False, backoff_min
                if ever_connected:
                    self._count("reconnects")
                log.info("stream %s: %s", self.url, "reconnected" if ever_connected else "connected")
                ever_connected = True
        if conn is not None:
            conn.close(flush=self.connected, timeout_s=self._timeouts[2])
        self.connected = False

    def _note_failure(self, what: str, exc: BaseException, retry_s: float) -> None:
        """Keep the error for stats(); log the first failure of an outage as a warning, the retries quietly."""
        self.last_error = f"{what}: {str(exc).strip() or type(exc).__name__}"
        level = logging.DEBUG if self._failing else logging.WARNING
        self._failing = True
        log.log(level, "stream %s: %s; retrying in %.1f s (with back-off)", self.url, self.last_error, retry_s)


# -- the child process that sends RTMP/RTSP/SRT ------------------------------------------------------------------


class _FdReader:
    """A file-like reader returning whatever the pipe has (PyAV must not wait for a full buffer)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def read(self, size: int) -> bytes:
        return os.read(self._fd, size)


def _push_main(argv: list[str]) -> int:
    """Child process: remux the NUT stream on stdin to ``argv[0]`` as format ``argv[1]``. Prints ``connected``
    once the server took the header; ``error <why>`` and exit code 1 when the server refuses or drops it."""
    url, container_format = argv
    av.logging.set_level(None)
    options = muxer_options(container_format)
    if container_format == "rtsp":
        options["rtsp_transport"] = "tcp"
    try:
        source = av.open(
            _FdReader(sys.stdin.fileno()),
            "r",
            format="nut",
            options={"probesize": "32", "analyzeduration": "0", "fflags": "nobuffer"},
            buffer_size=4096,
        )
        video = source.streams.video[0]
        output = av.open(url, "w", format=container_format, container_options=options)
        out_stream = output.add_stream_from_template(video)
        started = False
        for packet in source.demux(video):
            if packet.dts is None:
                continue
            packet.stream = out_stream
            output.mux(packet)
            if not started:
                started = True
                print("connected", flush=True)
        output.close()
        source.close()
    except (av.error.FFmpegError, OSError) as exc:
        why = exc.strerror if isinstance(exc, av.error.FFmpegError) and exc.strerror else str(exc)
        print(f"error {why.strip() or type(exc).__name__}", flush=True)  # no URL: it may hold a stream key
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(_push_main(sys.argv[1:]))
