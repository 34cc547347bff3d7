"""Outputs: ms per frame each sink costs the engine, and the latency a UDP MPEG-TS stream adds.

    nice -n 10 python benchmarks/bench_sinks.py [--sizes 1280x720 1920x1080] [--seconds 4]

For every size, frames of the demo source are written at 30 fps into each sink, and the time ``write`` takes on
the engine's output thread is reported (p50/p95 ms). Streams hand the frame to a sender thread, so their
``write`` is a hand-over; the encode + send time of that thread is reported next to it (``sender``).

Virtual camera: there is no v4l2loopback device here, so the pyvirtualcam path is measured with an in-process
backend (``register_backend``) that takes the frame like a device would (one copy): "vcam BGR" is what the
native backends get (their C code converts BGR to the device format), "vcam I420" adds the conversion OpenCV
does when a backend only takes I420.

Latency (UDP): a receiver in a separate process decodes the stream (PyAV, ``fflags=nobuffer``, no frame
threading) and stamps each frame with CLOCK_MONOTONIC when decoded; frames carry their index as a block code.
Reported: sender ``write`` call → frame decoded by the receiver, p50/p95 ms. FFmpeg-based receivers (ffplay,
OBS, VLC's avcodec path, PyAV) hand an H.264 frame on only when the next one starts (their parser looks for the
next access unit), so about one frame interval (33 ms at 30 fps) of this is the receiver's, not the engine's.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from realtime_swap.sinks.base import Sink
from realtime_swap.sinks.delay import DelaySink
from realtime_swap.sinks.network import NetworkStreamSink
from realtime_swap.sinks.null import NullSink
from realtime_swap.sinks.video_file import VideoFileSink
from realtime_swap.sinks.virtual_camera import VirtualCameraSink
from realtime_swap.sources.demo import DemoSource
from realtime_swap.types import Frame, StreamInfo

FPS = 30.0
BITS, BLOCK = 12, 32

RECEIVER = r"""
import sys, time, av, numpy as np
url, count, bits, block = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with av.open(url, options={"fflags": "nobuffer"}, timeout=(20, 2)) as c:
    s = c.streams.video[0]
    s.thread_type = "SLICE"
    s.codec_context.flags |= av.codec.context.Flags.low_delay
    n = 0
    try:
        for frame in c.decode(s):
            t = time.monotonic()
            y = frame.to_ndarray(format="gray")
            q = block // 4
            index = sum(1 << b for b in range(bits) if y[q:block - q, b * block + q:(b + 1) * block - q].mean() > 128)
            print(index, t, flush=True)
            n += 1
            if n >= count:
                break
    except av.error.ExitError:  # the sender stopped: read timeout
        pass
"""


def stamp(image: np.ndarray, index: int) -> np.ndarray:
    out = image.copy()
    for bit in range(BITS):
        out[:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 255 if index >> bit & 1 else 0
    return out


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CopyCamera:
    """A pyvirtualcam backend that takes each frame like a device driver would (one copy)."""

    accepts: tuple[str, ...] = ()

    def __init__(self, *, width: int, height: int, fps: float, fourcc: int, device: str | None, **kw: Any) -> None:
        from pyvirtualcam.util import decode_fourcc

        if decode_fourcc(fourcc) not in self.accepts:
            raise RuntimeError("format not supported")
        self._buffer: np.ndarray | None = None

    def send(self, frame: np.ndarray) -> None:
        if self._buffer is None:
            self._buffer = np.empty_like(frame)
        np.copyto(self._buffer, frame)

    def close(self) -> None:
        pass

    def device(self) -> str:
        return "bench"

    def native_fourcc(self) -> None:
        return None


def percentiles(ms: list[float]) -> str:
    a = np.asarray(ms)
    return f"p50 {np.percentile(a, 50):6.2f}  p95 {np.percentile(a, 95):6.2f}"


def write_paced(sink: Sink, frames: list[np.ndarray], seconds: float) -> tuple[list[float], dict[int, float]]:
    """Write frames at FPS for ``seconds``; return write() ms and index → monotonic time of the write call."""
    write_ms: list[float] = []
    sent: dict[int, float] = {}
    t0 = time.monotonic()
    for i in range(round(seconds * FPS)):
        frame = Frame(i, frames[i % len(frames)], time.perf_counter(), i / FPS)
        sent[i] = time.monotonic()
        t = time.perf_counter()
        sink.write(frame)
        write_ms.append((time.perf_counter() - t) * 1000.0)
        time.sleep(max(0.0, t0 + (i + 1) / FPS - time.monotonic()))
    return write_ms, sent


def bench_window(info: StreamInfo, frames: list[np.ndarray]) -> None:
    """The preview (SDL dummy driver: no real display here): write (output thread) and service (main thread:
    overlays, conversion, blit) per frame, with the stats and help overlays on."""
    os.environ["SDL_VIDEODRIVER"] = "dummy"
    from realtime_swap.sinks.window import WindowSink
    from realtime_swap.stages import Controls

    sink = WindowSink(Controls())
    sink.open(info)
    sink.service()
    write_ms, service_ms = [], []
    for i, image in enumerate(frames):
        t = time.perf_counter()
        sink.write(Frame(i, image, t, i / FPS))
        t1 = time.perf_counter()
        sink.service()
        write_ms.append((t1 - t) * 1000.0)
        service_ms.append((time.perf_counter() - t1) * 1000.0)
    sink.close()
    print(f"{'window (SDL dummy)':<36} write ms {percentiles(write_ms)}   service ms {percentiles(service_ms)}")


def bench_size(width: int, height: int, seconds: float) -> None:
    import pyvirtualcam

    source = DemoSource(width, height, FPS, realtime=False)
    frames = []
    for i in range(min(4096, round(seconds * FPS))):
        got = source.read()
        assert got is not None
        frames.append(stamp(got[0], i))
    info = StreamInfo(width, height, FPS, live=True, name="bench")
    print(f"\n== {width}x{height} @ {FPS:g} fps, {len(frames)} frames")

    for name, formats in (("rs-bench-bgr", ("24BG",)), ("rs-bench-i420", ("I420",))):
        pyvirtualcam.register_backend(name, type(name, (CopyCamera,), {"accepts": formats}))
    with tempfile.TemporaryDirectory() as tmp:
        sinks: list[tuple[str, Sink]] = [
            ("null", NullSink()),
            ("vcam BGR", VirtualCameraSink(backend="rs-bench-bgr")),
            ("vcam I420", VirtualCameraSink(backend="rs-bench-i420")),
            ("record mp4 (x264 veryfast crf 20)", VideoFileSink(Path(tmp) / "bench.mp4")),
            ("delay 100 ms (hand-over)", DelaySink([NullSink()], 0.1)),
        ]
        for label, sink in sinks:
            sink.open(info)
            ms, _ = write_paced(sink, frames, seconds)
            sink.close()
            print(f"{label:<36} write ms {percentiles(ms)}")
    bench_window(info, frames[: round(FPS)])

    port = free_udp_port()
    url = f"udp://127.0.0.1:{port}"
    count = round(seconds * FPS) - 30
    receiver = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, url, str(count), str(BITS), str(BLOCK)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert receiver.stdout is not None
    time.sleep(0.5)  # the receiver binds its port and waits for the first packets
    sink = NetworkStreamSink(url)
    sink.open(info)
    ms, sent = write_paced(sink, frames, seconds)
    stats = sink.stats()
    sink.close()
    try:
        out, _ = receiver.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        receiver.kill()
        out, _ = receiver.communicate()
    latency = []
    for line in out.splitlines():
        index, t = line.split()
        if int(index) in sent:
            latency.append((float(t) - sent[int(index)]) * 1000.0)
    print(
        f"{'stream udp (' + str(stats['encoder']) + ' zerolatency)':<36} write ms {percentiles(ms)}   "
        f"sender thread (convert+encode+send) {stats['send_ms']:.2f} ms/frame mean, {stats['frames_sent']} sent, "
        f"{stats['frames_dropped']} replaced before sending"
    )
    if latency:
        print(f"{'  UDP end-to-end write → decoded':<36} latency ms {percentiles(latency)}  ({len(latency)} frames)")
    else:
        print("  UDP end-to-end: the receiver decoded nothing")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1280x720", "1920x1080"], help="WxH sizes to measure")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds of frames per sink and size")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPUs (shared), python {sys.version.split()[0]}")
    for size in args.sizes:
        w, h = (int(v) for v in size.lower().split("x"))
        bench_size(w, h, args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
