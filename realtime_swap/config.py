"""Typed, validated configuration of a live run. The CLI builds one; ``pipeline.build_pipeline`` consumes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from realtime_swap.errors import ConfigError
from realtime_swap.infer.session import Backend
from realtime_swap.sources import SourceSpec
from realtime_swap.types import FaceType


@dataclass(frozen=True)
class OutputSpec:
    """Where frames go. preview: a window (None: when a display exists); record: a video file; null: discard
    (metrics only)."""

    preview: bool | None = None
    record: Path | None = None
    null: bool = False
    record_crf: int = 20
    record_preset: str = "veryfast"

    def __post_init__(self) -> None:
        if not 0 <= self.record_crf <= 51:
            raise ConfigError(f"--record-crf must be in 0..51, got {self.record_crf}")


@dataclass(frozen=True)
class FaceSpec:
    """The face stages. swap: False is the pass-through mode (capture → output); model: a swap model (ONNX
    or DFM; None: the shipped default if there is one); face_type/resolution: override what the model says."""

    swap: bool = True
    model: Path | None = None
    backend: Backend = Backend.AUTO
    face_type: FaceType | None = None
    color: str = "rct"
    max_faces: int = 1
    detect_every: int = 5

    def __post_init__(self) -> None:
        if self.max_faces < 1:
            raise ConfigError(f"--max-faces must be >= 1, got {self.max_faces}")
        if self.detect_every < 1:
            raise ConfigError(f"--detect-every must be >= 1, got {self.detect_every}")


@dataclass(frozen=True)
class EngineConfig:
    """A whole live run. frames/duration_s: stop after that many frames / seconds (None: until the source
    ends or the user stops); queue_size: bound of every queue between stages."""

    source: SourceSpec = field(default_factory=SourceSpec)
    faces: FaceSpec = field(default_factory=FaceSpec)
    outputs: OutputSpec = field(default_factory=OutputSpec)
    frames: int | None = None
    duration_s: float | None = None
    queue_size: int = 2

    def __post_init__(self) -> None:
        if self.frames is not None and self.frames < 1:
            raise ConfigError(f"--frames must be >= 1, got {self.frames}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise ConfigError(f"--duration must be > 0, got {self.duration_s}")
        if self.queue_size < 1:
            raise ConfigError(f"--queue-size must be >= 1, got {self.queue_size}")
