"""The swap stage: every aligned face of a frame through the swap model in one batched inference call."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import numpy as np

from realtime_swap.errors import ConfigError
from realtime_swap.stages import Controls, Stage
from realtime_swap.swap.face_fit import FaceFitCheck
from realtime_swap.swap.model import FaceMask, SwapModel
from realtime_swap.types import Face, Frame, StreamInfo, SwapResult

log = logging.getLogger(__name__)


class RunsSwapModels:
    """A stage that runs swap models: ``models`` in model_index order (SwapStage, the GPU-resident stage)."""

    models: list[SwapModel]


def swap_model_details(stages: Sequence[Stage]) -> list[dict[str, object]]:
    """What runs each loaded swap model, for the metrics JSON: file, backend, and why ``auto`` passed the faster
    backends over (backend -> reason)."""
    return [
        {
            "model": m.spec.path.name,
            "backend": m.backend.value,
            "passed_over": dict(note.split(": ", 1) for note in m.notes if ": " in note),
        }
        for stage in stages
        if isinstance(stage, RunsSwapModels)
        for m in stage.models
    ]


class SwapStage(RunsSwapModels, Stage):
    """Sets ``face.swapped`` for each face of the frame that has ``face.aligned``.

    In: ``face.aligned.image`` (S,S,3) uint8 BGR crops of the model's face type. Crops of another size are resized
    to the model's resolution and the results back to the crop's size (as DeepFaceLive does), so ``SwapResult`` is
    always in the crop's pixel space. Out: ``face.swapped`` = SwapResult(face (S,S,3) float32 BGR [0,1], mask
    (S,S) float32 [0,1]). With ``controls.swap_enabled`` False the frame passes untouched. The first faces of each
    model are checked against their landmark masks; a model that does not seem to know the face says so once
    (:mod:`.face_fit`).
    model: one model, or several (the frame's ``model_index`` picks one: the window's Tab / 1-9 keys).
    morph: the morph factor for models with ``morph_value:0`` (None: the model's default).
    mask: which learned mask(s) ``SwapResult.mask`` is (:class:`FaceMask`).
    """

    name = "swap"

    def __init__(
        self, model: SwapModel | Sequence[SwapModel], morph: float | None = None, mask: FaceMask = FaceMask.CELEB
    ) -> None:
        self.models = [model] if isinstance(model, SwapModel) else list(model)
        if not self.models:
            raise ConfigError("swap: no model")
        self.model = self.models[0]  # the default one (model_index 0)
        if morph is not None:
            for m in self.models:
                if not m.has_morph:
                    log.info("swap: model %s has no morph input; morph %.2f ignored", m.spec.path.name, morph)
        self.morph = morph
        self.mask = FaceMask(mask)
        self._resize_noted = False
        self._fit = FaceFitCheck()

    def morph_for(self, model: SwapModel) -> float | None:
        """The morph factor passed to ``model`` (None where it has no morph input)."""
        return self.morph if model.has_morph else None

    def model_for(self, frame: Frame) -> SwapModel:
        """The model the frame's faces were aligned for."""
        return self.models[frame.model_index % len(self.models)]

    def warmup(self, info: StreamInfo) -> None:
        """One inference per model on a grey crop, so session creation / engine build / compilation happen now."""
        for model in self.models:
            s = model.resolution
            model.swap(np.full((1, s, s, 3), 0.5, np.float32), morph=self.morph_for(model))

    def _crop(self, face: Face, model: SwapModel) -> np.ndarray:
        aligned = face.aligned
        assert aligned is not None
        check_face_type(face, model, "swap")
        image = aligned.image
        s = model.resolution
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
        model = self.model_for(frame)
        crops = np.stack([self._crop(f, model) for f in faces]).astype(np.float32) * np.float32(1.0 / 255.0)
        swapped, masks = model.swap(crops, morph=self.morph_for(model), mask=self.mask)
        for face, out, mask in zip(faces, swapped, masks, strict=True):
            aligned = face.aligned
            assert aligned is not None
            size = aligned.size
            if out.shape[0] != size:
                out = cv2.resize(out, (size, size), interpolation=cv2.INTER_LINEAR)
                mask = np.clip(cv2.resize(mask, (size, size), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
            face.swapped = SwapResult(face=out, mask=mask)
            if aligned.mask is not None:
                notice = self._fit.observe(
                    model.spec.path.name, model.spec.metadata.get("dst_faceset"), mask, aligned.mask
                )
                if notice is not None:
                    log.warning("%s", notice)
        return frame

    def close(self) -> None:
        for model in self.models:
            model.close()


def check_face_type(face: Face, model: SwapModel, stage: str) -> None:
    """ConfigError when ``face`` was aligned for another face type than ``model`` expects."""
    aligned = face.aligned
    assert aligned is not None
    if aligned.face_type is not model.face_type:
        raise ConfigError(
            f"{stage}: face {face.id} is aligned as {aligned.face_type.value}, the model "
            f"{model.spec.path.name} expects {model.face_type.value}"
        )
