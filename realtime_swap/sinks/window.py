"""The preview window (SDL2 through pygame): the picture, overlays for debugging and the live controls.

Keys (also on screen, ``h`` hides the line):

    q / Esc      quit                        l        landmarks, keypoints and boxes of the faces
    Space / s    swap on/off                 m        masks (the model's, else the landmark mask)
    c            next colour-transfer mode   t        stage timings and fps
    Tab / n      next face model (1-9 pick)  p / F12  screenshot (PNG of the output frame)

SDL wants its window on the main thread, so ``write`` (output thread) only hands the newest frame over and
``service`` (main thread) draws it and reads the keys. Overlays are drawn on the preview only, never on the
frames the other outputs get.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from realtime_swap.color.modes import ColorMode
from realtime_swap.errors import SinkError
from realtime_swap.sinks.base import Sink, SinkEvent
from realtime_swap.stages import Controls
from realtime_swap.types import Face, Frame, StreamInfo

log = logging.getLogger(__name__)

HELP_LINE = "q quit | space swap | c colour | tab model | l landmarks | m masks | t timings | p screenshot | h help"
DEFAULT_SCREENSHOT_DIR = Path("screenshots")
_NOTICE_S = 2.5  # how long a notice (screenshot saved) stays on screen
_LANDMARK_BGR = (80, 255, 80)
_KEYPOINT_BGR = (60, 60, 255)
_BOX_BGR = (0, 220, 255)
_MASK_BGR = np.array([60, 200, 60], np.float32)


def _pygame() -> Any:
    """The pygame module; imported on first use with its greeting (printed on stdout at import) swallowed, so
    that no environment variable has to be set for it."""
    if "pygame" not in sys.modules:
        with contextlib.redirect_stdout(io.StringIO()):
            import pygame  # noqa: F401 - imported for sys.modules
    return sys.modules["pygame"]


def display_available() -> tuple[bool, str]:
    """Whether a window can be shown here, and why not when it cannot."""
    if os.environ.get("SDL_VIDEODRIVER") == "dummy":
        return True, "SDL dummy video driver"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no display ($DISPLAY and $WAYLAND_DISPLAY are unset)"
    return True, "display found"


def _text_scale(height: int) -> float:
    return max(0.45, min(1.2, height / 900))


def draw_text_band(image: np.ndarray, lines: Sequence[str], bottom: bool = False) -> None:
    """Write ``lines`` on a darkened band at the top-left (or bottom-left) of ``image``, in place."""
    if not lines:
        return
    scale = _text_scale(image.shape[0])
    step = int(22 * scale / 0.55)
    height = min(image.shape[0], step * len(lines) + 8)
    width = min(image.shape[1], int(max(len(s) for s in lines) * 11 * scale / 0.55) + 12)
    y0 = image.shape[0] - height if bottom else 0
    band = image[y0 : y0 + height, :width]
    band[:] = (band * 0.45).astype(np.uint8)
    for i, text in enumerate(lines):
        org = (6, y0 + step * (i + 1))
        cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def draw_faces(image: np.ndarray, faces: Sequence[Face]) -> None:
    """Draw each face's box and id, landmarks (small green dots) and 5 keypoints (red) on ``image``, in place."""
    h, w = image.shape[:2]
    radius = max(1, round(h / 540))
    for face in faces:
        x0, y0, x1, y1 = (round(float(v)) for v in face.box)
        cv2.rectangle(image, (x0, y0), (x1, y1), _BOX_BGR, radius)
        cv2.putText(
            image, f"#{face.id} {face.score:.2f}", (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
            _text_scale(h), _BOX_BGR, 1, cv2.LINE_AA,
        )  # fmt: skip
        for points, colour, r in ((face.landmarks, _LANDMARK_BGR, radius), (face.keypoints, _KEYPOINT_BGR, radius * 3)):
            if points is None:
                continue
            for x, y in np.rint(points).astype(np.int32):
                if 0 <= x < w and 0 <= y < h:
                    cv2.circle(image, (int(x), int(y)), r, colour, -1, cv2.LINE_AA)


def face_mask_in_frame(face: Face, height: int, width: int) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The face's mask (the model's when swapped, else the aligned landmark mask) warped into frame pixels.

    Returns the (h, w) float32 [0, 1] mask of the face's region and that region's top-left (x, y), or None when
    the face has no mask or the region is outside the frame.
    """
    aligned = face.aligned
    if aligned is None:
        return None
    mask = face.swapped.mask if face.swapped is not None else aligned.mask
    if mask is None:
        return None
    matrix = np.asarray(aligned.matrix, np.float64) * (mask.shape[0] / aligned.size)  # frame px -> mask px
    inverse = cv2.invertAffineTransform(matrix)
    m = mask.shape[0]
    corners = np.array([[0, 0, 1], [m, 0, 1], [0, m, 1], [m, m, 1]], np.float64) @ inverse.T
    x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int), (width, height))
    if x1 <= x0 or y1 <= y0:
        return None
    roi = matrix.copy()
    roi[:, 2] += roi[:, :2] @ np.array([x0, y0], np.float64)  # the ROI's px -> mask px
    warped = cv2.warpAffine(
        np.ascontiguousarray(mask, np.float32),
        roi,
        (int(x1 - x0), int(y1 - y0)),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    return warped, (int(x0), int(y0))


def draw_masks(image: np.ndarray, faces: Sequence[Face]) -> None:
    """Tint each face's mask green on ``image`` (in place), 45 % at mask value 1."""
    h, w = image.shape[:2]
    for face in faces:
        found = face_mask_in_frame(face, h, w)
        if found is None:
            continue
        mask, (x, y) = found
        region = image[y : y + mask.shape[0], x : x + mask.shape[1]]
        alpha = (0.45 * mask)[..., None]
        region[:] = (region * (1.0 - alpha) + _MASK_BGR * alpha).astype(np.uint8)


def screenshot_path(folder: Path, now: datetime | None = None) -> Path:
    """A new PNG path in ``folder`` named by the local time to the millisecond (never an existing file)."""
    now = now or datetime.now()
    stem = f"realtime_swap_{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}"
    path, n = folder / f"{stem}.png", 1
    while path.exists():
        path, n = folder / f"{stem}_{n}.png", n + 1
    return path


class WindowSink(Sink):
    """A resizable preview window with the live controls.

    color_modes: the cycle the ``c`` key walks through; models: names of the loaded swap models/faces (Tab and
    1-9 set ``controls.model_index``; default: ``controls.model_names``); screenshot_dir: where ``p`` saves PNGs
    (created when needed).
    """

    name = "window"
    main_thread = True

    def __init__(
        self,
        controls: Controls,
        title: str = "realtime_swap",
        color_modes: Sequence[ColorMode] = (),
        models: Sequence[str] = (),
        screenshot_dir: str | Path = DEFAULT_SCREENSHOT_DIR,
    ) -> None:
        ok, why = display_available()
        if not ok:
            raise SinkError(f"cannot open a preview window: {why}")
        self._controls = controls
        self._title = title
        self._color_modes = [ColorMode(m) for m in color_modes]
        self._models = list(models) or list(controls.model_names)
        self.screenshot_dir = Path(screenshot_dir).expanduser()
        if self.screenshot_dir.exists() and not self.screenshot_dir.is_dir():
            raise SinkError(f"screenshot folder {self.screenshot_dir} is a file")
        self._lock = threading.Lock()
        self._latest: Frame | None = None
        self._shown: Frame | None = None
        self._screen: Any = None  # pygame.Surface once the window is open (pygame is imported lazily)
        self._fps = 0.0
        self._last_write: float | None = None
        self._notice: tuple[str, float] | None = None
        self.show_help = True
        self.frames_shown = 0
        self.screenshots: list[Path] = []

    def open(self, info: StreamInfo) -> None:
        self._info = info

    def write(self, frame: Frame) -> None:
        now = time.perf_counter()
        if self._last_write is not None:
            dt = now - self._last_write
            if dt > 0:
                self._fps = 1.0 / dt if self._fps == 0 else 0.9 * self._fps + 0.1 / dt
        self._last_write = now
        with self._lock:
            self._latest = frame

    # -- what is drawn -------------------------------------------------------------------------------------------
    def _overlay_lines(self, frame: Frame) -> list[str]:
        c = self._controls
        stages = "  ".join(f"{k} {v:.1f}" for k, v in frame.timings.items())
        swap = "on" if c.swap_enabled else "off"
        model = ""
        if self._models:
            model = f"  model {c.model_index + 1}/{len(self._models)} {self._models[c.model_index % len(self._models)]}"
        return [
            f"{self._fps:5.1f} fps  {frame.width}x{frame.height}  faces {len(frame.faces)}  swap {swap}  "
            f"colour {c.color_mode.value}{model}",
            f"ms: {stages}",
        ]

    def compose(self, frame: Frame) -> np.ndarray:
        """The preview picture of ``frame``: the output image with the overlays the controls ask for."""
        c = self._controls
        notice = self._notice if self._notice and time.monotonic() < self._notice[1] else None
        if not (c.show_landmarks or c.show_mask or c.show_stats or self.show_help or notice or frame.notice):
            return frame.image
        image = frame.image.copy()
        if c.show_mask:
            draw_masks(image, frame.faces)
        if c.show_landmarks:
            draw_faces(image, frame.faces)
        top = self._overlay_lines(frame) if c.show_stats else []
        if frame.notice and not frame.held:  # a held frame has its notice drawn in the picture already
            top.append(frame.notice)
        if notice:
            top.append(notice[0])
        draw_text_band(image, top)
        if self.show_help:
            draw_text_band(image, [HELP_LINE], bottom=True)
        return image

    # -- keys ------------------------------------------------------------------------------------------------
    def _handle_key(self, key: int) -> SinkEvent | None:
        pygame = _pygame()

        c = self._controls
        if key in (pygame.K_q, pygame.K_ESCAPE):
            return SinkEvent.QUIT
        if key in (pygame.K_s, pygame.K_SPACE):
            c.swap_enabled = not c.swap_enabled
        elif key == pygame.K_c and self._color_modes:
            i = self._color_modes.index(c.color_mode) if c.color_mode in self._color_modes else -1
            c.color_mode = self._color_modes[(i + 1) % len(self._color_modes)]
        elif key in (pygame.K_TAB, pygame.K_n) and self._models:
            c.model_index = (c.model_index + 1) % len(self._models)
        elif pygame.K_1 <= key <= pygame.K_9 and key - pygame.K_1 < len(self._models):
            c.model_index = key - pygame.K_1
        elif key == pygame.K_l:
            c.show_landmarks = not c.show_landmarks
        elif key == pygame.K_m:
            c.show_mask = not c.show_mask
        elif key == pygame.K_t:
            c.show_stats = not c.show_stats
        elif key in (pygame.K_h, pygame.K_F1):
            self.show_help = not self.show_help
        elif key in (pygame.K_p, pygame.K_F12):
            self.save_screenshot()
        return None

    def save_screenshot(self) -> Path | None:
        """Save the last shown output frame (without overlays) as a PNG; its path, or None (nothing shown yet,
        or the write failed: logged and shown on screen)."""
        frame = self._shown
        if frame is None:
            return None
        try:
            self.screenshot_dir.mkdir(parents=True, exist_ok=True)
            path = screenshot_path(self.screenshot_dir)
            if not cv2.imwrite(str(path), frame.image):
                raise OSError("the PNG encoder refused the image")
        except OSError as exc:
            log.warning("screenshot not saved in %s: %s", self.screenshot_dir, exc)
            self._notice = (f"screenshot failed: {exc}", time.monotonic() + _NOTICE_S)
            return None
        self.screenshots.append(path)
        self._notice = (f"saved {path}", time.monotonic() + _NOTICE_S)
        return path

    # -- main thread -----------------------------------------------------------------------------------------
    def service(self) -> SinkEvent | None:
        pygame = _pygame()

        if self._screen is None:
            pygame.display.init()
            w, h = self._info.width, self._info.height
            info = pygame.display.Info()
            if info.current_w > 0 and (w > info.current_w or h > info.current_h):
                k = min(info.current_w / w, info.current_h / h) * 0.9
                w, h = int(w * k), int(h * k)
            self._screen = pygame.display.set_mode((w, h), pygame.RESIZABLE)
            pygame.display.set_caption(self._title)
        with self._lock:
            frame, self._latest = self._latest, None
        if frame is not None:
            self._shown = frame
        event_out = None
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                event_out = SinkEvent.QUIT
            elif event.type == pygame.KEYDOWN:
                event_out = self._handle_key(event.key) or event_out
        if frame is not None:
            image = self.compose(frame)
            screen = self._screen
            size = screen.get_size()
            if size != (image.shape[1], image.shape[0]):
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            surface = pygame.image.frombuffer(np.ascontiguousarray(image).data, size, "BGR")
            screen.blit(surface, (0, 0))
            pygame.display.flip()
            self.frames_shown += 1
        return event_out

    def close(self) -> None:
        if self._screen is not None:
            _pygame().display.quit()
            self._screen = None
