"""The GPU-resident swap + blend stage: one upload of the frame, crops, inference, colour and composite on the
device, one download of the result.

It replaces the pair ``SwapStage`` → ``ComposeStage`` (:func:`gpu_resident_stages`) and takes the same inputs
from ``DetectStage``: per face the landmark-derived ``aligned.matrix`` (frame px -> crop px) and, when present,
the mesh mask ``aligned.mask`` (S, S) float32 in crop space. The crop itself is warped again on the device from
the uploaded frame (``aligned.image`` is not read), so that only the frame crosses the bus. The detect stage
before it uploads the frame (``frame.device_image``; :meth:`DetectStage.upload_frames`): when the detector and
the landmarker run on torch on the same device (``--detect-backend auto`` with the swap on torch there), they read
that tensor too, and only boxes and landmarks come back, so a frame goes up once and comes down once.

Written against torch's device-agnostic API: on ``device="cuda"`` it needs a swap model whose backend runs on
CUDA (``SwapModel.swap`` then takes and returns CUDA tensors through IO binding); on ``device="cpu"`` it runs the
same code on the host, which is how it is tested where there is no GPU.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from realtime_swap.blend import BlendMode, check_blend_options
from realtime_swap.color import ColorMode, ColorStatsSmoother
from realtime_swap.errors import ConfigError
from realtime_swap.gpu import GpuPath, torch_device
from realtime_swap.gpu.ops import (
    DeviceRctSmoother,
    HostStaging,
    composite_region,
    process_mask,
    sharpen,
    warp_crop,
)
from realtime_swap.stages import Controls, Stage
from realtime_swap.swap.model import FaceMask, SwapModel
from realtime_swap.swap.stage import RunsSwapModels
from realtime_swap.types import AlignedFace, Face, Frame, StreamInfo

log = logging.getLogger(__name__)

DEVICE_COLOR_MODES = (ColorMode.NONE, ColorMode.RCT)
"""Colour modes computed on the device; the others take a host round trip of the (S, S) crop per face."""


def resolve_device(model: SwapModel, requested: GpuPath = GpuPath.AUTO) -> torch.device:
    """The torch device the GPU path runs on for ``model``: ``auto`` is CUDA when the model's backend runs there.

    Raises ConfigError when CUDA is asked and the model's backend runs on the CPU (or torch sees no GPU), and for
    ``auto`` on a CPU backend (the CPU path is faster there; ask for ``cpu`` explicitly to run this one).
    """
    on_cuda = model.runner.device.startswith("cuda")
    if requested == GpuPath.CPU:
        return torch.device("cpu")
    if requested not in (GpuPath.AUTO, GpuPath.CUDA):
        raise ConfigError(f"gpu path: device must be auto, cuda or cpu, got '{getattr(requested, 'value', requested)}'")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"gpu path: torch {torch.__version__} sees no CUDA device; the GPU-resident path needs a CUDA "
            "build of torch and a GPU (the CPU path is the default elsewhere)"
        )
    if not on_cuda:
        raise ConfigError(
            f"gpu path: the swap model runs on '{model.backend.value}' ({model.runner.device}); the GPU-resident "
            "path needs a CUDA backend (ort-cuda, ort-trt, tensorrt or torch on CUDA)"
        )
    return torch.device(model.runner.device)


class GpuSwapComposeStage(RunsSwapModels, Stage):
    """Swap + colour transfer + paste-back of every aligned face, on a torch device.

    In: ``frame.image`` (H, W, 3) uint8 BGR and per face ``aligned.matrix`` / ``aligned.mask``. Out: a new
    ``frame.image`` (the received array is never written) and ``face.swapped`` left None (the swap result
    stays on the device). Same options and meaning as ``SwapStage`` + ``ComposeStage`` except ``mode``:
    alpha only (Poisson cloning is OpenCV's, on the host). Colour modes rct and none run on the device; the
    others are done on the host for the (S, S) crop (one round trip per face, logged once).
    """

    name = "swap+blend"

    def __init__(
        self,
        model: SwapModel | Sequence[SwapModel],
        *,
        device: torch.device | str = "cuda",
        morph: float | None = None,
        mask: FaceMask = FaceMask.CELEB,
        erode_px: int = 0,
        blur_px: int = 8,
        opacity: float = 1.0,
        mode: BlendMode = BlendMode.ALPHA,
        sharpen: float = 0.0,
        color_amount: float = 1.0,
        color_time_constant_s: float = 0.25,
    ) -> None:
        if BlendMode(mode) is not BlendMode.ALPHA:
            raise ConfigError(f"gpu path: blend mode '{BlendMode(mode).value}' runs on the host; use alpha")
        check_blend_options("gpu path", blur_px=blur_px, opacity=opacity, sharpen=sharpen, color_amount=color_amount)
        # several models: the frame's model_index picks one, as in SwapStage
        self.models = [model] if isinstance(model, SwapModel) else list(model)
        if not self.models:
            raise ConfigError("gpu path: no model")
        self.model = self.models[0]
        self.device = torch_device(device)
        self.staging = HostStaging(self.device)
        for m in self.models:
            if self.device.type == "cuda" and not m.runner.device.startswith("cuda"):
                raise ConfigError(
                    f"gpu path: the swap model {m.spec.path.name} runs on '{m.backend.value}' ({m.runner.device}), "
                    "not CUDA"
                )
            if morph is not None and not m.has_morph:
                log.info("gpu path: model %s has no morph input; morph %.2f ignored", m.spec.path.name, morph)
        self.morph = morph
        self.mask = FaceMask(mask)
        self.erode_px = int(erode_px)
        self.blur_px = int(blur_px)
        self.opacity = float(opacity)
        self.sharpen = float(sharpen)
        self.color_amount = float(color_amount)
        self.smoother = DeviceRctSmoother(color_time_constant_s)
        self.host_smoother = ColorStatsSmoother(color_time_constant_s)
        self._host_noted = False

    @classmethod
    def replacing(cls, swap: Stage, compose: Stage, device: torch.device | str) -> GpuSwapComposeStage:
        """The stage that does what ``swap`` (a SwapStage) then ``compose`` (a ComposeStage) do, on ``device``."""
        from realtime_swap.compose import ComposeStage
        from realtime_swap.swap.stage import SwapStage

        if not isinstance(swap, SwapStage) or not isinstance(compose, ComposeStage):
            raise ConfigError(f"gpu path replaces swap + blend, got {swap.name} + {compose.name}")
        return cls(
            swap.models,
            device=device,
            morph=swap.morph,
            mask=swap.mask,
            erode_px=compose.erode_px,
            blur_px=compose.blur_px,
            opacity=compose.opacity,
            mode=compose.mode,
            sharpen=compose.sharpen,
            color_amount=compose.color_amount,
            color_time_constant_s=compose.smoother.time_constant_s,
        )

    def warmup(self, info: StreamInfo) -> None:
        """One full pass over a grey frame with one face, so sessions, kernels and allocators are ready."""
        from realtime_swap.color import warmup as warmup_color

        warmup_color()
        for model in self.models:
            s = model.resolution
            side = max(s + 8, 32)
            image = np.full((side, side, 3), 128, np.uint8)
            matrix = np.array([[1.0, 0.0, -4.0], [0.0, 1.0, -4.0]])
            face = Face(id=-1, box=np.zeros(4, np.float32), score=1.0)
            face.aligned = AlignedFace(np.zeros((s, s, 3), np.uint8), matrix, model.face_type, None)
            self._run(image, [face], model, Controls(), t=0.0)
        self.smoother.forget_stale(math.inf)
        self._sync()
        self.staging.uploads = 0  # count the stream's frames only

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def process(self, frame: Frame, controls: Controls) -> Frame:
        pixels = frame.on_device(self.device)
        frame.device_image = None  # the outputs read the host picture; the device copy goes with this stage
        if not controls.swap_enabled:
            return frame
        faces = [f for f in frame.faces if f.aligned is not None]
        if not faces:
            self.smoother.forget_stale(frame.pts)
            self.host_smoother.forget_stale(frame.pts)
            return frame
        model = self.models[frame.model_index % len(self.models)]
        frame.image = self._run(frame.image, faces, model, controls, frame.pts, pixels)
        frame.swapped = True
        self.smoother.forget_stale(frame.pts)
        self.host_smoother.forget_stale(frame.pts)
        return frame

    def _run(
        self,
        image: np.ndarray,
        faces: Sequence[Face],
        model: SwapModel,
        controls: Controls,
        t: float,
        pixels: torch.Tensor | None = None,
    ) -> np.ndarray:
        """Swap every face of ``image`` with ``model`` and paste it; download the result (a new array).

        pixels: ``image`` already on the device (uploaded by the detect stage; this stage may write it), or None
        to upload it here."""
        from realtime_swap.swap.stage import check_face_type

        for face in faces:
            check_face_type(face, model, "gpu path")
        mode = controls.color_mode
        s = model.resolution
        with torch.inference_mode():
            # one upload per frame, through a pinned buffer on CUDA: the detect stage's, or here
            frame = pixels if pixels is not None else self.staging.upload(image)
            crops = [warp_crop(frame, _aligned(f).matrix, _aligned(f).size) for f in faces]
            batch = torch.stack([_resize(c, s) for c in crops]) * (1.0 / 255.0)
            swapped, learned = model.swap(batch, morph=self.morph if model.has_morph else None, mask=self.mask)
            for face, crop, out, mask in zip(faces, crops, swapped, learned, strict=True):
                self._paste(frame, face, crop, out, mask, mode, t)
            return self.staging.download(frame)  # one download

    def _paste(
        self,
        frame: torch.Tensor,
        face: Face,
        crop: torch.Tensor,
        out: torch.Tensor,
        learned: torch.Tensor,
        mode: ColorMode,
        t: float,
    ) -> None:
        aligned = face.aligned
        assert aligned is not None
        size = aligned.size
        out = _resize(out, size)
        learned = _resize(learned[..., None], size)[..., 0].clamp(0.0, 1.0)
        mask = learned.clamp(0.0, 1.0)
        if aligned.mask is not None:
            mask = mask * torch.as_tensor(aligned.mask, device=self.device).float().clamp(0.0, 1.0)
        if mode is ColorMode.RCT and self.color_amount > 0.0:
            out = self.smoother.transfer(face.id, out, crop * (1.0 / 255.0), mask, self.color_amount, t)
        elif mode is not ColorMode.NONE and self.color_amount > 0.0:
            out = self._host_transfer(face, mode, out, crop, mask, t)
        face_u8 = (out.clamp(0.0, 1.0) * 255.0 + 0.5).floor_()
        if self.sharpen > 0.0:
            face_u8 = sharpen(face_u8, self.sharpen)
        alpha = process_mask(mask, self.erode_px, self.blur_px)
        composite_region(frame, face_u8, alpha, aligned.matrix, self.opacity)

    def _host_transfer(
        self, face: Face, mode: ColorMode, out: torch.Tensor, crop: torch.Tensor, mask: torch.Tensor, t: float
    ) -> torch.Tensor:
        if not self._host_noted:
            log.info("gpu path: colour mode %s runs on the host (a round trip of each face's crop)", mode.value)
            self._host_noted = True
        moved = self.host_smoother.transfer(
            face.id,
            mode,
            out.cpu().numpy(),
            crop.cpu().numpy().astype(np.uint8),
            mask.cpu().numpy(),
            self.color_amount,
            t,
        )
        return torch.as_tensor(moved, device=self.device)

    def close(self) -> None:
        for model in self.models:
            model.close()


def _aligned(face: Face) -> AlignedFace:
    assert face.aligned is not None  # filtered by the caller
    return face.aligned


def _resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """(s, s, C) float -> (size, size, C) bilinear (half-pixel centres, as cv2.INTER_LINEAR); unchanged when equal."""
    if int(image.shape[0]) == size:
        return image
    x = image.permute(2, 0, 1)[None]
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)


def gpu_resident_stages(stages: Sequence[Stage], device: GpuPath = GpuPath.AUTO) -> list[Stage]:
    """``stages`` with the consecutive ``swap`` → ``blend`` pair replaced by one :class:`GpuSwapComposeStage`; a
    detect stage just before it uploads each frame for it (and reads it there when it runs on torch on that device).

    device: ``auto`` / ``cuda`` / ``cpu`` (see :func:`resolve_device`). Raises ConfigError when the stages have
    no swap + blend pair (no model: nothing to run on the GPU) or the device cannot be used.
    """
    from realtime_swap.compose import ComposeStage
    from realtime_swap.detect.stage import DetectStage
    from realtime_swap.swap.stage import SwapStage

    out = list(stages)
    for i in range(len(out) - 1):
        swap, compose = out[i], out[i + 1]
        if isinstance(swap, SwapStage) and isinstance(compose, ComposeStage):
            stage = GpuSwapComposeStage.replacing(swap, compose, resolve_device(swap.model, device))
            out[i : i + 2] = [stage]
            detect = out[i - 1] if i > 0 else None
            if isinstance(detect, DetectStage):  # the frame goes up once, in the detect stage
                detect.upload_frames(stage.device)
            return out
    raise ConfigError("gpu path: these stages have no swap + blend pair to run on the GPU (no swap model?)")
