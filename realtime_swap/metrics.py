"""Per-stage timings, throughput, drops and capture-to-output latency, thread-safe.

Durations are milliseconds. Percentiles are computed over every sample of the run (memory: 8 bytes a sample,
so an hour at 60 fps and 6 series is ~10 MB); the live status uses the last second.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


def percentiles(samples: list[float] | np.ndarray) -> dict[str, float]:
    """p50/p95/p99/mean/max of ``samples`` in their own unit; zeros for an empty series."""
    if len(samples) == 0:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "mean": 0.0, "max": 0.0, "count": 0}
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


@dataclass
class MetricsReport:
    """The end-of-run summary (also the ``--metrics-json`` document).

    stages: name -> percentiles of ms per frame; latency_ms: capture-to-output percentiles; fps: frames output
    per second of wall time between the first and last output; queue_max_depth: the deepest each queue got.
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
    extra: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def write_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def table(self) -> str:
        """A human-readable multi-line summary."""
        lines = [
            f"frames: {self.frames_captured} captured, {self.frames_processed} output, "
            f"{self.frames_dropped} dropped; {self.fps:.1f} fps over {self.duration_s:.1f} s",
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


class Metrics:
    """Collects samples from every worker thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stages: dict[str, list[float]] = {}
        self._latency: list[float] = []
        self._recent: deque[tuple[float, float]] = deque()  # (output time, latency ms) over the last second
        self._queues: dict[str, int] = {}
        self.captured = 0
        self.processed = 0
        self.dropped = 0
        self._first_out: float | None = None
        self._last_out: float | None = None
        self._last_status: dict[str, float] = {}

    def stage(self, name: str, ms: float) -> None:
        with self._lock:
            self._stages.setdefault(name, []).append(ms)

    def captured_frame(self) -> None:
        with self._lock:
            self.captured += 1

    def dropped_frame(self, count: int = 1) -> None:
        with self._lock:
            self.dropped += count

    def queue_depth(self, name: str, depth: int) -> None:
        with self._lock:
            if depth > self._queues.get(name, 0):
                self._queues[name] = depth

    def output(self, t_capture: float) -> None:
        """A frame has left through every sink; ``t_capture`` is its perf_counter() capture time."""
        now = time.perf_counter()
        ms = (now - t_capture) * 1000.0
        with self._lock:
            self.processed += 1
            self._latency.append(ms)
            self._recent.append((now, ms))
            while self._recent and self._recent[0][0] < now - 1.0:
                self._recent.popleft()
            if self._first_out is None:
                self._first_out = now
            self._last_out = now

    def status(self) -> dict[str, float]:
        """Figures over the last second: fps, latency p50, per-stage last-second means (for the status line)."""
        now = time.perf_counter()
        with self._lock:
            recent = [ms for t, ms in self._recent if t >= now - 1.0]
            stages = {name: float(np.mean(v[-30:])) for name, v in self._stages.items() if v}
            out: dict[str, float] = {
                "fps": float(len(recent)),
                "latency_p50": float(np.median(recent)) if recent else 0.0,
                "captured": float(self.captured),
                "processed": float(self.processed),
                "dropped": float(self.dropped),
            }
        out.update({f"ms.{k}": v for k, v in stages.items()})
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
                latency_ms=percentiles(self._latency),
                stages={name: percentiles(v) for name, v in self._stages.items()},
                queue_max_depth=dict(self._queues),
                queue_bound=queue_bound,
                stopped_by=stopped_by,
            )


def status_line(status: dict[str, float]) -> str:
    """One terminal line: fps, latency, per-stage ms, counters."""
    stages = " ".join(f"{k[3:]} {v:.1f}" for k, v in status.items() if k.startswith("ms."))
    return (
        f"{status['fps']:5.1f} fps | latency {status['latency_p50']:5.1f} ms | {stages} ms | "
        f"out {int(status['processed'])} dropped {int(status['dropped'])}"
    )
