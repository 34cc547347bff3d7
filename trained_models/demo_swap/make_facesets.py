"""Build the two facesets of the shipped demo model, reproducibly, from faces that ship in packages.

* ``celeb`` (the trainer's ``--src``, the identity the model produces): one face of insightface's bundled
  ``t1.jpg`` (the one whose FaceMesh centre is nearest ``CELEB_CENTRE``), re-rendered ``--renders`` times.
* ``astronaut`` (the trainer's ``--dst``, the person in the live video): scikit-image's ``astronaut`` photo
  re-rendered ``--renders`` times, plus frames ``0, step, ...`` (< ``DEMO_TRAIN_FRAMES``) of the built-in
  ``DemoSource``, extracted by ``realtime_swap.train.extract`` (blur and near-duplicate filters on).
  DemoSource frames from ``DEMO_HELDOUT_START`` on are never used for training (held out for evaluation).

A re-render moves the photo's 468-point FaceMesh (measured by the product's detector) by a small 3D head
rotation (yaw, pitch, roll; orthographic, using the mesh's own depth) and a small expression (smile, brow
raise, jaw drop), warps the photo piecewise-affinely along the mesh's Delaunay triangulation (fixed anchor
points around the face and on the border keep the background in place), then applies a similarity jitter
(scale, rotation, shift) and a lighting change (per-channel gain, gamma, a linear light gradient). Every
render is then detected and aligned again by ``FaceExtractor``, exactly as at run time.

Usage: ``python trained_models/demo_swap/make_facesets.py --out /tmp/demo_swap_data`` (seeded: same output
every run). The shipped model's astronaut faceset was built by an earlier revision of the extractor's
duplicate filter (it matched faces to tracks by box overlap); ``--demo-frames trained_models/demo_swap/
demo_frames.json`` extracts exactly the demo frames that revision kept, so the facesets are rebuilt exactly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from scipy.interpolate import LinearNDInterpolator
from scipy.spatial import Delaunay

from realtime_swap.detect.facemesh import roi_from_detection
from realtime_swap.detect.mesh import FACE_OVAL, LEFT_EYEBROW, LIPS_INNER, LIPS_OUTER, RIGHT_EYEBROW
from realtime_swap.sources.demo import DemoSource, astronaut_actor, insightface_images_dir
from realtime_swap.train.extract import ExtractOptions, ExtractSummary, FaceExtractor, Frame
from realtime_swap.types import FaceType

RESOLUTION = 128
FACE_TYPE = FaceType.WHOLE_FACE
CELEB_IMAGE = "t1.jpg"
CELEB_CENTRE = (518.0, 345.0)  # px in t1.jpg: the second face from the left
DEMO_SIZE = (640, 480)
DEMO_TRAIN_FRAMES = 2400  # frames [0, 2400) may be used for training (80 s at 30 fps)
DEMO_HELDOUT_START = 3000  # frames >= 3000 are held out (evaluation)
MOUTH_RIGHT, MOUTH_LEFT = 61, 291


def photo_mesh(
    extractor: FaceExtractor, image: np.ndarray, near: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(468, 2) px landmarks and (468,) depth of the face in ``image`` (nearest ``near`` when given)."""
    analyzer = extractor.analyzer
    detections = analyzer.detector.detect(image)
    meshes = analyzer.landmarker.landmark_refined(image, [roi_from_detection(d) for d in detections], passes=3)
    if not meshes:
        raise RuntimeError("no face found in the photo")
    if near is None:
        best = max(meshes, key=lambda m: float(np.prod(np.ptp(m.landmarks, axis=0))))
    else:
        best = min(meshes, key=lambda m: float(np.linalg.norm(m.landmarks.mean(axis=0) - np.asarray(near))))
    return best.landmarks.astype(np.float64), best.z.astype(np.float64)


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = (
        math.cos(yaw),
        math.sin(yaw),
        math.cos(pitch),
        math.sin(pitch),
        math.cos(roll),
        math.sin(roll),
    )
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    r_roll = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return r_roll @ r_pitch @ r_yaw


def moved_mesh(xy: np.ndarray, z: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The mesh after a random small head rotation and expression, (468, 2) px."""
    centre = xy.mean(axis=0)
    width = float(np.ptp(xy[:, 0]))
    pts = xy.copy()
    # expression (in the photo's frame, before the rotation)
    eye_line = pts[list(RIGHT_EYEBROW) + list(LEFT_EYEBROW), 1].mean()
    smile = rng.uniform(-0.02, 0.05) * width
    for corner, side in ((MOUTH_RIGHT, -1.0), (MOUTH_LEFT, 1.0)):
        d2 = ((pts - pts[corner]) ** 2).sum(axis=1)
        w = np.exp(-d2 / (2 * (0.12 * width) ** 2))[:, None]
        pts += w * np.array([side * 0.6 * smile, -smile])
    brow = rng.uniform(-0.01, 0.035) * width
    above = np.clip((pts[:, 1] - (eye_line + 0.15 * width)) / (-0.25 * width), 0, 1)
    pts[:, 1] -= brow * above
    lips = pts[list(LIPS_OUTER) + list(LIPS_INNER)]
    mouth_y = lips[:, 1].mean()
    jaw = rng.uniform(0.0, 0.04) * width
    below = np.clip((pts[:, 1] - mouth_y) / (0.1 * width), 0, 1)
    pts[:, 1] += jaw * below
    # head rotation about the face centre, orthographic, with the mesh's depth
    rot = _rotation(
        math.radians(rng.uniform(-14, 14)), math.radians(rng.uniform(-9, 9)), math.radians(rng.uniform(-6, 6))
    )
    p3 = np.column_stack([pts - centre, z - z.mean()])
    return (p3 @ rot.T)[:, :2] + centre


def warp_photo(image: np.ndarray, src_mesh: np.ndarray, dst_mesh: np.ndarray) -> np.ndarray:
    """Piecewise-affine warp of ``image`` taking ``src_mesh`` onto ``dst_mesh`` (anchors fixed outside the face)."""
    h, w = image.shape[:2]
    centre = src_mesh.mean(axis=0)
    oval = src_mesh[list(FACE_OVAL)]
    ring = centre + 1.45 * (oval - centre)  # fixed ring: hair and background stay where they are
    border = np.array(
        [[x, y] for x in np.linspace(0, w - 1, 6) for y in (0, h - 1)]
        + [[x, y] for y in np.linspace(0, h - 1, 6)[1:-1] for x in (0, w - 1)]
    )
    anchors = np.vstack([ring, border])
    src = np.vstack([src_mesh, anchors])
    dst = np.vstack([dst_mesh, anchors])
    # inverse map: each output pixel (in dst) samples the photo where its triangle came from
    interp = LinearNDInterpolator(Delaunay(dst), src)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    mapped = interp(np.column_stack([gx.ravel(), gy.ravel()]))
    mapped = np.where(np.isnan(mapped), np.column_stack([gx.ravel(), gy.ravel()]), mapped)
    map_x = mapped[:, 0].reshape(h, w).astype(np.float32)
    map_y = mapped[:, 1].reshape(h, w).astype(np.float32)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random similarity (scale +-8 %, rotation +-8 deg, shift +-4 %) and lighting (gain, gamma, gradient)."""
    h, w = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(
        (w / 2 + rng.uniform(-0.04, 0.04) * w, h / 2 + rng.uniform(-0.04, 0.04) * h),
        rng.uniform(-8, 8),
        rng.uniform(0.92, 1.08),
    )
    out = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    f = out.astype(np.float32) / 255.0
    f = f ** rng.uniform(0.8, 1.25)
    angle = rng.uniform(0, 2 * math.pi)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = ((gx / w - 0.5) * math.cos(angle) + (gy / h - 0.5) * math.sin(angle))[..., None]
    gain = rng.uniform(0.85, 1.15, size=3).astype(np.float32) * (1.0 + rng.uniform(0.0, 0.35) * ramp)
    return np.clip(f * gain * 255.0 + 0.5, 0, 255).astype(np.uint8)


def renders(
    extractor: FaceExtractor,
    photo: np.ndarray,
    name: str,
    count: int,
    seed: int,
    near: tuple[float, float] | None = None,
) -> Iterator[Frame]:
    """``count`` re-renders of ``photo`` as frames of source ``name#render`` (frame = render index)."""
    xy, z = photo_mesh(extractor, photo, near)
    rng = np.random.default_rng(seed)
    for k in range(count):
        image = warp_photo(photo, xy, moved_mesh(xy, z, rng))
        yield Frame(jitter(image, rng), f"{name}#render", k)


def demo_frames(indices: list[int]) -> Iterator[Frame]:
    """DemoSource frames ``indices`` (640 x 480, the astronaut in motion and light); all below DEMO_TRAIN_FRAMES."""
    if any(not 0 <= i < DEMO_TRAIN_FRAMES for i in indices):
        raise ValueError(f"training frames must lie in [0, {DEMO_TRAIN_FRAMES}) (later ones are held out)")
    source = DemoSource(*DEMO_SIZE, realtime=False)
    for index in indices:
        yield Frame(source.render(index), "demo", index)


def celeb_photo() -> tuple[np.ndarray, tuple[float, float]]:
    """A crop of t1.jpg around the chosen face (renders are cheaper on a crop), and the face centre in it."""
    folder = insightface_images_dir()
    if folder is None:
        raise RuntimeError("insightface is not installed (pip install --no-deps insightface): its images are needed")
    image = cv2.imread(str(folder / CELEB_IMAGE), cv2.IMREAD_COLOR)
    if image is None:
        raise RuntimeError(f"cannot read {folder / CELEB_IMAGE}")
    cx, cy = CELEB_CENTRE
    half = 190
    x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
    crop = np.ascontiguousarray(image[y0 : int(cy + half), x0 : int(cx + half)])
    return crop, (cx - x0, cy - y0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder receiving celeb/ and astronaut/")
    parser.add_argument("--renders", type=int, default=360, help="re-renders per photo (default 360)")
    parser.add_argument("--demo-step", type=int, default=8, help="DemoSource frame step (default 8)")
    parser.add_argument(
        "--demo-frames",
        type=Path,
        default=None,
        help="JSON {'frames': [...]}: extract exactly these DemoSource frames, duplicate filter off (the shipped "
        "model's list is demo_frames.json); default: every --demo-step-th frame, duplicate filter on",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    options = ExtractOptions(
        resolution=RESOLUTION,
        face_type=FACE_TYPE,
        blur_threshold=20.0,
        duplicate_landmark_px=1.5,
        duplicate_appearance=2.0,
        duplicate_window=1,
        max_faces=1,
    )
    extractor = FaceExtractor(options)
    celeb, centre = celeb_photo()
    with extractor.open_writer(args.out / "celeb") as writer:
        s = extractor.extract(
            renders(extractor, celeb, "t1.jpg", args.renders, args.seed, centre),
            writer,
            total=args.renders,
            desc="celeb renders",
        )
    print("celeb:", s.format())
    astronaut = astronaut_actor().image  # the same head-and-shoulders cut-out the demo source moves
    total = ExtractSummary()
    with extractor.open_writer(args.out / "astronaut") as writer:
        total.merge(
            extractor.extract(
                renders(extractor, astronaut, "astronaut", args.renders, args.seed + 1),
                writer,
                total=args.renders,
                desc="astronaut renders",
            )
        )
        if args.demo_frames is None:
            indices = list(range(0, DEMO_TRAIN_FRAMES, args.demo_step))
            demo_extractor = extractor
        else:
            indices = [int(i) for i in json.loads(args.demo_frames.read_text(encoding="utf-8"))["frames"]]
            no_duplicates = dataclasses.replace(options, duplicate_landmark_px=0.0)
            demo_extractor = FaceExtractor(no_duplicates, analyzer=extractor.analyzer)
        total.merge(demo_extractor.extract(demo_frames(indices), writer, total=len(indices), desc="demo frames"))
    print("astronaut:", total.format())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
