"""What a bench run records per frame (the recording sink) and the figures made from it (fps, CPU, percentiles)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from realtime_swap.errors import ConfigError
from realtime_swap.metrics import percentiles
from realtime_swap.pipeline import face_counts
from realtime_swap.sinks.base import Sink
from realtime_swap.types import Frame, StreamInfo


class RecordingSink(Sink):
    """Keeps, per frame written, its index, stage timings and capture-to-output latency (the bench's metrics)."""

    name = "bench"

    def __init__(self) -> None:
        self.records: list[tuple[int, dict[str, float], float, float]] = []
        self.swapped: set[int] = set()
        self.faces: dict[int, tuple[int, int]] = {}  # frame index -> (faces found, faces swapped)
        self.cpu_s: dict[int, float] = {}  # frame index -> this process's CPU time (all threads) at its output

    def open(self, info: StreamInfo) -> None:
        self.records = []
        self.swapped = set()
        self.faces = {}
        self.cpu_s = {}

    def write(self, frame: Frame) -> None:
        now = time.perf_counter()
        self.cpu_s[frame.index] = time.process_time()
        self.records.append((frame.index, dict(frame.timings), (now - frame.t_capture) * 1000.0, now))
        if frame.swapped:
            self.swapped.add(frame.index)
        self.faces[frame.index] = face_counts(frame)

    def close(self) -> None:
        pass


@dataclass
class RunFigures:
    """One run's figures over its measured frames. stages: name -> p50/p95/p99/mean/max/count of ms per frame;
    latency_ms: capture-to-output percentiles; fps: see ``FPS_DEFINITION``; frames_swapped: measured frames in
    which at least one face was swapped and pasted (a run without faces would time nothing); cpu_cores_busy:
    CPU time of this process (every thread) over the measured interval / its wall time — near the usable core
    count, the run was CPU-bound; cpu_ms_per_frame: that CPU time per measured frame; faces_found_per_frame /
    faces_swapped_per_frame: mean faces the detect stage returned / the blend stage pasted per measured frame."""

    mode: str
    fps: float
    frames_measured: int
    frames_captured: int
    frames_output: int
    frames_dropped: int
    duration_s: float
    frames_swapped: int
    cpu_cores_busy: float
    cpu_ms_per_frame: float
    latency_ms: dict[str, float]
    stages: dict[str, dict[str, float]]
    queue_max_depth: dict[str, int] = field(default_factory=dict)
    faces_found_per_frame: float = 0.0
    faces_swapped_per_frame: float = 0.0


def summarize(mode: str, sink: RecordingSink, warmup: int, captured: int, dropped: int) -> RunFigures:
    """Figures over the frames with index >= ``warmup`` that ``sink`` recorded."""
    records = sorted(sink.records, key=lambda r: r[3])
    measured = [r for r in records if r[0] >= warmup]
    before = [r for r in records if r[0] < warmup]
    if len(measured) < 2 and not (measured and before):
        raise ConfigError(f"bench: {mode} run output {len(measured)} measured frames; need at least 2")
    t_end = measured[-1][3]
    first = before[-1] if before else measured[0]
    t_start, counted = first[3], len(measured) if before else len(measured) - 1
    duration = t_end - t_start
    cpu = sink.cpu_s.get(measured[-1][0], 0.0) - sink.cpu_s.get(first[0], 0.0)
    names: dict[str, list[float]] = {}
    for _, timings, _, _ in measured:
        for name, ms in timings.items():
            names.setdefault(name, []).append(ms)
    return RunFigures(
        mode=mode,
        fps=counted / duration if duration > 0 else 0.0,
        frames_measured=len(measured),
        frames_captured=captured,
        frames_output=len(records),
        frames_dropped=dropped,
        duration_s=duration,
        frames_swapped=sum(1 for r in measured if r[0] in sink.swapped),
        cpu_cores_busy=cpu / duration if duration > 0 else 0.0,
        cpu_ms_per_frame=cpu * 1000.0 / counted if counted else 0.0,
        latency_ms=percentiles([r[2] for r in measured]),
        stages={name: percentiles(v) for name, v in names.items()},
        faces_found_per_frame=float(sum(sink.faces.get(r[0], (0, 0))[0] for r in measured) / max(len(measured), 1)),
        faces_swapped_per_frame=float(sum(sink.faces.get(r[0], (0, 0))[1] for r in measured) / max(len(measured), 1)),
    )
