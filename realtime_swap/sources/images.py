"""A single image or a folder of images, played as a looping stream at a fixed fps."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from realtime_swap.errors import SourceError
from realtime_swap.sources.base import Source
from realtime_swap.sources.pacing import Pacer
from realtime_swap.types import StreamInfo, as_bgr_uint8

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def read_image(path: Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 BGR; SourceError naming the file when it cannot."""
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    if data is None:
        raise SourceError(f"input not found: {path}")
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise SourceError(f"cannot decode image {path} (corrupt or not an image)")
    try:
        return as_bgr_uint8(image, str(path))
    except ValueError as exc:
        raise SourceError(str(exc)) from exc


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
