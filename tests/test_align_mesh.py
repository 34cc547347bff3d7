"""FaceMesh-468 topology: contours, the iBUG-68 correspondence and the 5 ArcFace keypoints, checked on
MediaPipe's canonical face (realtime_swap.detect.mesh.CANONICAL_MESH_3D)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from realtime_swap.align import ARCFACE_TEMPLATE_112, DFL_TEMPLATE_33, transform_points, umeyama
from realtime_swap.detect import mesh
from realtime_swap.detect.mesh import (
    CANONICAL_MESH_3D,
    MESH_TO_68,
    canonical_landmarks_2d,
    keypoints_from_mesh,
    mesh_to_68,
)

CONTOURS = {
    "FACE_OVAL": (mesh.FACE_OVAL, 36),
    "LIPS_OUTER": (mesh.LIPS_OUTER, 20),
    "LIPS_INNER": (mesh.LIPS_INNER, 20),
    "RIGHT_EYE": (mesh.RIGHT_EYE, 16),
    "LEFT_EYE": (mesh.LEFT_EYE, 16),
    "RIGHT_EYEBROW": (mesh.RIGHT_EYEBROW, 10),
    "LEFT_EYEBROW": (mesh.LEFT_EYEBROW, 10),
}
# iBUG 68 point -> its mirror image (the standard horizontal-flip permutation).
IBUG_FLIP = (
    [16 - i for i in range(17)]
    + [26 - i for i in range(10)]
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65]
)


def mesh_mirror() -> np.ndarray:
    """Vertex -> its mirror vertex, from the canonical mesh (exactly symmetric about x = 0)."""
    mirrored = CANONICAL_MESH_3D * np.array([-1.0, 1.0, 1.0])
    dist = np.abs(CANONICAL_MESH_3D[:, None, :] - mirrored[None, :, :]).max(axis=2)
    assert dist.min(axis=1).max() < 1e-9, "canonical mesh lost its symmetry"
    return dist.argmin(axis=1)


def segments_cross(p1: np.ndarray, p2: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> bool:
    def orient(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> float:
        return float((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    return orient(p1, p2, q1) * orient(p1, p2, q2) < 0 and orient(q1, q2, p1) * orient(q1, q2, p2) < 0


def test_canonical_mesh_is_the_mediapipe_face() -> None:
    assert CANONICAL_MESH_3D.shape == (468, 3) and not CANONICAL_MESH_3D.flags.writeable
    mirror = mesh_mirror()
    assert (mirror[mirror] == np.arange(468)).all()
    assert int((mirror == np.arange(468)).sum()) == 28  # vertices on the midline
    lm = canonical_landmarks_2d(200.0, (320.0, 240.0))
    assert lm[10, 1] < lm[168, 1] < lm[1, 1] < lm[13, 1] < lm[152, 1]  # forehead, nose, mouth, chin, down
    assert lm[33, 0] < lm[133, 0] < lm[362, 0] < lm[263, 0]  # right eye on the image's left
    oval = lm[list(mesh.FACE_OVAL)]
    assert np.ptp(oval[:, 0]) == pytest.approx(200.0, abs=1e-3)
    assert oval.min(axis=0) + np.ptp(oval, axis=0) / 2 == pytest.approx([320.0, 240.0], abs=1e-3)


@pytest.mark.parametrize("name", sorted(CONTOURS))
def test_contours_are_simple_closed_polygons(name: str) -> None:
    contour, length = CONTOURS[name]
    assert len(contour) == length == len(set(contour))
    assert all(0 <= i < 468 for i in contour)
    pts = canonical_landmarks_2d(200.0).astype(np.float64)[list(contour)]
    edges = [(pts[i], pts[(i + 1) % length]) for i in range(length)]
    for i in range(length):
        for j in range(i + 2, length):
            if i == 0 and j == length - 1:
                continue
            assert not segments_cross(*edges[i], *edges[j]), f"{name}: edges {i} and {j} cross"
    area = 0.5 * float(np.dot(pts[:, 0], np.roll(pts[:, 1], -1)) - np.dot(pts[:, 1], np.roll(pts[:, 0], -1)))
    assert abs(area) > 1.0


def test_contours_are_mirror_images() -> None:
    mirror = mesh_mirror()
    pairs = [("RIGHT_EYE", "LEFT_EYE"), ("RIGHT_EYEBROW", "LEFT_EYEBROW")]
    for right, left in pairs:
        assert {int(mirror[i]) for i in CONTOURS[right][0]} == set(CONTOURS[left][0])
    for name in ("FACE_OVAL", "LIPS_OUTER", "LIPS_INNER"):
        assert {int(mirror[i]) for i in CONTOURS[name][0]} == set(CONTOURS[name][0])
    # The mouth opening lies inside the lips, the lips and eyes inside the oval.
    lm = canonical_landmarks_2d(200.0).astype(np.float32)
    oval = lm[list(mesh.FACE_OVAL)].reshape(-1, 1, 2)
    outer = lm[list(mesh.LIPS_OUTER)].reshape(-1, 1, 2)
    for i in (*mesh.LIPS_OUTER, *mesh.RIGHT_EYE, *mesh.LEFT_EYE):
        assert cv2.pointPolygonTest(oval, (float(lm[i, 0]), float(lm[i, 1])), False) > 0
    for i in mesh.LIPS_INNER:
        assert cv2.pointPolygonTest(outer, (float(lm[i, 0]), float(lm[i, 1])), False) >= 0


def test_mesh_to_68_is_mirror_consistent() -> None:
    assert len(MESH_TO_68) == 68 and all(0 <= i < 468 for i in MESH_TO_68)
    mirror = mesh_mirror()
    for k, flipped in enumerate(IBUG_FLIP):
        assert mirror[MESH_TO_68[k]] == MESH_TO_68[flipped], k


def test_mesh_to_68_fits_deepfacelabs_mean_face() -> None:
    # The 33 points DFL aligns on, taken from the canonical mesh, against DFL's mean face (unit square).
    lm68 = mesh_to_68(canonical_landmarks_2d(200.0, (320.0, 240.0)))
    used = lm68[[*range(17, 49), 54]]
    fit = umeyama(used, DFL_TEMPLATE_33)
    residual = np.linalg.norm(transform_points(used, fit) - DFL_TEMPLATE_33, axis=1)
    assert residual.max() < 0.05  # measured 0.048 (inner eyebrow end), different faces
    assert float(np.sqrt((residual**2).mean())) < 0.025  # measured 0.022
    # The fit is upright and centred: no roll, template centre near the face centre.
    assert abs(np.degrees(np.arctan2(fit[1, 0], fit[0, 0]))) < 1.0


def test_keypoints_from_mesh_order_and_template_fit() -> None:
    lm = canonical_landmarks_2d(200.0, (320.0, 240.0))
    kps = keypoints_from_mesh(lm)
    assert kps.shape == (5, 2) and kps.dtype == np.float32
    right_eye, left_eye, nose, right_mouth, left_mouth = kps
    assert right_eye[0] < nose[0] < left_eye[0]  # first point: the eye on the image's left
    assert right_mouth[0] < nose[0] < left_mouth[0]
    assert max(right_eye[1], left_eye[1]) < nose[1] < min(right_mouth[1], left_mouth[1])
    np.testing.assert_allclose(kps[1], lm[list(mesh.LEFT_EYE)].mean(axis=0), atol=1e-4)
    np.testing.assert_allclose(kps[3], lm[61])
    # A frontal face's keypoints fit the ArcFace template up to face-shape differences (measured 1.4 px).
    fit = umeyama(kps, ARCFACE_TEMPLATE_112)
    residual = np.linalg.norm(transform_points(kps, fit) - ARCFACE_TEMPLATE_112, axis=1)
    assert residual.max() < 2.0


def test_keypoints_follow_a_mirrored_image() -> None:
    # Flip the picture: the subject's right eye is now on the image's right, and the mesh's own right-eye
    # vertices (which follow the subject) are there too, so the keypoint order swaps sides on the image.
    lm = canonical_landmarks_2d(200.0, (320.0, 240.0))
    flipped = lm * np.array([-1.0, 1.0], np.float32) + np.array([639.0, 0.0], np.float32)
    kps = keypoints_from_mesh(flipped)
    assert kps[0, 0] > kps[1, 0]
    np.testing.assert_allclose(kps[0, 0], 639.0 - keypoints_from_mesh(lm)[0, 0], atol=1e-3)


def test_mesh_functions_reject_other_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(468, 2\)"):
        keypoints_from_mesh(np.zeros((68, 2)))
    with pytest.raises(ValueError, match=r"\(468, 2\)"):
        mesh_to_68(np.zeros((468,)))
    assert mesh_to_68(np.zeros((468, 3))).shape == (68, 2)
