"""Alignment: Umeyama fits, face types (DeepFaceLab's and ArcFace's), crops, inverses, sub-pixel round trips."""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np
import pytest
import skimage.data
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.transform import estimate_transform

from realtime_swap.align import (
    ARCFACE_TEMPLATE_112,
    DFL_PADDING,
    DFL_TEMPLATE_33,
    align_face,
    arcface_template,
    crop_outline,
    face_transform,
    invert_affine,
    resize_crop_matrix,
    transform_points,
    umeyama,
)
from realtime_swap.detect.mesh import CANONICAL_MESH_3D, canonical_landmarks_2d, keypoints_from_mesh, mesh_to_68
from realtime_swap.types import AlignedFace, FaceType

# The astronaut (skimage.data.astronaut(), 512 x 512): the 5 ArcFace keypoints measured by hand, in OpenCV
# pixel coordinates (pixel centre = integer), by viewing 12x nearest-neighbour enlargements of the face with
# a 5 px grid drawn through pixel centres and reading off the iris centres (middle of the dark iris between
# the lids), the bright nose-tip highlight and the outer corners where the lips meet. About +-1.5 px.
ASTRONAUT_KEYPOINTS = np.array(
    [
        [202.5, 100.5],  # right eye (image left)
        [246.0, 103.0],  # left eye
        [223.5, 127.5],  # nose tip
        [203.5, 140.0],  # right mouth corner
        [243.0, 141.5],  # left mouth corner
    ]
)
DFL_TYPES = (FaceType.HALF, FaceType.MID_FULL, FaceType.FULL, FaceType.WHOLE_FACE, FaceType.HEAD)


def similarity(scale: float, angle_deg: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(angle_deg)
    c, s = scale * math.cos(a), scale * math.sin(a)
    return np.array([[c, -s, tx], [s, c, ty]])


def astronaut_bgr() -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1])


def astronaut_mesh() -> np.ndarray:
    """The canonical FaceMesh fitted to the astronaut's measured keypoints: a realistic 468-point face on a
    real photo (the keypoints it implies are within 6 px of the measured ones)."""
    canonical = canonical_landmarks_2d()
    fit = umeyama(keypoints_from_mesh(canonical), ASTRONAUT_KEYPOINTS)
    return transform_points(canonical, fit)


def yawed_mesh(yaw_deg: float, width: float, center: tuple[float, float]) -> np.ndarray:
    """The canonical 3D mesh turned about the vertical axis and projected orthographically (image axes)."""
    a = math.radians(yaw_deg)
    x, y, z = CANONICAL_MESH_3D.T
    xy = np.stack([x * math.cos(a) + z * math.sin(a), -y], axis=1)
    return (xy * (width / 15.0) + np.asarray(center)).astype(np.float32)


def dfl_reference_matrix(lm68: np.ndarray, face_type: FaceType, size: int) -> np.ndarray:
    """DeepFaceLab's get_transform_mat, re-derived step by step from its published description: fit to the
    unit square, take the square's corners and diagonals in the frame, pad, offset, then a 3-point affine onto
    (0, 0), (S, 0), (S, S)."""
    fit = umeyama(np.concatenate([lm68[17:49], lm68[54:55]]), DFL_TEMPLATE_33)
    unit = np.array([(0, 0), (1, 0), (1, 1), (0, 1), (0.5, 0.5)], dtype=np.float64)
    g = transform_points(unit, invert_affine(fit)).astype(np.float64)
    center = g[4].copy()
    tb = (g[2] - g[0]) / np.linalg.norm(g[2] - g[0])
    bt = (g[1] - g[3]) / np.linalg.norm(g[1] - g[3])
    padding = {"half": 0.0, "mid_full": 0.0675, "full": 0.2109375, "whole_face": 0.40, "head": 0.70}
    mod = np.linalg.norm(g[0] - g[2]) * (padding[face_type.value] * math.sqrt(2.0) + 0.5)
    up = g[0] - g[3]
    if face_type is FaceType.WHOLE_FACE:
        center += up * 0.07
    elif face_type is FaceType.HEAD:
        unit_lm = transform_points(lm68, fit).astype(np.float64)
        x = unit_lm[:, 0]
        left = ((x[27] - x[0]) + (x[28] - x[1]) + (x[29] - x[2])) / 3.0
        right = ((x[16] - x[27]) + (x[15] - x[28]) + (x[14] - x[29])) / 3.0
        yaw = right - left
        yaw *= abs(math.tanh(yaw * 2.0))
        h = g[0] - g[1]
        center -= h / np.linalg.norm(h) * (yaw * np.linalg.norm(h) / 2.0)
        center += up * 0.5
    corners = np.array([center - tb * mod, center + bt * mod, center + tb * mod], dtype=np.float32)
    dst = np.array([(0, 0), (size, 0), (size, size)], dtype=np.float32)
    return cv2.getAffineTransform(corners, dst)


# --- umeyama, inverse, points ---------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    scale=st.floats(0.05, 20.0),
    angle=st.floats(-180.0, 180.0),
    tx=st.floats(-500.0, 500.0),
    ty=st.floats(-500.0, 500.0),
    n=st.integers(2, 60),
    seed=st.integers(0, 2**31 - 1),
)
def test_umeyama_recovers_a_known_similarity_exactly(
    scale: float, angle: float, tx: float, ty: float, n: int, seed: int
) -> None:
    src = np.random.default_rng(seed).uniform(-100.0, 100.0, (n, 2))
    if np.ptp(src, axis=0).max() < 1.0:
        return
    truth = similarity(scale, angle, tx, ty)
    dst = src @ truth[:, :2].T + truth[:, 2]
    np.testing.assert_allclose(umeyama(src, dst), truth, rtol=0, atol=1e-7 * max(1.0, scale) + 1e-9)


def test_umeyama_matches_skimage_on_noisy_points() -> None:
    # skimage's similarity estimate is InsightFace's estimator for the ArcFace crop.
    rng = np.random.default_rng(7)
    src = rng.uniform(0, 300, (30, 2))
    truth = similarity(1.7, 23.0, 40.0, -12.0)
    dst = src @ truth[:, :2].T + truth[:, 2] + rng.normal(0, 3.0, src.shape)
    reference = estimate_transform("similarity", src, dst)
    np.testing.assert_allclose(umeyama(src, dst), reference.params[:2], atol=1e-9)


def test_umeyama_never_reflects_and_rigid_fit_keeps_unit_scale() -> None:
    rng = np.random.default_rng(3)
    src = rng.uniform(-50, 50, (20, 2))
    mirrored = src * np.array([-1.0, 1.0])
    m = umeyama(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0
    truth = similarity(1.0, -35.0, 5.0, 9.0)
    rigid = umeyama(src, 2.0 * (src @ truth[:, :2].T) + truth[:, 2], estimate_scale=False)
    assert abs(np.linalg.det(rigid[:, :2]) - 1.0) < 1e-12
    np.testing.assert_allclose(rigid[:, :2], truth[:, :2], atol=1e-9)


def test_umeyama_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="differ in shape"):
        umeyama(np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="same point"):
        umeyama(np.ones((5, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        umeyama(np.zeros((5, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        umeyama(np.full((5, 2), np.nan), np.zeros((5, 2)))


def test_invert_affine_and_transform_points() -> None:
    m = np.array([[1.3, 0.4, 17.0], [-0.2, 0.9, -5.5]])
    inv = invert_affine(m)
    np.testing.assert_allclose(inv, cv2.invertAffineTransform(m), atol=1e-12)
    pts = np.random.default_rng(0).uniform(-100, 100, (50, 2))
    there = transform_points(pts, m)
    assert there.dtype == np.float32 and there.shape == (50, 2)
    np.testing.assert_allclose(there, cv2.transform(pts[:, None, :], m)[:, 0], atol=1e-4)
    np.testing.assert_allclose(transform_points(there, inv), pts, atol=1e-3)
    with pytest.raises(ValueError, match="singular"):
        invert_affine(np.array([[1.0, 2.0, 0.0], [2.0, 4.0, 0.0]]))
    with pytest.raises(ValueError, match="singular"):
        invert_affine(np.zeros((2, 3)))
    tiny = np.array([[1e-7, 0.0, 3.0], [0.0, 1e-7, 4.0]])  # a legitimate, very small scale
    np.testing.assert_allclose(invert_affine(tiny) @ np.array([1e-7 * 5 + 3.0, 1e-7 * 6 + 4.0, 1.0]), [5, 6])
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        transform_points(pts, np.eye(3))


# --- face types ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("face_type", DFL_TYPES)
@pytest.mark.parametrize("yaw", [0.0, 35.0])
def test_dfl_face_types_match_deepfacelab_up_to_the_half_pixel(face_type: FaceType, yaw: float) -> None:
    lm = yawed_mesh(yaw, 180.0, (300.0, 220.0))
    lm = transform_points(lm, similarity(1.0, 12.0, 0.0, 0.0))  # and a head roll
    ours = face_transform(lm, face_type, 256)
    reference = dfl_reference_matrix(mesh_to_68(lm).astype(np.float64), face_type, 256)
    reference[:, 2] -= 0.5  # the one documented difference: the unit square covers the crop's pixel area
    np.testing.assert_allclose(ours, reference, atol=2e-3)


def test_head_crop_follows_the_yaw() -> None:
    # DFL shifts the HEAD crop sideways by the damped yaw; a frontal face stays centred like FULL.
    def centre_shift(yaw: float) -> float:
        lm = yawed_mesh(yaw, 180.0, (300.0, 220.0))
        head = crop_outline(face_transform(lm, FaceType.HEAD, 256), 256).mean(axis=0)
        full = crop_outline(face_transform(lm, FaceType.FULL, 256), 256).mean(axis=0)
        return float(head[0] - full[0])

    assert abs(centre_shift(0.0)) < 0.5
    assert abs(centre_shift(35.0)) > 10.0
    assert centre_shift(35.0) == pytest.approx(-centre_shift(-35.0), abs=0.5)


def test_dfl_template_points_land_where_the_template_says() -> None:
    # Landmarks that are DFL's own template under a known similarity: the fit is exact, so in a HALF crop
    # (the unit square is the crop) each template point u lands at S * u - 0.5 px.
    place = similarity(170.0, -8.0, 240.0, 130.0)
    lm68 = np.zeros((68, 2))
    lm68[[*range(17, 49), 54]] = DFL_TEMPLATE_33 @ place[:, :2].T + place[:, 2]
    lm68[49:54] = lm68[48] + np.linspace(0.2, 0.8, 5)[:, None] * (lm68[54] - lm68[48])
    for size in (64, 224, 256):
        m = face_transform(lm68, FaceType.HALF, size)
        got = transform_points(lm68[[*range(17, 49), 54]], m)
        np.testing.assert_allclose(got, size * DFL_TEMPLATE_33 - 0.5, atol=1e-3)


def test_crops_scale_and_nest_like_deepfacelab() -> None:
    lm = astronaut_mesh()
    size = 256
    eye_gap = {}
    outlines = {}
    for face_type in DFL_TYPES:
        m = face_transform(lm, face_type, size)
        kps = transform_points(keypoints_from_mesh(lm), m)
        eye_gap[face_type] = float(np.linalg.norm(kps[1] - kps[0]))
        outlines[face_type] = crop_outline(m, size)
    # The face shrinks in the crop by DFL's side ratio 1 + 2 sqrt(2) padding.
    for face_type in DFL_TYPES:
        expected = 1.0 + 2.0 * math.sqrt(2.0) * DFL_PADDING[face_type]
        assert eye_gap[FaceType.HALF] / eye_gap[face_type] == pytest.approx(expected, rel=1e-6)
    assert (
        eye_gap[FaceType.HALF]
        > eye_gap[FaceType.MID_FULL]
        > eye_gap[FaceType.FULL]
        > eye_gap[FaceType.WHOLE_FACE]
        > eye_gap[FaceType.HEAD]
    )
    # Each wider crop contains the narrower one (HEAD is shifted up half a face: compare areas and tops).
    chain = (FaceType.HALF, FaceType.MID_FULL, FaceType.FULL, FaceType.WHOLE_FACE)
    for inner, outer in itertools.pairwise(chain):
        poly = outlines[outer].reshape(-1, 1, 2)
        for corner in outlines[inner]:
            assert cv2.pointPolygonTest(poly, (float(corner[0]), float(corner[1])), False) > 0, (inner, outer)
    assert cv2.contourArea(outlines[FaceType.HEAD]) > cv2.contourArea(outlines[FaceType.WHOLE_FACE])
    assert outlines[FaceType.HEAD][:, 1].min() < outlines[FaceType.WHOLE_FACE][:, 1].min()
    # WHOLE_FACE is FULL's centre moved up (more forehead), not just a bigger FULL.
    centre_full = outlines[FaceType.FULL].mean(axis=0)
    centre_whole = outlines[FaceType.WHOLE_FACE].mean(axis=0)
    assert centre_whole[1] < centre_full[1] - 2.0


def test_mesh_and_its_68_points_give_the_same_dfl_crop() -> None:
    lm = astronaut_mesh()
    for face_type in DFL_TYPES:
        np.testing.assert_allclose(
            face_transform(lm, face_type, 128), face_transform(mesh_to_68(lm), face_type, 128), atol=1e-9
        )
    with_z = np.concatenate([lm, np.zeros((468, 1), np.float32)], axis=1)
    np.testing.assert_allclose(face_transform(with_z, "full", 128), face_transform(lm, FaceType.FULL, 128))


def test_arcface_places_keypoints_on_the_insightface_template() -> None:
    place = similarity(2.3, 17.0, 150.0, 90.0)
    kps = ARCFACE_TEMPLATE_112 @ place[:, :2].T + place[:, 2]
    for size, expected in (
        (112, ARCFACE_TEMPLATE_112),
        (224, ARCFACE_TEMPLATE_112 * 2.0),
        (128, ARCFACE_TEMPLATE_112 + np.array([8.0, 0.0])),
        (256, ARCFACE_TEMPLATE_112 * 2.0 + np.array([16.0, 0.0])),
    ):
        np.testing.assert_allclose(arcface_template(size), expected)
        got = transform_points(kps, face_transform(kps, FaceType.ARCFACE, size))
        np.testing.assert_allclose(got, expected, atol=1e-3)
    with pytest.raises(ValueError, match="112 or 128"):
        face_transform(kps, FaceType.ARCFACE, 100)


def test_arcface_matrix_is_insightfaces_on_the_astronaut() -> None:
    reference = estimate_transform("similarity", ASTRONAUT_KEYPOINTS, ARCFACE_TEMPLATE_112)
    np.testing.assert_allclose(
        face_transform(ASTRONAUT_KEYPOINTS, FaceType.ARCFACE, 112), reference.params[:2], atol=1e-9
    )


def test_arcface_crop_of_a_real_face_puts_the_pupils_on_the_template() -> None:
    aligned = align_face(astronaut_bgr(), ASTRONAUT_KEYPOINTS, FaceType.ARCFACE, 112)
    assert isinstance(aligned, AlignedFace) and aligned.image.shape == (112, 112, 3)
    assert aligned.image.dtype == np.uint8 and aligned.mask is None and aligned.face_type is FaceType.ARCFACE
    grey = cv2.GaussianBlur(cv2.cvtColor(aligned.image, cv2.COLOR_BGR2GRAY).astype(np.float32), (0, 0), 1.5)
    for x, y in ARCFACE_TEMPLATE_112[:2]:
        x0, y0 = round(x) - 8, round(y) - 8
        window = grey[y0 : y0 + 17, x0 : x0 + 17]
        dy, dx = np.unravel_index(int(np.argmin(window)), window.shape)
        assert math.hypot(x0 + dx - x, y0 + dy - y) < 3.5  # the iris is the darkest blob near the template eye


def test_face_transform_rejects_bad_landmarks() -> None:
    with pytest.raises(ValueError, match="needs 468 or 68"):
        face_transform(ASTRONAUT_KEYPOINTS, FaceType.FULL, 256)
    with pytest.raises(ValueError, match="468, 68 or 5"):
        face_transform(np.zeros((10, 2)), FaceType.FULL, 256)
    with pytest.raises(ValueError, match="positive int"):
        face_transform(astronaut_mesh(), FaceType.FULL, 0)
    with pytest.raises(ValueError):
        face_transform(astronaut_mesh(), "quarter", 256)
    with pytest.raises(ValueError, match="uint8"):
        align_face(astronaut_bgr().astype(np.uint16), astronaut_mesh(), FaceType.FULL, 64)


# --- sub-pixel correctness -------------------------------------------------------------------------------


def ramp_image(height: int, width: int) -> np.ndarray:
    """A float32 image linear in x and y: bilinear sampling reproduces it exactly."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return 3.0 * xx - 2.0 * yy + 100.0


def test_crop_pixels_sample_the_frame_where_transform_points_says() -> None:
    ramp = ramp_image(480, 640)
    m = face_transform(astronaut_mesh() + np.float32(60.0), FaceType.WHOLE_FACE, 200)
    crop = cv2.warpAffine(ramp, m, (200, 200), flags=cv2.INTER_LINEAR)
    jj, ii = np.meshgrid(np.arange(200.0), np.arange(200.0))
    where = transform_points(np.stack([jj.ravel(), ii.ravel()], axis=1), invert_affine(m)).astype(np.float64)
    expected = 3.0 * where[:, 0] - 2.0 * where[:, 1] + 100.0
    np.testing.assert_allclose(crop.ravel(), expected, atol=0.05)


def test_crops_at_two_sizes_are_resamplings_of_each_other() -> None:
    lm = astronaut_mesh()
    for face_type in DFL_TYPES:
        big, small = face_transform(lm, face_type, 256), face_transform(lm, face_type, 64)
        np.testing.assert_allclose(resize_crop_matrix(big, 256, 64), small, atol=1e-9)
    ramp = ramp_image(512, 512)
    big_crop = cv2.warpAffine(ramp, face_transform(lm, FaceType.FULL, 256), (256, 256), flags=cv2.INTER_LINEAR)
    small_crop = cv2.warpAffine(ramp, face_transform(lm, FaceType.FULL, 64), (64, 64), flags=cv2.INTER_LINEAR)
    np.testing.assert_allclose(cv2.resize(big_crop, (64, 64), interpolation=cv2.INTER_AREA), small_crop, atol=0.02)


def test_aligned_crop_pasted_back_reproduces_the_region() -> None:
    frame = astronaut_bgr()
    h, w = frame.shape[:2]
    aligned = align_face(frame, astronaut_mesh(), FaceType.FULL, 1024)
    inverse = invert_affine(aligned.matrix)
    back = cv2.warpAffine(aligned.image, inverse, (w, h), flags=cv2.INTER_LINEAR)
    footprint = cv2.warpAffine(np.ones((1024, 1024), np.uint8), inverse, (w, h), flags=cv2.INTER_NEAREST)
    inside = cv2.erode(footprint, np.ones((5, 5), np.uint8)) > 0
    assert inside.sum() > 10_000
    error = np.abs(back.astype(np.float64) - frame)[inside]
    # Upsampled 4.6x then resampled at the frame's pixel centres: only interpolation error remains
    # (measured: mean 0.30, 99th percentile 2 grey levels).
    assert error.mean() < 0.6
    assert np.percentile(error, 99) <= 4.0
    # The same paste-back half a pixel off, the mistake this guards against, is 20 times worse.
    shifted = inverse.copy()
    shifted[:, 2] += 0.5
    off = cv2.warpAffine(aligned.image, shifted, (w, h), flags=cv2.INTER_LINEAR)
    assert np.abs(off.astype(np.float64) - frame)[inside].mean() > 5.0 * error.mean()
