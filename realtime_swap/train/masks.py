"""Training masks drawn from 468-point FaceMesh landmarks: the face hull and the eyes-and-mouth region.

Index sets are MediaPipe FaceMesh's contour loops (right/left = the subject's). Masks are (S, S) float32 in
[0, 1]; landmarks are (468, 2) float32 crop px.
"""

from __future__ import annotations

import cv2
import numpy as np

RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)


def _fill_hull(mask: np.ndarray, points: np.ndarray) -> None:
    hull = cv2.convexHull(np.round(points).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1.0)


def face_hull_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """(S, S) float32 mask: 1 inside the convex hull of all landmarks, 0 outside."""
    mask = np.zeros((size, size), np.float32)
    _fill_hull(mask, landmarks)
    return mask


def eyes_mouth_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """(S, S) float32 mask of both eyes and the mouth: their hulls, dilated by ~S/32 px and softened."""
    mask = np.zeros((size, size), np.float32)
    for loop in (RIGHT_EYE, LEFT_EYE, LIPS_OUTER):
        _fill_hull(mask, landmarks[list(loop)])
    grow = max(1, size // 32)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    grown = cv2.dilate(mask, kernel)
    blurred = cv2.GaussianBlur(grown, (0, 0), sigmaX=grow / 2)
    return np.clip(blurred, 0.0, 1.0)
