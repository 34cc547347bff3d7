"""A single image or a folder of images, played as a looping stream at a fixed fps."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from realtime_swap.errors import SourceError
from realtime_swap.sources.base import Source
from realtime_swap.sources.pacing import Pacer
from realtime_swap.types import StreamInfo

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def to_bgr_uint8(image: np.ndarray, what: str) -> np.ndarray:
    """Convert grey, BGRA and 16-bit images to (H, W, 3) uint8 BGR; refuse anything else naming ``what``."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if image.dtype != np.uint8:
        raise SourceError(f"{what}: unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image)
    raise SourceError(f"{what}: unsupported image shape {image.shape}")


def read_image(path: Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 BGR; SourceError naming the file when it cannot."""
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    if data is None:
        raise SourceError(f"input not found: {path}")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise SourceError(f"cannot decode image {path} (corrupt or not an image)")
    return to_bgr_uint8(image, str(path))


class ImageSource(Source):
    """One image or every image of a folder (sorted by name), looped, paced at ``fps`` when realtime.

    Images of different sizes are resized to the first one's size. frames: stop after this many (None: loop
    forever; with loop=False, one pass).
    """

    def __init__(
        self,
        path: str | Path,
        fps: float = 30.0,
        realtime: bool = True,
        loop: bool = True,
        frames: int | None = None,
    ) -> None:
        root = Path(path)
        if root.is_dir():
            files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise SourceError(f"no images in folder {root} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        elif root.is_file():
            files = [root]
        else:
            raise SourceError(f"input not found: {root}")
        if fps <= 0:
            raise SourceError(f"{root}: fps must be > 0, got {fps}")
        self._images = [read_image(p) for p in files]
        h, w = self._images[0].shape[:2]
        self._images = [img if img.shape[:2] == (h, w) else cv2.resize(img, (w, h)) for img in self._images]
        self.fps = float(fps)
        self.info = StreamInfo(w, h, self.fps, live=realtime, name=str(root))
        self._pacer = Pacer() if realtime else None
        self._loop = loop
        self._limit = frames
        self._index = 0

    def read(self) -> tuple[np.ndarray, float] | None:
        if self._limit is not None and self._index >= self._limit:
            return None
        if not self._loop and self._index >= len(self._images):
            return None
        pts = self._index / self.fps
        image = self._images[self._index % len(self._images)].copy()
        self._index += 1
        if self._pacer is not None:
            self.paced_ms = self._pacer.wait(pts)
        return image, pts
