"""The swap stage: every aligned face of a frame through the swap model in one batched inference call."""

from __future__ import annotations

import logging

import cv2
import numpy as np

from realtime_swap.errors import ConfigError
from realtime_swap.stages import Controls, Stage
from realtime_swap.swap.model import SwapModel
from realtime_swap.types import Face, Frame, StreamInfo, SwapResult

log = logging.getLogger(__name__)


class SwapStage(Stage):
    """Sets ``face.swapped`` for each face of the frame that has ``face.aligned``.

    In: ``face.aligned.image`` (S,S,3) uint8 BGR crops of the model's face type. Crops of another size are
    resized to the model's resolution and the results back to the crop's size (as DeepFaceLive does), so
    ``SwapResult`` is always in the crop's pixel space. Out: ``face.swapped`` = SwapResult(face (S,S,3) float32
    BGR [0,1], mask (S,S) float32 [0,1]). With ``controls.swap_enabled`` False the frame passes untouched.
    morph: the morph factor for models with ``morph_value:0`` (None: the model's default).
    """

    name = "swap"

    def __init__(self, model: SwapModel, morph: float | None = None) -> None:
        self.model = model
        if morph is not None and not model.has_morph:
            log.info("swap: model %s has no morph input; morph %.2f ignored", model.spec.path.name, morph)
        self.morph = morph if model.has_morph else None
        self._resize_noted = False

    def warmup(self, info: StreamInfo) -> None:
        """One inference on a grey crop, so session creation / engine build / compilation happen now."""
        s = self.model.resolution
        self.model.swap(np.full((1, s, s, 3), 0.5, np.float32), morph=self.morph)

    def _crop(self, face: Face) -> np.ndarray:
        aligned = face.aligned
        assert aligned is not None
        if aligned.face_type is not self.model.face_type:
            raise ConfigError(
                f"swap: face {face.id} is aligned as {aligned.face_type.value}, the model "
                f"{self.model.spec.path.name} expects {self.model.face_type.value}"
            )
        image = aligned.image
        s = self.model.resolution
        if image.shape[0] != s or image.shape[1] != s:
            if not self._resize_noted:
                log.info("swap: resizing %d px crops to the model's %d px", image.shape[0], s)
                self._resize_noted = True
            image = cv2.resize(image, (s, s), interpolation=cv2.INTER_LINEAR)
        return image

    def process(self, frame: Frame, controls: Controls) -> Frame:
        if not controls.swap_enabled:
            return frame
        faces = [f for f in frame.faces if f.aligned is not None]
        if not faces:
            return frame
        crops = np.stack([self._crop(f) for f in faces]).astype(np.float32) * np.float32(1.0 / 255.0)
        swapped, masks = self.model.swap(crops, morph=self.morph)
        for face, out, mask in zip(faces, swapped, masks, strict=True):
            aligned = face.aligned
            assert aligned is not None
            size = aligned.size
            if out.shape[0] != size:
                out = cv2.resize(out, (size, size), interpolation=cv2.INTER_LINEAR)
                mask = np.clip(cv2.resize(mask, (size, size), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
            face.swapped = SwapResult(face=out, mask=mask)
        return frame

    def close(self) -> None:
        self.model.close()
