"""Face masks from FaceMesh landmarks, in the pixels of an aligned crop.

A mask is ``(S, S) float32`` in ``[0, 1]``: the face-oval polygon filled, optionally with the mouth opening
(inner lip contour) and the eyes cut out, so that whatever covers them in the frame (a hand, a microphone, the
real mouth) can be kept from the original. Edges are anti-aliased by area coverage: polygons are filled at
``_SUPERSAMPLE`` times the resolution and area-averaged down, pixel centres following OpenCV's convention
(pixel ``(i, j)`` centred at ``(x, y) = (j, i)``, as everywhere in ``realtime_swap.align``).
"""

from __future__ import annotations

import cv2
import numpy as np

from realtime_swap.align import transform_points
from realtime_swap.detect.mesh import FACE_OVAL, LEFT_EYE, LIPS_INNER, NUM_LANDMARKS, RIGHT_EYE
from realtime_swap.types import AlignedFace

_SUPERSAMPLE = 4
_SUBPIXEL_BITS = 4  # cv2.fillPoly ``shift``: vertices at 1/16 of a supersampled pixel
_ERODE_KERNEL = np.ones((2, 2), dtype=np.uint8)
# A Gaussian edge rises from 10 % to 90 % over 2 * 1.2816 sigma.
_FEATHER_TO_SIGMA = 1.0 / (2.0 * 1.2815516)
_MAX_COORD = 1e6


def landmarks_in_crop(landmarks: np.ndarray, aligned: AlignedFace | np.ndarray) -> np.ndarray:
    """Frame landmarks (N, 2) px -> the crop's px with the aligned face's matrix (or a (2, 3) matrix).

    Returns (N, 2) float32.
    """
    matrix = aligned.matrix if isinstance(aligned, AlignedFace) else aligned
    return transform_points(landmarks, matrix)


def _check_crop_mesh(landmarks: np.ndarray, size: int) -> np.ndarray:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"mask size must be a positive int, got {size!r}")
    pts = np.asarray(landmarks)
    if pts.ndim != 2 or pts.shape[0] != NUM_LANDMARKS or pts.shape[1] not in (2, 3):
        raise ValueError(f"mask: expected ({NUM_LANDMARKS}, 2) landmarks in crop px, got {pts.shape}")
    pts = pts[:, :2].astype(np.float64)
    if not np.isfinite(pts).all() or np.abs(pts).max() > _MAX_COORD:
        raise ValueError(f"mask: landmarks must be finite and within {_MAX_COORD:g} px of the crop")
    return pts


def _pixel_box(polygon: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """Crop-pixel box [x0, x1) x [y0, y1) around a polygon with a 1 px margin, clipped to the crop."""
    lo = np.floor(polygon.min(axis=0)).astype(int) - 1
    hi = np.ceil(polygon.max(axis=0)).astype(int) + 2
    return max(0, lo[0]), max(0, lo[1]), min(size, hi[0]), min(size, hi[1])


def _fill_exact(polygon: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Fine (supersampled) uint8 canvas of ``box``, 255 where the fine pixel centres lie inside ``polygon``.

    cv2.fillPoly fills a scanline from round(x_left) to round(x_right) inclusive (likewise rows), half a
    pixel too far on each side; filling the polygon shifted by +0.5 fine px and eroding with a 2 x 2 box
    anchored top-left leaves exactly the pixels with centres in [x_left, x_right], so edges land where the
    polygon is and a zero-area contour (a closed mouth) fills nothing.
    """
    x0, y0, x1, y1 = box
    canvas = np.zeros(((y1 - y0) * _SUPERSAMPLE, (x1 - x0) * _SUPERSAMPLE), dtype=np.uint8)
    # Crop px x (pixel centres at integers, the box starting at pixel x0) is (x - x0 + 0.5) * f - 0.5 in the
    # f-times finer grid of the box; +0.5 as above.
    origin = np.array([x0, y0], dtype=np.float64)
    fine = np.round((polygon - origin + 0.5) * (_SUPERSAMPLE << _SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillPoly(canvas, [fine], 255, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    return cv2.erode(canvas, _ERODE_KERNEL, dst=canvas, anchor=(0, 0))


def _coverage(pts: np.ndarray, size: int, fill: tuple[int, ...], cut: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """Area coverage of polygon ``fill`` minus polygons ``cut`` (index tuples into ``pts``), (S, S) float32.

    Only the fill polygon's bounding box is rendered, each hole only in its own box.
    """
    out = np.zeros((size, size), dtype=np.float32)
    polygon = pts[list(fill)]
    x0, y0, x1, y1 = box = _pixel_box(polygon, size)
    if x1 <= x0 or y1 <= y0:
        return out
    canvas = _fill_exact(polygon, box)
    f = _SUPERSAMPLE
    for contour in cut:
        hole_polygon = pts[list(contour)]
        hx0, hy0, hx1, hy1 = _pixel_box(hole_polygon, size)
        hx0, hy0, hx1, hy1 = max(hx0, x0), max(hy0, y0), min(hx1, x1), min(hy1, y1)
        if hx1 <= hx0 or hy1 <= hy0:
            continue
        hole = _fill_exact(hole_polygon, (hx0, hy0, hx1, hy1))
        region = canvas[(hy0 - y0) * f : (hy1 - y0) * f, (hx0 - x0) * f : (hx1 - x0) * f]
        region &= ~hole  # a view: cuts the hole out of the canvas in place
    small = cv2.resize(canvas, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    out[y0:y1, x0:x1] = small.astype(np.float32) * np.float32(1.0 / 255.0)
    return out


def _feather(mask: np.ndarray, feather_px: float) -> np.ndarray:
    if not np.isfinite(feather_px) or feather_px < 0:
        raise ValueError(f"feather_px must be >= 0, got {feather_px!r}")
    if feather_px == 0:
        return mask
    sigma = float(feather_px) * _FEATHER_TO_SIGMA
    out = cv2.GaussianBlur(mask, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)
    return np.clip(out, 0.0, 1.0, out=out)


def mesh_mask(
    landmarks_in_crop_px: np.ndarray,
    size: int,
    exclude_mouth: bool = False,
    exclude_eyes: bool = False,
    feather_px: float = 0.0,
) -> np.ndarray:
    """The face-oval mask of a FaceMesh in crop space: (S, S) float32 in [0, 1].

    landmarks_in_crop_px: (468, 2) crop px (see ``landmarks_in_crop``). exclude_mouth cuts out the mouth
    opening (inner lip contour; nothing when the mouth is closed), exclude_eyes the two eye contours.
    feather_px: width in px of the soft edge (10 % -> 90 %), a Gaussian blur that keeps the 0.5 level on the
    polygon edge; 0 gives the anti-aliased hard edge.
    """
    pts = _check_crop_mesh(landmarks_in_crop_px, size)
    cut: list[tuple[int, ...]] = []
    if exclude_mouth:
        cut.append(LIPS_INNER)
    if exclude_eyes:
        cut.extend((RIGHT_EYE, LEFT_EYE))
    return _feather(_coverage(pts, int(size), FACE_OVAL, tuple(cut)), feather_px)


def mouth_mask(landmarks_in_crop_px: np.ndarray, size: int, feather_px: float = 0.0) -> np.ndarray:
    """The mouth opening (inner lip contour) of a FaceMesh in crop space: (S, S) float32 in [0, 1].

    Same conventions as ``mesh_mask``; the blend stage uses it to keep the frame's own mouth.
    """
    pts = _check_crop_mesh(landmarks_in_crop_px, size)
    return _feather(_coverage(pts, int(size), LIPS_INNER, ()), feather_px)
