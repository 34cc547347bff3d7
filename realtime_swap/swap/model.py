"""Swap models: loading, signature checks, metadata, and the ``swap`` call every backend serves.

Two kinds of file, one signature (DeepFaceLive's DFM, see its ``modelhub/DFLive/DFMModel.py`` and DeepFaceLab's
``export_dfm``): the tensor names and shapes of :mod:`realtime_swap.swap.dfm_io`.

The product's own exports carry ``metadata_props`` (``producer`` = "realtime_swap", ``resolution``,
``face_type``, ``architecture``, ``preset``, ``recipe``, ``iterations``). DFM files carry no face type:
DeepFaceLive's public models are trained on whole-face crops, so ``FaceType.WHOLE_FACE`` is the default.
Serialized TensorRT engines (.engine/.plan/.trt) are read by the tensorrt backend; their metadata comes from
an ONNX file of the same name next to them when there is one.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from realtime_swap.errors import ConfigError, ModelError
from realtime_swap.infer.runner import ModelRunner, TensorInfo, is_ort_value, is_torch_tensor
from realtime_swap.infer.session import Backend
from realtime_swap.infer.tensorrt_runtime import ENGINE_SUFFIXES
from realtime_swap.swap.dfm_io import DFM_INPUT, DFM_MORPH, OUT_CELEB_FACE, OUT_CELEB_MASK, OUT_FACE_MASK, PRODUCER
from realtime_swap.types import FaceType

log = logging.getLogger(__name__)

DEFAULT_MORPH = 0.75
"""DeepFaceLive's default morph factor (``DFMModel.convert``): 1 = all target identity."""


class FaceMask(str, enum.Enum):
    """Which of a swap model's learned masks bounds the pasted face (DeepFaceLive's FaceMerger "face mask type").

    CELEB: ``out_celeb_face_mask``, the swapped face's own mask (the default); FRAME: ``out_face_mask``, the
    model's mask of the frame's face (DeepFaceLive's "source"); BOTH: their product, DeepFaceLive's default
    (SRC_M_CELEB): the paste covers only where the model sees a face in the frame and in its output; MESH: no learned
    mask (all ones), so the landmark mask alone bounds the paste. The landmark (FaceMesh hull) mask multiplies
    every choice (``realtime_swap.blend.combine_masks``) but DFL: the product of both learned masks alone, without
    the hull, as DeepFaceLive pastes (it has no FaceMesh hull).
    """

    CELEB = "celeb"
    FRAME = "frame"
    BOTH = "both"
    MESH = "mesh"
    DFL = "dfl"

    @property
    def uses_hull(self) -> bool:
        """Whether the landmark hull mask bounds the paste too (every rule but DFL)."""
        return self is not FaceMask.DFL

    @property
    def outputs(self) -> tuple[str, ...]:
        """The model outputs whose product is this mask (empty: all ones)."""
        return {
            FaceMask.CELEB: (OUT_CELEB_MASK,),
            FaceMask.FRAME: (OUT_FACE_MASK,),
            FaceMask.BOTH: (OUT_FACE_MASK, OUT_CELEB_MASK),
            FaceMask.MESH: (),
            FaceMask.DFL: (OUT_FACE_MASK, OUT_CELEB_MASK),
        }[self]


class ModelFormat(str, enum.Enum):
    """Where a swap model comes from: this product's exporter, or any DFM-signature file (DeepFaceLab/Live)."""

    REALTIME_SWAP = "realtime_swap"
    DFM = "dfm"


@dataclass(frozen=True)
class ModelSpec:
    """What a swap model file is: its signature checked, resolution and face type settled.

    resolution: crop side S in px; has_morph: takes ``morph_value:0``; metadata: the file's metadata_props.
    """

    path: Path
    format: ModelFormat
    resolution: int
    face_type: FaceType
    has_morph: bool
    metadata: dict[str, str] = field(default_factory=dict)


def _float(info: TensorInfo) -> bool:
    return info.dtype in ("float32", "float16")


def check_signature(
    label: str, inputs: tuple[TensorInfo, ...], outputs: tuple[TensorInfo, ...]
) -> tuple[int | None, bool]:
    """Check a model's I/O against the DFM signature; return (resolution or None when dynamic, has_morph).

    Raises ModelError naming the first thing that is wrong and what was expected.
    """
    by_name = {i.name: i for i in inputs}
    face = by_name.get(DFM_INPUT)
    if face is None:
        got = ", ".join(f"'{i.name}' {i.shape_text()}" for i in inputs) or "none"
        raise ModelError(f"model {label}: expected input '{DFM_INPUT}' of shape (N,H,W,3), got inputs {got}")
    for extra in inputs:
        if extra.name not in (DFM_INPUT, DFM_MORPH):
            raise ModelError(
                f"model {label}: unexpected input '{extra.name}' {extra.shape_text()} "
                f"(a DFM model takes '{DFM_INPUT}' and optionally '{DFM_MORPH}')"
            )
    shape = face.shape
    expected = f"model {label}: expected input '{DFM_INPUT}' of shape (N,H,W,3), got {face.shape_text()}"
    if len(shape) != 4:
        raise ModelError(f"{expected}: rank {len(shape)}, not 4")
    if shape[3] != 3:
        nchw = shape[1] == 3
        raise ModelError(f"{expected}" + (": NCHW layout, DFM models are NHWC" if nchw else ": 3 channels last"))
    height, width = shape[1], shape[2]
    if isinstance(height, int) and isinstance(width, int) and height != width:
        raise ModelError(f"{expected}: crops must be square")
    if not _float(face):
        raise ModelError(f"model {label}: input '{DFM_INPUT}' is {face.dtype}, expected float32")
    resolution = height if isinstance(height, int) else width if isinstance(width, int) else None
    morph = by_name.get(DFM_MORPH)
    if morph is not None and (len(morph.shape) != 1 or morph.shape[0] not in (1, None) or not _float(morph)):
        raise ModelError(
            f"model {label}: expected input '{DFM_MORPH}' of shape (1,) float32, got {morph.shape_text()} {morph.dtype}"
        )
    outs = {o.name: o for o in outputs}
    for name, channels in ((OUT_FACE_MASK, 1), (OUT_CELEB_FACE, 3), (OUT_CELEB_MASK, 1)):
        out = outs.get(name)
        if out is None:
            have = ", ".join(f"'{o}'" for o in outs) or "none"
            raise ModelError(f"model {label}: missing output '{name}' (N,H,W,{channels}); outputs are {have}")
        o = out.shape
        want = f"model {label}: expected output '{name}' of shape (N,H,W,{channels}), got {out.shape_text()}"
        if len(o) != 4 or o[3] != channels:
            raise ModelError(want)
        if resolution is not None and any(isinstance(d, int) and d != resolution for d in o[1:3]):
            raise ModelError(f"{want}: the input is {resolution} px")
        if not _float(out):
            raise ModelError(f"model {label}: output '{name}' is {out.dtype}, expected float32")
    return resolution, morph is not None


def _face_type(label: str, text: str) -> FaceType:
    try:
        return FaceType(text)
    except ValueError:
        valid = ", ".join(f.value for f in FaceType)
        raise ModelError(f"model {label}: metadata face_type '{text}' is not one of {valid}") from None


def settle_spec(
    path: Path,
    inputs: tuple[TensorInfo, ...],
    outputs: tuple[TensorInfo, ...],
    metadata: dict[str, str],
    *,
    face_type: FaceType | None = None,
    resolution: int | None = None,
) -> ModelSpec:
    """Check the signature and settle resolution and face type: arguments > metadata > input shape > default."""
    label = str(path)
    shape_res, has_morph = check_signature(label, inputs, outputs)
    fmt = ModelFormat.REALTIME_SWAP if metadata.get("producer") == PRODUCER else ModelFormat.DFM
    meta_res: int | None = None
    if "resolution" in metadata:
        try:
            meta_res = int(metadata["resolution"])
        except ValueError:
            raise ModelError(
                f"model {label}: metadata resolution '{metadata['resolution']}' is not an integer"
            ) from None
        if shape_res is not None and meta_res != shape_res:
            raise ModelError(f"model {label}: metadata says {meta_res} px but '{DFM_INPUT}' is {shape_res} px")
    if resolution is not None and shape_res is not None and resolution != shape_res:
        raise ConfigError(f"model {label} takes {shape_res} px crops; resolution {resolution} was asked for")
    settled = resolution or shape_res or meta_res
    if settled is None:
        raise ModelError(f"model {label}: '{DFM_INPUT}' has a dynamic size and no resolution metadata; pass resolution")
    if face_type is None:
        if "face_type" in metadata:
            face_type = _face_type(label, metadata["face_type"])
        else:
            face_type = FaceType.WHOLE_FACE
            if fmt is ModelFormat.REALTIME_SWAP:
                log.warning("model %s has no face_type metadata; assuming %s", label, face_type.value)
    elif "face_type" in metadata and metadata["face_type"] != face_type.value:
        log.warning("model %s: face type %s asked, the model says %s", label, face_type.value, metadata["face_type"])
    return ModelSpec(path, fmt, int(settled), face_type, has_morph, dict(metadata))


def _read_onnx_spec(path: Path) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...], dict[str, str]]:
    from realtime_swap.infer.onnx_info import load_onnx, onnx_io, onnx_metadata

    model = load_onnx(path, weights=False)
    inputs, outputs = onnx_io(model)
    return inputs, outputs, onnx_metadata(model)


def _sidecar_metadata(engine: Path) -> dict[str, str]:
    from realtime_swap.infer.onnx_info import load_onnx, onnx_metadata

    for suffix in (".onnx", ".dfm"):
        candidate = engine.with_suffix(suffix)
        if candidate.is_file():
            return onnx_metadata(load_onnx(candidate, weights=False))
    return {}


class SwapModel:
    """A loaded swap model on one backend. Build with ``SwapModel.load``.

    resolution: crop side S in px; face_type: the crop template it was trained on; backend: the engine actually
    running it; notes: why ``auto`` chose it (one line per backend that was passed over); morph: the default
    morph factor for models with ``morph_value:0``.
    """

    def __init__(self, spec: ModelSpec, runner: ModelRunner, notes: tuple[str, ...] = ()) -> None:
        self.spec = spec
        self.runner = runner
        self.notes = notes
        self.morph = DEFAULT_MORPH

    @classmethod
    def load(
        cls,
        path: str | Path,
        backend: Backend = Backend.AUTO,
        face_type: FaceType | None = None,
        *,
        resolution: int | None = None,
        options: Any = None,
    ) -> SwapModel:
        """Load and check a swap model (.onnx, .dfm, or a TensorRT engine), on ``backend``.

        face_type / resolution override what the file says (resolution only where its input size is dynamic).
        options: ``realtime_swap.swap.backends.BackendOptions`` (precision, torch.compile, CUDA graphs, ...).
        Raises ModelError for a missing file or a wrong signature (naming what is wrong) and ConfigError for an
        unavailable backend (saying why).
        """
        from realtime_swap.swap.backends import BackendOptions, open_runner

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model not found: {path}")
        opts = options if options is not None else BackendOptions()
        is_engine = path.suffix.lower() in ENGINE_SUFFIXES
        if is_engine:
            runner, notes = open_runner(path, backend, opts, engine_file=True)
            metadata = _sidecar_metadata(path)
            try:
                spec = settle_spec(
                    path, runner.inputs, runner.outputs, metadata, face_type=face_type, resolution=resolution
                )
            except Exception:
                runner.close()
                raise
        else:
            inputs, outputs, metadata = _read_onnx_spec(path)
            spec = settle_spec(path, inputs, outputs, metadata, face_type=face_type, resolution=resolution)
            runner, notes = open_runner(path, backend, opts, engine_file=False)
        model = cls(spec, runner, notes)
        log.debug(
            "swap model %s: %s, %d px %s%s on %s (%s)",
            path.name,
            spec.format.value,
            spec.resolution,
            spec.face_type.value,
            ", morph" if spec.has_morph else "",
            runner.backend.value,
            runner.device,
        )
        return model

    @property
    def resolution(self) -> int:
        return self.spec.resolution

    @property
    def face_type(self) -> FaceType:
        return self.spec.face_type

    @property
    def backend(self) -> Backend:
        return self.runner.backend

    @property
    def has_morph(self) -> bool:
        return self.spec.has_morph

    def _morph_feed(self, morph: float | None) -> dict[str, np.ndarray]:
        if not self.spec.has_morph:
            if morph is not None:
                raise ConfigError(f"model {self.spec.path}: no '{DFM_MORPH}' input, morph cannot be set")
            return {}
        value = self.morph if morph is None else float(morph)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"morph must be in [0, 1], got {value}")
        return {DFM_MORPH: np.array([value], np.float32)}

    def _check_crops(self, shape: tuple[int, ...], dtype: str) -> None:
        s = self.spec.resolution
        if len(shape) != 4 or tuple(shape[1:]) != (s, s, 3) or "float" not in dtype:
            raise ValueError(f"swap: expected crops (N,{s},{s},3) float32 BGR [0,1], got {tuple(shape)} {dtype}")

    def _chunks(self, n: int) -> list[tuple[int, int]]:
        step = self.runner.fixed_batch or self.runner.max_batch or n
        return [(i, min(i + step, n)) for i in range(0, n, max(step, 1))]

    def swap(self, crops: Any, morph: float | None = None, mask: FaceMask = FaceMask.CELEB) -> tuple[Any, Any]:
        """Swap a batch of aligned crops in one inference call (split only where the engine's batch is bounded).

        crops: (N,S,S,3) float32 BGR in [0,1] — a numpy array, or a torch tensor / OrtValue on the backend's
        device (then the results stay there, as the same kind of array; OrtValues give the celeb mask only).
        morph: the morph factor in [0,1] for models with ``morph_value:0`` (default ``self.morph``).
        mask: which learned mask(s) make the returned mask (:class:`FaceMask`).
        Returns (faces (N,S,S,3) float32 BGR [0,1], masks (N,S,S) float32 [0,1]): the target identity's face and
        the learned mask ``mask`` names, unblended.
        """
        extra = self._morph_feed(morph)
        mask = FaceMask(mask)
        if isinstance(crops, np.ndarray):
            self._check_crops(crops.shape, str(crops.dtype))
            return self._swap_host(np.ascontiguousarray(crops, dtype=np.float32), extra, mask)
        if is_torch_tensor(crops):
            self._check_crops(tuple(crops.shape), str(crops.dtype))
            if not crops.is_cuda:  # host memory: the host path, handed back as torch tensors
                import torch

                faces, masks = self._swap_host(crops.detach().float().contiguous().numpy(), extra, mask)
                return torch.from_numpy(faces), torch.from_numpy(masks)
            if self.runner.device == "cpu":
                raise ConfigError(f"backend '{self.backend.value}' runs on the CPU; pass host arrays, not CUDA tensors")
            return self._swap_device_torch(crops, extra, mask)
        if is_ort_value(crops):
            self._check_crops(tuple(crops.shape()), "float32" if crops.element_type() == 1 else "other")
            if mask is not FaceMask.CELEB:
                raise ConfigError(f"mask '{mask.value}' needs numpy or torch crops; OrtValues give the celeb mask only")
            return self._swap_device_ort(crops, extra)
        raise ValueError(f"swap: expected crops as a numpy array, torch tensor or OrtValue, got {type(crops).__name__}")

    def _swap_host(
        self, crops: np.ndarray, extra: dict[str, np.ndarray], mask: FaceMask
    ) -> tuple[np.ndarray, np.ndarray]:
        n, s = crops.shape[0], self.spec.resolution
        faces = np.empty((n, s, s, 3), np.float32)
        masks = np.ones((n, s, s), np.float32)
        fixed = self.runner.fixed_batch
        for start, stop in self._chunks(n):
            chunk = crops[start:stop]
            if fixed is not None and len(chunk) < fixed:  # a fixed-batch model: pad the last chunk
                chunk = np.concatenate([chunk, np.zeros((fixed - len(chunk), s, s, 3), np.float32)])
            face, *learned = self.runner.run({DFM_INPUT: chunk, **extra}, [OUT_CELEB_FACE, *mask.outputs])
            faces[start:stop] = face[: stop - start]
            for part in learned:
                masks[start:stop] *= part[: stop - start, ..., 0]
        np.clip(faces, 0.0, 1.0, out=faces)
        np.clip(masks, 0.0, 1.0, out=masks)
        return faces, masks

    def _check_device_batch(self, n: int) -> None:
        fixed = self.runner.fixed_batch
        if fixed is not None and n != fixed:
            raise ConfigError(f"model {self.spec.path} takes batches of exactly {fixed} on the device path, got {n}")

    def _swap_device_torch(self, crops: Any, extra: dict[str, np.ndarray], mask: FaceMask) -> tuple[Any, Any]:
        import torch

        n, s = int(crops.shape[0]), self.spec.resolution
        self._check_device_batch(n)
        crops = crops.float().contiguous()
        faces = torch.empty((n, s, s, 3), dtype=torch.float32, device=crops.device)
        names = mask.outputs or (OUT_CELEB_MASK,)  # every engine binds at least one mask output
        learned = [torch.empty((n, s, s), dtype=torch.float32, device=crops.device) for _ in names]
        for start, stop in self._chunks(n):
            buffers = {OUT_CELEB_FACE: faces[start:stop]}
            buffers.update((name, b[start:stop]) for name, b in zip(names, learned, strict=True))
            shapes = {name: (stop - start, s, s, 3 if name == OUT_CELEB_FACE else 1) for name in buffers}
            self.runner.run_into({DFM_INPUT: crops[start:stop], **extra}, buffers, shapes)
        masks = learned[0]
        if not mask.outputs:
            masks.fill_(1.0)
        for other in learned[1:]:
            masks.mul_(other)
        return faces.clamp_(0.0, 1.0), masks.clamp_(0.0, 1.0)

    def _swap_device_ort(self, crops: Any, extra: dict[str, np.ndarray]) -> tuple[Any, Any]:
        import onnxruntime as ort

        if not self.runner.accepts_ort_values:
            raise ConfigError(f"backend '{self.backend.value}' does not take OrtValues; pass numpy or torch arrays")
        n, s = int(crops.shape()[0]), self.spec.resolution
        self._check_device_batch(n)
        faces = ort.OrtValue.ortvalue_from_shape_and_type((n, s, s, 3), np.float32, "cuda", 0)
        masks = ort.OrtValue.ortvalue_from_shape_and_type((n, s, s), np.float32, "cuda", 0)
        self.runner.run_into(
            {DFM_INPUT: crops, **extra},
            {OUT_CELEB_FACE: faces, OUT_CELEB_MASK: masks},
            {OUT_CELEB_FACE: (n, s, s, 3), OUT_CELEB_MASK: (n, s, s, 1)},
        )
        return faces, masks

    def close(self) -> None:
        """Release the backend's session/engine."""
        self.runner.close()
