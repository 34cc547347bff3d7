"""A tiny PyAV streaming server for loopback tests, run as a separate process.

PyAV holds the GIL while an output URL in listen mode waits for its client, so the server cannot share a
process with the engine under test. Usage: python stream_server.py URL FRAMES [FORMAT]
"""

from __future__ import annotations

import sys
import time
from fractions import Fraction

import av
from conftest import encode_index


def serve(url: str, frames: int, fmt: str = "mpegts") -> None:
    """Stream ``frames`` index-coded 160x120 frames at 30 fps to ``url``."""
    with av.open(url, "w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = {"crf": "10", "preset": "ultrafast", "tune": "zerolatency"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(encode_index(i), format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            for packet in stream.encode(frame):
                container.mux(packet)
            time.sleep(0.005)
        for packet in stream.encode(None):
            container.mux(packet)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), *sys.argv[3:4])
