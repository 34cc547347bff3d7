"""The engine's runtime and its one composition root.

``Pipeline`` runs capture → stage 1 → … → stage n → output, each in its own thread, joined by bounded queues:

* newest frame wins at capture for live sources: when the engine is behind, the pending frame is replaced by the
  newer one (and counted as dropped) — no queue grows without bound; file sources decoded as fast as possible
  block instead, so no frame is lost;
* frames leave in the order they came (one worker per stage, FIFO queues);
* every stage is timed; the first worker exception stops everything and is re-raised in the caller as
  ``StageError`` with the stage's name;
* ``stop()`` (Ctrl-C, SIGTERM, the window's q) stops capture and lets the frames in flight drain, then sinks
  are closed, so a recording is always finalised;
* an output whose ``open`` raises ``SinkUnavailableError`` (no virtual camera driver here) is left out with a
  warning and the run goes on with the others; each output's ``stats()`` lands in the report's
  ``extra["outputs"]``.

``build_pipeline`` is the only place that decides which stages and sinks a configuration gets.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from realtime_swap.config import EngineConfig
from realtime_swap.errors import ConfigError, SinkError, SinkUnavailableError, StageError
from realtime_swap.metrics import Metrics, MetricsReport
from realtime_swap.sinks.base import Sink, SinkEvent
from realtime_swap.sources.base import Source
from realtime_swap.stages import Controls, Stage
from realtime_swap.types import Frame

log = logging.getLogger(__name__)

_END = object()  # end-of-stream marker that travels behind the last frame
_POLL_S = 0.05


def face_counts(frame: Frame) -> tuple[int, int]:
    """(faces found, faces swapped and pasted) in a frame that went through the stages. Both blend paths (the
    compose stage and the fused GPU stage) paste every face that has an aligned crop once a frame is swapped."""
    swapped = sum(f.aligned is not None for f in frame.faces) if frame.swapped else 0
    return len(frame.faces), swapped


class DropPolicy(str, enum.Enum):
    """What capture does when the engine is behind: replace the pending frame (live) or wait (files)."""

    LATEST = "latest"
    BLOCK = "block"


class _Aborted(Exception):
    """Raised inside a worker when another worker failed; never escapes the pipeline."""


class LatestSlot:
    """A one-frame hand-over where a new frame replaces an unread one (newest wins)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: object | None = None
        self._closed = False

    def put(self, item: object) -> bool:
        """Store ``item``; True when it replaced a frame nobody had taken (a drop)."""
        with self._cond:
            dropped = self._item is not None
            self._item = item
            self._cond.notify()
            return dropped

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def get(self, timeout: float) -> object | None:
        """The pending frame, ``_END`` once closed and empty, or None after ``timeout`` s."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            if self._item is not None:
                item, self._item = self._item, None
                return item
            return _END if self._closed else None

    def qsize(self) -> int:
        return int(self._item is not None)


class Pipeline:
    """Runs ``source`` through ``stages`` into ``sinks``.

    queue_size: bound of each queue between workers; drop_policy: None picks LATEST for live sources and BLOCK
    otherwise; max_frames / duration_s: stop capturing after that many frames / seconds.
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

    def _fail(self, stage: str, exc: BaseException) -> None:
        with self._error_lock:
            if self._error is None:
                self._error = (stage, exc)
        self._abort.set()
        self._stop.set()

    # -- queue helpers ---------------------------------------------------------------------------------------
    def _put(self, q: queue.Queue[object], item: object, name: str) -> None:
        while True:
            if self._abort.is_set():
                raise _Aborted
            try:
                q.put(item, timeout=_POLL_S)
            except queue.Full:
                continue
            self.metrics.queue_depth(name, q.qsize())
            return

    def _get(self, q: queue.Queue[object] | LatestSlot) -> object:
        while True:
            if self._abort.is_set():
                raise _Aborted
            if isinstance(q, LatestSlot):
                item = q.get(_POLL_S)
                if item is not None:
                    return item
                continue
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue

    # -- workers ---------------------------------------------------------------------------------------------
    def _capture(self, out: queue.Queue[object] | LatestSlot) -> None:
        index = 0
        t_start = time.perf_counter()
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and index >= self.max_frames:
                    break
                if self.duration_s is not None and time.perf_counter() - t_start >= self.duration_s:
                    break
                t0 = time.perf_counter()
                got = self.source.read()
                t1 = time.perf_counter()
                if got is None:
                    break
                image, pts = got
                frame = Frame(index=index, image=image, t_capture=t1, pts=pts)
                ms = (t1 - t0) * 1000.0 - self.source.paced_ms
                frame.timings["capture"] = ms
                self.metrics.stage("capture", ms)
                self.metrics.captured_frame()
                index += 1
                if isinstance(out, LatestSlot):
                    if out.put(frame):
                        self.metrics.dropped_frame()
                    self.metrics.queue_depth("capture", out.qsize())
                else:
                    self._put(out, frame, "capture")
        except _Aborted:
            return
        except BaseException as exc:
            self._fail("capture", exc)
            return
        finally:
            if isinstance(out, LatestSlot):
                out.close()
        try:
            if not isinstance(out, LatestSlot):
                self._put(out, _END, "capture")
        except _Aborted:
            pass

    def _stage_worker(self, stage: Stage, inq: queue.Queue[object] | LatestSlot, out: queue.Queue[object]) -> None:
        try:
            while True:
                item = self._get(inq)
                if item is _END:
                    self._put(out, _END, stage.name)
                    return
                assert isinstance(item, Frame)
                t0 = time.perf_counter()
                frame = stage.process(item, self.controls)
                ms = (time.perf_counter() - t0) * 1000.0
                frame.timings[stage.name] = ms
                self.metrics.stage(stage.name, ms)
                self._put(out, frame, stage.name)
        except _Aborted:
            return
        except BaseException as exc:
            self._fail(stage.name, exc)

    def _output(self, inq: queue.Queue[object] | LatestSlot) -> None:
        current = "output"
        try:
            while True:
                item = self._get(inq)
                if item is _END:
                    return
                assert isinstance(item, Frame)
                t0 = time.perf_counter()
                for sink in self.sinks:
                    current = f"output:{sink.name}"
                    t_sink = time.perf_counter()
                    sink.write(item)
                    self.metrics.stage(f"sink:{sink.name}", (time.perf_counter() - t_sink) * 1000.0)
                current = "output"
                ms = (time.perf_counter() - t0) * 1000.0
                item.timings["output"] = ms
                self.metrics.stage("output", ms)
                self.metrics.output(item.t_capture)
                found, swapped = face_counts(item)
                self._faces = [
                    a + b for a, b in zip(self._faces, (found > 0, swapped > 0, found, swapped), strict=True)
                ]
        except _Aborted:
            return
        except BaseException as exc:
            self._fail(current, exc)

    # -- run -------------------------------------------------------------------------------------------------
    def run(
        self, on_status: Callable[[dict[str, float]], None] | None = None, status_interval_s: float = 1.0
    ) -> MetricsReport:
        """Run until the source ends, ``stop()`` or an error; return the metrics report.

        Ctrl-C (KeyboardInterrupt in the calling thread) stops gracefully and the report says
        ``stopped_by='interrupt'``. A worker's exception is re-raised as StageError after every output has been
        closed.
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

    def _run_threads(self, on_status: Callable[[dict[str, float]], None] | None, interval: float) -> None:
        first: queue.Queue[object] | LatestSlot = (
            LatestSlot() if self.drop_policy is DropPolicy.LATEST else queue.Queue(self.queue_size)
        )
        threads = [threading.Thread(target=self._capture, args=(first,), name="capture", daemon=True)]
        inq = first
        for stage in self.stages:
            out: queue.Queue[object] = queue.Queue(self.queue_size)
            threads.append(
                threading.Thread(target=self._stage_worker, args=(stage, inq, out), name=stage.name, daemon=True)
            )
            inq = out
        threads.append(threading.Thread(target=self._output, args=(inq,), name="output", daemon=True))
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
                if on_status is not None and now >= next_status:
                    on_status(self.metrics.status())
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


# -- composition root ----------------------------------------------------------------------------------------

HEADLESS_RECORDING = "realtime_swap_preview.mp4"
HEADLESS_DEMO_SECONDS = 10.0


def default_model_path() -> Path | None:
    """The shipped swap model used when ``--model`` is not given, or None when this checkout has none."""
    path = Path(__file__).resolve().parents[1] / "trained_models" / "demo_swap" / "demo_swap.onnx"
    return path if path.is_file() else None


def _face_stages(cfg: EngineConfig, controls: Controls, notices: list[str]) -> list[Stage]:
    """The detect → swap → blend stages this configuration gets, or [] for pass-through (``--no-swap``).

    Without a model (none given and none shipped) the engine detects and aligns only, says so in ``notices``
    and shows the landmarks.
    """
    if not cfg.faces.swap:
        return []
    from realtime_swap.blend import BlendMode
    from realtime_swap.compose import ComposeStage
    from realtime_swap.detect.blazeface import BlazeFaceModel
    from realtime_swap.detect.stage import DetectStage
    from realtime_swap.detect.tracker import FaceSelection, TrackerOptions
    from realtime_swap.infer.session import ORT_PROVIDER, Backend
    from realtime_swap.swap.model import SwapModel
    from realtime_swap.swap.stage import SwapStage
    from realtime_swap.types import FaceType

    f = cfg.faces
    reference = None
    if FaceSelection(f.selection) is FaceSelection.REFERENCE:
        from realtime_swap.detect.identity import identity_available, load_reference

        ok, why = identity_available()
        if not ok:
            raise ConfigError(f"--select reference: {why}")
        reference = load_reference(f.reference)
        notices.append(
            f"--select reference: {len(reference.names)} reference face(s), checked every {f.reference_every} frames"
        )
    tracking = TrackerOptions(
        detector=BlazeFaceModel(f.detector),
        detect_every=f.detect_every,
        max_faces=f.max_faces,
        selection=FaceSelection(f.selection),
        reference=reference,
        reference_every=f.reference_every,
        # The detectors are ONNX Runtime models: a swap backend outside it (torch, tensorrt) leaves them on auto.
        backend=f.backend if f.backend in ORT_PROVIDER else Backend.AUTO,
    )
    path = f.model or default_model_path()
    if path is None and f.extra_models:
        raise ConfigError("more swap models given but no first one (--model)")
    if path is None:
        notices.append(
            "no swap model: none is shipped in this checkout and --model was not given; "
            "detecting and aligning faces only (landmarks shown)"
        )
        controls.show_landmarks = True
        return [DetectStage(tracking, f.face_type or FaceType.WHOLE_FACE, 256)]
    models: list[SwapModel] = []
    try:
        for model_path in (path, *f.extra_models):
            models.append(SwapModel.load(model_path, f.backend, face_type=f.face_type, options=f.runtime))
    except BaseException:
        for model in models:
            model.close()
        raise
    notices.extend(f"backend: {note}" for note in models[0].notes)
    controls.model_names = tuple(m.spec.path.stem for m in models)
    if len(models) > 1:
        notices.append(
            f"{len(models)} swap models loaded ({', '.join(controls.model_names)}): Tab / 1-9 in the window switch"
        )
    stages: list[Stage] = [
        DetectStage(
            targets=[(m.face_type, m.resolution) for m in models],
            tracker=tracking,
            mask=f.mask.uses_hull,
            mouth=f.keep_mouth,
        ),
        SwapStage(models, morph=f.morph, mask=f.mask),
        ComposeStage(
            erode_px=f.erode_px,
            blur_px=f.blur_px,
            opacity=f.opacity,
            mode=BlendMode(f.blend),
            sharpen=f.sharpen,
            color_amount=f.color_amount,
            color_time_constant_s=f.color_smoothing_s,
            keep_mouth=f.keep_mouth,
        ),
    ]
    if f.gpu_path != "off":
        from realtime_swap.gpu import gpu_resident_stages

        stages = gpu_resident_stages(stages, f.gpu_path)
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

        sinks.append(WindowSink(controls, color_modes=[m.value for m in ColorMode], screenshot_dir=out.screenshot_dir))
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
    from realtime_swap.sinks.delay import DelaySink
    from realtime_swap.sinks.video_file import VideoFileSink
    from realtime_swap.sources import open_source

    notices: list[str] = []
    controls = Controls(color_mode=cfg.faces.color)
    stages = _face_stages(cfg, controls, notices)
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
        max_frames=cfg.frames,
        duration_s=cfg.duration_s if cfg.duration_s is not None else default_duration,
    )
    return pipeline, notices
