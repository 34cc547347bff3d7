"""Issue #2 figures: what the spine costs. Prints a table; ``--json PATH`` writes the figures.

For each resolution:
* demo → null, --no-swap, unpaced: frames per second the spine moves (source rendering included);
* demo → null, --no-swap, paced at 30 fps like a camera: capture-to-output latency p50/p95;
* the same demo frames encoded to an H.264 file, then, alternately in one run: PyAV alone decoding it to BGR
  arrays as fast as possible, and the engine (file source → null, --no-swap) doing the same — their fps ratio
  is the spine's overhead (goal ≥ 0.9).

Run: python benchmarks/bench_spine.py [--frames 300] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av

from realtime_swap.pipeline import Pipeline
from realtime_swap.sinks.null import NullSink
from realtime_swap.sources.av_source import AVSource
from realtime_swap.sources.demo import DemoSource

SIZES = {"480p": (640, 480), "720p": (1280, 720), "1080p": (1920, 1080)}


def write_demo_video(path: Path, width: int, height: int, frames: int) -> None:
    source = DemoSource(width, height, realtime=False)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast"}
        for i in range(frames):
            image, _ = source.read()  # type: ignore[misc]
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def decode_alone(path: Path) -> float:
    """fps of PyAV decoding ``path`` to BGR arrays (threaded decoding, as the engine's file source does),
    counted like the engine's report: (frames - 1) over the time from the first frame to the last."""
    times = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frame.to_ndarray(format="bgr24")
            times.append(time.perf_counter())
    return (len(times) - 1) / (times[-1] - times[0])


def engine_file(path: Path) -> float:
    return Pipeline(AVSource(path), [], [NullSink()]).run().fps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = {}
    print(
        f"{'size':<7}{'demo fps':>10}{'paced p50':>11}{'paced p95':>11}{'decoder fps':>13}{'engine fps':>12}"
        f"{'ratio':>8}"
    )
    for name in args.sizes.split(","):
        w, h = SIZES[name]
        unpaced = Pipeline(DemoSource(w, h, realtime=False), [], [NullSink()], max_frames=args.frames).run()
        paced = Pipeline(
            DemoSource(w, h, fps=30, realtime=True), [], [NullSink()], max_frames=min(args.frames, 150)
        ).run()
        with tempfile.TemporaryDirectory() as tmp:
            video = Path(tmp) / f"demo_{name}.mp4"
            write_demo_video(video, w, h, args.frames)
            decoder, engine = [], []
            for _ in range(args.rounds):  # alternate: the machine's noise hits both alike
                decoder.append(decode_alone(video))
                engine.append(engine_file(video))
        ratios = [e / d for e, d in zip(engine, decoder, strict=True)]
        row = {
            "demo_unpaced_fps": unpaced.fps,
            "demo_unpaced_latency_p95_ms": unpaced.latency_ms["p95"],
            "paced_latency_p50_ms": paced.latency_ms["p50"],
            "paced_latency_p95_ms": paced.latency_ms["p95"],
            "decoder_fps": statistics.median(decoder),
            "engine_file_fps": statistics.median(engine),
            "engine_over_decoder": statistics.median(ratios),
            "ratios": ratios,
        }
        results[name] = row
        print(
            f"{name:<7}{row['demo_unpaced_fps']:>10.1f}{row['paced_latency_p50_ms']:>11.2f}"
            f"{row['paced_latency_p95_ms']:>11.2f}{row['decoder_fps']:>13.1f}{row['engine_file_fps']:>12.1f}"
            f"{row['engine_over_decoder']:>8.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
