"""Real faces that ship inside installed packages, for tests, benchmarks and demos (no downloads).

* ``astronaut``: scikit-image's ``data.astronaut()`` (Eileen Collins, NASA portrait, public domain).
* ``t1_a`` .. ``t1_f``: the six faces of insightface's sample picture ``data/images/t1.jpg`` (shipped in the
  insightface wheel; the package is only located, never imported).

The face boxes below were placed by hand on those pictures (centre and side in px of the original image).
The crops are box-centred, not landmark-aligned: they stand in for aligned faces of ``FaceType.WHOLE_FACE``
where a detector is not wanted (tests of the trainer and the exporter).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from realtime_swap.errors import SourceError
from realtime_swap.train.faceset import FacesetWriter
from realtime_swap.types import FaceType


@dataclass(frozen=True, slots=True)
class PackagedFace:
    """Where one real face lies in a packaged picture: picture key, centre (x, y) and box side, in px."""

    picture: str
    cx: float
    cy: float
    side: float


PACKAGED_FACES: dict[str, PackagedFace] = {
    "astronaut": PackagedFace("astronaut", 225, 125, 140),
    "t1_a": PackagedFace("t1", 114, 336, 150),
    "t1_b": PackagedFace("t1", 342, 205, 130),
    "t1_c": PackagedFace("t1", 526, 326, 150),
    "t1_d": PackagedFace("t1", 800, 366, 140),
    "t1_e": PackagedFace("t1", 976, 134, 150),
    "t1_f": PackagedFace("t1", 1186, 334, 130),
}


@functools.lru_cache(maxsize=4)
def load_picture(picture: str) -> np.ndarray:
    """A packaged picture as (H, W, 3) uint8 BGR. Raises SourceError when its package is not installed."""
    if picture == "astronaut":
        try:
            from skimage import data
        except ImportError as exc:
            raise SourceError("scikit-image is not installed; it provides the 'astronaut' picture") from exc
        return np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    if picture == "t1":
        spec = importlib.util.find_spec("insightface")
        if spec is None or not spec.submodule_search_locations:
            raise SourceError("insightface is not installed; it provides the 't1' picture")
        file = Path(next(iter(spec.submodule_search_locations))) / "data" / "images" / "t1.jpg"
        image = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"cannot read packaged picture {file}")
        return image
    raise SourceError(f"unknown packaged picture '{picture}' (known: astronaut, t1)")


def jittered_crops(
    name: str,
    count: int,
    resolution: int,
    seed: int = 0,
    jitter: float = 0.06,
    max_rotation: float = 8.0,
) -> np.ndarray:
    """``count`` crops of one packaged face with random shift/scale (+-jitter of the box) and rotation.

    Returns (count, S, S, 3) uint8 BGR; the first crop is the un-jittered box. Deterministic for a seed.
    """
    if name not in PACKAGED_FACES:
        raise SourceError(f"unknown packaged face '{name}' (known: {', '.join(PACKAGED_FACES)})")
    face = PACKAGED_FACES[name]
    picture = load_picture(face.picture)
    rng = np.random.default_rng(seed)
    crops = np.empty((count, resolution, resolution, 3), np.uint8)
    for i in range(count):
        if i == 0:
            dx = dy = angle = 0.0
            zoom = 1.0
        else:
            dx, dy = rng.uniform(-jitter, jitter, 2) * face.side
            zoom = float(rng.uniform(1.0 - jitter, 1.0 + jitter))
            angle = float(rng.uniform(-max_rotation, max_rotation))
        cx, cy = face.cx + dx, face.cy + dy
        matrix = cv2.getRotationMatrix2D((cx, cy), angle, resolution / (face.side * zoom))
        matrix[:, 2] += np.array([resolution / 2 - cx, resolution / 2 - cy])
        crops[i] = cv2.warpAffine(
            picture, matrix, (resolution, resolution), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT101
        )
    return crops


def write_packaged_faceset(
    path: str | Path,
    names: list[str] | tuple[str, ...],
    per_face: int,
    resolution: int,
    seed: int = 0,
) -> Path:
    """Write a faceset of ``per_face`` jittered crops of each named packaged face; returns its folder.

    The crops carry no landmarks or masks (box-centred crops; see the module docstring).
    """
    with FacesetWriter(path, resolution, FaceType.WHOLE_FACE) as writer:
        for k, name in enumerate(names):
            picture = PACKAGED_FACES[name].picture if name in PACKAGED_FACES else name
            for i, crop in enumerate(jittered_crops(name, per_face, resolution, seed=seed + 1000 * k)):
                writer.add(crop, source=f"{picture}:{name}", frame=i)
    return Path(path)
