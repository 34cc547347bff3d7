"""Running the measurements: the engine built as ``live`` builds it, pipelined and sequential runs alternated over
rounds, and the A/B comparison of two configurations."""

from __future__ import annotations

import contextlib
import logging
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from realtime_swap.bench.inference import measure_session
from realtime_swap.bench.recording import RecordingSink, RunFigures, summarize
from realtime_swap.bench.settings import BenchSettings, ModelChoice, ModelResolver
from realtime_swap.config import EngineConfig, FaceSpec, OutputSpec
from realtime_swap.errors import ConfigError
from realtime_swap.infer.session import usable_cores
from realtime_swap.pipeline import DropPolicy, Pipeline, build_pipeline, close_stages
from realtime_swap.sources.demo import demo_frames_per_second
from realtime_swap.swap.backends import BackendOptions

log = logging.getLogger(__name__)

DEMO_RENDER_FRAMES = 30


@dataclass
class Engine:
    """A built engine ready to run once: the pipeline (its stages, source and sinks) and its set-up times."""

    pipeline: Pipeline
    recorder: RecordingSink
    build_s: float
    warmup_s: float
    notices: list[str]

    @property
    def gpu_path(self) -> str:
        """Where the GPU-resident swap + blend stage runs ("cuda:0", "cpu"), or "off" when the CPU stages run."""
        gpu_stage = sys.modules.get("realtime_swap.gpu.stage")  # loaded (with torch) only when the stage exists
        if gpu_stage is None:
            return "off"
        devices = [str(st.device) for st in self.pipeline.stages if isinstance(st, gpu_stage.GpuSwapComposeStage)]
        return devices[0] if devices else "off"


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
            detect_backend=s.detect_backend,
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
        # as fast as possible: nothing dropped; paced: a live policy (default: newest wins at every hand-off)
        pipeline.drop_policy = DropPolicy.BLOCK if s.paced_fps is None else s.drop_policy
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


def _ratios(values: Sequence[float]) -> dict[str, Any]:
    clean = [v for v in values if v > 0 and np.isfinite(v)]
    if not clean:
        return {"median": 0.0, "min": 0.0, "max": 0.0, "rounds": list(values)}
    return {"median": statistics.median(clean), "min": min(clean), "max": max(clean), "rounds": list(values)}


def _median_run(runs: list[RunFigures]) -> RunFigures:
    return sorted(runs, key=lambda r: r.fps)[(len(runs) - 1) // 2]


def measure(s: BenchSettings, models: ModelResolver, sequential: bool = True) -> dict[str, Any]:
    """Every figure of one configuration at one resolution (see the package docstring, realtime_swap.bench)."""
    choice = models.resolve(s)
    session_s, inference = measure_session(choice.path, s)  # logs the backend choice once
    with _repeats_quiet():
        result = _measure_rounds(s, choice, session_s, inference, sequential)
    # the capture stage's ceiling: how fast the demo alone renders at this size, unpaced
    result["demo_render_fps"] = demo_frames_per_second(s.width, s.height, frames=DEMO_RENDER_FRAMES)
    return result


@contextlib.contextmanager
def _repeats_quiet() -> Iterator[None]:
    """Every round rebuilds the engine: its info lines (a resize note, a morph note) would repeat each time and
    bury the table, so they are held back (``--debug`` keeps them)."""
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
            gpu_path = engine.gpu_path
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
        "gpu_path": gpu_path,
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
