"""Per-stage timings, throughput, drops and capture-to-output latency, thread-safe, in constant memory.

Durations are milliseconds. Each series is a fixed log-spaced histogram (1 % bucket width, so a percentile is
within 1 % of the exact one) plus exact count, mean and max: a run of any length keeps the same few kB per
series, and nothing per frame is kept for the life of a run. The live status uses the last second.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

_EMPTY = {"p50": 0.0, "p95": 0.0, "p99": 0.0, "mean": 0.0, "max": 0.0, "count": 0}
CAPACITY_BUSY = 0.9  # a stage busy this fraction of the last second makes the engine "at capacity"


def percentiles(samples: list[float] | np.ndarray) -> dict[str, float]:
    """p50/p95/p99/mean/max of ``samples`` in their own unit; zeros for an empty series."""
    if len(samples) == 0:
        return dict(_EMPTY)
    a = np.asarray(samples, dtype=np.float64)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "mean": float(a.mean()),
        "max": float(a.max()),
        "count": int(a.size),
    }


class Histogram:
    """A series of non-negative values (ms) in fixed memory: log-spaced buckets from ``lo`` to ``hi`` with
    ``ratio`` between bucket edges; values outside are clamped into the end buckets (max stays exact)."""

    def __init__(self, lo: float = 1e-3, hi: float = 1e6, ratio: float = 1.01) -> None:
        self._lo = lo
        self._log_ratio = math.log(ratio)
        self._counts = np.zeros(math.ceil(math.log(hi / lo) / self._log_ratio) + 1, np.int64)
        self.count = 0
        self._sum = 0.0
        self._max = 0.0

    def add(self, value: float) -> None:
        v = max(value, 0.0)
        i = 0 if v <= self._lo else min(int(math.log(v / self._lo) / self._log_ratio) + 1, len(self._counts) - 1)
        self._counts[i] += 1
        self.count += 1
        self._sum += v
        self._max = max(self._max, v)

    @property
    def nbytes(self) -> int:
        """Memory held by the buckets (constant for the life of the histogram)."""
        return int(self._counts.nbytes)

    def quantile(self, q: float) -> float:
        """The value below which a fraction ``q`` of the samples lie (bucket centre, geometric)."""
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(q * self.count))
        i = int(np.searchsorted(np.cumsum(self._counts), rank))
        if i == 0:
            return min(self._lo, self._max)
        centre = self._lo * math.exp((i - 0.5) * self._log_ratio)
        return min(centre, self._max)

    def summary(self) -> dict[str, float]:
        """p50/p95/p99/mean/max/count, the keys of :func:`percentiles`."""
        if self.count == 0:
            return dict(_EMPTY)
        return {
            "p50": self.quantile(0.50),
            "p95": self.quantile(0.95),
            "p99": self.quantile(0.99),
            "mean": self._sum / self.count,
            "max": self._max,
            "count": self.count,
        }


@dataclass
class MetricsReport:
    """The end-of-run summary (also the ``--metrics-json`` document).

    stages: name -> percentiles of ms per frame; latency_ms: capture-to-output percentiles; fps: frames output
    per second of wall time between the first and last output; queue_max_depth: the deepest each hand-off got.
    frames_dropped: frames replaced before a stage took them (newest wins; ``dropped_at``: after which worker);
    frames_corrupt: packets/frames the source could not decode and skipped; frames_held: repeats of the last
    good frame output while the source was down (not counted as processed); frames_unswapped: frames that
    reached the outputs as captured because a stage had failed.
    """

    frames_captured: int
    frames_processed: int
    frames_dropped: int
    fps: float
    duration_s: float
    latency_ms: dict[str, float]
    stages: dict[str, dict[str, float]]
    queue_max_depth: dict[str, int] = field(default_factory=dict)
    queue_bound: int = 0
    stopped_by: str = "end"
    frames_corrupt: int = 0
    frames_held: int = 0
    frames_unswapped: int = 0
    dropped_at: dict[str, int] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def table(self) -> str:
        """A human-readable multi-line summary."""
        dropped = f"{self.frames_dropped} dropped"
        if self.dropped_at:
            dropped += " (" + ", ".join(f"after {k} {v}" for k, v in self.dropped_at.items()) + ")"
        lines = [
            f"frames: {self.frames_captured} captured, {self.frames_processed} output, "
            f"{dropped}; {self.fps:.1f} fps over {self.duration_s:.1f} s",
        ]
        trouble = [
            f"{n} {what}"
            for n, what in (
                (self.frames_corrupt, "corrupt (skipped)"),
                (self.frames_held, "held while the source was down"),
                (self.frames_unswapped, "output unswapped after a stage error"),
            )
            if n
        ]
        source = self.extra.get("source")
        if isinstance(source, dict) and source.get("reconnects"):
            trouble.append(f"{source['reconnects']} reconnects, {float(source.get('down_s', 0.0)):.1f} s down")
        if trouble:
            lines.append("frames: " + ", ".join(trouble))
        lines += [
            f"capture-to-output latency ms: p50 {self.latency_ms['p50']:.1f}  p95 {self.latency_ms['p95']:.1f}  "
            f"p99 {self.latency_ms['p99']:.1f}",
            f"{'stage':<14}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}",
        ]
        for name, p in self.stages.items():
            lines.append(f"{name:<14}{p['p50']:>9.2f}{p['p95']:>9.2f}{p['p99']:>9.2f}")
        outputs = self.extra.get("outputs", {})
        if isinstance(outputs, dict):
            for name, stats in outputs.items():
                shown = (f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in stats.items() if v != "")
                lines.append(f"output {name}: " + ", ".join(shown))
        unavailable = self.extra.get("outputs_unavailable", [])
        if isinstance(unavailable, list):
            lines.extend(f"output left out: {reason}" for reason in unavailable)
        return "\n".join(lines)


class _Series:
    """One stage's timings: the whole run's histogram, and the last second's (end time, ms) for the status."""

    def __init__(self) -> None:
        self.hist = Histogram()
        self.recent: deque[tuple[float, float]] = deque(maxlen=1024)

    def add(self, now: float, ms: float) -> None:
        self.hist.add(ms)
        self.recent.append((now, ms))


class Metrics:
    """Collects samples from every worker thread; memory is constant in the number of frames."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stages: dict[str, _Series] = {}
        self._latency = Histogram()
        self._recent: deque[tuple[float, float]] = deque(maxlen=4096)  # (output time, latency ms), last second
        self._drops: deque[float] = deque(maxlen=4096)  # times of drops over the last second
        self._queues: dict[str, int] = {}
        self.dropped_at: dict[str, int] = {}
        self.captured = 0
        self.processed = 0
        self.dropped = 0
        self.corrupt = 0
        self.held = 0
        self.unswapped = 0
        self._first_out: float | None = None
        self._last_out: float | None = None

    def stage(self, name: str, ms: float) -> None:
        now = time.perf_counter()
        with self._lock:
            series = self._stages.get(name)
            if series is None:
                series = self._stages[name] = _Series()
            series.add(now, ms)

    def series_nbytes(self) -> int:
        """Bytes the recorded series hold (for tests: constant in the number of samples)."""
        with self._lock:
            hists = [s.hist for s in self._stages.values()] + [self._latency]
            return sum(h.nbytes for h in hists) + 16 * sum(len(s.recent) for s in self._stages.values())

    def captured_frame(self) -> None:
        with self._lock:
            self.captured += 1

    def dropped_frame(self, where: str = "capture", count: int = 1) -> None:
        """``count`` frames were replaced in the hand-off after ``where`` before the next worker took them."""
        now = time.perf_counter()
        with self._lock:
            self.dropped += count
            self.dropped_at[where] = self.dropped_at.get(where, 0) + count
            self._drops.append(now)

    def corrupt_frames(self, count: int) -> None:
        with self._lock:
            self.corrupt += count

    def held_frame(self) -> None:
        with self._lock:
            self.held += 1

    def queue_depth(self, name: str, depth: int) -> None:
        with self._lock:
            if depth > self._queues.get(name, 0):
                self._queues[name] = depth

    def output(self, t_capture: float, unswapped: bool = False) -> None:
        """A frame has left through every sink; ``t_capture`` is its perf_counter() capture time."""
        now = time.perf_counter()
        ms = (now - t_capture) * 1000.0
        with self._lock:
            self.processed += 1
            self.unswapped += int(unswapped)
            self._latency.add(ms)
            self._recent.append((now, ms))
            if self._first_out is None:
                self._first_out = now
            self._last_out = now

    def status(self) -> dict[str, float | str]:
        """Figures over the last second (for the status line and the window): fps, latency p50, per-stage means
        (``ms.NAME``) and busy fractions (``busy.NAME``), counters, and ``bottleneck`` — the busiest stage,
        named when the engine is at capacity (it dropped frames, or a stage was busy ≥ 90 % of the second)."""
        now = time.perf_counter()
        since = now - 1.0
        with self._lock:
            recent = [ms for t, ms in self._recent if t >= since]
            drops = sum(1 for t in self._drops if t >= since)
            stages = {
                name: [ms for t, ms in s.recent if t >= since] or [s.recent[-1][1]]
                for name, s in self._stages.items()
                if s.recent
            }
            out: dict[str, float | str] = {
                "fps": float(len(recent)),
                "latency_p50": float(np.median(recent)) if recent else 0.0,
                "captured": float(self.captured),
                "processed": float(self.processed),
                "dropped": float(self.dropped),
                "dropped_last_s": float(drops),
                "corrupt": float(self.corrupt),
                "held": float(self.held),
            }
        busy = {
            name: sum(v) / 1000.0 for name, v in stages.items() if name != "capture" and not name.startswith("sink:")
        }
        out.update({f"ms.{k}": float(np.mean(v)) for k, v in stages.items() if not k.startswith("sink:")})
        out.update({f"busy.{k}": v for k, v in busy.items()})
        top = max(busy, key=lambda k: busy[k], default="")
        at_capacity = bool(top) and (drops > 0 or busy[top] >= CAPACITY_BUSY)
        out["bottleneck"] = top if at_capacity else ""
        return out

    def report(self, queue_bound: int = 0, stopped_by: str = "end") -> MetricsReport:
        with self._lock:
            duration = (self._last_out - self._first_out) if self._first_out and self._last_out else 0.0
            fps = (self.processed - 1) / duration if duration > 0 else 0.0
            return MetricsReport(
                frames_captured=self.captured,
                frames_processed=self.processed,
                frames_dropped=self.dropped,
                fps=fps,
                duration_s=duration,
                latency_ms=self._latency.summary(),
                stages={name: s.hist.summary() for name, s in self._stages.items()},
                queue_max_depth=dict(self._queues),
                queue_bound=queue_bound,
                stopped_by=stopped_by,
                frames_corrupt=self.corrupt,
                frames_held=self.held,
                frames_unswapped=self.unswapped,
                dropped_at=dict(self.dropped_at),
            )


def capacity_notice(status: dict[str, float | str]) -> str:
    """'' when the engine keeps up, else e.g. 'at capacity: swap is the bottleneck (97 % busy)'."""
    top = status.get("bottleneck", "")
    if not top:
        return ""
    busy = status.get(f"busy.{top}", 0.0)
    return f"at capacity: {top} is the bottleneck ({float(busy) * 100:.0f} % busy)"


def status_line(status: dict[str, float | str]) -> str:
    """One terminal line: fps, latency, per-stage ms, counters, and the bottleneck when at capacity."""
    stages = " ".join(f"{k[3:]} {float(v):.1f}" for k, v in status.items() if k.startswith("ms."))
    line = (
        f"{float(status['fps']):5.1f} fps | latency {float(status['latency_p50']):5.1f} ms | {stages} ms | "
        f"out {int(status['processed'])} dropped {int(status['dropped'])}"
    )
    if status.get("corrupt"):
        line += f" corrupt {int(status['corrupt'])}"
    if status.get("held"):
        line += f" held {int(status['held'])}"
    notice = capacity_notice(status)
    return f"{line} | {notice}" if notice else line
