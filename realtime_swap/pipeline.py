"""The engine's runtime and its one composition root.

``Pipeline`` runs capture → stage 1 → … → stage n → output, each in its own thread, joined by hand-offs:

* live sources: newest frame wins at every hand-off (``DropPolicy.LATEST``): a worker that is behind takes the
  newest frame, the one it replaced is counted as dropped where it stood, so no frame waits behind another and
  capture-to-output latency stays about the sum of the stage times whatever the load; file sources decoded as
  fast as possible use bounded FIFO queues and block instead, so no frame is lost;
* frames leave in the order they came (one worker per stage);
* a source that is down (``SourceOutage``) makes the engine repeat the last output picture with a notice, at
  the source's rate, so a virtual camera or a stream stays connected; corrupt packets are counted and warned of;
* every stage is timed; the first worker exception stops capture, the frames in flight still reach the outputs
  (unswapped, counted, when a stage failed), and the error is re-raised in the caller as ``StageError`` with
  the stage's name once every output is closed;
* ``stop()`` (Ctrl-C, SIGTERM, the window's q) stops capture and lets the frames in flight drain, then sinks
  are closed, so a recording is always finalised;
* an output whose ``open`` raises ``SinkUnavailableError`` (no virtual camera driver here) is left out with a
  warning and the run goes on with the others; each output's ``stats()`` lands in the report's
  ``extra["outputs"]``.

``build_pipeline`` is the only place that decides which stages and sinks a configuration gets.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from realtime_swap.config import EngineConfig, FaceSpec
from realtime_swap.errors import ConfigError, SinkError, SinkUnavailableError, StageError
from realtime_swap.handoff import CLOSED, DropPolicy, LatestSlot
from realtime_swap.metrics import Metrics, MetricsReport, capacity_notice
from realtime_swap.sinks.base import Sink, SinkEvent
from realtime_swap.sources.base import Source, SourceOutage
from realtime_swap.stages import Controls, Stage
from realtime_swap.types import Frame

if TYPE_CHECKING:
    from realtime_swap.swap.executor import SwapExecutor
    from realtime_swap.swap.model import SwapModel

__all__ = [
    "DropPolicy",
    "Pipeline",
    "build_pipeline",
    "build_stream_pipeline",
    "close_stages",
    "default_model_path",
    "load_swap_models",
]

log = logging.getLogger(__name__)

_END = object()  # end-of-stream marker that travels behind the last frame in a FIFO hop
_POLL_S = 0.05
_EWMA = 0.2  # weight of the newest sample in the per-frame time averages that time a live stage's start
_CORRUPT_WARN_S = 1.0  # at most one "corrupt packets skipped" warning a second


def face_counts(frame: Frame) -> tuple[int, int]:
    """(faces found, faces swapped and pasted) in a frame that went through the stages. Both blend paths (the
    compose stage and the fused GPU stage) paste every face that has an aligned crop once a frame is swapped."""
    swapped = sum(f.aligned is not None for f in frame.faces) if frame.swapped else 0
    return len(frame.faces), swapped


class _Aborted(Exception):
    """Raised inside a worker when the run is abandoned (drain timeout, second Ctrl-C); never escapes."""


class _Hop:
    """The hand-off into one worker: a newest-wins slot (live) or a bounded FIFO (files), with its metrics.

    name: the worker that feeds it (metrics: drops and depth are those "after NAME", e.g. after capture).
    """

    def __init__(self, name: str, latest: bool, size: int, abort: threading.Event, metrics: Metrics) -> None:
        self.name = name
        self._slot: LatestSlot[Frame] | None = LatestSlot() if latest else None
        self._queue: queue.Queue[object] = queue.Queue(size)
        self._abort = abort
        self._metrics = metrics
        self._taken_at: float | None = None
        self._busy_s = 0.0  # EWMA of how long the taker stays busy with a frame (work and handing it on)
        self._free_at = 0.0  # perf_counter time the taker is expected to want its next frame

    def ready(self) -> None:
        """The taker is about to wait for its next frame (it worked on the last one and handed it on)."""
        now = time.perf_counter()
        if self._taken_at is not None:
            busy = now - self._taken_at
            self._busy_s = busy if self._busy_s == 0.0 else self._busy_s + _EWMA * (busy - self._busy_s)
            self._taken_at = None
        self._free_at = now

    def wait_ready(self, lead_s: float) -> None:
        """For the stage feeding a live hop, before it starts on a new frame: wait until the frame it handed
        over last was taken, and then until the taker will be free within ``lead_s`` (the feeding stage's own time
        per frame), so that the frame it starts now is taken as soon as it is done: fresh, and never worked on
        only to replace one still waiting (work a busy CPU cannot spare). No wait on a FIFO hop."""
        if self._slot is None:
            return
        self.wait_taken()
        wait = self._free_at - lead_s - time.perf_counter()
        if wait > 0 and not self._abort.wait(min(wait, _POLL_S * 4)):
            return
        if self._abort.is_set():
            raise _Aborted

    def wait_taken(self) -> None:
        """For the stage feeding a live hop, before it starts on a new frame: wait until the frame it handed over
        last was taken. A frame it worked on would otherwise only replace one still waiting here — work thrown
        away, which a busy CPU cannot spare — while the fresh frame it can start on once this one is taken waits
        no longer than the taker's current job. No wait on a FIFO hop (its bound does that)."""
        if self._slot is None:
            return
        while not self._slot.wait_taken(_POLL_S):
            if self._abort.is_set():
                raise _Aborted

    def put(self, frame: Frame) -> None:
        if self._slot is not None:
            if self._slot.put(frame):
                self._metrics.dropped_frame(self.name)
            self._metrics.queue_depth(self.name, self._slot.qsize())
            return
        self._put_fifo(frame)
        self._metrics.queue_depth(self.name, self._queue.qsize())

    def close(self) -> None:
        """No more frames: the taker gets the ones pending, then the end."""
        if self._slot is not None:
            self._slot.close()
        else:
            self._put_fifo(_END)

    def _put_fifo(self, item: object) -> None:
        while True:
            if self._abort.is_set():
                raise _Aborted
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def get(self) -> Frame | None:
        """The next frame, or None at the end."""
        while True:
            if self._abort.is_set():
                raise _Aborted
            if self._slot is not None:
                got = self._slot.get(_POLL_S)
                if got is CLOSED:
                    return None
                if got is not None:
                    self._taken_at = now = time.perf_counter()
                    self._free_at = now + self._busy_s
                    return got
                continue
            try:
                item = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            return None if item is _END else item  # type: ignore[return-value]


class Pipeline:
    """Runs ``source`` through ``stages`` into ``sinks``.

    queue_size: bound of each FIFO between workers (policies CAPTURE and BLOCK); drop_policy: None picks LATEST
    for live sources and BLOCK otherwise; max_frames / duration_s: stop capturing after that many frames /
    seconds. Whatever ends a run, the frames already captured still reach the outputs: after a stage or output
    error they go on unswapped (counted), and the error is raised once every output is closed.
    """

    def __init__(
        self,
        source: Source,
        stages: Sequence[Stage],
        sinks: Sequence[Sink],
        controls: Controls | None = None,
        queue_size: int = 2,
        drop_policy: DropPolicy | None = None,
        max_frames: int | None = None,
        duration_s: float | None = None,
        drain_timeout_s: float = 10.0,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.source = source
        self.stages = list(stages)
        self.sinks = list(sinks)
        self.controls = controls or Controls()
        self.queue_size = queue_size
        self.drop_policy = drop_policy or (DropPolicy.LATEST if source.info.live else DropPolicy.BLOCK)
        self.max_frames = max_frames
        self.duration_s = duration_s
        self.drain_timeout_s = drain_timeout_s
        self.metrics = Metrics()
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._error: tuple[str, BaseException] | None = None
        self._error_lock = threading.Lock()
        self._stopped_by = "end"
        self._capture_stuck = False
        self._notice = ""  # the engine's state for the window ("at capacity: ..."), refreshed by the status
        self.unavailable: list[str] = []  # outputs left out at open (SinkUnavailableError), with the reason
        # frames with a face, frames swapped, faces found, faces swapped (over output frames; the report's extra)
        self._faces = [0, 0, 0, 0]

    # -- control -------------------------------------------------------------------------------------------
    def stop(self, reason: str = "stop") -> None:
        """Ask the pipeline to stop capturing and drain (thread-safe; signal handlers may call it)."""
        if not self._stop.is_set():
            self._stopped_by = reason
            self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once a stop was asked for (or a worker failed)."""
        return self._stop.is_set()

    def _fail(self, where: str, exc: BaseException) -> None:
        """Record the run's first error and stop capturing; what is in flight still drains."""
        with self._error_lock:
            if self._error is None:
                self._error = (where, exc)
                log.error("%s failed: %s; passing the frames in flight to the outputs", where, exc)
        self.stop("error")

    # -- workers ---------------------------------------------------------------------------------------------
    def _capture(self, out: _Hop) -> None:
        index = 0
        t_start = time.perf_counter()
        corrupt_seen, corrupt_warned_at = 0, 0.0
        last: Frame | None = None
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and index >= self.max_frames:
                    break
                if self.duration_s is not None and time.perf_counter() - t_start >= self.duration_s:
                    break
                t0 = time.perf_counter()
                try:
                    got = self.source.read()
                except BaseException as exc:
                    self._fail("capture", exc)
                    break
                t1 = time.perf_counter()
                corrupt = self.source.corrupt_count
                if corrupt > corrupt_seen:
                    self.metrics.corrupt_frames(corrupt - corrupt_seen)
                    corrupt_seen = corrupt
                    if t1 - corrupt_warned_at >= _CORRUPT_WARN_S:
                        corrupt_warned_at = t1
                        log.warning("%s: %d corrupt packets skipped so far", self.source.info.name, corrupt)
                if got is None:
                    break
                if isinstance(got, SourceOutage):
                    if last is not None:  # repeat the last frame so the outputs keep their rate
                        held = Frame(index=last.index, image=last.image, t_capture=t1, pts=got.pts)
                        held.held, held.notice = True, got.notice
                        out.put(held)
                    continue
                image, pts = got
                frame = Frame(index=index, image=image, t_capture=t1, pts=pts)
                ms = (t1 - t0) * 1000.0 - self.source.paced_ms
                frame.timings["capture"] = ms
                self.metrics.stage("capture", ms)
                self.metrics.captured_frame()
                index += 1
                last = frame
                out.put(frame)
            out.close()
        except _Aborted:
            return

    def _stage_worker(self, stage: Stage, inq: _Hop, out: _Hop) -> None:
        failed = False  # once this stage has failed, the frames still in flight pass it untouched
        work_s = 0.0  # EWMA of this stage's time per frame: how early it starts before the next stage is free
        try:
            while True:
                out.wait_ready(work_s * 1.2 + 0.001)
                inq.ready()
                frame = inq.get()
                if frame is None:
                    out.close()
                    return
                if frame.held or frame.degraded or failed:
                    frame.degraded = not frame.held
                    out.put(frame)
                    continue
                t0 = time.perf_counter()
                try:
                    frame = stage.process(frame, self.controls)
                except BaseException as exc:
                    failed = True
                    self._fail(stage.name, exc)
                    frame.degraded = True
                    out.put(frame)
                    continue
                ms = (time.perf_counter() - t0) * 1000.0
                work_s = ms / 1000.0 if work_s == 0.0 else work_s + _EWMA * (ms / 1000.0 - work_s)
                frame.timings[stage.name] = ms
                self.metrics.stage(stage.name, ms)
                out.put(frame)
        except _Aborted:
            return

    def _output(self, inq: _Hop) -> None:
        sinks = list(self.sinks)
        shown: np.ndarray | None = None  # the last picture output (a held frame repeats it)
        try:
            while True:
                inq.ready()
                frame = inq.get()
                if frame is None:
                    return
                if frame.held:
                    if shown is None:
                        continue
                    frame.image = _with_notice(shown, frame.notice)
                else:
                    shown = frame.image
                    if self._notice:
                        frame.notice = self._notice
                t0 = time.perf_counter()
                for sink in list(sinks):
                    t_sink = time.perf_counter()
                    try:
                        sink.write(frame)
                    except BaseException as exc:  # this output is lost; the others still get every frame
                        sinks.remove(sink)
                        self._fail(f"output:{sink.name}", exc)
                        continue
                    self.metrics.stage(f"sink:{sink.name}", (time.perf_counter() - t_sink) * 1000.0)
                if frame.held:
                    self.metrics.held_frame()
                    continue
                ms = (time.perf_counter() - t0) * 1000.0
                frame.timings["output"] = ms
                self.metrics.stage("output", ms)
                self.metrics.output(frame.t_capture, unswapped=frame.degraded)
                found, swapped = face_counts(frame)
                self._faces = [
                    a + b for a, b in zip(self._faces, (found > 0, swapped > 0, found, swapped), strict=True)
                ]
        except _Aborted:
            return

    # -- run -------------------------------------------------------------------------------------------------
    def run(
        self, on_status: Callable[[dict[str, float | str]], None] | None = None, status_interval_s: float = 1.0
    ) -> MetricsReport:
        """Run until the source ends, ``stop()`` or an error; return the metrics report.

        Ctrl-C (KeyboardInterrupt in the calling thread) stops gracefully and the report says
        ``stopped_by='interrupt'``. A worker's exception is re-raised as StageError after the frames in flight
        reached the outputs and every output has been closed.
        """
        opened: list[Sink] = []
        try:
            for stage in self.stages:
                try:
                    stage.warmup(self.source.info)
                except BaseException as exc:
                    raise StageError(stage.name, exc) from exc
            for sink in self.sinks:
                try:
                    sink.open(self.source.info)
                except SinkUnavailableError as exc:  # an optional device missing here: run on without it
                    log.warning("output %s unavailable, running without it: %s", sink.name, exc)
                    self.unavailable.append(f"{sink.name}: {exc}")
                    continue
                except BaseException as exc:
                    raise StageError(f"output:{sink.name}", exc) from exc
                opened.append(sink)
            if not opened:
                raise StageError("output", SinkError("no output could be opened: " + "; ".join(self.unavailable)))
            self.sinks = opened
            self._run_threads(on_status, status_interval_s)
        finally:
            self._close(opened)
        if self._error is not None:
            failed, cause = self._error
            raise StageError(failed, cause) from cause
        report = self.metrics.report(self.queue_size, self._stopped_by)
        outputs = {sink.name: sink.stats() for sink in opened}
        report.extra["outputs"] = {name: stats for name, stats in outputs.items() if stats}
        source_stats = self.source.stats()
        if source_stats:
            report.extra["source"] = source_stats
        with_face, swapped_frames, found, swapped = self._faces
        frames = max(report.frames_processed, 1)
        report.extra["faces"] = {
            "frames_with_face": with_face,
            "frames_swapped": swapped_frames,
            "found_per_frame": found / frames,
            "swapped_per_frame": swapped / frames,
        }
        if self.unavailable:
            report.extra["outputs_unavailable"] = list(self.unavailable)
        return report

    def _hops(self) -> list[_Hop]:
        """The hand-offs after capture and after each stage (into the output worker last), per the drop policy."""
        names = ["capture"] + [stage.name for stage in self.stages]
        policy = self.drop_policy
        return [
            _Hop(
                name,
                latest=policy is DropPolicy.LATEST or (policy is DropPolicy.CAPTURE and i == 0),
                size=self.queue_size,
                abort=self._abort,
                metrics=self.metrics,
            )
            for i, name in enumerate(names)
        ]

    def _run_threads(self, on_status: Callable[[dict[str, float | str]], None] | None, interval: float) -> None:
        hops = self._hops()
        threads = [threading.Thread(target=self._capture, args=(hops[0],), name="capture", daemon=True)]
        for stage, inq, out in zip(self.stages, hops, hops[1:], strict=False):
            threads.append(
                threading.Thread(target=self._stage_worker, args=(stage, inq, out), name=stage.name, daemon=True)
            )
        threads.append(threading.Thread(target=self._output, args=(hops[-1],), name="output", daemon=True))
        main_sinks = [s for s in self.sinks if s.main_thread]
        for t in threads:
            t.start()
        next_status = time.perf_counter() + interval
        stop_deadline: float | None = None
        workers = threads[1:]
        while any(t.is_alive() for t in workers):
            try:
                for sink in main_sinks:
                    if sink.service() is SinkEvent.QUIT:
                        self.stop("quit")
                now = time.perf_counter()
                if now >= next_status:
                    status = self.metrics.status()
                    self._notice = capacity_notice(status)
                    if on_status is not None:
                        on_status(status)
                    next_status = now + interval
                if self._stop.is_set() and stop_deadline is None:
                    stop_deadline = now + self.drain_timeout_s
                if stop_deadline is not None and now > stop_deadline and not self._abort.is_set():
                    log.warning("frames in flight did not drain within %.0f s; abandoning them", self.drain_timeout_s)
                    self._abort.set()
                workers[-1].join(0.005 if main_sinks else _POLL_S)
            except KeyboardInterrupt:
                if self._stop.is_set():  # a second Ctrl-C: do not wait for the drain
                    self._abort.set()
                self.stop("interrupt")
        for sink in main_sinks:  # show the last frame, let the window catch its final events
            sink.service()
        threads[0].join(timeout=2.0)
        self._capture_stuck = threads[0].is_alive()
        if self._capture_stuck:
            log.warning("capture is still blocked in %s; leaving it", self.source.info.name)

    def _close(self, sinks: Sequence[Sink]) -> None:
        for stage in self.stages:
            try:
                stage.close()
            except Exception as exc:
                log.warning("closing stage %s: %s", stage.name, exc)
        for sink in sinks:
            try:
                sink.close()
            except Exception as exc:
                if self._error is None:
                    self._error = (f"output:{sink.name}", exc)
                log.warning("closing output %s: %s", sink.name, exc)
        if self._capture_stuck:  # closing a source under a blocked reader can crash native code
            return
        try:
            self.source.close()
        except Exception as exc:
            log.warning("closing source %s: %s", self.source.info.name, exc)


def _with_notice(image: np.ndarray, notice: str) -> np.ndarray:
    """A copy of ``image`` with ``notice`` on a dark band along its bottom (what a held frame shows)."""
    from realtime_swap.sinks.window import draw_text_band

    out = image.copy()
    draw_text_band(out, [notice], bottom=True)
    return out


# -- composition root ----------------------------------------------------------------------------------------

HEADLESS_RECORDING = "realtime_swap_preview.mp4"
HEADLESS_DEMO_SECONDS = 10.0


def default_model_path(models_dir: Path | None = None) -> Path | None:
    """The shipped swap model used when ``--model`` is not given (looked up as ``realtime_swap.model_files``
    says), or None when no models folder has one."""
    from realtime_swap.model_files import DEMO_SWAP_MODEL, find_model_file

    return find_model_file(DEMO_SWAP_MODEL, models_dir)


def load_swap_models(faces: FaceSpec) -> list[SwapModel]:
    """The swap models ``faces`` names (``--model``, repeated; else the shipped one), loaded; [] when there is
    none. Raises ModelError / ConfigError as ``SwapModel.load`` does (what was loaded is closed again)."""
    from realtime_swap.swap.model import SwapModel

    path = faces.model or default_model_path(faces.models_dir)
    if path is None:
        if faces.extra_models:
            raise ConfigError("more swap models given but no first one (--model)")
        return []
    models: list[SwapModel] = []
    # a TensorRT engine of a morph DFM has the morph factor built in: the one this run swaps with
    runtime = faces.runtime if faces.morph is None else replace(faces.runtime, morph=faces.morph)
    try:
        for model_path in (path, *faces.extra_models):
            models.append(SwapModel.load(model_path, faces.backend, face_type=faces.face_type, options=runtime))
    except BaseException:
        for model in models:
            model.close()
        raise
    return models


def _face_stages(
    cfg: EngineConfig, controls: Controls, notices: list[str], executor: SwapExecutor | None = None
) -> list[Stage]:
    """The detect → swap → blend stages this configuration gets, or [] for pass-through (``--no-swap``).

    Without a model (none given and none shipped) the engine detects and aligns only, says so in ``notices``
    and shows the landmarks. executor: a shared swap executor whose models this stream's swap stage runs
    (many streams, one batched model call); None loads the models for this engine alone.
    """
    if not cfg.faces.swap:
        return []
    from realtime_swap.compose import ComposeStage
    from realtime_swap.detect.engine import detect_engine_for
    from realtime_swap.detect.stage import DetectStage
    from realtime_swap.detect.tracker import FaceSelection, TrackerOptions
    from realtime_swap.gpu import GpuPath, auto_unavailable_reason
    from realtime_swap.infer.session import Backend
    from realtime_swap.model_files import MEDIAPIPE, find_model_file
    from realtime_swap.swap.backends import backend_summary
    from realtime_swap.swap.stage import SwapStage
    from realtime_swap.types import FaceType

    f = cfg.faces
    reference = None
    if f.selection is FaceSelection.REFERENCE:
        from realtime_swap.detect.identity import identity_available, load_reference

        ok, missing = identity_available()
        if not ok:
            raise ConfigError(f"--select reference: {missing}")
        reference = load_reference(f.reference)
        notices.append(
            f"--select reference: {len(reference.names)} reference face(s), checked every {f.reference_every} frames"
        )

    def tracking(swap: SwapModel | None) -> TrackerOptions:
        # the detector's own engine: the swap's backend may be one ONNX Runtime does not have (torch, tensorrt)
        engine = detect_engine_for(f.detect_backend, *((swap.backend, swap.runner.device) if swap else (None, None)))
        log.debug("detector and landmarker on %s", engine.describe())
        return TrackerOptions(
            detector=f.detector,
            detect_every=f.detect_every,
            max_faces=f.max_faces,
            selection=f.selection,
            reference=reference,
            reference_every=f.reference_every,
            engine=engine,
            model_dir=find_model_file(MEDIAPIPE, f.models_dir),
        )

    models = executor.stage_models() if executor is not None else load_swap_models(f)
    if not models:
        notices.append(
            "no swap model: none found in the models folders and --model was not given; "
            "detecting and aligning faces only (landmarks shown)"
        )
        controls.show_landmarks = True
        return [DetectStage(tracking(None), f.face_type or FaceType.WHOLE_FACE, 256)]
    for note in models[0].notes:
        log.debug("swap backend passed over: %s", note)
    if (summary := backend_summary(models[0].backend, models[0].notes)) is not None:
        notices.append(summary)
    controls.model_names = tuple(m.spec.path.stem for m in models)
    if len(models) > 1:
        notices.append(
            f"{len(models)} swap models loaded ({', '.join(controls.model_names)}): Tab / 1-9 in the window switch"
        )
    stages: list[Stage] = [
        DetectStage(
            targets=[(m.face_type, m.resolution) for m in models],
            tracker=tracking(models[0]),
            mask=f.mask.uses_hull,
            mouth=f.keep_mouth,
        ),
        SwapStage(models, morph=f.morph, mask=f.mask),
        ComposeStage(
            erode_px=f.erode_px,
            blur_px=f.blur_px,
            opacity=f.opacity,
            mode=f.blend,
            sharpen=f.sharpen,
            color_amount=f.color_amount,
            color_time_constant_s=f.color_smoothing_s,
            keep_mouth=f.keep_mouth,
        ),
    ]
    # not given: auto, quietly, for a swap model on torch (the GPU path this project verifies); ONNX Runtime's
    # CUDA providers and TensorRT take it when asked; a shared executor (serve, many streams) runs the CPU stages
    default = GpuPath.AUTO if executor is None and models[0].backend is Backend.TORCH else GpuPath.OFF
    gpu_path = f.gpu_path or default
    if gpu_path is GpuPath.AUTO and (why := auto_unavailable_reason(models[0].runner.device)) is not None:
        if f.gpu_path is None:
            log.debug("gpu path: %s; running the CPU stages", why)
        else:
            notices.append(f"--gpu-path auto: {why}; running the CPU stages")
    elif gpu_path is not GpuPath.OFF:
        if executor is not None:
            raise ConfigError("--gpu-path runs its own swap model; a shared swap executor cannot serve it")
        from realtime_swap.infer.torch_runtime import torch_unavailable_reason

        if (why := torch_unavailable_reason()) is not None:  # the stage is torch code, whatever the backend
            raise ConfigError(f"--gpu-path {gpu_path.value}: {why}")
        from realtime_swap.gpu.stage import gpu_resident_stages

        stages = gpu_resident_stages(stages, gpu_path)
    return stages


def build_face_stages(cfg: EngineConfig) -> tuple[list[Stage], Controls, list[str]]:
    """The face stages of ``cfg`` alone (no source, no outputs), their controls and notices: for offline tools
    that run the live stages over frames themselves (``quality``)."""
    notices: list[str] = []
    controls = Controls(color_mode=cfg.faces.color)
    return _face_stages(cfg, controls, notices), controls, notices


def _sinks(
    cfg: EngineConfig, controls: Controls, live_source: bool, notices: list[str]
) -> tuple[list[Sink], float | None]:
    """The outputs, and a default duration for a headless run of an endless source (None: no limit)."""
    from realtime_swap.sinks.network import NetworkStreamSink
    from realtime_swap.sinks.null import NullSink
    from realtime_swap.sinks.v4l2 import V4L2Sink
    from realtime_swap.sinks.video_file import VideoFileSink
    from realtime_swap.sinks.virtual_camera import VirtualCameraSink
    from realtime_swap.sinks.window import WindowSink, display_available

    out = cfg.outputs
    sinks: list[Sink] = []
    duration = None
    record = out.record
    preview = out.preview
    routed = out.vcam is not None or out.v4l2 is not None or bool(out.streams)
    if preview is None:
        ok, why = display_available()
        preview = ok
        if not ok and record is None and not out.null and not routed:
            record = Path(HEADLESS_RECORDING)
            notices.append(f"no preview window: {why}; recording to {record} instead")
            if live_source and cfg.frames is None and cfg.duration_s is None:
                duration = HEADLESS_DEMO_SECONDS
                notices.append(f"headless run of a live source: stopping after {duration:g} s (--duration to change)")
    if preview:
        from realtime_swap.color import ColorMode

        sinks.append(WindowSink(controls, color_modes=list(ColorMode), screenshot_dir=out.screenshot_dir))
    if out.vcam is not None:
        device = None if out.vcam == "auto" else out.vcam
        sinks.append(VirtualCameraSink(device=device, fps=out.vcam_fps, backend=out.vcam_backend))
    if out.v4l2 is not None:
        sinks.append(V4L2Sink(out.v4l2, fps=out.vcam_fps))
    for url in out.streams:
        sinks.append(
            NetworkStreamSink(
                url,
                encoder=out.stream_encoder,
                bitrate_kbps=out.stream_bitrate_kbps,
                gop_s=out.stream_gop_s,
                preset=out.stream_preset,
            )
        )
    if record is not None:
        sinks.append(VideoFileSink(record, crf=out.record_crf, preset=out.record_preset, audio_from=None))
    if out.null or not sinks:
        sinks.append(NullSink())
    seen: dict[str, int] = {}
    for sink in sinks:  # unique names: metrics and the report key on them (two udp streams, ...)
        seen[sink.name] = seen.get(sink.name, 0) + 1
        if seen[sink.name] > 1:
            sink.name = f"{sink.name}#{seen[sink.name]}"
    return sinks, duration


def close_stages(stages: Sequence[Stage]) -> None:
    """Release what built stages hold (inference sessions) when the engine cannot be completed."""
    for stage in stages:
        try:
            stage.close()
        except Exception as exc:
            log.warning("closing stage %s: %s", stage.name, exc)


def build_pipeline(cfg: EngineConfig) -> tuple[Pipeline, list[str]]:
    """Open the source, build the stages and sinks ``cfg`` asks for; return the pipeline and notices for the
    user (stages missing from this build, fallbacks taken). Raises the product's errors on bad input."""
    from realtime_swap.color.jit import configure_kernel_cache
    from realtime_swap.sinks.delay import DelaySink
    from realtime_swap.sinks.video_file import VideoFileSink
    from realtime_swap.sources import open_source

    notices: list[str] = []
    controls = Controls(color_mode=cfg.faces.color)
    stages = _face_stages(cfg, controls, notices)
    if stages:
        configure_kernel_cache()
    try:
        source = open_source(cfg.source)
    except BaseException:
        close_stages(stages)
        raise
    try:
        sinks, default_duration = _sinks(cfg, controls, source.info.live, notices)
        for sink in sinks:
            if isinstance(sink, VideoFileSink):
                if source.audio_url:
                    sink.set_audio_source(source.audio_url)
                elif (feed := source.audio_feed()) is not None:
                    sink.set_audio_feed(feed)
        if cfg.outputs.delay_ms > 0:
            sinks = [DelaySink(sinks, cfg.outputs.delay_ms / 1000.0)]
            notices.append(
                f"outputs held to {cfg.outputs.delay_ms:g} ms after capture: delay the microphone by the same amount"
            )
    except BaseException:
        source.close()
        close_stages(stages)
        raise
    pipeline = Pipeline(
        source,
        stages,
        sinks,
        controls=controls,
        queue_size=cfg.queue_size,
        drop_policy=cfg.drop_policy,
        max_frames=cfg.frames,
        duration_s=cfg.duration_s if cfg.duration_s is not None else default_duration,
    )
    return pipeline, notices


def build_stream_pipeline(
    cfg: EngineConfig, source: Source, sinks: Sequence[Sink], executor: SwapExecutor | None = None
) -> tuple[Pipeline, list[str]]:
    """A pipeline for a source and outputs built by the caller (a browser session of ``serve``): ``cfg``'s face
    stages (models from ``executor`` when given) and, after ``sinks``, the outputs ``cfg.outputs`` names
    (recording, virtual camera, streams; never a preview window). Newest frame wins at every hand-off."""
    from dataclasses import replace

    from realtime_swap.color.jit import configure_kernel_cache

    notices: list[str] = []
    controls = Controls(color_mode=cfg.faces.color)
    stages = _face_stages(cfg, controls, notices, executor)
    if stages:
        configure_kernel_cache()
    outputs = replace(cfg.outputs, preview=False)
    routed = outputs.record is not None or outputs.vcam is not None or outputs.v4l2 is not None or outputs.streams
    extra, _ = _sinks(replace(cfg, outputs=outputs), controls, True, notices) if routed else ([], None)
    pipeline = Pipeline(
        source,
        stages,
        [*sinks, *extra],
        controls=controls,
        queue_size=cfg.queue_size,
        drop_policy=DropPolicy.LATEST,
        max_frames=cfg.frames,
        duration_s=cfg.duration_s,
    )
    return pipeline, notices
