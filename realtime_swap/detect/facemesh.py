"""FaceMesh landmarker (MediaPipe's 468-point face_landmark model, converted to ONNX).

The model looks at a 192 x 192 RGB [0, 1] crop of a rotated square region of interest (ROI): 1.5 x the face,
turned so that the eye line is horizontal. The ROI comes from a detection (first frame) or from the previous
frame's landmarks (tracking), as in MediaPipe's face_landmark_front graphs. Positions are frame px in OpenCV's
pixel-centre convention (see ``realtime_swap.detect.blazeface``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from realtime_swap.detect.blazeface import Detection
from realtime_swap.detect.engine import DetectEngine, DetectorModel, check_model_io, open_detector_model
from realtime_swap.infer import Backend
from realtime_swap.model_files import MEDIAPIPE, require_model_file
from realtime_swap.types import check_bgr_image

MODEL_FILE = "face_landmark.onnx"
NUM_LANDMARKS = 468
INPUT_SIZE = 192
ROI_SCALE = 1.5
# mesh points whose line gives the ROI's rotation: outer corners of the subject's right (33) and left (263) eye
RIGHT_EYE_OUTER, LEFT_EYE_OUTER = 33, 263


@dataclass(frozen=True, slots=True)
class Roi:
    """A rotated square in frame px: centre (cx, cy), side ``size`` px, ``angle`` rad.

    angle: direction of the crop's x axis in the frame (image axes, y down), i.e. the angle of the line from
    the subject's right eye to the left eye; 0 for an upright face.
    """

    cx: float
    cy: float
    size: float
    angle: float

    def matrix(self, out_size: int) -> np.ndarray:
        """(2, 3) float64 affine frame px -> crop px of an ``out_size`` square crop (pixel centres)."""
        k = out_size / self.size
        c, s = math.cos(self.angle) * k, math.sin(self.angle) * k
        half = out_size / 2.0 - 0.5
        return np.array(
            [[c, s, half - c * self.cx - s * self.cy], [-s, c, half + s * self.cx - c * self.cy]], np.float64
        )

    def box(self) -> np.ndarray:
        """(4,) float32 x0, y0, x1, y1 of the axis-aligned box around the rotated square."""
        half = 0.5 * self.size * (abs(math.cos(self.angle)) + abs(math.sin(self.angle)))
        return np.array([self.cx - half, self.cy - half, self.cx + half, self.cy + half], np.float32)


def roi_from_detection(detection: Detection, scale: float = ROI_SCALE) -> Roi:
    """FaceMesh ROI from a BlazeFace detection: box centre, long side x ``scale``, turned by the eye line."""
    x0, y0, x1, y1 = (float(v) for v in detection.box)
    right_eye, left_eye = detection.keypoints[0], detection.keypoints[1]
    angle = math.atan2(float(left_eye[1] - right_eye[1]), float(left_eye[0] - right_eye[0]))
    return Roi((x0 + x1) / 2.0, (y0 + y1) / 2.0, max(x1 - x0, y1 - y0) * scale, angle)


def roi_from_landmarks(landmarks: np.ndarray, scale: float = ROI_SCALE) -> Roi:
    """FaceMesh ROI for the next frame from (468, 2) landmarks: their box in the eye-line-aligned frame x scale.

    MediaPipe takes the axis-aligned box; measuring it along the eye line keeps the ROI's size independent of
    the head's roll, so the crop scale the model sees stays the same when the head tilts.
    """
    pts = np.asarray(landmarks, np.float64)
    d = pts[LEFT_EYE_OUTER] - pts[RIGHT_EYE_OUTER]
    angle = math.atan2(d[1], d[0])
    c, s = math.cos(angle), math.sin(angle)
    mean = pts.mean(axis=0)
    rel = pts - mean
    local = np.stack([rel[:, 0] * c + rel[:, 1] * s, -rel[:, 0] * s + rel[:, 1] * c], axis=1)
    lo, hi = local.min(axis=0), local.max(axis=0)
    mid = (lo + hi) / 2.0
    centre = mean + np.array([mid[0] * c - mid[1] * s, mid[0] * s + mid[1] * c])
    return Roi(float(centre[0]), float(centre[1]), float(max(hi - lo)) * scale, angle)


@dataclass(slots=True)
class MeshResult:
    """FaceMesh output for one ROI.

    landmarks: (468, 2) float32 frame px.
    z:         (468,) float32 relative depth in frame px (same scale as x; smaller is closer to the camera).
    score:     face presence probability in [0, 1] (low: the ROI holds no face, tracking is lost).
    roi:       the ROI the landmarks were measured in.
    """

    landmarks: np.ndarray
    z: np.ndarray
    score: float
    roi: Roi


class FaceMeshLandmarker:
    """468 face landmarks from a BGR frame and ROIs (several ROIs run as one batch).

    backend: an ONNX Runtime backend, or a ``DetectEngine`` (ONNX Runtime or torch on a device).
    model_dir: folder holding face_landmark.onnx (default: ``mediapipe/`` of the models folders,
    ``realtime_swap.model_files``).
    """

    def __init__(
        self,
        backend: Backend | DetectEngine = Backend.AUTO,
        model_dir: str | Path | None = None,
        intra_op_threads: int | None = None,
    ) -> None:
        path = Path(model_dir) / MODEL_FILE if model_dir else require_model_file(f"{MEDIAPIPE}/{MODEL_FILE}")
        self.engine = backend if isinstance(backend, DetectEngine) else DetectEngine(backend)
        session = open_detector_model(path, self.engine, intra_op_threads)
        check_model_io(session, path, INPUT_SIZE, ("landmarks", "face_flag"))
        self._session: DetectorModel = session
        self.input_size = INPUT_SIZE

    def crop(self, image: np.ndarray, roi: Roi) -> np.ndarray:
        """The (S, S, 3) uint8 BGR crop of ``roi`` the model sees (edges replicated outside the frame)."""
        size = self.input_size
        return cv2.warpAffine(
            image, roi.matrix(size), (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )

    @property
    def reads_device_frames(self) -> bool:
        """True when ``landmark`` takes the frame as a device tensor (the torch engine): the crops are then cut
        where the frame already is, and only the landmarks come back to the host."""
        return self.engine.backend is Backend.TORCH

    def landmark(self, image: np.ndarray, rois: Sequence[Roi], pixels: Any = None) -> list[MeshResult]:
        """Landmarks for each ROI of an (H, W, 3) uint8 BGR image, in ROI order.

        pixels: the same image as a (H, W, 3) uint8 torch tensor on the engine's device, or None; used when
        ``reads_device_frames`` (else the crops are cut on the host and uploaded).
        """
        image = check_bgr_image(image, "FaceMeshLandmarker.landmark")
        if not rois:
            return []
        tensor: Any
        if pixels is not None and self.reads_device_frames:
            from realtime_swap.gpu.ops import rgb_crops

            tensor = rgb_crops(pixels, [roi.matrix(self.input_size) for roi in rois], self.input_size)
        else:
            crops = np.stack([self.crop(image, roi) for roi in rois])
            tensor = crops[..., ::-1].astype(np.float32) * np.float32(1.0 / 255.0)
        raw, flags = self._session.run(tensor)
        raw = raw.reshape(len(rois), NUM_LANDMARKS, 3).astype(np.float64)
        scores = 1.0 / (1.0 + np.exp(-np.clip(flags.reshape(-1).astype(np.float64), -100.0, 100.0)))
        out = []
        for roi, points, score in zip(rois, raw, scores, strict=True):
            # model px are edge-convention (0..S): -0.5 gives pixel centres, then crop -> frame
            inv = cv2.invertAffineTransform(roi.matrix(self.input_size))
            xy = (points[:, :2] - 0.5) @ inv[:, :2].T + inv[:, 2]
            z = points[:, 2] * (roi.size / self.input_size)
            out.append(MeshResult(xy.astype(np.float32), z.astype(np.float32), float(score), roi))
        return out

    def landmark_refined(
        self, image: np.ndarray, rois: Sequence[Roi], passes: int = 2, pixels: Any = None
    ) -> list[MeshResult]:
        """``landmark`` from ``rois``, then ``passes - 1`` more times from each result's own landmarks ROI.

        A detection's ROI is rougher than the landmarks' (its box and eye line are coarser); re-cropping
        converges on the ROI that tracking will use. Returns the last pass, in ROI order. pixels: as ``landmark``.
        """
        results = self.landmark(image, rois, pixels)
        for _ in range(passes - 1):
            results = self.landmark(image, [roi_from_landmarks(r.landmarks) for r in results], pixels)
        return results
