"""Face alignment: similarity fits, DeepFaceLab face types, the ArcFace template, crops and their inverses.

Pixel convention (OpenCV's, used by ``cv2.warpAffine`` and ``cv2.remap``): the centre of the pixel in row ``i``,
column ``j`` is the point ``(x, y) = (j, i)``; an ``H x W`` image covers ``[-0.5, W - 0.5] x [-0.5, H - 0.5]``.
Landmarks, keypoints and every matrix here use it, in the frame and in the crop alike, so a crop made with
``cv2.warpAffine(frame, M, (S, S))`` is pasted back with ``cv2.warpAffine(crop, invert_affine(M), (W, H))``.

DeepFaceLab face types (HALF, MID_FULL, FULL, WHOLE_FACE, HEAD) follow DFL's
``facelib/LandmarksProcessor.get_transform_mat``: a similarity fit of 33 of the 68 landmarks (eyebrows, nose,
eyes, mouth corners) to DFL's mean face ``landmarks_2D_new`` in a unit square, then a square crop around that
unit square with DFL's padding and offsets. One deliberate difference: DFL maps the unit square onto
``[0, S]`` in OpenCV coordinates, which puts the template centre half a pixel right of and below the crop's
centre and makes crops of the same face at two sizes disagree by half a pixel; here the unit square maps onto
the crop's pixel area ``[-0.5, S - 0.5]``, i.e. DFL's matrix followed by a shift of -0.5 px. Crops at any size
are then exact resamplings of each other (see ``resize_crop_matrix``).

FaceType.ARCFACE follows InsightFace's ``utils/face_align.estimate_norm`` exactly, since recognition and swap
models (ArcFace, inswapper) were trained on it: the 5-point template ``ARCFACE_TEMPLATE_112`` is in OpenCV
pixel coordinates of a 112 px crop; a size that is a multiple of 112 scales it by ``size / 112``; a size that is
a multiple of 128 (and not of 112) scales it by ``size / 128`` and shifts it right by ``8 * size / 128`` px, so
at 128 px the face keeps its 112 px scale with an 8 px margin left and right (inswapper_128's input).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from realtime_swap.detect.mesh import NUM_LANDMARKS, keypoints_from_mesh, mesh_to_68
from realtime_swap.types import AlignedFace, FaceType, check_bgr_image

# InsightFace's ArcFace template: right eye, left eye, nose tip, right and left mouth corner, px of a 112 crop.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

# DeepFaceLab's mean face ``landmarks_2D_new`` in its unit square: iBUG points 17..48 and 54.
DFL_TEMPLATE_33 = np.array(
    [
        [0.000213256, 0.106454],  # 17 right eyebrow
        [0.0752622, 0.038915],
        [0.18113, 0.0187482],
        [0.29077, 0.0344891],
        [0.393397, 0.0773906],
        [0.586856, 0.0773906],  # 22 left eyebrow
        [0.689483, 0.0344891],
        [0.799124, 0.0187482],
        [0.904991, 0.038915],
        [0.98004, 0.106454],
        [0.490127, 0.203352],  # 27 nose bridge
        [0.490127, 0.307009],
        [0.490127, 0.409805],
        [0.490127, 0.515625],
        [0.36688, 0.587326],  # 31 nostrils
        [0.426036, 0.609345],
        [0.490127, 0.628106],
        [0.554217, 0.609345],
        [0.613373, 0.587326],
        [0.121737, 0.216423],  # 36 right eye
        [0.187122, 0.178758],
        [0.265825, 0.179852],
        [0.334606, 0.231733],
        [0.260918, 0.245099],
        [0.182743, 0.244077],
        [0.645647, 0.231733],  # 42 left eye
        [0.714428, 0.179852],
        [0.793132, 0.178758],
        [0.858516, 0.216423],
        [0.79751, 0.244077],
        [0.719335, 0.245099],
        [0.254149, 0.780233],  # 48 right mouth corner
        [0.726104, 0.780233],  # 54 left mouth corner
    ],
    dtype=np.float64,
)
_DFL_FIT_INDICES = (*range(17, 49), 54)

# DFL's FaceType_to_padding_remove_align: padding of the crop around the unit square, in unit-square diagonals.
DFL_PADDING: dict[FaceType, float] = {
    FaceType.HALF: 0.0,
    FaceType.MID_FULL: 0.0675,
    FaceType.FULL: 0.2109375,
    FaceType.WHOLE_FACE: 0.40,
    FaceType.HEAD: 0.70,
}
# WHOLE_FACE moves the crop up by 7 % of the unit square (more forehead), HEAD by 50 % (DFL's offsets).
_DFL_UP_SHIFT: dict[FaceType, float] = {FaceType.WHOLE_FACE: 0.07, FaceType.HEAD: 0.50}


def _as_points(points: np.ndarray, what: str, min_count: int = 1) -> np.ndarray:
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < min_count:
        raise ValueError(f"{what}: expected (N, 2) points with N >= {min_count}, got {pts.shape}")
    if not np.issubdtype(pts.dtype, np.number):
        raise ValueError(f"{what}: expected numeric points, got {pts.dtype}")
    pts = pts.astype(np.float64)
    if not np.isfinite(pts).all():
        raise ValueError(f"{what}: points contain NaN or inf")
    return pts


def _as_matrix(matrix: np.ndarray, what: str) -> np.ndarray:
    mat = np.asarray(matrix, dtype=np.float64)
    if mat.shape != (2, 3):
        raise ValueError(f"{what}: expected a (2, 3) affine matrix, got {mat.shape}")
    if not np.isfinite(mat).all():
        raise ValueError(f"{what}: matrix contains NaN or inf")
    return mat


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"crop size must be a positive int, got {size!r}")
    return int(size)


def umeyama(src: np.ndarray, dst: np.ndarray, estimate_scale: bool = True) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking ``src`` onto ``dst``.

    Umeyama (1991), "Least-squares estimation of transformation parameters between two point patterns",
    eqs. 34-43, with the reflection guard. src, dst: (N, 2) px, N >= 2. Returns (2, 3) float64 ``M`` with
    ``dst ~= src @ M[:, :2].T + M[:, 2]``; without ``estimate_scale`` the scale is 1 (rigid fit).
    Raises ValueError on mismatched shapes or when ``src`` is a single repeated point.
    """
    s = _as_points(src, "umeyama src", min_count=2)
    d = _as_points(dst, "umeyama dst", min_count=2)
    if s.shape != d.shape:
        raise ValueError(f"umeyama: src {s.shape} and dst {d.shape} differ in shape")
    n = s.shape[0]
    s_mean, d_mean = s.mean(axis=0), d.mean(axis=0)
    s_c, d_c = s - s_mean, d - d_mean
    s_var = float((s_c**2).sum() / n)
    if s_var <= 1e-24:
        raise ValueError("umeyama: src points are all the same point")
    cov = d_c.T @ s_c / n
    u, sing, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1] = -1.0
    rot = u @ np.diag(sign) @ vt
    scale = float((sing * sign).sum() / s_var) if estimate_scale else 1.0
    out = np.empty((2, 3), dtype=np.float64)
    out[:, :2] = scale * rot
    out[:, 2] = d_mean - scale * rot @ s_mean
    return out


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (N, 2) points; returns (N, 2) float32 (computed in float64)."""
    pts = _as_points(points, "transform_points", min_count=0)
    mat = _as_matrix(matrix, "transform_points")
    return (pts @ mat[:, :2].T + mat[:, 2]).astype(np.float32)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a (2, 3) affine matrix, (2, 3) float64. Raises ValueError if it is singular."""
    mat = _as_matrix(matrix, "invert_affine")
    lin = mat[:, :2]
    det = float(np.linalg.det(lin))
    if not abs(det) > 1e-12 * float(np.abs(lin).max()) ** 2:
        raise ValueError(f"invert_affine: singular matrix (det {det:.3g})")
    inv = np.linalg.inv(lin)
    out = np.empty((2, 3), dtype=np.float64)
    out[:, :2] = inv
    out[:, 2] = -inv @ mat[:, 2]
    return out


def resize_crop_matrix(matrix: np.ndarray, from_size: int, to_size: int) -> np.ndarray:
    """The frame -> crop matrix of the same crop resampled from ``from_size`` to ``to_size`` px.

    Pixel centres, not corners, scale: crop px ``p`` at ``from_size`` is ``(p + 0.5) * k - 0.5`` at ``to_size``
    (``k = to_size / from_size``), which is what ``cv2.resize`` does. Returns (2, 3) float64.
    """
    mat = _as_matrix(matrix, "resize_crop_matrix")
    k = _check_size(to_size) / _check_size(from_size)
    out = mat * k
    out[:, 2] += 0.5 * (k - 1.0)
    return out


def crop_outline(matrix: np.ndarray, size: int) -> np.ndarray:
    """The four corners of an (S, S) crop's pixel area in frame px: (4, 2) float32, clockwise from top-left."""
    size = _check_size(size)
    lo, hi = -0.5, size - 0.5
    corners = np.array([[lo, lo], [hi, lo], [hi, hi], [lo, hi]])
    return transform_points(corners, invert_affine(matrix))


def arcface_template(size: int) -> np.ndarray:
    """The ArcFace 5-point template for an (S, S) crop, (5, 2) float64 px (InsightFace's sizing rule).

    S must be a multiple of 112 (template scaled by S/112) or of 128 (scaled by S/128, shifted 8*S/128 px
    right). Raises ValueError otherwise.
    """
    size = _check_size(size)
    if size % 112 == 0:
        return ARCFACE_TEMPLATE_112 * (size / 112.0)
    if size % 128 == 0:
        ratio = size / 128.0
        return ARCFACE_TEMPLATE_112 * ratio + np.array([8.0 * ratio, 0.0])
    raise ValueError(f"ArcFace crops must be a multiple of 112 or 128 px, got {size}")


def _keypoints_from_68(lm68: np.ndarray) -> np.ndarray:
    kps = [lm68[36:42].mean(axis=0), lm68[42:48].mean(axis=0), lm68[30], lm68[48], lm68[54]]
    return np.stack(kps).astype(np.float64)


def _head_yaw(lm68_unit: np.ndarray) -> float:
    """DFL's ``estimate_averaged_yaw`` on landmarks in the unit square: > 0 when the nose is nearer the
    image-left side of the jaw."""
    x = lm68_unit[:, 0]
    left = ((x[27] - x[0]) + (x[28] - x[1]) + (x[29] - x[2])) / 3.0
    right = ((x[16] - x[27]) + (x[15] - x[28]) + (x[14] - x[29])) / 3.0
    return float(right - left)


def _dfl_transform(lm68: np.ndarray, face_type: FaceType, size: int) -> np.ndarray:
    to_unit = umeyama(lm68[list(_DFL_FIT_INDICES)], DFL_TEMPLATE_33)
    # The crop is a square in unit-square coordinates: DFL builds it from the unit square's diagonals scaled
    # by (padding * sqrt(2) + 0.5), i.e. a side of 1 + 2 * sqrt(2) * padding, centred on (0.5, 0.5) + offsets.
    side = 1.0 + 2.0 * math.sqrt(2.0) * DFL_PADDING[face_type]
    cx, cy = 0.5, 0.5 - _DFL_UP_SHIFT.get(face_type, 0.0)
    if face_type is FaceType.HEAD:
        yaw = _head_yaw(lm68 @ to_unit[:, :2].T + to_unit[:, 2])
        cx += 0.5 * yaw * abs(math.tanh(2.0 * yaw))  # DFL damps the yaw shift near frontal
    k = size / side
    unit_to_crop = np.array(
        [[k, 0.0, -k * (cx - side / 2.0) - 0.5], [0.0, k, -k * (cy - side / 2.0) - 0.5]], dtype=np.float64
    )
    out = np.empty((2, 3), dtype=np.float64)
    out[:, :2] = unit_to_crop[:, :2] @ to_unit[:, :2]
    out[:, 2] = unit_to_crop[:, :2] @ to_unit[:, 2] + unit_to_crop[:, 2]
    return out


def face_transform(landmarks: np.ndarray, face_type: FaceType | str, size: int) -> np.ndarray:
    """The frame px -> crop px matrix of an (S, S) aligned crop: (2, 3) float64.

    landmarks: (468, 2) FaceMesh points, (68, 2) iBUG points, or (5, 2) ArcFace keypoints (right eye, left
    eye, nose tip, right and left mouth corner), frame px. DFL face types need 468 or 68 points (through
    MESH_TO_68 for a mesh); ARCFACE takes any of the three (keypoints_from_mesh for a mesh).
    Raises ValueError on a wrong shape, a size ArcFace does not define, or degenerate landmarks.
    """
    face_type = FaceType(face_type)
    size = _check_size(size)
    pts = np.asarray(landmarks)
    if pts.ndim == 2 and pts.shape[0] == NUM_LANDMARKS and pts.shape[1] == 3:
        pts = pts[:, :2]
    pts = _as_points(pts, "face_transform landmarks")
    n = pts.shape[0]
    if n not in (NUM_LANDMARKS, 68, 5):
        raise ValueError(f"face_transform: expected 468, 68 or 5 landmarks, got {pts.shape}")
    if face_type is FaceType.ARCFACE:
        if n == NUM_LANDMARKS:
            kps = keypoints_from_mesh(pts).astype(np.float64)
        elif n == 68:
            kps = _keypoints_from_68(pts)
        else:
            kps = pts
        return umeyama(kps, arcface_template(size))
    if n == 5:
        raise ValueError(f"face_transform: face type {face_type.value} needs 468 or 68 landmarks, got 5")
    lm68 = mesh_to_68(pts).astype(np.float64) if n == NUM_LANDMARKS else pts
    return _dfl_transform(lm68, face_type, size)


def align_face(image: np.ndarray, landmarks: np.ndarray, face_type: FaceType | str, size: int) -> AlignedFace:
    """Cut an aligned (S, S) face out of a frame.

    image: (H, W, 3) uint8 BGR frame. landmarks: as ``face_transform`` (frame px). Bilinear sampling, border
    pixels replicated outside the frame. Returns AlignedFace with the (S, S, 3) uint8 BGR crop, the frame ->
    crop matrix and mask None; ``cv2.warpAffine(crop, invert_affine(matrix), (W, H))`` pastes it back.
    """
    image = check_bgr_image(image, "align_face image")
    face_type = FaceType(face_type)
    matrix = face_transform(landmarks, face_type, size)
    crop = cv2.warpAffine(
        image, matrix, (int(size), int(size)), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return AlignedFace(image=crop, matrix=matrix, face_type=face_type, mask=None)
