"""Face identity embeddings: dlib's ResNet face-recognition model, as an optional extra (``.[identity]``).

dlib's model (``dlib_face_recognition_resnet_model_v1.dat``, CC0, shipped by the ``face-recognition-models``
package; the runtime from ``dlib-bin``) maps a face to a 128-d descriptor; the Euclidean distance between two
descriptors is small for one person and large for two. dlib's own threshold is 0.6. Issue #13's trial on 150 px
FULL-face crops found one person across a talking-head clip at 0.23-0.48 and different people at 0.61-1.01,
hence ``SAME_PERSON_DISTANCE`` = 0.55, between the two. Measured here once (tests/test_identity.py asserts the
threshold separates them): the demo's moving, relit astronaut 0.10-0.12 from her photo; the six people of
insightface's t1.jpg and the astronaut 0.65-0.89 from each other.

The descriptor needs dlib's 5-point shape on the face: the 5-point predictor runs inside the face's box (a
FaceMesh landmark box, frame px), then dlib aligns its own 150 px chip. One embedding took 77-86 ms per face on
the project's 2-core CPU: callers run it when a track starts or every N frames, never per frame.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from realtime_swap.errors import ConfigError
from realtime_swap.types import as_bgr_uint8

SAME_PERSON_DISTANCE = 0.55
"""Embedding distance under which two faces are taken as the same person (see the module docstring)."""

INSTALL_HINT = (
    'pip install -e ".[identity]"  (or: pip install dlib-bin && pip install --no-deps face-recognition-models)'
)
_PREDICTOR = "shape_predictor_5_face_landmarks.dat"
_RECOGNISER = "dlib_face_recognition_resnet_model_v1.dat"
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def identity_models_dir() -> Path | None:
    """The folder of dlib model files that ``face-recognition-models`` installs, found without importing it
    (its ``__init__`` needs ``pkg_resources``, which recent setuptools no longer ship), or None."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    return folder if (folder / _PREDICTOR).is_file() and (folder / _RECOGNISER).is_file() else None


def identity_available() -> tuple[bool, str]:
    """(True, "") when dlib and its model files are installed, else (False, what is missing and how to get it)."""
    missing = []
    if importlib.util.find_spec("dlib") is None:
        missing.append("dlib (dlib-bin)")
    if identity_models_dir() is None:
        missing.append(f"the model files {_PREDICTOR} and {_RECOGNISER} (face-recognition-models)")
    if missing:
        return False, f"face identity needs {' and '.join(missing)}: {INSTALL_HINT}"
    return True, ""


def embedding_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two (128,) descriptors (0: identical; dlib's same-person threshold 0.6)."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


class FaceEmbedder:
    """dlib's face descriptor of a face in an image. Raises ConfigError (with the install line) without the extra.

    ``embed(image, box)``: image (H, W, 3) uint8 BGR, box (4,) x0, y0, x1, y1 frame px (a detector's or the
    FaceMesh landmarks' box) -> (128,) float32 descriptor.
    """

    def __init__(self) -> None:
        ok, why = identity_available()
        if not ok:
            raise ConfigError(why)
        import dlib

        folder = identity_models_dir()
        assert folder is not None
        self._dlib: Any = dlib
        self._predictor = dlib.shape_predictor(str(folder / _PREDICTOR))
        self._recogniser = dlib.face_recognition_model_v1(str(folder / _RECOGNISER))

    def embed(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The (128,) float32 descriptor of the face inside ``box`` of the BGR ``image``."""
        rgb = np.ascontiguousarray(as_bgr_uint8(image, "FaceEmbedder.embed")[:, :, ::-1])
        b = np.asarray(box, np.float64).reshape(4)
        if not np.isfinite(b).all() or b[2] <= b[0] or b[3] <= b[1]:
            raise ValueError(f"FaceEmbedder.embed: expected a box x0 < x1, y0 < y1 in px, got {b.tolist()}")
        x0, y0, x1, y1 = (int(v) for v in np.rint(b))
        rect = self._dlib.rectangle(x0, y0, x1, y1)
        shape = self._predictor(rgb, rect)
        return np.asarray(self._recogniser.compute_face_descriptor(rgb, shape), np.float32)


@dataclass(frozen=True)
class ReferenceIdentity:
    """The person to find: one descriptor per reference face (photos or faceset crops), (K, 128) float32.

    ``distance(embedding)``: the smallest distance to any reference face (one good photo is enough to match).
    """

    embeddings: np.ndarray
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] < 1:
            raise ConfigError(f"reference identity: expected (K >= 1, 128) descriptors, got {self.embeddings.shape}")

    def distance(self, embedding: np.ndarray) -> float:
        diffs = self.embeddings.astype(np.float64) - np.asarray(embedding, np.float64)[None, :]
        return float(np.sqrt((diffs**2).sum(axis=1)).min())

    def centroid_distance(self, embedding: np.ndarray) -> float:
        """Distance to the mean descriptor of the reference faces (the quality report's figure: one number for a
        faceset that does not hinge on its single closest crop)."""
        return embedding_distance(self.embeddings.mean(axis=0), embedding)


def _reference_images(paths: Sequence[Path]) -> Iterable[tuple[str, np.ndarray, np.ndarray | None]]:
    """(name, BGR image, landmark box or None) of every reference face: photos, image folders, facesets."""
    from realtime_swap.train.faceset import INDEX_NAME, Faceset

    for path in paths:
        if path.is_dir() and (path / INDEX_NAME).is_file():
            faceset = Faceset.load(path)
            for item, image in zip(faceset.items, faceset.images, strict=True):
                box = None
                if item.landmarks is not None:
                    lo, hi = item.landmarks.min(axis=0), item.landmarks.max(axis=0)
                    box = np.array([lo[0], lo[1], hi[0], hi[1]], np.float32)
                yield f"{path}/{item.image}", image, box
        elif path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
            if not files:
                raise ConfigError(f"reference: folder {path} has no images and no faceset index")
            for file in files:
                yield from _reference_images([file])
        elif path.is_file():
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise ConfigError(f"reference: cannot read image {path}")
            yield str(path), image, None
        else:
            raise ConfigError(f"reference: no such file or folder: {path}")


def load_reference(
    paths: Sequence[str | Path], embedder: FaceEmbedder | None = None, max_faces: int = 64
) -> ReferenceIdentity:
    """The reference identity from photos (the largest face of each), image folders or facesets (every crop, at
    most ``max_faces`` spread evenly). Raises ConfigError when no face is found in any of them."""
    from realtime_swap.detect.stage import FaceAnalyzer

    embedder = embedder or FaceEmbedder()
    entries = list(_reference_images([Path(p) for p in paths]))
    if len(entries) > max_faces:
        keep = np.linspace(0, len(entries) - 1, max_faces).round().astype(int)
        entries = [entries[i] for i in keep]
    analyzer: FaceAnalyzer | None = None
    embeddings, names = [], []
    for name, image, box in entries:
        if box is None:
            analyzer = analyzer or FaceAnalyzer()
            faces = analyzer.analyze(image)
            if not faces:
                continue
            box = faces[0].box  # largest first
        embeddings.append(embedder.embed(image, box))
        names.append(name)
    if not embeddings:
        raise ConfigError(f"reference: no face found in {', '.join(str(p) for p in paths)}")
    return ReferenceIdentity(np.stack(embeddings).astype(np.float32), tuple(names))
