"""The built-in demo source: real face photos moving in front of a camera, no camera or download needed.

Faces come from photos that ship in PyPI packages: scikit-image's ``astronaut`` (NASA, public domain) and, when
installed, insightface's bundled test images. Each "actor" is a head-and-shoulders cut-out moved by a known
similarity transform per frame (head motion, scale) under changing light, composited over a static backdrop.
Only each actor's region is warped, so frames are cheap at any size up to 4K. The transform of every actor is
exposed (``actor_transform``) so tests can compare detections with ground truth.
"""

from __future__ import annotations

import importlib.util
import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from realtime_swap.errors import SourceError
from realtime_swap.sources.base import Source
from realtime_swap.sources.pacing import Pacer
from realtime_swap.types import StreamInfo

MAX_WIDTH, MAX_HEIGHT = 3840, 2160


@dataclass(frozen=True)
class Actor:
    """A cut-out photo: image (h, w, 3) uint8 BGR and its soft alpha (h, w) float32 [0, 1]."""

    image: np.ndarray
    alpha: np.ndarray
    name: str


def _soft_alpha(h: int, w: int) -> np.ndarray:
    """An alpha that is 1 in the middle and fades to 0 over the outer 12 % of each border."""
    ramp_y = np.clip(np.minimum(np.arange(h), np.arange(h)[::-1]) / (0.12 * h), 0, 1)
    ramp_x = np.clip(np.minimum(np.arange(w), np.arange(w)[::-1]) / (0.12 * w), 0, 1)
    return np.outer(ramp_y, ramp_x).astype(np.float32)


def astronaut_actor() -> Actor:
    """Head and shoulders of scikit-image's astronaut (Eileen Collins, NASA, public domain)."""
    from skimage import data

    rgb = data.astronaut()
    crop = np.ascontiguousarray(rgb[0:340, 90:370, ::-1])
    return Actor(crop, _soft_alpha(*crop.shape[:2]), "astronaut")


def insightface_images_dir() -> Path | None:
    """The folder of photos bundled with the insightface package, found without importing it."""
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data" / "images"
    return folder if folder.is_dir() else None


def _insightface_actor() -> Actor | None:
    folder = insightface_images_dir()
    if folder is None or not (folder / "Tom_Hanks_54745.png").is_file():
        return None
    image = cv2.imread(str(folder / "Tom_Hanks_54745.png"), cv2.IMREAD_COLOR)
    if image is None:
        return None
    return Actor(image, _soft_alpha(*image.shape[:2]), "insightface:Tom_Hanks_54745")


def default_actors(count: int) -> list[Actor]:
    """``count`` actors: the astronaut first, then other packaged faces, then mirrored/recoloured copies."""
    pool = [astronaut_actor()]
    extra = _insightface_actor()
    if extra is not None:
        pool.append(extra)
    actors = []
    for i in range(count):
        base = pool[i % len(pool)]
        if i >= len(pool):  # a different-looking copy: mirrored, with shifted colour
            tint = np.array([1.0 + 0.08 * (i % 3), 1.0, 1.0 - 0.06 * (i % 2)], np.float32)
            image = np.clip(base.image[:, ::-1] * tint, 0, 255).astype(np.uint8)
            actors.append(Actor(image, base.alpha[:, ::-1].copy(), f"{base.name}#{i}"))
        else:
            actors.append(base)
    return actors


def _backdrop(width: int, height: int) -> np.ndarray:
    """A static, softly lit wall: vertical gradient with low-frequency texture (no faces in it)."""
    rng = np.random.default_rng(7)
    small = rng.normal(0, 1, (9, 16)).astype(np.float32)
    texture = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)[..., None]
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    base = np.array([150, 160, 170], np.float32) * (1.0 - 0.35 * y)
    return np.clip(base + 10.0 * texture, 0, 255).astype(np.uint8)


class DemoSource(Source):
    """Synthetic live camera: ``faces`` actors moving smoothly at ``width`` x ``height``, ``fps``.

    realtime: pace frames at ``fps`` like a camera (default) or render as fast as possible (benchmarks).
    frames: stop after this many frames (None: endless). The picture for a given index is deterministic.
    """

    def __init__(
        self,
        width: int = 640,
        height: int = 480,
        fps: float = 30.0,
        faces: int = 1,
        realtime: bool = True,
        frames: int | None = None,
        actors: list[Actor] | None = None,
    ) -> None:
        if not (16 <= width <= MAX_WIDTH and 16 <= height <= MAX_HEIGHT):
            raise SourceError(f"demo: size {width}x{height} out of range (16x16 to {MAX_WIDTH}x{MAX_HEIGHT})")
        if fps <= 0:
            raise SourceError(f"demo: fps must be > 0, got {fps}")
        if faces < 1:
            raise SourceError(f"demo: faces must be >= 1, got {faces}")
        self.actors = actors if actors is not None else default_actors(faces)
        self.width, self.height, self.fps = width, height, float(fps)
        self.info = StreamInfo(width, height, self.fps, live=realtime, name="demo")
        self._backdrop = _backdrop(width, height)
        self._pacer = Pacer() if realtime else None
        self._limit = frames
        self._index = 0
        self._layout = self._make_layout(len(self.actors))

    def _make_layout(self, n: int) -> list[tuple[float, float, float]]:
        """(centre x, centre y, actor height) in px for each actor's rest pose: one row, or two when n > 3."""
        rows = 1 if n <= 3 else 2
        cols = math.ceil(n / rows)
        cell_w, cell_h = self.width / cols, self.height / rows
        out = []
        for i in range(n):
            r, c = divmod(i, cols)
            out.append(((c + 0.5) * cell_w, (r + 0.5) * cell_h, min(cell_h * 0.85, cell_w * 1.1)))
        return out

    def actor_transform(self, index: int, actor: int) -> np.ndarray:
        """(2, 3) float64 affine mapping the actor's photo px to frame px at frame ``index``."""
        t = index / self.fps
        cx, cy, height = self._layout[actor]
        img_h, img_w = self.actors[actor].image.shape[:2]
        phase = 1.7 * actor
        scale = height / img_h * (1.0 + 0.12 * math.sin(2 * math.pi * 0.11 * t + phase))
        angle = math.radians(10.0 * math.sin(2 * math.pi * 0.23 * t + phase))
        dx = 0.08 * self.width * math.sin(2 * math.pi * 0.17 * t + phase) / max(1, len(self.actors) ** 0.5)
        dy = 0.04 * self.height * math.sin(2 * math.pi * 0.29 * t + 0.5 + phase)
        a, b = scale * math.cos(angle), scale * math.sin(angle)
        # rotate/scale about the photo centre, then place that centre at the actor's position
        px, py = img_w / 2.0, img_h / 2.0
        return np.array([[a, -b, cx + dx - (a * px - b * py)], [b, a, cy + dy - (b * px + a * py)]], dtype=np.float64)

    def light(self, index: int) -> np.ndarray:
        """Per-channel BGR gain at frame ``index`` (light level and colour temperature drift)."""
        t = index / self.fps
        level = 1.0 + 0.18 * math.sin(2 * math.pi * 0.07 * t)
        warm = 0.06 * math.sin(2 * math.pi * 0.05 * t + 1.0)
        return np.array([level * (1 - warm), level, level * (1 + warm)], np.float32)

    def render(self, index: int) -> np.ndarray:
        """The (H, W, 3) uint8 BGR picture for frame ``index``."""
        frame = self._backdrop.copy()
        gain = self.light(index)
        for i, actor in enumerate(self.actors):
            self._paste_actor(frame, actor, self.actor_transform(index, i), gain)
        return frame

    def _paste_actor(self, frame: np.ndarray, actor: Actor, matrix: np.ndarray, gain: np.ndarray) -> None:
        h, w = actor.image.shape[:2]
        corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ matrix.T
        x0, y0 = np.floor(corners.min(axis=0)).astype(int)
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int)
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, self.width), min(y1, self.height)
        if x1 <= x0 or y1 <= y0:
            return
        roi_matrix = matrix.copy()
        roi_matrix[:, 2] -= (x0, y0)
        size = (x1 - x0, y1 - y0)
        patch = cv2.warpAffine(actor.image, roi_matrix, size, flags=cv2.INTER_LINEAR)
        patch = cv2.multiply(patch, (float(gain[0]), float(gain[1]), float(gain[2]), 0.0))  # type: ignore[call-overload]
        alpha = cv2.warpAffine(actor.alpha, roi_matrix, size, flags=cv2.INTER_LINEAR)
        region = frame[y0:y1, x0:x1]
        region[:] = cv2.blendLinear(patch, region, alpha, 1.0 - alpha)

    def read(self) -> tuple[np.ndarray, float] | None:
        if self._limit is not None and self._index >= self._limit:
            return None
        index = self._index
        self._index += 1
        pts = index / self.fps
        image = self.render(index)
        if self._pacer is not None:
            self.paced_ms = self._pacer.wait(pts)
        return image, pts


def demo_frames_per_second(width: int, height: int, frames: int = 60) -> float:
    """How fast the demo renders unpaced at a size (used by the benchmark's report)."""
    source = DemoSource(width, height, realtime=False, frames=frames)
    start = time.perf_counter()
    while source.read() is not None:
        pass
    return frames / (time.perf_counter() - start)
