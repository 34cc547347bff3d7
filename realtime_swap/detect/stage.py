"""The pipeline's detect stage, and the same detection + alignment for single images (faceset extraction).

Bad input policy (``as_bgr_uint8``, used by ``FaceAnalyzer`` / ``analyze_image``): a grey image (H, W) or
(H, W, 1) is converted to BGR; a 4-channel (H, W, 4) image is taken as BGRA and its alpha dropped; a 16-bit
image is scaled to 8 bits; anything else (float images, other channel counts, empty arrays, non-arrays) is
refused with a ValueError that states the expected and the received shape/dtype. A tiny image (even 1 x 1)
is valid and simply has no face. The live stage takes pipeline frames, which are (H, W, 3) uint8 BGR by
contract, and refuses anything else with the same kind of ValueError.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from realtime_swap.align import align_face, face_transform
from realtime_swap.detect.blazeface import BlazeFaceDetector, BlazeFaceModel
from realtime_swap.detect.facemesh import FaceMeshLandmarker, Roi, roi_from_detection
from realtime_swap.detect.mesh import keypoints_from_mesh
from realtime_swap.detect.tracker import FaceTracker, TrackerOptions, box_iou, landmarks_box
from realtime_swap.errors import ConfigError
from realtime_swap.infer import Backend
from realtime_swap.masks import landmarks_in_crop, mesh_mask, mouth_mask
from realtime_swap.stages import Controls, Stage
from realtime_swap.types import AlignedFace, DeviceImage, Face, FaceType, Frame, StreamInfo, as_bgr_uint8

_BLACK = np.zeros(3, np.uint8)


def align_faces(
    image: np.ndarray,
    faces: list[Face],
    face_type: FaceType,
    size: int,
    mask: bool = True,
    mouth: bool = False,
    crop: bool = True,
) -> None:
    """Fill ``face.aligned`` (crop + matrix) of each face, with the mesh mask in crop space when ``mask``.

    crop: False when a later stage cuts the crop itself on the device (the GPU path): ``aligned.image`` is then
    a read-only all-black view of the crop's size, which costs no memory and no warp.
    """
    for face in faces:
        if face.landmarks is None:
            continue
        if crop:
            aligned = align_face(image, face.landmarks, face_type, size)
        else:
            matrix = face_transform(face.landmarks, face_type, size)
            aligned = AlignedFace(np.broadcast_to(_BLACK, (size, size, 3)), matrix, FaceType(face_type))
        if mask or mouth:
            in_crop = landmarks_in_crop(face.landmarks, aligned)
            if mask:
                aligned.mask = mesh_mask(in_crop, size)
            if mouth:
                aligned.mouth_mask = mouth_mask(in_crop, size)
        face.aligned = aligned


@dataclass(frozen=True)
class AnalyzerOptions:
    """Single-image detection. detector: full range by default (any distance, groups); max_faces: None for
    all, else the largest ones; min_presence: FaceMesh face-presence threshold; refine_passes: FaceMesh
    runs per face (the first in the detection's ROI, each next one in the previous landmarks' ROI);
    intra_op_threads: ONNX Runtime threads per model (None: one per core)."""

    detector: BlazeFaceModel = BlazeFaceModel.FULL_RANGE
    min_detection_score: float = 0.5
    min_presence: float = 0.5
    max_faces: int | None = None
    refine_passes: int = 3
    backend: Backend = Backend.AUTO
    model_dir: Path | None = None
    intra_op_threads: int | None = None

    def __post_init__(self) -> None:
        if self.max_faces is not None and self.max_faces < 1:
            raise ConfigError(f"max_faces must be >= 1 or None, got {self.max_faces}")
        if self.refine_passes < 1:
            raise ConfigError(f"refine_passes must be >= 1, got {self.refine_passes}")


class FaceAnalyzer:
    """Faces of independent images (no tracking state): detection, then FaceMesh ``refine_passes`` times
    (ROI from the detection, then from the landmarks). Keep one analyzer for many images: it holds the
    sessions."""

    def __init__(self, options: AnalyzerOptions | None = None) -> None:
        self.options = o = options or AnalyzerOptions()
        self.detector = BlazeFaceDetector(
            o.detector, o.backend, o.min_detection_score, model_dir=o.model_dir, intra_op_threads=o.intra_op_threads
        )
        self.landmarker = FaceMeshLandmarker(o.backend, o.model_dir, o.intra_op_threads)

    def analyze(
        self, image: np.ndarray, face_type: FaceType | None = None, size: int = 256, mask: bool = True
    ) -> list[Face]:
        """Faces in ``image`` (converted by ``as_bgr_uint8``), largest first, ids 0, 1, ...; aligned to
        ``face_type`` at ``size`` px (with mesh mask) when a face type is given. No face: an empty list."""
        image = as_bgr_uint8(image)
        o = self.options
        detections = self.detector.detect(image, tiled=o.max_faces is None or o.max_faces > 1)
        rois = [roi_from_detection(d) for d in detections]
        meshes = self.landmarker.landmark_refined(image, rois, passes=o.refine_passes)
        meshes = [m for m in meshes if m.score >= o.min_presence]
        meshes.sort(key=lambda m: -float(np.prod(np.ptp(m.landmarks, axis=0))))
        kept: list = []
        for mesh in meshes:  # two detections that converged on one face
            if all(box_iou(landmarks_box(mesh.landmarks), landmarks_box(k.landmarks)) <= 0.5 for k in kept):
                kept.append(mesh)
        kept = kept[: o.max_faces] if o.max_faces is not None else kept
        faces = [
            Face(
                id=i,
                box=landmarks_box(m.landmarks),
                score=m.score,
                landmarks=m.landmarks,
                keypoints=keypoints_from_mesh(m.landmarks),
            )
            for i, m in enumerate(kept)
        ]
        if face_type is not None:
            align_faces(image, faces, face_type, size, mask)
        return faces


def analyze_image(
    image: np.ndarray,
    face_type: FaceType | None = None,
    size: int = 256,
    mask: bool = True,
    options: AnalyzerOptions | None = None,
) -> list[Face]:
    """One-off ``FaceAnalyzer(options).analyze(image, face_type, size, mask)`` (loads the models each call)."""
    return FaceAnalyzer(options).analyze(image, face_type, size, mask)


class DetectStage(Stage):
    """Pipeline stage: fills ``frame.faces`` with tracked faces aligned to ``face_type`` at ``size`` px.

    Each face gets ``landmarks`` (468, 2), ``keypoints`` (5, 2), ``box``, ``id`` and ``aligned`` (crop,
    frame -> crop matrix, the mesh mask in crop space when ``mask``, the mouth interior when ``mouth``).
    targets: (face type, px) of each loaded swap model when there are several; the crop then follows
    ``controls.model_index`` and ``frame.model_index`` records which one it was made for (default: only
    ``(face_type, size)``).
    """

    name = "detect"

    def __init__(
        self,
        tracker: FaceTracker | TrackerOptions | None = None,
        face_type: FaceType = FaceType.WHOLE_FACE,
        size: int = 256,
        mask: bool = True,
        mouth: bool = False,
        *,
        targets: Sequence[tuple[FaceType, int]] = (),
    ) -> None:
        self.targets = tuple((FaceType(t), int(px)) for t, px in targets) or ((FaceType(face_type), int(size)),)
        for _, px in self.targets:
            if px < 16:
                raise ConfigError(f"detect: crop size must be >= 16 px, got {px}")
        self.tracker = tracker if isinstance(tracker, FaceTracker) else FaceTracker(tracker)
        self.face_type, self.size = self.targets[0]
        self.mask = mask
        self.mouth = mouth
        self.staging: Any = None  # HostStaging once upload_frames() is called
        self.host_crops = True
        self.reads_device = False  # the tracker's models read the uploaded frame (set by upload_frames)

    def upload_frames(self, device: Any) -> None:
        """Put each frame with faces on the torch ``device`` once (``frame.device_image``), for a later stage that
        works there (the GPU path's swap + blend). When the detector and landmarker run on torch on that device,
        they read the uploaded frame too, so the frame crosses the bus once for the whole pipeline."""
        from realtime_swap.gpu import torch_device
        from realtime_swap.gpu.ops import HostStaging

        self.staging = HostStaging(torch_device(device))
        self.host_crops = False  # that stage cuts the crops from the uploaded frame
        tracker_device = self.tracker.device
        self.reads_device = tracker_device is not None and torch_device(tracker_device) == self.staging.device

    def warmup(self, info: StreamInfo) -> None:
        self.tracker.reset()
        self.tracker.warmup()
        if self.reads_device:  # the device letterbox and crops, at the frame size
            blank = np.zeros((max(info.height, 64), max(info.width, 64), 3), np.uint8)
            pixels = self.staging.upload(blank)
            self.tracker.detector.detect(blank, pixels)
            self.tracker.landmarker.landmark(blank, [Roi(32.0, 32.0, 48.0, 0.0)], pixels)
            self.staging.uploads = 0

    def process(self, frame: Frame, controls: Controls) -> Frame:
        pixels = self.staging.upload(frame.image) if self.reads_device else None
        faces = self.tracker.update(frame.image, frame.pts, pixels)
        frame.model_index = controls.model_index % len(self.targets)
        face_type, size = self.targets[frame.model_index]
        align_faces(frame.image, faces, face_type, size, self.mask, self.mouth, self.host_crops)
        frame.faces = faces
        if self.staging is not None and faces:
            if pixels is None:  # the detector read the host frame; the later stage needs it there
                pixels = self.staging.upload(frame.image)
            frame.device_image = DeviceImage(pixels, frame.image)
        return frame
