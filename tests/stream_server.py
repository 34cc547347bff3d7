"""A tiny PyAV streaming server/sender for loopback tests, run as a separate process.

PyAV holds the GIL while an output URL in listen mode waits for its client, so the server cannot share a
process with the engine under test. Usage: python stream_server.py URL FRAMES [FORMAT] [--fps F] [--start N]
(--fps 0, the default, sends as fast as the encoder goes with a 5 ms pause; --start: the first frame's code).
"""

from __future__ import annotations

import argparse
import time
from fractions import Fraction

import av
from conftest import encode_index


def serve(url: str, frames: int, fmt: str = "mpegts", fps: float = 0.0, start: int = 0) -> None:
    """Stream ``frames`` index-coded 160x120 frames (codes ``start``…) at 30 fps timestamps to ``url``."""
    with av.open(url, "w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = {"crf": "10", "preset": "ultrafast", "tune": "zerolatency", "g": "30"}
        t0 = time.perf_counter()
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(encode_index(start + i), format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            for packet in stream.encode(frame):
                container.mux(packet)
            if fps > 0:
                time.sleep(max(0.0, t0 + (i + 1) / fps - time.perf_counter()))
            else:
                time.sleep(0.005)
        for packet in stream.encode(None):
            container.mux(packet)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("frames", type=int)
    parser.add_argument("format", nargs="?", default="mpegts")
    parser.add_argument("--fps", type=float, default=0.0)
    parser.add_argument("--start", type=int, default=0)
    a = parser.parse_args()
    serve(a.url, a.frames, a.format, a.fps, a.start)
