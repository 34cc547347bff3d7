"""Facesets: folders of aligned faces that the trainer learns from.

On-disk format (version 1)
--------------------------

A faceset is a folder::

    faceset.json          the index (below)
    000000.png            aligned face 0: (S, S, 3) BGR as OpenCV writes it (PNG, or JPEG quality >= 90)
    000000_mask.png       optional: (S, S) uint8 mask, 0 = background, 255 = face
    000001.png
    ...

``faceset.json``::

    {
      "format": "realtime_swap.faceset",
      "version": 1,
      "resolution": 128,                  # S: every image is S x S px
      "face_type": "whole_face",          # a realtime_swap.types.FaceType value
      "items": [
        {
          "image": "000000.png",          # file name inside the folder
          "mask": "000000_mask.png",      # or null
          "landmarks": [[x, y], ...],     # (468, 2) FaceMesh points in crop px, or null when unknown
          "source": "clip.mp4",           # where the face came from (file name, URL, "webcam"), or null
          "frame": 12                     # frame index inside the source, or null
        }
      ]
    }

Facesets are written by ``FacesetWriter`` (append-only, resumable: reopening a folder continues it) and read by
``Faceset.load``, which refuses an empty faceset, images of another size than ``resolution`` (mixed
resolutions), unreadable or missing files and malformed landmarks, with one message that names the file.
"""

from __future__ import annotations

import enum
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from realtime_swap.errors import SourceError
from realtime_swap.types import FaceType, check_bgr_image

FACESET_FORMAT = "realtime_swap.faceset"
FACESET_VERSION = 1
INDEX_NAME = "faceset.json"
LANDMARK_COUNT = 468
MIN_RESOLUTION = 16


class FacesetError(SourceError):
    """A faceset folder that is missing, empty, inconsistent or has unreadable files."""


class ImageFormat(str, enum.Enum):
    """How aligned faces are stored: lossless PNG or high-quality JPEG."""

    PNG = "png"
    JPEG = "jpg"


@dataclass(frozen=True, slots=True)
class FacesetItem:
    """One face's entry in ``faceset.json``.

    image: file name of the (S, S, 3) BGR crop; mask: file name of its (S, S) uint8 mask or None;
    landmarks: (468, 2) float32 crop px or None; source/frame: provenance (None when unknown).
    """

    image: str
    mask: str | None = None
    landmarks: np.ndarray | None = None
    source: str | None = None
    frame: int | None = None

    def to_json(self) -> dict[str, Any]:
        lms = None
        if self.landmarks is not None:
            lms = np.round(self.landmarks.astype(np.float64), 2).tolist()
        return {
            "image": self.image,
            "mask": self.mask,
            "landmarks": lms,
            "source": self.source,
            "frame": self.frame,
        }

    @classmethod
    def from_json(cls, raw: Any, where: str) -> FacesetItem:
        if not isinstance(raw, dict) or not isinstance(raw.get("image"), str):
            raise FacesetError(f"{where}: item is not an object with an 'image' file name")
        unknown = set(raw) - {"image", "mask", "landmarks", "source", "frame"}
        if unknown:
            raise FacesetError(f"{where}: unknown keys {sorted(unknown)}")
        landmarks = None
        if raw.get("landmarks") is not None:
            try:
                landmarks = np.asarray(raw["landmarks"], dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise FacesetError(f"{where}: landmarks are not numbers ({exc})") from exc
            _check_landmarks(landmarks, where)
        mask = raw.get("mask")
        if mask is not None and not isinstance(mask, str):
            raise FacesetError(f"{where}: 'mask' must be a file name or null")
        frame = raw.get("frame")
        if frame is not None and (not isinstance(frame, int) or isinstance(frame, bool)):
            raise FacesetError(f"{where}: 'frame' must be an integer or null")
        source = raw.get("source")
        if source is not None and not isinstance(source, str):
            raise FacesetError(f"{where}: 'source' must be a string or null")
        return cls(image=raw["image"], mask=mask, landmarks=landmarks, source=source, frame=frame)


def _check_landmarks(landmarks: np.ndarray, where: str) -> None:
    if landmarks.shape != (LANDMARK_COUNT, 2):
        raise FacesetError(f"{where}: landmarks must be ({LANDMARK_COUNT}, 2) crop px, got {landmarks.shape}")
    if not np.all(np.isfinite(landmarks)):
        raise FacesetError(f"{where}: landmarks contain NaN or infinity")


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, path)


def _read_index(folder: Path) -> dict[str, Any]:
    index = folder / INDEX_NAME
    if not folder.is_dir():
        raise FacesetError(f"faceset not found: {folder} is not a folder")
    if not index.is_file():
        raise FacesetError(f"not a faceset: {index} is missing")
    try:
        raw = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FacesetError(f"unreadable faceset index {index}: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != FACESET_FORMAT:
        raise FacesetError(f"{index}: not a realtime_swap faceset index (format != '{FACESET_FORMAT}')")
    if raw.get("version") != FACESET_VERSION:
        raise FacesetError(
            f"{index}: faceset version {raw.get('version')!r} is not supported (this build reads "
            f"version {FACESET_VERSION})"
        )
    resolution = raw.get("resolution")
    if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < MIN_RESOLUTION:
        raise FacesetError(f"{index}: 'resolution' must be an integer >= {MIN_RESOLUTION}, got {resolution!r}")
    try:
        FaceType(raw.get("face_type"))
    except ValueError as exc:
        choices = ", ".join(ft.value for ft in FaceType)
        raise FacesetError(f"{index}: face_type {raw.get('face_type')!r} is not one of {choices}") from exc
    if not isinstance(raw.get("items"), list):
        raise FacesetError(f"{index}: 'items' must be a list")
    return raw


class FacesetWriter:
    """Appends aligned faces to a faceset folder; reopening an existing folder resumes it.

    path: the folder (created when missing). resolution: S px of every crop. face_type: the crops' template.
    The index is rewritten atomically on ``close()`` and whenever max(``flush_every``, a quarter of the faceset)
    faces were added since the last write (the index grows with the faceset, so rewriting it geometrically less
    often keeps the total cost linear). Faces added after the last write of an interrupted run are not in the
    index: ``contains`` is False for them and their files are overwritten when the folder is resumed.
    Reopening a folder with another resolution or face type raises FacesetError.
    """

    def __init__(
        self,
        path: str | Path,
        resolution: int,
        face_type: FaceType,
        image_format: ImageFormat = ImageFormat.PNG,
        jpeg_quality: int = 95,
        flush_every: int = 25,
    ) -> None:
        if resolution < MIN_RESOLUTION:
            raise FacesetError(f"faceset resolution must be >= {MIN_RESOLUTION} px, got {resolution}")
        if not 90 <= jpeg_quality <= 100:
            raise FacesetError(f"jpeg_quality must be in [90, 100] for training data, got {jpeg_quality}")
        self.path = Path(path)
        self.resolution = int(resolution)
        self.face_type = FaceType(face_type)
        self.image_format = ImageFormat(image_format)
        self.jpeg_quality = int(jpeg_quality)
        self.flush_every = max(1, int(flush_every))
        self._items: list[FacesetItem] = []
        self._seen: set[tuple[str | None, int | None]] = set()
        self._unflushed = 0
        self._closed = False
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FacesetError(f"cannot create faceset folder {self.path}: {exc}") from exc
        if (self.path / INDEX_NAME).exists():
            self._resume()
        else:
            self.flush()

    def _resume(self) -> None:
        raw = _read_index(self.path)
        index = self.path / INDEX_NAME
        if raw["resolution"] != self.resolution or raw["face_type"] != self.face_type.value:
            raise FacesetError(
                f"{index} holds {raw['resolution']} px {raw['face_type']} faces; cannot append "
                f"{self.resolution} px {self.face_type.value} faces (choose another folder)"
            )
        for i, entry in enumerate(raw["items"]):
            item = FacesetItem.from_json(entry, f"{index} item {i}")
            self._items.append(item)
            if item.source is not None and item.frame is not None:
                self._seen.add((item.source, item.frame))

    def __len__(self) -> int:
        return len(self._items)

    def contains(self, source: str, frame: int) -> bool:
        """Whether a face from this source frame is already in the faceset (to skip it when resuming)."""
        return (source, frame) in self._seen

    def add(
        self,
        image: np.ndarray,
        landmarks: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        source: str | None = None,
        frame: int | None = None,
    ) -> FacesetItem:
        """Write one aligned face and index it.

        image: (S, S, 3) uint8 BGR. landmarks: (468, 2) crop px or None. mask: (S, S) float32 [0, 1] or
        uint8 [0, 255], or None. source/frame: provenance. Returns the new item.
        """
        if self._closed:
            raise FacesetError(f"faceset writer for {self.path} is closed")
        try:
            image = check_bgr_image(image, "faceset image")
        except ValueError as exc:
            raise FacesetError(f"faceset {self.path}: {exc}") from exc
        if image.shape[:2] != (self.resolution, self.resolution):
            raise FacesetError(
                f"faceset {self.path} is {self.resolution}x{self.resolution} px; got an image of "
                f"{image.shape[1]}x{image.shape[0]}"
            )
        lms = None
        if landmarks is not None:
            lms = np.asarray(landmarks, dtype=np.float32)
            _check_landmarks(lms, f"faceset {self.path}")
        stem = f"{len(self._items):06d}"
        name = f"{stem}.{self.image_format.value}"
        params = [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality] if self.image_format is ImageFormat.JPEG else []
        if not cv2.imwrite(str(self.path / name), image, params):
            raise FacesetError(f"cannot write {self.path / name}")
        mask_name = None
        if mask is not None:
            mask_u8 = _mask_to_u8(mask, self.resolution, f"faceset {self.path}")
            mask_name = f"{stem}_mask.png"
            if not cv2.imwrite(str(self.path / mask_name), mask_u8):
                raise FacesetError(f"cannot write {self.path / mask_name}")
        item = FacesetItem(image=name, mask=mask_name, landmarks=lms, source=source, frame=frame)
        self._items.append(item)
        if source is not None and frame is not None:
            self._seen.add((source, frame))
        self._unflushed += 1
        if self._unflushed >= max(self.flush_every, len(self._items) // 4):
            self.flush()
        return item

    def flush(self) -> None:
        """Rewrite ``faceset.json`` with every face added so far (atomically)."""
        payload = {
            "format": FACESET_FORMAT,
            "version": FACESET_VERSION,
            "resolution": self.resolution,
            "face_type": self.face_type.value,
            "items": [item.to_json() for item in self._items],
        }
        try:
            _write_json_atomic(self.path / INDEX_NAME, payload)
        except OSError as exc:
            raise FacesetError(f"cannot write {self.path / INDEX_NAME}: {exc}") from exc
        self._unflushed = 0

    def close(self) -> None:
        """Flush the index; further ``add`` calls raise."""
        if not self._closed:
            self.flush()
            self._closed = True

    def __enter__(self) -> FacesetWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _mask_to_u8(mask: np.ndarray, resolution: int, where: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != (resolution, resolution):
        raise FacesetError(f"{where}: mask must be ({resolution}, {resolution}), got {mask.shape}")
    if mask.dtype == np.uint8:
        return np.ascontiguousarray(mask)
    return np.clip(np.rint(mask.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)


@dataclass(frozen=True, slots=True)
class Faceset:
    """A validated faceset held in memory.

    images: (N, S, S, 3) uint8 BGR. masks: per face an (S, S) uint8 mask (255 = face) or None.
    items: the index entries, in file order.
    """

    path: Path
    resolution: int
    face_type: FaceType
    items: tuple[FacesetItem, ...]
    images: np.ndarray
    masks: tuple[np.ndarray | None, ...]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def has_landmarks(self) -> bool:
        """True when every face has landmarks."""
        return all(item.landmarks is not None for item in self.items)

    @classmethod
    def load(cls, path: str | Path) -> Faceset:
        """Read and validate a faceset folder; every image is decoded once here.

        Raises FacesetError naming the folder or file for: a missing folder or index, an empty faceset, an
        image that is missing, unreadable or not S x S x 3 (mixed resolutions), a bad mask, bad landmarks.
        """
        folder = Path(path)
        raw = _read_index(folder)
        index = folder / INDEX_NAME
        if not raw["items"]:
            raise FacesetError(f"faceset {folder} is empty ({index} lists no faces)")
        resolution = int(raw["resolution"])
        items = tuple(FacesetItem.from_json(e, f"{index} item {i}") for i, e in enumerate(raw["items"]))
        images = np.empty((len(items), resolution, resolution, 3), np.uint8)
        masks: list[np.ndarray | None] = []
        for i, item in enumerate(items):
            images[i] = _read_image(folder / item.image, resolution)
            masks.append(None if item.mask is None else _read_mask(folder / item.mask, resolution))
        return cls(
            path=folder,
            resolution=resolution,
            face_type=FaceType(raw["face_type"]),
            items=items,
            images=images,
            masks=tuple(masks),
        )


def _read_image(file: Path, resolution: int) -> np.ndarray:
    if not file.is_file():
        raise FacesetError(f"faceset image missing: {file}")
    image = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise FacesetError(f"unreadable faceset image: {file}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise FacesetError(f"faceset image {file} must be 8-bit 3-channel BGR, got {image.shape} {image.dtype}")
    if image.shape[:2] != (resolution, resolution):
        raise FacesetError(
            f"mixed resolutions: {file} is {image.shape[1]}x{image.shape[0]} px, the faceset is "
            f"{resolution}x{resolution}"
        )
    return image


def _read_mask(file: Path, resolution: int) -> np.ndarray:
    if not file.is_file():
        raise FacesetError(f"faceset mask missing: {file}")
    mask = cv2.imread(str(file), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise FacesetError(f"unreadable faceset mask: {file}")
    if mask.shape != (resolution, resolution):
        raise FacesetError(
            f"mixed resolutions: mask {file} is {mask.shape[1]}x{mask.shape[0]} px, the faceset is "
            f"{resolution}x{resolution}"
        )
    return mask
