"""The blend stage: recolour each swapped face towards the frame, then paste it back over its region."""

from __future__ import annotations

import math

import cv2
import numba
import numpy as np

from realtime_swap.blend import BlendMode, check_blend_options, combine_masks, paste_back_roi
from realtime_swap.blend import warmup as warmup_blend
from realtime_swap.color import ColorMode, ColorStatsSmoother
from realtime_swap.color import warmup as warmup_color
from realtime_swap.color.jit import use_kernel_threads
from realtime_swap.errors import ConfigError
from realtime_swap.stages import Controls, Stage
from realtime_swap.types import Face, Frame, StreamInfo


class ComposeStage(Stage):
    """Colour transfer + paste-back for every face that has an aligned crop and a swap result.

    Per face: the colour mode comes from ``controls.color_mode`` (a :class:`ColorMode`) and moves
    ``face.swapped.face`` towards ``face.aligned.image`` over the blend mask, with the transfer's statistics
    smoothed over time per ``face.id`` (:class:`ColorStatsSmoother`, on ``frame.pts``); the blend mask is
    ``face.swapped.mask × face.aligned.mask`` (the latter when present), times ``1 − aligned.mouth_mask`` when
    ``keep_mouth`` (the frame's own mouth interior shows through: a hand or a microphone in front of it); the
    face is pasted back with
    :func:`paste_back_roi`. A swap result whose size differs from the aligned crop's is resized to it first.

    ``kernel_threads``: numba threads the colour kernels may use in this stage's thread. 1 by default: on a
    machine whose cores the pipeline's other stages keep busy, a parallel region waits for descheduled threads
    and runs slower than the serial, vectorised kernel (measured on 2 shared, busy cores: rct 0.5 ms on 1
    thread, 0.3 to 12 ms on 2 depending on the other load). More pays off for idt and sot on idle cores.

    Copy-on-write: the stage never writes into the array it received as ``frame.image`` (the source, a preview or
    a recorder may still hold it). When at least one face is pasted it copies the image once, pastes every face
    into the copy, replaces ``frame.image`` with it and sets ``frame.swapped``. With ``controls.swap_enabled``
    False, or no face to paste, the frame is returned untouched.
    """

    name = "blend"

    def __init__(
        self,
        *,
        erode_px: int = 0,
        blur_px: int = 8,
        opacity: float = 1.0,
        mode: BlendMode = BlendMode.ALPHA,
        sharpen: float = 0.0,
        color_amount: float = 1.0,
        color_time_constant_s: float = 0.25,
        kernel_threads: int = 1,
        keep_mouth: bool = False,
    ) -> None:
        check_blend_options("blend", blur_px=blur_px, opacity=opacity, sharpen=sharpen, color_amount=color_amount)
        if not (color_time_constant_s >= 0.0 and math.isfinite(color_time_constant_s)):
            raise ConfigError(f"blend: color_time_constant_s must be >= 0 s, got {color_time_constant_s}")
        available = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
        if not 1 <= kernel_threads <= available:
            raise ConfigError(f"blend: kernel_threads must be in [1, {available}], got {kernel_threads}")
        try:
            self.mode = BlendMode(mode)
        except ValueError:
            raise ConfigError(
                f"blend: unknown blend mode '{mode}'; expected one of {[m.value for m in BlendMode]}"
            ) from None
        self.erode_px = int(erode_px)
        self.blur_px = int(blur_px)
        self.opacity = float(opacity)
        self.sharpen = float(sharpen)
        self.color_amount = float(color_amount)
        self.kernel_threads = int(kernel_threads)
        self.keep_mouth = keep_mouth
        self.smoother = ColorStatsSmoother(color_time_constant_s)

    def warmup(self, info: StreamInfo) -> None:
        """Compile (or load from numba's disk cache) the colour and composite kernels before the first frame."""
        warmup_color()
        warmup_blend()

    def process(self, frame: Frame, controls: Controls) -> Frame:
        if not controls.swap_enabled:
            return frame
        faces = [f for f in frame.faces if f.swapped is not None and f.aligned is not None]
        if not faces:
            self.smoother.forget_stale(frame.pts)
            return frame
        mode = controls.color_mode
        use_kernel_threads(self.kernel_threads)  # numba's setting is per thread: this stage's worker
        image = frame.image.copy()
        for face in faces:
            self._paste(image, face, mode, frame.pts)
        self.smoother.forget_stale(frame.pts)
        frame.image = image
        frame.swapped = True
        return frame

    def _paste(self, image: np.ndarray, face: Face, mode: ColorMode, t: float) -> None:
        aligned, swapped = face.aligned, face.swapped
        assert aligned is not None and swapped is not None  # filtered by the caller
        size = aligned.size
        crop, learned = swapped.face, swapped.mask
        if crop.shape[:2] != (size, size):
            crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR)
            learned = cv2.resize(learned, (size, size), interpolation=cv2.INTER_LINEAR)
        mask = combine_masks(learned, aligned.mask, aligned.mouth_mask if self.keep_mouth else None)
        if mode is not ColorMode.NONE and self.color_amount > 0.0:
            crop = self.smoother.transfer(face.id, mode, crop, aligned.image, mask, self.color_amount, t)
        paste_back_roi(
            image,
            crop,
            mask,
            aligned.matrix,
            erode_px=self.erode_px,
            blur_px=self.blur_px,
            opacity=self.opacity,
            mode=self.mode,
            sharpen=self.sharpen,
        )
