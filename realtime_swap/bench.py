"""The ``bench`` subcommand: FPS and latency of the live engine on a deterministic stream, measured honestly.

What one configuration's measurement does (per ``--resolution``):

1. **Warm-up, kept apart**: the swap model's session is created alone and timed (``session_create_s``; on
   TensorRT backends this includes the engine build), the engine is built exactly as ``live`` builds it
   (:func:`realtime_swap.pipeline.build_pipeline`: demo source unpaced, detect → swap → blend, null output) and
   timed (``engine_build_s``), each stage's ``warmup`` is timed (``warmup_s``), and the first ``--warmup``
   frames of every run go through the engine but are left out of every figure.
2. **Pipelined**: the threaded engine. The demo source renders as fast as it can and capture blocks when the
   engine is behind (``DropPolicy.BLOCK``), so no frame is dropped (``frames_dropped`` says so) and **fps is the
   engine's sustained throughput**: measured frames / (output time of the last frame − output time of the last
   warm-up frame). The source's render time is the ``capture`` stage; it runs in its own thread here.
3. **Sequential**: the same stages, built the same way, on the same frames (the demo is deterministic), in one
   thread (:func:`realtime_swap.sequential.run_sequential`); ``pipelined_vs_sequential`` is the ratio of the two
   fps, per round and as median with min–max spread (rounds alternate sequential, pipelined). By default the
   loop is single-threaded through and through: its swap model gets one ONNX Runtime intra-op thread (the
   detector and the colour kernels have one in both runs) — what threading the engine buys. ``--sequential-threads
   N`` gives the loop's model N threads instead (0: as many as the pipelined run's), the stronger baseline of a
   sequential loop whose inference library alone uses the cores.
4. **Inference alone**: the swap model on a batch of ``--faces`` crops, ``--inference-iters`` times: on CUDA
   timed with CUDA events around device-resident I/O after a synchronize (GPU time), on the CPU with the
   wall clock (``clock`` says which).

Latency is capture-to-output: from the source handing over a frame to the sinks having written it. In the
pipelined run it includes the time a frame waits in the bounded queues, which an unpaced source keeps full: the
latency of a saturated engine (an upper bound for a camera slower than the engine). ``--paced-fps F`` paces the
demo at F fps like a camera, with the live drop policy (newest frame wins, drops counted): fps is then at most
F and the latency is that of a live run.

``--compare "ARGS_A" "ARGS_B"`` measures two configurations (each: the command's options with these on top)
alternately, A B A B ... for ``--rounds`` rounds in one invocation, and prints their fps and latency ratios (B / A)
with their spread: on a shared, noisy machine ratios from one run are what count.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from realtime_swap.cli import (
    GPU_PATH_CHOICES,
    add_inference_arguments,
    backend_options_from_args,
    non_negative_int,
    positive_int,
)
from realtime_swap.config import EngineConfig, FaceSpec, OutputSpec
from realtime_swap.errors import ConfigError
from realtime_swap.infer.session import Backend, usable_cores
from realtime_swap.metrics import percentiles
from realtime_swap.pipeline import (
    DropPolicy,
    Pipeline,
    build_pipeline,
    close_stages,
    default_model_path,
    face_counts,
)
from realtime_swap.sinks.base import Sink
from realtime_swap.swap.backends import BackendOptions
from realtime_swap.types import Frame, StreamInfo

log = logging.getLogger(__name__)

RESOLUTIONS: dict[str, tuple[int, int]] = {
    "480p": (640, 480),
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "4k": (3840, 2160),
}
"""``--resolution`` names (480p is VGA, a webcam's default); ``WxH`` is accepted too."""

FPS_DEFINITION = (
    "frames output per second of wall time over the measured frames: measured / (output time of the last frame - "
    "output time of the last warm-up frame); the demo source renders unpaced and capture blocks when the engine "
    "is behind (drop policy block), so nothing is dropped and fps is the engine's sustained throughput; with "
    "--paced-fps the demo is paced like a camera (at most that fps; frames the engine cannot take are dropped)"
)
LATENCY_DEFINITION = (
    "capture-to-output ms: from the source handing over a frame to the sinks having written it; pipelined, it "
    "includes the time frames wait in the bounded queues, which the unpaced source keeps full (--paced-fps: a "
    "live run's latency)"
)


def parse_resolution(text: str) -> tuple[str, int, int]:
    """(label, width, height) for ``480p``/``720p``/``1080p``/``4k`` or ``WxH``; ConfigError otherwise."""
    key = text.strip().lower()
    if key in RESOLUTIONS:
        return key, *RESOLUTIONS[key]
    parts = key.split("x")
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        width, height = int(parts[0]), int(parts[1])
        if width >= 16 and height >= 16:
            return key, width, height
    raise ConfigError(f"--resolution: '{text}' is not one of {', '.join(RESOLUTIONS)} or WxH (e.g. 320x240)")


@dataclass(frozen=True)
class BenchSettings:
    """One configuration to measure. frames: measured frames per run (after ``warmup`` more); rounds: runs of
    each kind, alternated; synthetic_resolution: px of the untrained model used when there is no model;
    runtime: the backend's options (both runs); sequential_threads: the sequential loop's swap-model intra-op
    threads (0: those of ``runtime``)."""

    def sequential_runtime(self) -> BackendOptions:
        """The backend options of the sequential baseline (see the module docstring)."""
        if self.sequential_threads == 0:
            return self.runtime
        return replace(self.runtime, cpu_threads=self.sequential_threads)

    width: int = 640
    height: int = 480
    label: str = "480p"
    faces: int = 1
    frames: int = 60
    warmup: int = 10
    model: Path | None = None
    synthetic_resolution: int = 128
    backend: Backend = Backend.AUTO
    gpu_path: str = "off"
    color: str = "rct"
    detect_every: int = 5
    queue_size: int = 2
    rounds: int = 1
    inference_iters: int = 30
    paced_fps: float | None = None
    runtime: BackendOptions = field(default_factory=BackendOptions)
    sequential_threads: int = 1

    def __post_init__(self) -> None:
        if self.paced_fps is not None and not self.paced_fps > 0:
            raise ConfigError(f"bench: --paced-fps must be > 0, got {self.paced_fps}")
        for name in ("faces", "frames", "rounds", "queue_size", "detect_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"bench: {name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0 or self.inference_iters < 0 or self.sequential_threads < 0:
            raise ConfigError("bench: --warmup, --inference-iters and --sequential-threads must be >= 0")
        if self.gpu_path not in GPU_PATH_CHOICES:
            raise ConfigError(f"bench: --gpu-path must be one of {', '.join(GPU_PATH_CHOICES)}, got {self.gpu_path}")


@dataclass(frozen=True)
class ModelChoice:
    """The swap model a configuration runs: a file, and whether it is an untrained synthetic one."""

    path: Path
    synthetic: bool
    description: str


class ModelResolver:
    """``--model``, else the shipped model, else a synthetic model of the asked size written once per run."""

    def __init__(self) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def resolve(self, s: BenchSettings) -> ModelChoice:
        if s.model is not None:
            return ModelChoice(s.model, False, str(s.model))
        shipped = default_model_path()
        if shipped is not None:
            return ModelChoice(shipped, False, f"shipped {shipped.name}")
        from realtime_swap.swap.synthetic import build_dfm_model

        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="realtime_swap_bench_")
        path = Path(self._tmp.name) / f"synthetic_{s.synthetic_resolution}.onnx"
        if not path.is_file():
            path.write_bytes(build_dfm_model(s.synthetic_resolution))
        return ModelChoice(path, True, f"synthetic untrained DFM-signature model, {s.synthetic_resolution} px")

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class RecordingSink(Sink):
    """Keeps, per frame written, its index, stage timings and capture-to-output latency (the bench's metrics)."""

    name = "bench"

    def __init__(self) -> None:
        self.records: list[tuple[int, dict[str, float], float, float]] = []
        self.swapped: set[int] = set()
        self.cpu_s: dict[int, float] = {}  # frame index -> this process's CPU time (all threads) at its output
        self.faces: dict[int, tuple[int, int]] = {}  # frame index -> (faces found, faces swapped)

    def open(self, info: StreamInfo) -> None:
        self.records = []
        self.swapped = set()
        self.cpu_s = {}
        self.faces = {}

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
        faces_found_per_frame=float(np.mean([sink.faces.get(r[0], (0, 0))[0] for r in measured])),
        faces_swapped_per_frame=float(np.mean([sink.faces.get(r[0], (0, 0))[1] for r in measured])),
    )


@dataclass
class Engine:
    """A built engine ready to run once: the pipeline (its stages, source and sinks) and its set-up times."""

    pipeline: Pipeline
    recorder: RecordingSink
    build_s: float
    warmup_s: float
    notices: list[str]


def _config(s: BenchSettings, model: Path, runtime: BackendOptions) -> EngineConfig:
    from realtime_swap.sources import SourceSpec

    return EngineConfig(
        source=SourceSpec(
            "demo",
            width=s.width,
            height=s.height,
            fps=s.paced_fps or 30.0,
            realtime=s.paced_fps is not None,
            demo_faces=s.faces,
        ),
        faces=FaceSpec(
            model=model,
            backend=s.backend,
            max_faces=s.faces,
            detect_every=s.detect_every,
            color=s.color,
            gpu_path=s.gpu_path,
            runtime=runtime,
        ),
        outputs=OutputSpec(preview=False, null=True),
        frames=s.warmup + s.frames,
        queue_size=s.queue_size,
    )


def build_engine(s: BenchSettings, model: Path, runtime: BackendOptions | None = None) -> Engine:
    """Build the engine as ``live`` does (the GPU-resident stage too, with ``gpu_path``), warm its stages up, and
    add the recording sink; both steps timed. runtime: the backend options (default ``s.runtime``)."""

    t0 = time.perf_counter()
    pipeline, notices = build_pipeline(_config(s, model, s.runtime if runtime is None else runtime))
    try:
        if len(pipeline.stages) < 2:
            raise ConfigError("bench: the engine has no swap stage (no model could be loaded)")
        if s.paced_fps is None:  # as fast as possible, nothing dropped; paced: the live policy (newest wins)
            pipeline.drop_policy = DropPolicy.BLOCK
        build_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        for stage in pipeline.stages:
            stage.warmup(pipeline.source.info)
        warmup_s = time.perf_counter() - t1
        recorder = RecordingSink()
        pipeline.sinks.append(recorder)
    except BaseException:
        _close(pipeline)
        raise
    return Engine(pipeline, recorder, build_s, warmup_s, notices)


def _close(pipeline: Pipeline) -> None:
    close_stages(pipeline.stages)
    try:
        pipeline.source.close()
    except Exception as exc:
        log.warning("closing source: %s", exc)


def run_pipelined(engine: Engine, s: BenchSettings) -> RunFigures:
    """Run the threaded engine over ``warmup + frames`` frames; figures over the measured ones."""
    report = engine.pipeline.run()
    figures = summarize("pipelined", engine.recorder, s.warmup, report.frames_captured, report.frames_dropped)
    figures.queue_max_depth = dict(report.queue_max_depth)
    return figures


def run_sequential_engine(engine: Engine, s: BenchSettings) -> RunFigures:
    """Run the same stages one after the other in this thread over the same frames."""
    from realtime_swap.sequential import run_sequential

    p = engine.pipeline
    for sink in p.sinks:
        sink.open(p.source.info)
    try:
        for stage in p.stages:  # the same state the pipelined run starts from (the tracker is reset)
            stage.warmup(p.source.info)
        written = run_sequential(p.source, p.stages, p.sinks, p.controls, max_frames=s.warmup + s.frames)
    finally:
        for sink in p.sinks:
            sink.close()
        _close(p)
    return summarize("sequential", engine.recorder, s.warmup, written, 0)


def measure_session(model: Path, s: BenchSettings) -> tuple[float, dict[str, Any]]:
    """Create the swap model's session alone (timed), time inference on a batch of ``faces`` crops, close it.

    Returns (session_create_s, inference figures: clock, batch, backend, device, p50/p95/p99 ms ...).
    On CUDA the crops live on the device and each call is timed with CUDA events after a synchronize.
    """
    from realtime_swap.swap.model import SwapModel

    t0 = time.perf_counter()
    swap = SwapModel.load(model, s.backend, options=s.runtime)
    session_s = time.perf_counter() - t0
    try:
        rng = np.random.default_rng(0)
        r = swap.resolution
        crops = rng.random((s.faces, r, r, 3), dtype=np.float32)
        on_cuda = swap.runner.device.startswith("cuda")
        times = _time_cuda(swap, crops, s.inference_iters) if on_cuda else _time_host(swap, crops, s.inference_iters)
        figures: dict[str, Any] = {
            "clock": "cuda-event" if on_cuda else "host-wall",
            "batch": s.faces,
            "model_resolution": r,
            "face_type": swap.face_type.value,
            "backend": swap.backend.value,
            "device": swap.runner.device,
            "backend_notes": list(swap.notes),
            **percentiles(times),
        }
    finally:
        swap.close()
    return session_s, figures


def _time_host(swap: Any, crops: np.ndarray, iters: int) -> list[float]:
    times = []
    swap.swap(crops)  # first call: allocations, kernel selection
    for _ in range(iters):
        t0 = time.perf_counter()
        swap.swap(crops)
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def _time_cuda(swap: Any, crops: np.ndarray, iters: int) -> list[float]:
    import torch

    device = torch.device(swap.runner.device)
    batch = torch.as_tensor(crops, device=device)
    swap.swap(batch)
    torch.cuda.synchronize(device)
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        swap.swap(batch)
        end.record()
        end.synchronize()
        times.append(float(start.elapsed_time(end)))
    return times


def _ratios(values: Sequence[float]) -> dict[str, Any]:
    clean = [v for v in values if v > 0 and np.isfinite(v)]
    if not clean:
        return {"median": 0.0, "min": 0.0, "max": 0.0, "rounds": list(values)}
    return {"median": statistics.median(clean), "min": min(clean), "max": max(clean), "rounds": list(values)}


def _median_run(runs: list[RunFigures]) -> RunFigures:
    return sorted(runs, key=lambda r: r.fps)[(len(runs) - 1) // 2]


def measure(s: BenchSettings, models: ModelResolver, sequential: bool = True) -> dict[str, Any]:
    """Every figure of one configuration at one resolution (see the module docstring)."""
    choice = models.resolve(s)
    session_s, inference = measure_session(choice.path, s)  # logs the backend choice once
    with _repeats_quiet():
        return _measure_rounds(s, choice, session_s, inference, sequential)


@contextlib.contextmanager
def _repeats_quiet() -> Iterator[None]:
    """Every round rebuilds the engine: its INFO lines (models loaded, backend chosen) would repeat each time
    and bury the table, so they are held back (``--debug`` keeps them)."""
    root = logging.getLogger("realtime_swap")
    level = root.level
    if root.getEffectiveLevel() > logging.DEBUG:
        root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.setLevel(level)


def _measure_rounds(
    s: BenchSettings, choice: ModelChoice, session_s: float, inference: dict[str, Any], sequential: bool
) -> dict[str, Any]:
    pipelined: list[RunFigures] = []
    serial: list[RunFigures] = []
    builds: list[float] = []
    warmups: list[float] = []
    notices: list[str] = []
    for _ in range(s.rounds):
        kinds: list[tuple[Callable[[Engine, BenchSettings], RunFigures], list[RunFigures], BackendOptions]] = []
        if sequential:
            kinds.append((run_sequential_engine, serial, s.sequential_runtime()))
        kinds.append((run_pipelined, pipelined, s.runtime))
        for run, out, runtime in kinds:
            engine = build_engine(s, choice.path, runtime)
            builds.append(engine.build_s)
            warmups.append(engine.warmup_s)
            notices = engine.notices
            out.append(run(engine, s))
    result: dict[str, Any] = {
        "resolution": s.label,
        "width": s.width,
        "height": s.height,
        "faces": s.faces,
        "frames": s.frames,
        "warmup_frames": s.warmup,
        "rounds": s.rounds,
        "model": {"path": str(choice.path), "synthetic": choice.synthetic, "description": choice.description},
        "backend": s.backend.value,
        "gpu_path": s.gpu_path,
        "paced_fps": s.paced_fps,
        "session_create_s": session_s,
        "engine_build_s": statistics.median(builds),
        "warmup_s": statistics.median(warmups),
        "notices": notices,
        "inference_ms": inference,
        "pipelined": asdict(_median_run(pipelined)),
        "pipelined_fps_rounds": [r.fps for r in pipelined],
        "cpu_threads": s.runtime.cpu_threads or usable_cores(),
        "sequential_cpu_threads": (s.sequential_runtime().cpu_threads or usable_cores()) if serial else None,
        "sequential": asdict(_median_run(serial)) if serial else None,
        "sequential_fps_rounds": [r.fps for r in serial],
        "pipelined_vs_sequential": (
            _ratios([p.fps / q.fps if q.fps > 0 else 0.0 for p, q in zip(pipelined, serial, strict=True)])
            if serial
            else None
        ),
    }
    return result


def compare(a: BenchSettings, b: BenchSettings, models: ModelResolver) -> dict[str, Any]:
    """Pipelined runs of ``a`` and ``b`` alternately (A B A B ...), ``a.rounds`` each; ratios B / A per round."""
    choice_a, choice_b = models.resolve(a), models.resolve(b)
    runs_a: list[RunFigures] = []
    runs_b: list[RunFigures] = []
    for _ in range(a.rounds):
        for s, choice, out in ((a, choice_a, runs_a), (b, choice_b, runs_b)):
            out.append(run_pipelined(build_engine(s, choice.path), s))
    fps = [rb.fps / ra.fps if ra.fps > 0 else 0.0 for ra, rb in zip(runs_a, runs_b, strict=True)]
    latency = [
        rb.latency_ms["p50"] / ra.latency_ms["p50"] if ra.latency_ms["p50"] > 0 else 0.0
        for ra, rb in zip(runs_a, runs_b, strict=True)
    ]
    return {
        "resolution": a.label,
        "rounds": a.rounds,
        "a": {
            "model": choice_a.description,
            "fps_rounds": [r.fps for r in runs_a],
            "median": asdict(_median_run(runs_a)),
        },
        "b": {
            "model": choice_b.description,
            "fps_rounds": [r.fps for r in runs_b],
            "median": asdict(_median_run(runs_b)),
        },
        "fps_ratio_b_over_a": _ratios(fps),
        "latency_p50_ratio_b_over_a": _ratios(latency),
    }


# --- command line ----------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``bench`` (also what ``--compare`` strings may contain)."""
    from realtime_swap.color import ColorMode

    p.add_argument(
        "--resolution",
        default="480p",
        help=f"comma-separated demo sizes: {', '.join(RESOLUTIONS)} or WxH (default 480p = 640x480)",
    )
    p.add_argument("--faces", type=positive_int, default=1, help="faces in the demo stream, swapped (default 1)")
    p.add_argument("--frames", type=positive_int, default=60, help="measured frames per run (default 60)")
    p.add_argument("--warmup", type=non_negative_int, default=10, help="frames run first and left out (default 10)")
    p.add_argument("--rounds", type=positive_int, default=1, help="runs of each kind, alternated (default 1)")
    p.add_argument("--model", type=Path, help="swap model (.onnx/.dfm; default: the shipped one, else synthetic)")
    p.add_argument(
        "--synthetic-resolution",
        type=positive_int,
        default=128,
        help="px of the untrained synthetic model used when there is no model (multiple of 16, default 128)",
    )
    p.add_argument("--color", choices=[m.value for m in ColorMode], default=ColorMode.RCT.value)
    p.add_argument("--detect-every", type=positive_int, default=5, help="full detection every N frames (default 5)")
    p.add_argument("--queue-size", type=positive_int, default=2, help="bound of each queue between stages")
    p.add_argument(
        "--inference-iters", type=non_negative_int, default=30, help="timed calls of the model alone (default 30)"
    )
    p.add_argument(
        "--paced-fps",
        type=float,
        help="pace the demo at this rate like a camera (live drop policy: newest frame wins) to measure the "
        "latency of a live run; default: unpaced, fps is the engine's throughput",
    )
    p.add_argument(
        "--sequential",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the stages sequentially in one thread and report the pipelined / sequential ratio",
    )
    p.add_argument(
        "--sequential-threads",
        type=non_negative_int,
        default=1,
        help="ONNX Runtime threads of the sequential loop's swap model: 1 (default) makes the baseline a "
        "single-threaded loop; 0: as many as the pipelined run's (a loop whose inference alone uses the cores)",
    )
    add_inference_arguments(p)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    p = subparsers.add_parser(
        "bench",
        help="measure fps and latency on the demo stream (warm-up apart, per-stage percentiles, JSON)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_arguments(p)
    p.add_argument("--json", type=Path, help="write every figure to this JSON file")
    p.add_argument(
        "--compare",
        nargs=2,
        metavar=("ARGS_A", "ARGS_B"),
        help='two option strings measured alternately, e.g. --compare "--queue-size 1" "--queue-size 4"',
    )
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace, resolution: str) -> BenchSettings:
    label, width, height = parse_resolution(resolution)
    return BenchSettings(
        width=width,
        height=height,
        label=label,
        faces=args.faces,
        frames=args.frames,
        warmup=args.warmup,
        model=args.model,
        synthetic_resolution=args.synthetic_resolution,
        backend=Backend(args.backend),
        gpu_path=args.gpu_path,
        color=args.color,
        detect_every=args.detect_every,
        queue_size=args.queue_size,
        rounds=args.rounds,
        inference_iters=args.inference_iters,
        paced_fps=args.paced_fps,
        runtime=backend_options_from_args(args),
        sequential_threads=args.sequential_threads,
    )


def _variant(args: argparse.Namespace, extra: str) -> argparse.Namespace:
    """``args`` with the options in ``extra`` (a ``--compare`` string) on top."""
    parser = argparse.ArgumentParser(prog="bench --compare", add_help=False, exit_on_error=False)
    add_arguments(parser)
    parser.set_defaults(**{k: v for k, v in vars(args).items() if k not in ("json", "compare", "func")})
    try:
        variant, unknown = parser.parse_known_args(shlex.split(extra))
    except (argparse.ArgumentError, ValueError) as exc:
        raise ConfigError(f"bench --compare '{extra}': {exc}") from None
    if unknown:
        raise ConfigError(f"bench --compare '{extra}': unknown options {' '.join(unknown)}")
    return variant


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import onnxruntime as ort

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
        "onnxruntime": ort.__version__,
        "ort_providers": ort.get_available_providers(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = None
    return info


def _plain(value: object) -> object:
    if isinstance(value, Backend):
        return value.value
    return str(value) if isinstance(value, Path) else value


def run(args: argparse.Namespace) -> int:
    """The ``bench`` command: measure, print the table, write the JSON."""
    resolutions = [r for r in args.resolution.split(",") if r.strip()]
    if not resolutions:
        raise ConfigError("bench: --resolution is empty")
    settings = [settings_from_args(args, r) for r in resolutions]
    variants = [_variant(args, extra) for extra in args.compare] if args.compare else None
    models = ModelResolver()
    document: dict[str, Any] = {
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "fps_definition": FPS_DEFINITION,
        "latency_definition": LATENCY_DEFINITION,
        "machine": machine(),
        "settings": {k: _plain(v) for k, v in asdict(settings[0]).items()},
        "results": [],
        "compare": None,
    }
    try:
        for s in settings:
            result = measure(s, models, sequential=args.sequential)
            document["results"].append(result)
            print(format_result(result), file=sys.stderr)
        if variants is not None:
            document["compare"] = {"a_args": args.compare[0], "b_args": args.compare[1], "by_resolution": []}
            for r in resolutions:
                a, b = (settings_from_args(v, r) for v in variants)
                entry = compare(a, replace(b, rounds=a.rounds), models)
                document["compare"]["by_resolution"].append(entry)
                print(format_compare(entry, args.compare), file=sys.stderr)
    finally:
        models.close()
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=2, default=str) + "\n")
    return 0


# --- the terminal table ------------------------------------------------------------------------------------------


def _p(d: dict[str, float] | None) -> str:
    if not d:
        return f"{'-':>8}{'-':>8}{'-':>8}"
    return f"{d['p50']:8.2f}{d['p95']:8.2f}{d['p99']:8.2f}"


def format_result(r: dict[str, Any]) -> str:
    """The human-readable table of one :func:`measure` result."""
    pipe, seq, inf = r["pipelined"], r["sequential"], r["inference_ms"]
    gpu = f", gpu path on {r['gpu_path']}" if r["gpu_path"] != "off" else ""
    lines = [
        f"== {r['resolution']} ({r['width']}x{r['height']}), {r['faces']} face(s), model: {r['model']['description']}, "
        f"backend {inf['backend']} ({inf['device']}){gpu}"
        + (f", paced at {r['paced_fps']:g} fps" if r["paced_fps"] else ", unpaced"),
        f"   set-up: session {r['session_create_s']:.2f} s, engine build {r['engine_build_s']:.2f} s, "
        f"stage warm-up {r['warmup_s']:.2f} s; {r['warmup_frames']} warm-up frames left out, "
        f"{r['frames']} measured x {r['rounds']} round(s)",
        f"   inference alone (batch {inf['batch']}, {inf['clock']}): p50 {inf['p50']:.2f}  p95 {inf['p95']:.2f}  "
        f"p99 {inf['p99']:.2f} ms",
        f"   {'stage ms':<14}{'pipelined p50/p95/p99':>24}{'sequential p50/p95/p99':>26}",
    ]
    names = list(pipe["stages"]) + [n for n in (seq["stages"] if seq else {}) if n not in pipe["stages"]]
    for name in names:
        lines.append(f"   {name:<14}{_p(pipe['stages'].get(name))}  {_p(seq['stages'].get(name) if seq else None)}")
    lines.append(f"   {'latency':<14}{_p(pipe['latency_ms'])}  {_p(seq['latency_ms'] if seq else None)}")
    fps_line = f"   fps: pipelined {pipe['fps']:.1f}"
    if seq:
        ratio = r["pipelined_vs_sequential"]
        fps_line += (
            f", sequential {seq['fps']:.1f} (one thread, model on {r['sequential_cpu_threads']} intra-op "
            f"thread(s)); pipelined / sequential {ratio['median']:.2f}x "
            f"(min {ratio['min']:.2f}, max {ratio['max']:.2f} over {len(ratio['rounds'])} round(s))"
        )
    lines.append(fps_line)
    cpu_line = f"   CPU: pipelined {pipe['cpu_cores_busy']:.2f} cores busy, {pipe['cpu_ms_per_frame']:.1f} ms per frame"
    if seq:
        cpu_line += f"; sequential {seq['cpu_cores_busy']:.2f} cores, {seq['cpu_ms_per_frame']:.1f} ms per frame"
    lines.append(cpu_line + f" (of {usable_cores()} usable cores)")
    lines.append(
        f"   frames: {pipe['frames_captured']} captured, {pipe['frames_output']} output, "
        f"{pipe['frames_dropped']} dropped, {pipe['frames_swapped']} of {pipe['frames_measured']} measured with a "
        "face swapped (pipelined)"
    )
    return "\n".join(lines)


def _values(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def format_compare(entry: dict[str, Any], args: Sequence[str]) -> str:
    """The human-readable lines of one :func:`compare` entry."""
    f, lat = entry["fps_ratio_b_over_a"], entry["latency_p50_ratio_b_over_a"]
    a, b = entry["a"], entry["b"]
    return "\n".join(
        [
            f"== compare at {entry['resolution']}: A = [{args[0]}], B = [{args[1]}], {entry['rounds']} round(s) A B",
            f"   fps A: {_values(a['fps_rounds'])};  B: {_values(b['fps_rounds'])}",
            f"   fps B / A: {f['median']:.2f}x (min {f['min']:.2f}, max {f['max']:.2f}); "
            f"latency p50 B / A: {lat['median']:.2f}x (min {lat['min']:.2f}, max {lat['max']:.2f})",
        ]
    )
