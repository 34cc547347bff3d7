"""What ``bench`` measures: the configurations (resolution, faces, model, backend ...) and which model each runs."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from realtime_swap.color.modes import ColorMode
from realtime_swap.config import closed_choice
from realtime_swap.detect.engine import DetectBackend
from realtime_swap.errors import ConfigError
from realtime_swap.gpu import GpuPath
from realtime_swap.handoff import DropPolicy
from realtime_swap.infer.session import Backend
from realtime_swap.pipeline import default_model_path
from realtime_swap.swap.backends import BackendOptions

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
        """The backend options of the sequential baseline (see the package docstring, realtime_swap.bench)."""
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
    detect_backend: DetectBackend = DetectBackend.AUTO
    gpu_path: GpuPath | None = None
    color: ColorMode = ColorMode.RCT
    detect_every: int = 5
    queue_size: int = 2
    rounds: int = 1
    inference_iters: int = 30
    paced_fps: float | None = None
    drop_policy: DropPolicy = DropPolicy.LATEST
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
        if self.gpu_path is not None:
            object.__setattr__(self, "gpu_path", closed_choice(GpuPath, self.gpu_path, "bench: --gpu-path"))
        object.__setattr__(self, "color", closed_choice(ColorMode, self.color, "bench: --color"))
        object.__setattr__(
            self, "detect_backend", closed_choice(DetectBackend, self.detect_backend, "bench: --detect-backend")
        )


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
