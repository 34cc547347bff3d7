"""Typed, validated configuration of a live run. The CLI builds one; ``pipeline.build_pipeline`` consumes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from realtime_swap.blend import BlendMode
from realtime_swap.choices import closed_choice
from realtime_swap.color.modes import ColorMode
from realtime_swap.detect.blazeface import BlazeFaceModel
from realtime_swap.detect.engine import DetectBackend
from realtime_swap.detect.tracker import FaceSelection
from realtime_swap.errors import ConfigError, SinkError
from realtime_swap.gpu import GpuPath
from realtime_swap.handoff import DropPolicy
from realtime_swap.infer.session import Backend
from realtime_swap.sinks.stream_url import StreamEncoder, parse_stream_url
from realtime_swap.sources import SourceSpec
from realtime_swap.swap.backends import BackendOptions
from realtime_swap.swap.model import FaceMask
from realtime_swap.types import FaceType


@dataclass(frozen=True)
class OutputSpec:
    """Where frames go. preview: a window (None: when a display exists); record: a video file; null: discard
    (metrics only). vcam: a virtual camera ("auto": the first one, else a device path/label/camera name) at
    vcam_fps (None: the source's) through pyvirtualcam's vcam_backend (None: any); v4l2: a v4l2loopback device
    written directly (Linux); streams: network stream URLs (rtmp, rtsp, srt, udp, tcp) with the stream_* encoder
    settings; delay_ms: hold every output to this constant capture-to-output latency (0: off);
    screenshot_dir: where the window's screenshot key saves PNGs."""

    preview: bool | None = None
    record: Path | None = None
    null: bool = False
    record_crf: int = 20
    record_preset: str = "veryfast"
    vcam: str | None = None
    vcam_fps: float | None = None
    vcam_backend: str | None = None
    v4l2: str | None = None
    streams: tuple[str, ...] = ()
    stream_encoder: StreamEncoder = StreamEncoder.AUTO
    stream_bitrate_kbps: int | None = None
    stream_gop_s: float = 1.0
    stream_preset: str = "veryfast"
    delay_ms: float = 0.0
    screenshot_dir: Path = Path("screenshots")

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "stream_encoder", closed_choice(StreamEncoder, self.stream_encoder, "--stream-encoder")
        )
        if not 0 <= self.record_crf <= 51:
            raise ConfigError(f"--record-crf must be in 0..51, got {self.record_crf}")
        if self.vcam_fps is not None and self.vcam_fps <= 0:
            raise ConfigError(f"--vcam-fps must be > 0, got {self.vcam_fps}")
        if self.stream_bitrate_kbps is not None and self.stream_bitrate_kbps <= 0:
            raise ConfigError(f"--stream-bitrate must be > 0, got {self.stream_bitrate_kbps}")
        if self.stream_gop_s <= 0:
            raise ConfigError(f"--stream-gop must be > 0, got {self.stream_gop_s}")
        if not 0 <= self.delay_ms <= 5000:
            raise ConfigError(f"--delay must be in 0..5000 ms, got {self.delay_ms:g}")
        for url in self.streams:
            try:
                parse_stream_url(url)
            except SinkError as exc:
                raise ConfigError(f"--stream: {exc}") from None


@dataclass(frozen=True)
class FaceSpec:
    """The face stages. swap: False is the pass-through mode (capture → output); model: a swap model (ONNX
    or DFM; None: the shipped default); extra_models: more models to switch to while running (model_index 1..);
    detect_backend: where the detector and landmarker run (``DetectBackend``: auto follows the swap model's
    engine); face_type: override what the model says; detector/selection/max_faces/
    detect_every: how faces are found and followed; reference/reference_every: the photos, image folders
    or facesets of the person ``selection="reference"`` swaps, how often (frames) a face's identity is checked;
    color/color_amount: colour transfer; blend, erode_px,
    blur_px (crop px), opacity, sharpen, keep_mouth: how the face is pasted back; color_smoothing_s: time
    constant of the colour statistics' smoothing; morph: DFM morph factor (None: the model's); mask: which learned
    mask(s) bound the paste (``FaceMask``); gpu_path: run swap + colour + composite as one torch stage on a device
    (``GpuPath``; None, the default: ``auto`` for a swap model on torch, quietly, else ``off``); runtime: how the
    backend runs the swap model (precision, torch.compile, CUDA graphs, CPU threads, TensorRT batch and caches);
    models_dir: a folder searched first for the shipped models (``realtime_swap.model_files``; None: the rest).
    Closed sets (detector, detect_backend, selection, color, blend, mask, gpu_path) are their enums; a value is
    converted and checked here, once."""

    swap: bool = True
    model: Path | None = None
    extra_models: tuple[Path, ...] = ()
    models_dir: Path | None = None
    backend: Backend = Backend.AUTO
    detect_backend: DetectBackend = DetectBackend.AUTO
    face_type: FaceType | None = None
    detector: BlazeFaceModel = BlazeFaceModel.SHORT_RANGE
    selection: FaceSelection = FaceSelection.LARGEST
    max_faces: int = 1
    detect_every: int = 5
    reference: tuple[Path, ...] = ()
    reference_every: int = 30
    color: ColorMode = ColorMode.RCT
    color_amount: float = 1.0
    blend: BlendMode = BlendMode.ALPHA
    erode_px: int = 0
    blur_px: int = 8
    opacity: float = 1.0
    sharpen: float = 0.0
    keep_mouth: bool = False
    color_smoothing_s: float = 0.25
    morph: float | None = None
    mask: FaceMask = FaceMask.CELEB
    gpu_path: GpuPath | None = None
    runtime: BackendOptions = field(default_factory=BackendOptions)

    def __post_init__(self) -> None:
        for name, kind, option in (
            ("detector", BlazeFaceModel, "--detector"),
            ("selection", FaceSelection, "--select"),
            ("color", ColorMode, "--color"),
            ("blend", BlendMode, "--blend"),
            ("mask", FaceMask, "--mask"),
            ("detect_backend", DetectBackend, "--detect-backend"),
        ):
            object.__setattr__(self, name, closed_choice(kind, getattr(self, name), option))
        if self.gpu_path is not None:
            object.__setattr__(self, "gpu_path", closed_choice(GpuPath, self.gpu_path, "--gpu-path"))
        if self.max_faces < 1:
            raise ConfigError(f"--max-faces must be >= 1, got {self.max_faces}")
        if self.detect_every < 1:
            raise ConfigError(f"--detect-every must be >= 1, got {self.detect_every}")
        if self.reference_every < 1:
            raise ConfigError(f"--reference-every must be >= 1, got {self.reference_every}")
        if self.selection == "reference" and not self.reference:
            raise ConfigError("--select reference needs --reference PHOTO (a photo, image folder or faceset)")
        for name, value in (("--color-amount", self.color_amount), ("--opacity", self.opacity)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")
        if self.color_smoothing_s < 0:
            raise ConfigError(f"--color-smoothing must be >= 0 s, got {self.color_smoothing_s}")
        if self.morph is not None and not 0.0 <= self.morph <= 1.0:
            raise ConfigError(f"--morph must be in [0, 1], got {self.morph}")


@dataclass(frozen=True)
class EngineConfig:
    """A whole live run. frames/duration_s: stop after that many frames / seconds (None: until the source
    ends or the user stops); queue_size: bound of every FIFO queue between stages; drop_policy: where frames go
    when the engine is behind (None: newest wins at every hand-off for live sources, nothing dropped for files)."""

    source: SourceSpec = field(default_factory=SourceSpec)
    faces: FaceSpec = field(default_factory=FaceSpec)
    outputs: OutputSpec = field(default_factory=OutputSpec)
    frames: int | None = None
    duration_s: float | None = None
    queue_size: int = 2
    drop_policy: DropPolicy | None = None

    def __post_init__(self) -> None:
        if self.frames is not None and self.frames < 1:
            raise ConfigError(f"--frames must be >= 1, got {self.frames}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ConfigError(f"--duration must be > 0, got {self.duration_s}")
        if self.queue_size < 1:
            raise ConfigError(f"--queue-size must be >= 1, got {self.queue_size}")
