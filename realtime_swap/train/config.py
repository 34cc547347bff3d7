"""Typed, validated configuration of swap models and their training.

``ModelConfig`` fixes an architecture (what a checkpoint must match to be resumed or exported);
``TrainConfig`` holds the recipe (optimiser, losses, augmentation, schedule). Both round-trip through plain
JSON dicts (``to_dict``/``from_dict``), which reject unknown keys. Presets give sensible widths per use:

========  ====  ======  =======  ======  ===========  =====  =======================================
preset    res   e_dims  ae_dims  d_dims  d_mask_dims  batch  use
========  ====  ======  =======  ======  ===========  =====  =======================================
tiny        64       8       32       8            4      4  tests and CPU smoke runs (seconds)
live       160      48      192      48           16      8  real time on a mid-range GPU
quality    224      64      256      64           22      8  offline quality (DeepFaceLab SAEHD widths)
========  ====  ======  =======  ======  ===========  =====  =======================================
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

from realtime_swap.choices import closed_choice
from realtime_swap.errors import ConfigError
from realtime_swap.types import FaceType

MIN_RESOLUTION = 64
MAX_RESOLUTION = 320
RESOLUTION_STEP = 16


class Arch(str, enum.Enum):
    """Autoencoder families of the DeepFaceLab lineage.

    DF: shared encoder + inter, one decoder per identity. LIAE: shared encoder, inter_AB (both identities) and
    inter_B (destination only), one shared decoder.
    """

    DF = "df"
    LIAE = "liae"


class Preset(str, enum.Enum):
    """Width presets; the CLI's ``--preset`` choices."""

    TINY = "tiny"
    LIVE = "live"
    QUALITY = "quality"


class AugmentOn(str, enum.Enum):
    """Where batches are augmented; the CLI's ``--augment-on`` choices. AUTO: on the device when training on
    CUDA with ``workers`` 0 (one CPU core cannot keep a large GPU busy), on the CPU otherwise. CPU: numpy/OpenCV
    in the background (``data.BatchPrefetcher``). DEVICE: torch on the training device (``augment_torch``), the
    facesets uploaded once (the trainer falls back to the CPU when they would take too much GPU memory)."""

    AUTO = "auto"
    CPU = "cpu"
    DEVICE = "device"


class OptimizerKind(str, enum.Enum):
    ADAM = "adam"
    ADAMW = "adamw"


@dataclass(frozen=True, slots=True)
class PresetSpec:
    """Default widths, resolution (px), batch size and learning rate of a preset."""

    resolution: int
    e_dims: int
    ae_dims: int
    d_dims: int
    d_mask_dims: int
    batch_size: int
    lr: float


PRESETS: dict[Preset, PresetSpec] = {
    Preset.TINY: PresetSpec(resolution=64, e_dims=8, ae_dims=32, d_dims=8, d_mask_dims=4, batch_size=4, lr=5e-4),
    Preset.LIVE: PresetSpec(resolution=160, e_dims=48, ae_dims=192, d_dims=48, d_mask_dims=16, batch_size=8, lr=1e-4),
    Preset.QUALITY: PresetSpec(
        resolution=224, e_dims=64, ae_dims=256, d_dims=64, d_mask_dims=22, batch_size=8, lr=5e-5
    ),
}


def check_resolution(resolution: int) -> int:
    """Validate a model resolution: 64..320 px in steps of 16. Raises ConfigError."""
    if (
        isinstance(resolution, bool)
        or not isinstance(resolution, int)
        or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION
        or resolution % RESOLUTION_STEP
    ):
        raise ConfigError(
            f"resolution must be {MIN_RESOLUTION}..{MAX_RESOLUTION} px in steps of {RESOLUTION_STEP}, "
            f"got {resolution!r}"
        )
    return resolution


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """The architecture of a swap model.

    resolution: S px of the square BGR crops in and out. e_dims: encoder base width (the four downscales have
    e, 2e, 4e, 8e channels). ae_dims: bottleneck (dense) width. d_dims / d_mask_dims: decoder base widths of the
    face and mask branches (8d, 4d, 2d channels). face_type: the crops' template, carried into exports.
    """

    arch: Arch
    resolution: int
    e_dims: int
    ae_dims: int
    d_dims: int
    d_mask_dims: int
    face_type: FaceType = FaceType.WHOLE_FACE
    preset: str = "custom"

    def __post_init__(self) -> None:
        object.__setattr__(self, "arch", Arch(self.arch))
        object.__setattr__(self, "face_type", FaceType(self.face_type))
        check_resolution(self.resolution)
        for name in ("e_dims", "ae_dims", "d_dims", "d_mask_dims"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
                raise ConfigError(f"{name} must be an integer in 1..1024, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch.value,
            "resolution": self.resolution,
            "e_dims": self.e_dims,
            "ae_dims": self.ae_dims,
            "d_dims": self.d_dims,
            "d_mask_dims": self.d_mask_dims,
            "face_type": self.face_type.value,
            "preset": self.preset,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelConfig:
        return _from_dict(cls, raw, "model config")

    def differences(self, other: ModelConfig) -> list[str]:
        """'field: mine != other' for every architecture field that differs (the preset name is ignored)."""
        out = []
        for key, mine in self.to_dict().items():
            theirs = other.to_dict()[key]
            if key != "preset" and mine != theirs:
                out.append(f"{key} {theirs} != {mine}")
        return out


def model_config_for(
    arch: Arch,
    preset: Preset,
    resolution: int | None = None,
    face_type: FaceType = FaceType.WHOLE_FACE,
) -> ModelConfig:
    """The ModelConfig of a preset, at the preset's resolution unless one is given."""
    spec = PRESETS[Preset(preset)]
    return ModelConfig(
        arch=Arch(arch),
        resolution=spec.resolution if resolution is None else resolution,
        e_dims=spec.e_dims,
        ae_dims=spec.ae_dims,
        d_dims=spec.d_dims,
        d_mask_dims=spec.d_mask_dims,
        face_type=face_type,
        preset=Preset(preset).value,
    )


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """The training recipe.

    iterations: total target (a resumed run trains until the counter reaches it). lr: learning rate.
    device: "cpu", "cuda", "cuda:N" or "auto". amp: mixed precision (CUDA only; ignored on the CPU): bf16 on GPUs
    that have it (Ampere and newer), else fp16 with a gradient scaler. channels_last: NHWC memory order for the
    convolutions (None: on CUDA, where cuDNN's fast half-precision kernels want it). workers: processes that
    augment batches (0: one background thread; a fast GPU trains faster than one core augments). augment_on:
    where batches are augmented (``AugmentOn``; the batches differ between CPU and device, the checkpoint does not
    depend on it: a run may resume with the other choice).
    preview_every / save_every / log_every: iterations between preview PNGs, checkpoints, CSV rows.
    random_warp / flip: DeepFaceLab-style augmentation. color_transfer: probability of recolouring a source
    sample towards a random destination sample (Reinhard LAB). Loss weights: dssim / mse on the (masked)
    face, eyes_mouth (L1 inside the eyes and mouth, needs landmarks), mask (MSE of the learned mask).
    gan_power: weight of the patch-GAN loss (0 = off), switched on at iteration gan_start. grad_clip: max
    gradient norm of the autoencoder (0 = off).
    """

    iterations: int = 1000
    batch_size: int = 4
    lr: float = 5e-5
    optimizer: OptimizerKind = OptimizerKind.ADAM
    weight_decay: float = 0.0
    device: str = "auto"
    amp: bool = True
    channels_last: bool | None = None
    workers: int = 0
    augment_on: AugmentOn = AugmentOn.AUTO
    seed: int = 0
    preview_every: int = 100
    save_every: int = 500
    log_every: int = 10
    random_warp: bool = True
    flip: bool = False
    color_transfer: float = 0.5
    masked_training: bool = True
    dssim_weight: float = 10.0
    mse_weight: float = 10.0
    eyes_mouth_weight: float = 300.0
    mask_weight: float = 10.0
    gan_power: float = 0.0
    gan_start: int = 0
    grad_clip: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "optimizer", OptimizerKind(self.optimizer))
        object.__setattr__(self, "augment_on", closed_choice(AugmentOn, self.augment_on, "--augment-on"))
        positive_ints = ("iterations", "batch_size", "preview_every", "save_every", "log_every")
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.color_transfer <= 1.0:
            raise ConfigError(f"color_transfer is a probability in [0, 1], got {self.color_transfer}")
        for name in ("weight_decay", "dssim_weight", "mse_weight", "eyes_mouth_weight", "mask_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ConfigError(f"workers must be an integer >= 0, got {self.workers!r}")
        if self.gan_power < 0 or self.gan_start < 0 or self.grad_clip < 0:
            raise ConfigError("gan_power, gan_start and grad_clip must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["optimizer"] = self.optimizer.value
        out["augment_on"] = self.augment_on.value
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        return _from_dict(cls, raw, "train config")


def _from_dict(cls: Any, raw: dict[str, Any], what: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{what}: expected an object, got {type(raw).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise ConfigError(f"{what}: unknown keys {sorted(unknown)}")
    try:
        return cls(**raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what}: {exc}") from exc
