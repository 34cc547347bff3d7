"""BlazeFace face detector (MediaPipe's short- and full-range models, converted to ONNX).

Coordinates: every position this module returns is in **frame px, OpenCV's pixel-centre convention** (the
centre of pixel (i, j) is at x = j, y = i), the convention of ``cv2.warpAffine``. Model outputs, which are in
normalised [0, 1] units of the letterboxed input, are converted with that in mind.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from realtime_swap.detect.engine import DetectEngine, DetectorModel, check_model_io, open_detector_model
from realtime_swap.errors import ModelError
from realtime_swap.infer import Backend
from realtime_swap.model_files import MEDIAPIPE, require_model_file
from realtime_swap.types import check_bgr_image


class BlazeFaceModel(str, enum.Enum):
    """Which BlazeFace: short range (faces within ~2 m, selfie/webcam) or full range (within ~5 m, groups)."""

    SHORT_RANGE = "short"
    FULL_RANGE = "full"


@dataclass(frozen=True)
class _ModelSpec:
    file: str
    input_size: int
    strides: tuple[int, ...]  # one per SSD layer (MediaPipe's ssd_anchors_calculator options)
    anchors_per_layer: int  # 2 when interpolated_scale_aspect_ratio == 1, else 1


_SPECS = {
    BlazeFaceModel.SHORT_RANGE: _ModelSpec("face_detection_short_range.onnx", 128, (8, 16, 16, 16), 2),
    BlazeFaceModel.FULL_RANGE: _ModelSpec("face_detection_full_range.onnx", 192, (4,), 1),
}

NUM_KEYPOINTS = 6
RAW_SCORE_LIMIT = 100.0  # MediaPipe clips logits to +-100 before the sigmoid


def ssd_anchors(input_size: int, strides: tuple[int, ...], anchors_per_layer: int) -> np.ndarray:
    """Anchor centres (A, 2) float32 in normalised [0, 1] input units, in the models' output order.

    Consecutive layers with the same stride share one feature map; each contributes ``anchors_per_layer``
    anchors per cell (MediaPipe's SsdAnchorsCalculator with fixed anchor size 1).
    """
    out = []
    layer = 0
    while layer < len(strides):
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        repeats = (last - layer) * anchors_per_layer
        cells = input_size // strides[layer]
        centres = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        ys, xs = np.meshgrid(centres, centres, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(grid, repeats, axis=0))
        layer = last
    return np.concatenate(out, axis=0)


@dataclass(slots=True)
class Detection:
    """One BlazeFace detection in frame px.

    box:       (4,) float32 x0, y0, x1, y1.
    score:     confidence in [0, 1].
    keypoints: (6, 2) float32: right eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion
               (the subject's right/left: the right eye is on the image's left for a face looking at the camera).
    """

    box: np.ndarray
    score: float
    keypoints: np.ndarray


def _iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(data: np.ndarray, scores: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's weighted non-maximum suppression.

    data: (K, D) float rows that start with a box x0, y0, x1, y1 (key points may follow); scores: (K,).
    Each kept row is the score-weighted mean of every remaining row whose IoU with the best one exceeds
    ``iou_threshold``; it keeps the best one's score. Returns (M, D) rows and (M,) scores, best first.
    """
    order = np.argsort(-scores, kind="stable")
    data, scores = data[order], scores[order]
    kept_rows, kept_scores = [], []
    while len(scores):
        overlap = _iou_one_to_many(data[0, :4], data[:, :4]) > iou_threshold
        overlap[0] = True
        weights = scores[overlap]
        kept_rows.append((data[overlap] * weights[:, None]).sum(axis=0) / weights.sum())
        kept_scores.append(scores[0])
        data, scores = data[~overlap], scores[~overlap]
    if not kept_rows:
        return np.zeros((0, data.shape[1]), np.float32), np.zeros((0,), np.float32)
    return np.asarray(kept_rows, np.float32), np.asarray(kept_scores, np.float32)


TILE_FRACTION = 0.6
"""Side of a detection tile as a share of the frame's: four tiles in the corners overlap by 0.2 of the frame, so
a face up to that size lies whole in one of them."""


def tile_boxes(height: int, width: int) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) frame px of the four overlapping corner tiles, each TILE_FRACTION of the frame's sides."""
    tw, th = max(1, round(width * TILE_FRACTION)), max(1, round(height * TILE_FRACTION))
    return [(x0, y0, x0 + tw, y0 + th) for y0 in (0, height - th) for x0 in (0, width - tw)]


def one_per_face(
    detections: list[Detection], iou: float, contained: float = 0.6, also: Sequence[Detection] = ()
) -> list[Detection]:
    """The best-scored detection of each face not already in ``also``, best first: a detection is dropped when
    it overlaps a better one, or one of ``also``, by more than ``iou`` (intersection over union) or lies mostly
    inside or around it (intersection over the smaller box > ``contained``: a face the edge of a tile cut)."""
    kept: list[Detection] = []
    for d in sorted(detections, key=lambda d: -d.score):
        if not any(_same_face(d.box, k.box, iou, contained) for k in (*also, *kept)):
            kept.append(d)
    return kept


def _intersection(a: np.ndarray, b: np.ndarray) -> float:
    """Area shared by two x0, y0, x1, y1 boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return float(w * h) if w > 0 and h > 0 else 0.0


def _area(box: np.ndarray) -> float:
    return float((box[2] - box[0]) * (box[3] - box[1]))


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two x0, y0, x1, y1 boxes."""
    inter = _intersection(a, b)
    union = _area(a) + _area(b) - inter
    return inter / union if inter > 0 and union > 0 else 0.0


def _same_face(a: np.ndarray, b: np.ndarray, iou: float, contained: float) -> bool:
    """Two boxes of one face: intersection over union above ``iou``, or over the smaller box above ``contained``."""
    inter = _intersection(a, b)
    return inter > 0 and (box_iou(a, b) > iou or inter / max(min(_area(a), _area(b)), 1e-9) > contained)


class BlazeFaceDetector:
    """Find faces in a BGR frame: boxes, scores and 6 key points in frame px.

    The frame is letterboxed (aspect kept, black borders) to the model's square input (128 px short range,
    192 px full range), RGB in [-1, 1]; raw outputs are decoded against the SSD anchors and merged by
    weighted NMS, as in MediaPipe's face_detection graphs.

    min_score: detections below this confidence are dropped. nms_iou: IoU above which boxes merge.
    backend: an ONNX Runtime backend, or a ``DetectEngine`` (ONNX Runtime or torch on a device).
    model_dir: folder holding the converted .onnx files (default: ``mediapipe/`` of the models folders,
    ``realtime_swap.model_files``).
    """

    def __init__(
        self,
        model: BlazeFaceModel = BlazeFaceModel.SHORT_RANGE,
        backend: Backend | DetectEngine = Backend.AUTO,
        min_score: float = 0.5,
        nms_iou: float = 0.3,
        model_dir: str | Path | None = None,
        intra_op_threads: int | None = None,
    ) -> None:
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {min_score}")
        if not 0.0 < nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1], got {nms_iou}")
        self.model = BlazeFaceModel(model)
        spec = _SPECS[self.model]
        self.input_size = spec.input_size
        self.min_score = float(min_score)
        self.nms_iou = float(nms_iou)
        self.anchors = ssd_anchors(spec.input_size, spec.strides, spec.anchors_per_layer)
        path = Path(model_dir) / spec.file if model_dir else require_model_file(f"{MEDIAPIPE}/{spec.file}")
        engine = backend if isinstance(backend, DetectEngine) else DetectEngine(backend)
        session = open_detector_model(path, engine, intra_op_threads)
        check_model_io(session, path, spec.input_size, ("regressors", "classificators"))
        num_anchors = session.outputs[0].shape[1]
        if num_anchors != len(self.anchors):
            raise ModelError(f"{path}: {num_anchors} anchors in the model, {len(self.anchors)} expected")
        self.engine = engine
        self._session: DetectorModel = session

    def _geometry(self, h: int, w: int) -> tuple[int, int, int, int, np.ndarray]:
        """Letterbox of an h x w frame: resized width, height, offsets and the (2, 3) affine frame px -> input px."""
        size = self.input_size
        scale = size / max(h, w)
        new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
        ox, oy = (size - new_w) // 2, (size - new_h) // 2
        sx, sy = new_w / w, new_h / h
        # pixel-centre convention on both sides: u + 0.5 = s (x + 0.5) + offset
        matrix = np.array([[sx, 0.0, 0.5 * sx - 0.5 + ox], [0.0, sy, 0.5 * sy - 0.5 + oy]], np.float64)
        return new_w, new_h, ox, oy, matrix

    def letterbox(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model input (1, S, S, 3) float32 RGB [-1, 1] and the (2, 3) affine frame px -> input px."""
        h, w = image.shape[:2]
        size = self.input_size
        new_w, new_h, ox, oy, matrix = self._geometry(h, w)
        # INTER_AREA averages when shrinking (a 640 px frame goes to 128 px): less aliasing than a bilinear warp
        interp = cv2.INTER_AREA if new_w < w or new_h < h else cv2.INTER_LINEAR
        resized = cv2.resize(image, (new_w, new_h), interpolation=interp)
        canvas = np.zeros((size, size, 3), np.uint8)
        canvas[oy : oy + new_h, ox : ox + new_w] = resized
        tensor = canvas[None, :, :, ::-1].astype(np.float32) * np.float32(1.0 / 127.5) - np.float32(1.0)
        return tensor, matrix

    @property
    def reads_device_frames(self) -> bool:
        """True when ``detect`` takes the frame as a device tensor (the torch engine): the letterbox is then made
        where the frame already is, and only the model's outputs come back to the host."""
        return self.engine.backend is Backend.TORCH

    def detect(self, image: np.ndarray, pixels: Any = None, tiled: bool = False) -> list[Detection]:
        """Faces in an (H, W, 3) uint8 BGR image, best score first (tiled: the whole frame's, then those only the
        tiles found). No face: an empty list.

        pixels: the same image as a (H, W, 3) uint8 torch tensor on the engine's device, or None; used when
        ``reads_device_frames`` (else the host image is letterboxed and uploaded).
        tiled: also look in four overlapping corner tiles (:func:`tile_boxes`), each seen at 1 / TILE_FRACTION
        of the whole frame's scale, and keep one detection per face: faces that are small in the frame (several
        people, a group photo) are too few model pixels in the whole frame's letterbox.
        """
        image = check_bgr_image(image, "BlazeFaceDetector.detect")
        found = self._detect_once(image, pixels)
        if not tiled:
            return found
        in_tiles = []
        for x0, y0, x1, y1 in tile_boxes(*image.shape[:2]):
            part = None if pixels is None else pixels[y0:y1, x0:x1]
            for d in self._detect_once(image[y0:y1, x0:x1], part):  # a view: cv2.resize reads it in place
                offset = np.array([x0, y0], np.float32)
                in_tiles.append(Detection(d.box + np.tile(offset, 2), d.score, d.keypoints + offset))
        # a face the whole frame found keeps that detection (its box is on the same scale as every other frame's)
        return found + one_per_face(in_tiles, self.nms_iou, also=found)

    def _detect_once(self, image: np.ndarray, pixels: Any) -> list[Detection]:
        tensor: Any
        if pixels is not None and self.reads_device_frames:
            from realtime_swap.gpu.ops import letterbox

            new_w, new_h, ox, oy, matrix = self._geometry(*image.shape[:2])
            tensor = letterbox(pixels, self.input_size, new_w, new_h, ox, oy)
        else:
            tensor, matrix = self.letterbox(image)
        regressors, logits = self._session.run(tensor)
        return self.decode(regressors[0], logits[0, :, 0], matrix)

    def decode(self, regressors: np.ndarray, logits: np.ndarray, matrix: np.ndarray) -> list[Detection]:
        """Detections from raw outputs (A, 16) and (A,) given the frame -> input affine of ``letterbox``."""
        clipped = np.clip(logits.astype(np.float64), -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)
        scores = 1.0 / (1.0 + np.exp(-clipped))
        keep = scores >= self.min_score
        if not keep.any():
            return []
        raw = regressors[keep].astype(np.float64)
        anchors = self.anchors[keep].astype(np.float64)
        scores = scores[keep]
        size = self.input_size
        # model units: input px relative to the anchor (anchors are normalised), edge convention
        points = raw.reshape(-1, 2 + NUM_KEYPOINTS, 2) / size
        centre = points[:, 0] + anchors
        half = points[:, 1] / 2.0
        keypoints = points[:, 2:] + anchors[:, None, :]
        valid = (half > 0).all(axis=1)
        if not valid.any():
            return []
        corners = np.stack([centre - half, centre + half], axis=1)  # (K, 2, 2)
        data = np.concatenate([corners, keypoints], axis=1)[valid].reshape(int(valid.sum()), -1)
        merged, merged_scores = weighted_nms(data, scores[valid], self.nms_iou)
        # normalised -> input px (pixel centres) -> frame px
        pts = merged.reshape(len(merged), -1, 2) * size - 0.5
        inv = cv2.invertAffineTransform(matrix)
        pts = pts @ inv[:, :2].T + inv[:, 2]
        out = []
        for p, score in zip(pts.astype(np.float32), merged_scores, strict=True):
            box = np.array([p[0, 0], p[0, 1], p[1, 0], p[1, 1]], np.float32)
            out.append(Detection(box=box, score=float(score), keypoints=np.ascontiguousarray(p[2:])))
        return out
