"""Issue #11 figure: time from a stream sender's return to the first swapped frame out of the engine.

A child process streams the demo face (H.264, MPEG-TS over TCP, 1 s GOP, 30 fps) for a few seconds and stops;
after a gap a second one starts. The engine (``tcp://`` source with reconnect on, detect → swap → blend with the
shipped model, null output) runs throughout. Measured per round: the seconds from the moment the second sender
starts listening to the first frame out that came from it with a face swapped, and the frames held (repeated
with a notice) during the gap. Goal: ≤ 2 s.

    python benchmarks/bench_reconnect.py [--rounds 3] [--gap 3] [--resolution 480p]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import threading
import time
from fractions import Fraction

import av

from realtime_swap.config import EngineConfig, OutputSpec
from realtime_swap.pipeline import build_pipeline
from realtime_swap.sinks.base import Sink
from realtime_swap.sources import SourceSpec
from realtime_swap.sources.demo import DemoSource
from realtime_swap.types import Frame, StreamInfo

SIZES = {"480p": (640, 480), "720p": (1280, 720)}


def send(url: str, seconds: float, width: int, height: int) -> None:
    """Child: listen on ``url`` and stream the demo for ``seconds`` at 30 fps (prints the time it listens)."""
    source = DemoSource(width, height, 30.0, realtime=False)
    print(f"listening {time.time():.6f}", flush=True)
    with av.open(url, "w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", "g": "30"}
        t0 = time.perf_counter()
        for i in range(int(seconds * 30)):
            image, _ = source.read()  # type: ignore[misc]
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            for packet in stream.encode(frame):
                container.mux(packet)
            time.sleep(max(0.0, t0 + (i + 1) / 30 - time.perf_counter()))


class FirstSwapped(Sink):
    """Remembers the wall time of each swapped, non-held frame, and counts held ones."""

    name = "probe"

    def __init__(self) -> None:
        self.swapped_at: list[float] = []
        self.held = 0

    def open(self, info: StreamInfo) -> None:
        pass

    def write(self, frame: Frame) -> None:
        if frame.held:
            self.held += 1
        elif frame.swapped:
            self.swapped_at.append(time.time())


def start_sender(url: str, seconds: float, size: tuple[int, int]) -> tuple[subprocess.Popen[str], float]:
    cmd = [sys.executable, __file__, "--send", url, "--seconds", str(seconds), "--size", f"{size[0]}x{size[1]}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, float(line.split()[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--gap", type=float, default=3.0, help="seconds with no sender between two (default 3)")
    p.add_argument("--resolution", choices=sorted(SIZES), default="480p")
    p.add_argument("--send", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=4.0, help=argparse.SUPPRESS)
    p.add_argument("--size", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.send:
        width, height = (int(v) for v in a.size.split("x"))
        send(a.send, a.seconds, width, height)
        return
    size = SIZES[a.resolution]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    listen, url = f"tcp://127.0.0.1:{port}?listen=1", f"tcp://127.0.0.1:{port}"
    sender, _ = start_sender(listen, 4.0, size)
    time.sleep(0.5)
    pipeline, _ = build_pipeline(EngineConfig(source=SourceSpec(url), outputs=OutputSpec(preview=False, null=True)))
    probe = FirstSwapped()
    pipeline.sinks.append(probe)
    runner = threading.Thread(target=pipeline.run, daemon=True)
    runner.start()
    results: list[tuple[float, int]] = []
    try:
        for _ in range(a.rounds):
            sender.wait(30)
            time.sleep(a.gap)
            held_before = probe.held
            sender, back_at = start_sender(listen, 4.0, size)
            deadline = time.time() + 30
            while not any(t > back_at for t in probe.swapped_at) and time.time() < deadline:
                time.sleep(0.01)
            first = min((t for t in probe.swapped_at if t > back_at), default=float("nan"))
            results.append((first - back_at, probe.held - held_before))
            print(f"sender back -> first swapped frame out: {first - back_at:.2f} s ({results[-1][1]} frames held)")
        sender.wait(30)
    finally:
        if sender.poll() is None:
            sender.kill()
        pipeline.stop()
        runner.join(30)
    times = [t for t, _ in results]
    print(
        f"{a.resolution}, 1 s GOP, gap {a.gap:g} s, {a.rounds} rounds: median {statistics.median(times):.2f} s, "
        f"max {max(times):.2f} s (goal <= 2 s); reconnects {pipeline.source.stats().get('reconnects')}"
    )


if __name__ == "__main__":
    main()
