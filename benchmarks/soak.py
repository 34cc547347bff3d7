"""Issue #11 soak: does a long live run drift? Resident memory, fps and p95 latency over time.

Runs the whole engine (detect → swap → blend, the shipped model) paced like a camera on two sources, one after
the other (``--minutes`` is shared between them), each in a process of its own so its memory is measured alone:
the demo stream, and a looping video file of the demo played on its clock (``--realtime --loop``). Every
``--sample-s`` seconds each records its RSS, the fps and the p95 capture-to-output latency of that window; the
result is a CSV, a PNG plot, and the drift after the first minute (RSS relative to its value at 1 min; fps and
p95 relative to their median):

    python benchmarks/soak.py --minutes 60 [--out runs/soak] [--resolution 480p] [--sources demo,file]

Goals (issue #11): RSS within ± 5 % after the first minute, fps and p95 latency within ± 10 %.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from realtime_swap.config import EngineConfig, FaceSpec, OutputSpec
from realtime_swap.pipeline import build_pipeline
from realtime_swap.sinks.base import Sink
from realtime_swap.sources import SourceSpec
from realtime_swap.types import Frame, StreamInfo

SIZES = {"480p": (640, 480), "720p": (1280, 720)}
FIELDS = ("source", "t_s", "rss_mb", "fps", "p95_ms", "frames_out", "dropped")


def rss_mb() -> float:
    """This process's resident set size in MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


class WindowSink(Sink):
    """Latencies of the frames output since the last ``take`` (bounded by one window of frames)."""

    name = "soak"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latency: list[float] = []

    def open(self, info: StreamInfo) -> None:
        pass

    def write(self, frame: Frame) -> None:
        ms = (time.perf_counter() - frame.t_capture) * 1000.0
        with self._lock:
            self._latency.append(ms)

    def take(self) -> list[float]:
        with self._lock:
            out, self._latency = self._latency, []
        return out


def run_child(source: str, minutes: float, sample_s: float, size: tuple[int, int], csv_path: Path) -> None:
    """One engine on ``source`` (``demo`` or a file path) for ``minutes``; rows appended to ``csv_path``."""
    spec = (
        SourceSpec("demo", width=size[0], height=size[1], fps=30.0)
        if source == "demo"
        else SourceSpec(source, realtime=True, loop=True)
    )
    cfg = EngineConfig(source=spec, faces=FaceSpec(), outputs=OutputSpec(preview=False, null=True))
    pipeline, _ = build_pipeline(cfg)
    window = WindowSink()
    pipeline.sinks.append(window)
    label = "demo" if source == "demo" else "file"
    runner = threading.Thread(target=pipeline.run, name="engine", daemon=True)
    t0 = time.perf_counter()
    runner.start()
    with csv_path.open("a", newline="") as f:
        writer = csv.writer(f)
        last_out, next_t = 0, t0 + sample_s
        while time.perf_counter() - t0 < minutes * 60:
            time.sleep(max(0.0, next_t - time.perf_counter()))
            now = time.perf_counter()
            latency = window.take()
            out = pipeline.metrics.processed
            row = (
                label,
                round(now - t0, 1),
                round(rss_mb(), 2),
                round((out - last_out) / sample_s, 2),
                round(float(np.percentile(latency, 95)), 2) if latency else "",
                out,
                pipeline.metrics.dropped,
            )
            writer.writerow(row)
            f.flush()
            last_out, next_t = out, next_t + sample_s
    pipeline.stop()
    runner.join(30)


def drift(rows: list[dict[str, str]], column: str, reference: str) -> tuple[float, float]:
    """(min %, max %) of ``column`` after the first minute relative to its value at 1 min (``reference``
    'first') or its median ('median')."""
    values = np.array([float(r[column]) for r in rows if float(r["t_s"]) >= 60 and r[column] != ""])
    if values.size == 0:
        return float("nan"), float("nan")
    base = values[0] if reference == "first" else float(np.median(values))
    rel = (values / base - 1.0) * 100.0
    return float(rel.min()), float(rel.max())


def plot(rows: list[dict[str, str]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    for label in sorted({r["source"] for r in rows}):
        mine = [r for r in rows if r["source"] == label]
        t = [float(r["t_s"]) / 60 for r in mine]
        for ax, column in zip(axes, ("rss_mb", "fps", "p95_ms"), strict=True):
            ax.plot(t, [float(r[column]) if r[column] else np.nan for r in mine], label=label)
            ax.set_ylabel(column)
    axes[0].legend()
    axes[-1].set_xlabel("minutes")
    fig.suptitle("realtime_swap soak: RSS, fps and p95 latency per 10 s window")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--sample-s", type=float, default=10.0)
    p.add_argument("--resolution", choices=sorted(SIZES), default="480p")
    p.add_argument("--sources", default="demo,file", help="comma-separated: demo, file")
    p.add_argument("--out", type=Path, default=Path("runs/soak"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    a = p.parse_args()
    size = SIZES[a.resolution]
    if a.child:
        run_child(a.child, a.minutes, a.sample_s, size, a.csv)
        return
    a.out.mkdir(parents=True, exist_ok=True)
    csv_path = a.out / "soak.csv"
    csv_path.write_text(",".join(FIELDS) + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        sources = a.sources.split(",")
        minutes = a.minutes / len(sources)
        codes = []
        print(f"soak: {len(sources)} engines for {minutes:g} min each, sampling every {a.sample_s:g} s -> {csv_path}")
        for source in sources:
            if source == "file":
                from bench_spine import write_demo_video

                clip = Path(tmp) / "demo.mp4"
                write_demo_video(clip, *size, frames=300)
                source = str(clip)
            elif source != "demo":
                raise SystemExit(f"--sources: unknown source {source!r} (demo, file)")
            cmd = [sys.executable, __file__, "--child", source, "--csv", str(csv_path)]
            cmd += ["--minutes", str(minutes), "--sample-s", str(a.sample_s), "--resolution", a.resolution]
            codes.append(subprocess.run(cmd, check=False).returncode)
    if any(codes):
        raise SystemExit(f"soak: an engine failed (exit codes {codes})")
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    print(
        f"{'source':<6}{'RSS at 1 min':>14}{'RSS drift %':>16}{'fps median':>12}{'fps drift %':>16}{'p95 drift %':>16}"
    )
    for label in sorted({r["source"] for r in rows}):
        mine = [r for r in rows if r["source"] == label]
        after = [r for r in mine if float(r["t_s"]) >= 60]
        if not after:
            print(f"{label:<6} (shorter than a minute: no drift to report)")
            continue
        rss = drift(mine, "rss_mb", "first")
        fps = drift(mine, "fps", "median")
        p95 = drift(mine, "p95_ms", "median")
        fps_median = float(np.median([float(r["fps"]) for r in after]))
        print(
            f"{label:<6}{float(after[0]['rss_mb']):>11.1f} MB{rss[0]:>+8.1f}/{rss[1]:>+6.1f}"
            f"{fps_median:>12.1f}{fps[0]:>+8.1f}/{fps[1]:>+6.1f}{p95[0]:>+8.1f}/{p95[1]:>+6.1f}"
        )
    if plot(rows, a.out / "soak.png"):
        print(f"plot: {a.out / 'soak.png'}")


if __name__ == "__main__":
    main()
