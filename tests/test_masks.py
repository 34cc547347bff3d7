"""Mesh masks in crop space: oval filled, mouth and eyes cut out, anti-aliased edges on pixel centres."""

from __future__ import annotations

import numpy as np
import pytest
from test_align import astronaut_bgr, astronaut_mesh

from realtime_swap.align import align_face, face_transform, transform_points
from realtime_swap.detect import mesh
from realtime_swap.detect.mesh import canonical_landmarks_2d
from realtime_swap.masks import landmarks_in_crop, mesh_mask, mouth_mask
from realtime_swap.types import FaceType

SIZE = 256


def crop_face() -> np.ndarray:
    """The canonical face, 180 px wide, in a 256 px crop (crop px); its mouth is slightly open."""
    return canonical_landmarks_2d(180.0, (128.0, 135.0))


def rectangle_face(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """468 landmarks whose face oval is the rectangle (x0, y0)-(x1, y1): 9 of its 36 points along each side,
    starting at the corners; every other landmark at the rectangle's centre."""
    pts = np.tile([(x0 + x1) / 2.0, (y0 + y1) / 2.0], (468, 1))
    corners = np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
    for k, index in enumerate(mesh.FACE_OVAL):
        side, step = divmod(k, 9)
        pts[index] = corners[side] + (corners[(side + 1) % 4] - corners[side]) * step / 9.0
    return pts


def polygon_area(pts: np.ndarray) -> float:
    x, y = pts[:, 0].astype(np.float64), pts[:, 1].astype(np.float64)
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def polygon_centroid(pts: np.ndarray) -> np.ndarray:
    x, y = pts[:, 0].astype(np.float64), pts[:, 1].astype(np.float64)
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    return np.array([((x + xn) * cross).sum(), ((y + yn) * cross).sum()]) / (3.0 * cross.sum())


def at(mask: np.ndarray, point: np.ndarray) -> float:
    x, y = np.round(point).astype(int)
    return float(mask[y, x])


def test_mesh_mask_is_one_inside_the_oval_and_zero_outside() -> None:
    lm = crop_face()
    m = mesh_mask(lm, SIZE)
    assert m.shape == (SIZE, SIZE) and m.dtype == np.float32
    assert m.min() == 0.0 and m.max() == 1.0
    for index in (1, 4, 9, 50, 280, 13, 33, 263):  # nose, forehead, cheeks, mouth, eyes
        assert at(m, lm[index]) == 1.0, index
    assert m[:20, :20].max() == 0.0 and m[-5:, :].max() == 0.0 and m[:, -20:].max() == 0.0
    assert float(m.sum()) == pytest.approx(polygon_area(lm[list(mesh.FACE_OVAL)]), rel=2e-3)


def test_mouth_and_eyes_are_cut_out_when_asked() -> None:
    lm = crop_face()
    full = mesh_mask(lm, SIZE)
    no_mouth = mesh_mask(lm, SIZE, exclude_mouth=True)
    no_eyes = mesh_mask(lm, SIZE, exclude_eyes=True)
    neither = mesh_mask(lm, SIZE, exclude_mouth=True, exclude_eyes=True)
    mouth_centre = (lm[13] + lm[14]) / 2.0
    right_eye, left_eye = lm[list(mesh.RIGHT_EYE)].mean(0), lm[list(mesh.LEFT_EYE)].mean(0)
    assert at(no_mouth, mouth_centre) == 0.0 and at(full, mouth_centre) == 1.0
    assert at(no_mouth, right_eye) == 1.0
    assert at(no_eyes, right_eye) == 0.0 and at(no_eyes, left_eye) == 0.0 and at(no_eyes, mouth_centre) == 1.0
    assert at(neither, right_eye) == at(neither, mouth_centre) == 0.0
    # The hole is exactly the mouth mask: the two add up to the whole oval, edges included.
    mouth = mouth_mask(lm, SIZE)
    assert at(mouth, mouth_centre) == 1.0 and at(mouth, lm[1]) == 0.0
    np.testing.assert_allclose(no_mouth + mouth, full, atol=1.5 / 255)
    assert float(mouth.sum()) == pytest.approx(polygon_area(lm[list(mesh.LIPS_INNER)]), rel=0.03)
    # Elsewhere nothing changes.
    far = np.ones_like(full, dtype=bool)
    far[int(mouth_centre[1]) - 25 :, :] = False
    np.testing.assert_array_equal(no_mouth[far], full[far])


def test_a_closed_mouth_cuts_nothing() -> None:
    lm = crop_face().copy()
    inner = list(mesh.LIPS_INNER)
    lm[inner, 1] = lm[inner, 1].mean()  # the inner lip contour collapses onto one line
    np.testing.assert_array_equal(mesh_mask(lm, SIZE, exclude_mouth=True), mesh_mask(lm, SIZE))
    assert mouth_mask(lm, SIZE).max() == 0.0


@pytest.mark.parametrize("offset", [0.0, 0.25, 0.5, 0.75])
def test_edges_are_antialiased_on_pixel_centres(offset: float) -> None:
    # Pixel j covers [j - 0.5, j + 0.5]: an edge at x = 10 + offset covers column 10 by 0.5 - offset.
    x0 = 10.0 + offset
    m = mesh_mask(rectangle_face(x0, 10.0, 50.0, 30.0), 64)
    cols = np.arange(64, dtype=np.float64)
    expected = np.clip(np.minimum(cols + 0.5, 50.0) - np.maximum(cols - 0.5, x0), 0.0, 1.0)
    np.testing.assert_allclose(m[20], expected, atol=1.0 / 255)  # 8-bit coverage
    assert m[10, 30] == pytest.approx(0.5, abs=1 / 255) and m[30, 30] == pytest.approx(0.5, abs=1 / 255)
    assert m[9, 30] == 0.0 and m[31, 30] == 0.0
    assert m[10, 50] == pytest.approx(0.25, abs=1 / 255)  # a corner pixel is a quarter covered
    assert float(m.sum()) == pytest.approx((50.0 - x0) * 20.0, rel=2e-3)


def test_area_and_centre_follow_subpixel_motion_of_a_real_face() -> None:
    lm = crop_face()
    oval = list(mesh.FACE_OVAL)
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    for _ in range(6):
        moved = (lm - 128.0) * rng.uniform(0.5, 1.0) + 128.0 + rng.uniform(-3.0, 3.0, 2)
        assert moved.min() > 0.0 and moved.max() < SIZE - 1.0
        m = mesh_mask(moved, SIZE).astype(np.float64)
        assert float(m.sum()) == pytest.approx(polygon_area(moved[oval]), rel=2e-3)
        # The mask's centre of mass is the polygon's (measured within 0.04 px; 1/8 px off fails).
        centre = np.array([(m * xx).sum(), (m * yy).sum()]) / m.sum()
        np.testing.assert_allclose(centre, polygon_centroid(moved[oval]), atol=0.06)
        rim = np.linalg.norm(np.diff(moved[[*oval, oval[0]]], axis=0), axis=1).sum()
        assert ((m > 0.0) & (m < 1.0)).sum() > 0.8 * rim  # an anti-aliased rim all around the oval


def test_a_crop_tighter_than_the_face_is_masked_to_its_border() -> None:
    # In a HALF crop the face oval runs past the crop's sides: the mask reaches the border there.
    face = canonical_landmarks_2d(200.0, (320.0, 240.0))
    m = face_transform(face, FaceType.HALF, 128)
    inside = mesh_mask(transform_points(face, m), 128, exclude_mouth=True, exclude_eyes=True, feather_px=4.0)
    assert inside[40:100, 0].min() == 1.0 and inside[40:100, -1].min() == 1.0
    assert inside[0, 64] == 1.0  # the forehead too


def test_feathering_softens_the_edge_over_the_requested_width() -> None:
    lm = rectangle_face(30.0, 20.0, 110.0, 110.0)
    hard = mesh_mask(lm, 128)
    soft = mesh_mask(lm, 128, feather_px=8.0)
    assert soft.min() >= 0.0 and soft.max() <= 1.0
    row = soft[65]
    assert row[30] == pytest.approx(0.5, abs=0.02)  # the half level stays on the polygon edge
    x = np.arange(128, dtype=np.float64)
    rise = (x > 15) & (x < 60)
    x10 = np.interp(0.1, row[rise], x[rise])
    x90 = np.interp(0.9, row[rise], x[rise])
    assert x90 - x10 == pytest.approx(8.0, abs=0.6)
    assert hard[65, 40] == soft[65, 70] == 1.0


def test_mask_on_a_real_photo_sits_on_the_skin() -> None:
    lm = astronaut_mesh()
    aligned = align_face(astronaut_bgr(), lm, FaceType.FULL, SIZE)
    in_crop = landmarks_in_crop(lm, aligned)
    np.testing.assert_allclose(in_crop, transform_points(lm, aligned.matrix))
    np.testing.assert_allclose(landmarks_in_crop(lm, aligned.matrix), in_crop)
    m = mesh_mask(in_crop, SIZE, exclude_mouth=True, exclude_eyes=True)
    b, g, r = (aligned.image[..., c].astype(np.int32) for c in range(3))
    skin = (r > 95) & (r > g) & (g > b) & (r - b > 30)
    # measured: 92 % of the masked pixels are skin-coloured, 35 % outside (hair, suit, background)
    assert skin[m > 0.99].mean() > 0.85
    assert skin[m == 0.0].mean() < 0.5


def test_masks_reject_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\(468, 2\)"):
        mesh_mask(np.zeros((68, 2)), SIZE)
    with pytest.raises(ValueError, match="positive int"):
        mesh_mask(crop_face(), 0)
    with pytest.raises(ValueError, match="finite"):
        mesh_mask(np.full((468, 2), np.nan), SIZE)
    with pytest.raises(ValueError, match="feather_px"):
        mouth_mask(crop_face(), SIZE, feather_px=-1.0)
