"""The command line: ``realtime-swap`` and ``python run_live.py`` share this one CLI.

Only this module turns errors into exit codes: 0 done, 1 an error (one line on stderr; ``--debug`` for the
traceback), 2 bad usage, 130 stopped by Ctrl-C, 143 stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from realtime_swap import __version__
from realtime_swap.config import EngineConfig
from realtime_swap.errors import RealtimeSwapError
from realtime_swap.handoff import DropPolicy

if TYPE_CHECKING:
    from realtime_swap.swap.backends import BackendOptions

log = logging.getLogger("realtime_swap")

# Subcommands provided by other modules: each exposes ``register(subparsers)`` (see the module docstrings).
COMMAND_MODULES: tuple[str, ...] = (
    "realtime_swap.train.extract_command",
    "realtime_swap.train.command",
    "realtime_swap.train.make_model",
    "export.command",
    "realtime_swap.bench.command",
    "realtime_swap.quality.command",
    "realtime_swap.serve.command",
)
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPT, EXIT_SIGTERM = 0, 1, 2, 130, 143


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an int >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a float > 0."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    """Source options, shared by ``live`` and the commands that read frames."""
    g = p.add_argument_group("source")
    g.add_argument(
        "--source",
        "-s",
        default="demo",
        help="demo (default, built in), a camera index (0) or device (/dev/video0), a video file, an image or "
        "image folder, or a URL (rtsp/rtmp/http(s)/udp/srt/tcp)",
    )
    g.add_argument("--width", type=positive_int, help="requested width in px (camera, demo)")
    g.add_argument("--height", type=positive_int, help="requested height in px (camera, demo)")
    g.add_argument("--fps", type=positive_float, help="requested frame rate (camera, demo, images)")
    g.add_argument(
        "--realtime",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="pace frames on their timestamps (default: on for demo/images, off for files: as fast as possible)",
    )
    g.add_argument("--loop", action="store_true", help="restart a video file at its end")
    g.add_argument(
        "--reconnect",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="reopen a camera or network stream that drops, errors or stalls, with back-off, while the outputs "
        "repeat the last frame with a notice (default: on for cameras and streams)",
    )
    g.add_argument(
        "--stall-timeout",
        type=positive_float,
        default=5.0,
        metavar="S",
        help="no frame from a camera or stream for S seconds counts as a drop (default 5)",
    )
    g.add_argument(
        "--reconnect-timeout",
        type=positive_float,
        metavar="S",
        help="give up (exit 1) when a lost source is not back within S seconds (default: keep trying)",
    )
    g.add_argument("--demo-faces", type=positive_int, default=1, help="faces in the demo source (default 1)")


def add_inference_arguments(p: argparse.ArgumentParser) -> None:
    """The swap model's execution engine (``--backend`` and its options), shared by ``live`` and ``bench``."""
    from realtime_swap.detect.engine import DetectBackend
    from realtime_swap.gpu import GpuPath
    from realtime_swap.infer.runner import Precision
    from realtime_swap.infer.session import Backend
    from realtime_swap.infer.tensorrt_build import DEFAULT_MAX_BATCH

    g = p.add_argument_group("inference")
    g.add_argument(
        "--backend",
        choices=[b.value for b in Backend],
        default=Backend.AUTO.value,
        help="execution engine of the swap model (auto: the fastest this machine has; the log says why others "
        "were passed over)",
    )
    g.add_argument(
        "--detect-backend",
        choices=[b.value for b in DetectBackend],
        default=DetectBackend.AUTO.value,
        help="engine of the face detector and landmarker (auto: torch on the GPU when the swap model runs on "
        "torch there, else ONNX Runtime on the swap model's provider; torch: the swap's torch device or the CPU)",
    )
    g.add_argument(
        "--precision",
        choices=[m.value for m in Precision],
        help="arithmetic of tensorrt (fp16/fp32) and torch on CUDA (fp16/bf16/fp32); default: fp16 on the GPU "
        "backends, fp32 on the CPU; ort-trt always builds fp16, ort-cpu/ort-cuda run the model's own precision",
    )
    g.add_argument(
        "--gpu-path",
        choices=[m.value for m in GpuPath],
        help="run swap + colour + composite as one torch stage on this device, the frame uploaded once (by the "
        "detect stage, whose models read it there when they run on torch) and downloaded once (cuda: CUDA, needs "
        "a backend on CUDA; auto: CUDA when the swap model runs there, else the CPU stages with a notice; cpu: "
        "the same torch code on the host; off: the CPU stages); default: on for a swap model on torch on CUDA, else "
        "off",
    )
    g.add_argument("--torch-compile", action="store_true", help="backend torch: wrap the model in torch.compile")
    g.add_argument(
        "--cuda-graph",
        action="store_true",
        help="backends ort-cuda / ort-trt / torch on CUDA: capture a CUDA graph per batch size and replay it",
    )
    g.add_argument(
        "--cpu-threads",
        type=positive_int,
        help="ONNX Runtime intra-op threads of the swap model (default: one per usable core)",
    )
    g.add_argument(
        "--max-batch",
        type=positive_int,
        default=DEFAULT_MAX_BATCH,
        help=f"backend tensorrt: the most faces per engine call it is built for (default {DEFAULT_MAX_BATCH})",
    )
    g.add_argument(
        "--engine-cache",
        type=Path,
        help="folder for TensorRT engines and timing caches (default: $REALTIME_SWAP_CACHE or ~/.cache/realtime_swap)",
    )


def backend_options_from_args(args: argparse.Namespace) -> BackendOptions:
    """The BackendOptions of :func:`add_inference_arguments`' options."""
    from realtime_swap.infer.runner import Precision
    from realtime_swap.swap.backends import BackendOptions

    return BackendOptions(
        precision=Precision(args.precision) if args.precision else None,
        torch_compile=args.torch_compile,
        cuda_graph=args.cuda_graph,
        cpu_threads=args.cpu_threads,
        max_batch=args.max_batch,
        cache_dir=args.engine_cache,
    )


def _add_live_arguments(p: argparse.ArgumentParser) -> None:
    from realtime_swap.blend import BlendMode
    from realtime_swap.color import ColorMode
    from realtime_swap.detect.blazeface import BlazeFaceModel
    from realtime_swap.detect.tracker import FaceSelection
    from realtime_swap.sinks.stream_url import StreamEncoder
    from realtime_swap.swap.model import FaceMask
    from realtime_swap.types import FaceType

    add_source_arguments(p)
    f = p.add_argument_group("faces")
    f.add_argument("--no-swap", action="store_true", help="pass-through: capture → output with metrics only")
    f.add_argument(
        "--model",
        type=Path,
        action="append",
        help="swap model (.onnx or DeepFaceLive .dfm; default: the shipped one); repeat to load several and switch "
        "between them with Tab / 1-9 in the window",
    )
    f.add_argument(
        "--models-dir",
        type=Path,
        metavar="DIR",
        help="folder searched first for the shipped models (mediapipe/, demo_swap/); then $REALTIME_SWAP_MODELS, "
        "the installed package's data, the checkout's trained_models/",
    )
    f.add_argument("--face-type", choices=[t.value for t in FaceType], help="override the model's face type")
    f.add_argument("--morph", type=float, help="DFM morph factor in [0, 1] (models with morph_value:0)")
    f.add_argument(
        "--detector",
        choices=[m.value for m in BlazeFaceModel],
        default=BlazeFaceModel.SHORT_RANGE.value,
        help="BlazeFace short range (webcam distance, default) or full range (further, groups)",
    )
    f.add_argument(
        "--select",
        choices=[m.value for m in FaceSelection],
        default=FaceSelection.LARGEST.value,
        help="which faces to swap when there are more than --max-faces (reference: only the person of "
        "--reference, the others left untouched)",
    )
    f.add_argument(
        "--reference",
        type=Path,
        action="append",
        metavar="PHOTO",
        help="--select reference: a photo (its largest face), image folder or faceset of the person to swap; "
        'repeatable (needs the identity extra: pip install -e ".[identity]")',
    )
    f.add_argument(
        "--reference-every",
        type=positive_int,
        default=30,
        help="--select reference: check a tracked face's identity every N frames, and when its track starts "
        "(one check costs ~100 ms of CPU; default 30)",
    )
    f.add_argument("--max-faces", type=positive_int, default=1, help="faces swapped per frame (default 1)")
    f.add_argument("--detect-every", type=positive_int, default=5, help="full detection every N frames")
    add_inference_arguments(p)
    c = p.add_argument_group("colour and blend")
    c.add_argument(
        "--color",
        choices=[m.value for m in ColorMode],
        default=ColorMode.RCT.value,
        help="colour transfer of the swapped face towards the frame (default rct)",
    )
    c.add_argument("--color-amount", type=float, default=1.0, help="strength of the colour transfer in [0, 1]")
    c.add_argument("--blend", choices=[m.value for m in BlendMode], default=BlendMode.ALPHA.value)
    c.add_argument("--erode", type=int, default=0, help="shrink (+) or grow (-) the mask, crop px")
    c.add_argument("--blur", type=int, default=8, help="feather width of the mask edge, crop px")
    c.add_argument("--opacity", type=float, default=1.0, help="opacity of the swapped face in [0, 1]")
    c.add_argument("--sharpen", type=float, default=0.0, help="unsharp-mask amount on the swapped face")
    c.add_argument("--keep-mouth", action="store_true", help="keep the frame's own mouth interior (occlusions)")
    c.add_argument(
        "--mask",
        choices=[m.value for m in FaceMask],
        default=FaceMask.CELEB.value,
        help="the model's mask bounding the paste: celeb (the swapped face's, default), frame (the frame face's), "
        "both (their product: DeepFaceLive's default), mesh (none: the landmark mask alone); each times the "
        "landmark hull, but dfl (both, without the hull: DeepFaceLive's paste exactly)",
    )
    c.add_argument(
        "--color-smoothing",
        type=float,
        default=0.25,
        help="time constant (s) smoothing the colour statistics over frames; 0 disables",
    )
    o = p.add_argument_group("outputs")
    o.add_argument(
        "--preview",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show the preview window (default: when a display exists)",
    )
    o.add_argument("--record", type=Path, help="record to a video file (.mp4, .mkv, .mov)")
    o.add_argument("--record-crf", type=int, default=20, help="x264 quality for --record (0..51, default 20)")
    o.add_argument("--record-preset", default="veryfast", help="x264 preset for --record (default veryfast)")
    o.add_argument("--null", action="store_true", help="discard frames (measure only)")
    o.add_argument(
        "--vcam",
        nargs="?",
        const="auto",
        metavar="DEVICE",
        help="send the output to a virtual camera for call apps (v4l2loopback on Linux, OBS Virtual Camera on "
        "Windows/macOS); DEVICE: /dev/videoN, a loopback card label or a camera name (default: the first one)",
    )
    o.add_argument("--vcam-fps", type=positive_float, help="virtual camera frame rate (default: the source's)")
    o.add_argument("--vcam-backend", help="pyvirtualcam backend: v4l2loopback, obs, unitycapture (default: any)")
    o.add_argument(
        "--v4l2",
        metavar="DEVICE",
        help="Linux: write straight into a v4l2loopback device (/dev/videoN or card label) through FFmpeg, "
        "without pyvirtualcam",
    )
    o.add_argument(
        "--stream",
        action="append",
        default=[],
        metavar="URL",
        help="stream the output with low-latency H.264 (repeatable): rtmp://host/app/key, rtsp://host:port/path "
        "(push to a server), srt://host:port, udp://host:port or tcp://host:port (MPEG-TS); reconnects on drops",
    )
    o.add_argument(
        "--stream-encoder",
        choices=[e.value for e in StreamEncoder],
        default=StreamEncoder.AUTO.value,
        help="H.264 encoder for streams (auto: h264_nvenc when it works here, else libx264)",
    )
    o.add_argument(
        "--stream-bitrate",
        type=positive_int,
        metavar="KBPS",
        help="stream bitrate cap in kbit/s (default: 0.1 bit per pixel per frame, 720p30 ≈ 2800)",
    )
    o.add_argument(
        "--stream-gop", type=positive_float, default=1.0, metavar="S", help="seconds between keyframes (default 1)"
    )
    o.add_argument("--stream-preset", default="veryfast", help="x264 preset for streams (default veryfast)")
    o.add_argument(
        "--delay",
        type=float,
        default=0.0,
        metavar="MS",
        help="hold every output to a constant capture-to-output latency of MS milliseconds, so a microphone "
        "delayed by the same amount stays in sync (default 0: off)",
    )
    o.add_argument(
        "--screenshots",
        type=Path,
        default=Path("screenshots"),
        metavar="DIR",
        help="folder for the preview window's screenshot key p (default ./screenshots)",
    )
    r = p.add_argument_group("run")
    r.add_argument("--frames", type=positive_int, help="stop after this many frames")
    r.add_argument("--duration", type=positive_float, help="stop after this many seconds")
    r.add_argument("--queue-size", type=positive_int, default=2, help="bound of each FIFO queue between stages (files)")
    r.add_argument(
        "--drop-policy",
        choices=[p.value for p in DropPolicy],
        help="when the engine is behind: latest (newest frame wins at every hand-off: bounded latency; default "
        "for live sources), capture (newest wins at capture only, FIFO queues after), block (drop nothing; "
        "default for files)",
    )
    r.add_argument("--metrics-json", type=Path, help="write the end-of-run metrics to this JSON file")
    r.add_argument("--quiet", "-q", action="store_true", help="no live status line")


def _config_from_args(args: argparse.Namespace) -> EngineConfig:
    from realtime_swap.blend import BlendMode
    from realtime_swap.color import ColorMode
    from realtime_swap.config import FaceSpec, OutputSpec
    from realtime_swap.detect.blazeface import BlazeFaceModel
    from realtime_swap.detect.engine import DetectBackend
    from realtime_swap.detect.tracker import FaceSelection
    from realtime_swap.gpu import GpuPath
    from realtime_swap.infer.session import Backend
    from realtime_swap.sinks.stream_url import StreamEncoder
    from realtime_swap.sources import SourceSpec
    from realtime_swap.swap.model import FaceMask
    from realtime_swap.types import FaceType

    return EngineConfig(
        source=SourceSpec(
            spec=args.source,
            width=args.width,
            height=args.height,
            fps=args.fps,
            realtime=args.realtime,
            loop=args.loop,
            demo_faces=args.demo_faces,
            reconnect=args.reconnect,
            stall_timeout_s=args.stall_timeout,
            reconnect_timeout_s=args.reconnect_timeout,
        ),
        faces=FaceSpec(
            swap=not args.no_swap,
            model=args.model[0] if args.model else None,
            extra_models=tuple(args.model[1:]) if args.model else (),
            models_dir=args.models_dir,
            backend=Backend(args.backend),
            detect_backend=DetectBackend(args.detect_backend),
            face_type=FaceType(args.face_type) if args.face_type else None,
            detector=BlazeFaceModel(args.detector),
            selection=FaceSelection(args.select),
            max_faces=args.max_faces,
            detect_every=args.detect_every,
            reference=tuple(args.reference or ()),
            reference_every=args.reference_every,
            color=ColorMode(args.color),
            color_amount=args.color_amount,
            color_smoothing_s=args.color_smoothing,
            blend=BlendMode(args.blend),
            erode_px=args.erode,
            blur_px=args.blur,
            opacity=args.opacity,
            sharpen=args.sharpen,
            keep_mouth=args.keep_mouth,
            morph=args.morph,
            mask=FaceMask(args.mask),
            gpu_path=GpuPath(args.gpu_path) if args.gpu_path else None,
            runtime=backend_options_from_args(args),
        ),
        outputs=OutputSpec(
            preview=args.preview,
            record=args.record,
            null=args.null,
            record_crf=args.record_crf,
            record_preset=args.record_preset,
            vcam=args.vcam,
            vcam_fps=args.vcam_fps,
            vcam_backend=args.vcam_backend,
            v4l2=args.v4l2,
            streams=tuple(args.stream),
            stream_encoder=StreamEncoder(args.stream_encoder),
            stream_bitrate_kbps=args.stream_bitrate,
            stream_gop_s=args.stream_gop,
            stream_preset=args.stream_preset,
            delay_ms=args.delay,
            screenshot_dir=args.screenshots,
        ),
        frames=args.frames,
        duration_s=args.duration,
        queue_size=args.queue_size,
        drop_policy=DropPolicy(args.drop_policy) if args.drop_policy else None,
    )


class _StatusPrinter:
    """The live one-line status: rewritten in place on a terminal, a line every 5 s otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._last = 0.0
        self._shown = False

    def __call__(self, status: dict[str, float | str]) -> None:
        from realtime_swap.metrics import status_line

        if self.quiet:
            return
        line = status_line(status)
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
            self._shown = True
        elif time.monotonic() - self._last >= 5.0:
            self._last = time.monotonic()
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def finish(self) -> None:
        if self._shown:
            sys.stderr.write("\n")


def run_live(args: argparse.Namespace) -> int:
    """The ``live`` command: build the engine from the arguments, run it, print the summary."""
    from realtime_swap.pipeline import build_pipeline

    pipeline, notices = build_pipeline(_config_from_args(args))
    for notice in notices:
        print(f"note: {notice}", file=sys.stderr)
    info = pipeline.source.info
    print(
        f"source: {info.name} {info.width}x{info.height} @ {info.fps:.1f} fps; outputs: "
        f"{', '.join(s.name for s in pipeline.sinks)}; stages: "
        f"{' → '.join(['capture', *[s.name for s in pipeline.stages], 'output'])}",
        file=sys.stderr,
    )

    def on_interrupt(signum: int, _frame: object) -> None:
        if pipeline.stopping:  # a second Ctrl-C: stop waiting for the frames in flight
            raise KeyboardInterrupt
        pipeline.stop("interrupt" if signum == signal.SIGINT else "sigterm")

    # Installed explicitly: a process started in the background inherits SIGINT as ignored.
    previous = {sig: signal.signal(sig, on_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    status = _StatusPrinter(args.quiet)
    try:
        report = pipeline.run(on_status=status)
    finally:
        status.finish()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(report.table(), file=sys.stderr)
    if args.metrics_json:
        from realtime_swap.swap.stage import swap_model_details

        report.extra["swap_models"] = swap_model_details(pipeline.stages)
        report.write_json(args.metrics_json)
    return {"interrupt": EXIT_INTERRUPT, "sigterm": EXIT_SIGTERM}.get(report.stopped_by, EXIT_OK)


def build_parser() -> tuple[argparse.ArgumentParser, set[str]]:
    """The parser and the names of its subcommands."""
    parser = argparse.ArgumentParser(
        prog="realtime-swap",
        description="Real-time streaming face swap. With no command, runs the live demo.",
    )
    parser.add_argument("--version", action="version", version=f"realtime_swap {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    live = sub.add_parser("live", help="run the live engine (default)")
    _add_live_arguments(live)
    live.set_defaults(func=run_live)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser, set(sub.choices)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = build_parser()
    globals_only = {"--debug"}
    first = next((a for a in argv if a not in globals_only), None)
    if first is None or (first not in commands and first not in ("-h", "--help", "--version")):
        argv.insert(len([a for a in argv if a in globals_only]), "live")  # no command: the live demo
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except RealtimeSwapError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPT


if __name__ == "__main__":
    raise SystemExit(main())
