"""Data contracts that travel between the pipeline's stages.

Conventions used everywhere in the product (each field below restates the ones that apply):

* images in the pipeline are ``(H, W, 3) uint8`` **BGR**, C-contiguous (OpenCV order);
* model-facing crops are ``(S, S, 3) float32`` **BGR** in ``[0, 1]`` (DeepFaceLive's DFM convention);
* masks are ``(H, W) float32`` in ``[0, 1]``;
* point sets are ``(N, 2) float32`` in **pixels** of the image they refer to, ``x`` then ``y``; the centre of
  pixel (row i, column j) is at (x, y) = (j, i) (OpenCV's convention, which align/masks/warps rely on);
* affine matrices are ``(2, 3) float64`` mapping *source* pixel coordinates to *destination* ones;
* times are ``time.perf_counter()`` seconds; durations in metrics are milliseconds.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np


class FaceType(str, enum.Enum):
    """How much of the head an aligned crop covers (DeepFaceLab's names), plus the ArcFace template."""

    HALF = "half"
    MID_FULL = "mid_full"
    FULL = "full"
    WHOLE_FACE = "whole_face"
    HEAD = "head"
    ARCFACE = "arcface"


@dataclass(slots=True)
class AlignedFace:
    """A face cut out of a frame by a similarity transform.

    image:  (S, S, 3) uint8 BGR crop (on the GPU path, which cuts the crop from the uploaded frame itself, a
            read-only all-black view of that shape: ``detect.stage.align_faces(crop=False)``).
    matrix: (2, 3) float64 frame px -> crop px; ``cv2.invertAffineTransform(matrix)`` pastes back.
    face_type: the template the crop follows.
    mask:   (S, S) float32 [0, 1] landmark mask in crop space, or None when not computed.
    mouth_mask: (S, S) float32 [0, 1] mouth interior in crop space (kept from the frame on request), or None.
    """

    image: np.ndarray
    matrix: np.ndarray
    face_type: FaceType
    mask: np.ndarray | None = None
    mouth_mask: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(self.image.shape[0])


@dataclass(slots=True)
class SwapResult:
    """A model's output for one aligned crop.

    face: (S, S, 3) float32 BGR [0, 1], the target identity's face.
    mask: (S, S) float32 [0, 1], the model's learned mask that ``FaceMask`` picks (all ones for ``mesh``).
    """

    face: np.ndarray
    mask: np.ndarray


@dataclass(slots=True)
class Face:
    """One face in one frame.

    id:        stable across frames while the tracker follows the same face (>= 0).
    box:       (4,) float32 x0, y0, x1, y1 in frame px.
    score:     confidence in [0, 1] that this is a face (FaceMesh's face-presence score once landmarked,
               the detector's score before).
    landmarks: (N, 2) float32 frame px (N = 468 for FaceMesh), or None before landmarking.
    keypoints: (5, 2) float32 frame px: right eye, left eye, nose tip, right mouth corner, left mouth corner
               (the subject's right/left, ArcFace order), or None.
    """

    id: int
    box: np.ndarray
    score: float
    landmarks: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    aligned: AlignedFace | None = None
    swapped: SwapResult | None = None


@dataclass(slots=True)
class Frame:
    """A frame and everything the stages learn about it on its way through the pipeline.

    index:     the source's sequence number, 0-based, counting frames the source delivered (dropped ones too).
    image:     (H, W, 3) uint8 BGR, the picture; stages that change it replace it.
    t_capture: perf_counter() s at which the source delivered the frame.
    pts:       presentation time in s from the source's clock (files, streams), or since the first frame
               for live sources.
    faces:     filled by the detect stage.
    timings:   stage name -> ms spent on this frame.
    swapped:   True once the blend stage has pasted at least one swapped face into ``image``.
    model_index: which of the loaded swap models the detect stage aligned the faces for (the window's Tab / 1-9
               choice when the frame was detected); the swap stage runs that model, so a switch never pairs a
               crop with a model of another face type or size.
    held:      a repeat of the last frame made while the source is down (stages pass it through; the outputs
               show the last output picture with ``notice`` drawn on it).
    notice:    a line about the engine's state for the outputs to show ("at capacity: ...", "reconnecting").
    degraded:  a stage failed, so this frame skipped the remaining stages and reaches the outputs as it was.
    device_image: ``image`` already on a torch device (the GPU path uploads the frame once, in the detect stage,
               and the swap + blend stage reuses it); see :meth:`on_device`.
    """

    index: int
    image: np.ndarray
    t_capture: float
    pts: float
    faces: list[Face] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    swapped: bool = False
    model_index: int = 0
    held: bool = False
    notice: str = ""
    degraded: bool = False
    device_image: DeviceImage | None = None

    def on_device(self, device: Any) -> Any:
        """``image`` as a (H, W, 3) uint8 tensor on the torch ``device``, if a stage uploaded it there and no
        stage has replaced ``image`` since; else None (the caller uploads it itself)."""
        copy = self.device_image
        if copy is None or copy.source is not self.image or copy.tensor.device != device:
            return None
        return copy.tensor

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True, slots=True)
class DeviceImage:
    """A frame's picture on a torch device. tensor: (H, W, 3) uint8 BGR; source: the host array it is a copy of
    (a stage that replaces ``Frame.image`` makes the copy stale, which ``Frame.on_device`` checks by identity)."""

    tensor: Any
    source: np.ndarray


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What a source knows about its stream before the first frame.

    width, height: px; fps: nominal frames per second (0 when unknown); live: frames arrive on their own clock
    (camera, network, paced) rather than on demand; name: a human-readable description for messages.
    """

    width: int
    height: int
    fps: float
    live: bool
    name: str


def check_bgr_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Validate an (H, W, 3) uint8 BGR image; return it C-contiguous. Raises ValueError naming the problem."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{what}: expected (H, W, 3) uint8 BGR ndarray, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{what}: expected (H, W, 3) uint8 BGR, got {image.shape} {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{what}: empty image {image.shape}")
    return np.ascontiguousarray(image)


_CONVERTIBLE = "(H, W, 3) uint8 BGR, or convertible: (H, W) / (H, W, 1) grey, (H, W, 4) BGRA, uint16"


def as_bgr_uint8(image: np.ndarray, what: str = "image") -> np.ndarray:
    """An (H, W, 3) uint8 BGR, C-contiguous view or copy of ``image``: grey, BGRA and 16-bit images are converted;
    anything else raises ValueError naming ``what``, the expected and the actual shape and dtype."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{what}: expected {_CONVERTIBLE} ndarray, got {type(image).__name__}")
    if image.ndim not in (2, 3) or image.size == 0 or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ValueError(f"{what}: expected {_CONVERTIBLE}, got {image.shape} {image.dtype}")
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"{what}: expected {_CONVERTIBLE}, got {image.shape} {image.dtype}")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(np.ascontiguousarray(image.reshape(image.shape[:2])), cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)
