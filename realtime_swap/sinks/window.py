"""The preview window (SDL2 through pygame): the picture, an FPS and per-stage timing overlay, and keys.

Keys: q / Esc quit; s or Space toggles the swap; c cycles colour modes; l shows landmarks; m shows masks;
h hides/shows the stats overlay. SDL wants its window on the main thread, so ``write`` (output thread) only
hands the newest frame over and ``service`` (main thread) draws it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from realtime_swap.errors import SinkError
from realtime_swap.sinks.base import Sink, SinkEvent
from realtime_swap.stages import Controls
from realtime_swap.types import Frame, StreamInfo


def display_available() -> tuple[bool, str]:
    """Whether a window can be shown here, and why not when it cannot."""
    if os.environ.get("SDL_VIDEODRIVER") == "dummy":
        return True, "SDL dummy video driver"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no display ($DISPLAY and $WAYLAND_DISPLAY are unset)"
    return True, "display found"


def draw_overlay(image: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """A copy of ``image`` with ``lines`` of text in the top-left corner on a dark band."""
    out = image.copy()
    scale = max(0.45, min(1.2, image.shape[0] / 900))
    step = int(22 * scale / 0.55)
    height = step * len(lines) + 8
    width = min(out.shape[1], int(max((len(s) for s in lines), default=0) * 11 * scale / 0.55) + 12)
    band = out[:height, :width]
    band[:] = (band * 0.45).astype(np.uint8)
    for i, text in enumerate(lines):
        org = (6, step * (i + 1))
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


class WindowSink(Sink):
    """A resizable preview window. ``color_modes`` is the cycle the ``c`` key walks through."""

    name = "window"
    main_thread = True

    def __init__(self, controls: Controls, title: str = "realtime_swap", color_modes: Sequence[str] = ()) -> None:
        ok, why = display_available()
        if not ok:
            raise SinkError(f"cannot open a preview window: {why}")
        self._controls = controls
        self._title = title
        self._color_modes = list(color_modes)
        self._lock = threading.Lock()
        self._latest: Frame | None = None
        self._screen: Any = None  # pygame.Surface once the window is open (pygame is imported lazily)
        self._fps = 0.0
        self._last_write: float | None = None
        self.frames_shown = 0

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

    def _overlay_lines(self, frame: Frame) -> list[str]:
        stages = "  ".join(f"{k} {v:.1f}" for k, v in frame.timings.items())
        swap = "on" if self._controls.swap_enabled else "off"
        return [
            f"{self._fps:5.1f} fps  {frame.width}x{frame.height}  faces {len(frame.faces)}  swap {swap}  "
            f"colour {self._controls.color_mode}",
            f"ms: {stages}",
        ]

    def _handle_key(self, key: int) -> SinkEvent | None:
        import pygame

        c = self._controls
        if key in (pygame.K_q, pygame.K_ESCAPE):
            return SinkEvent.QUIT
        if key in (pygame.K_s, pygame.K_SPACE):
            c.swap_enabled = not c.swap_enabled
        elif key == pygame.K_c and self._color_modes:
            i = self._color_modes.index(c.color_mode) if c.color_mode in self._color_modes else -1
            c.color_mode = self._color_modes[(i + 1) % len(self._color_modes)]
        elif key == pygame.K_l:
            c.show_landmarks = not c.show_landmarks
        elif key == pygame.K_m:
            c.show_mask = not c.show_mask
        elif key == pygame.K_h:
            c.show_stats = not c.show_stats
        return None

    def service(self) -> SinkEvent | None:
        import pygame

        if self._screen is None:
            pygame.display.init()
            w, h = self._info.width, self._info.height
            info = pygame.display.Info()
            if info.current_w > 0 and (w > info.current_w or h > info.current_h):
                k = min(info.current_w / w, info.current_h / h) * 0.9
                w, h = int(w * k), int(h * k)
            self._screen = pygame.display.set_mode((w, h), pygame.RESIZABLE)
            pygame.display.set_caption(self._title)
        event_out = None
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                event_out = SinkEvent.QUIT
            elif event.type == pygame.KEYDOWN:
                event_out = self._handle_key(event.key) or event_out
        with self._lock:
            frame, self._latest = self._latest, None
        if frame is not None:
            image = frame.image
            if self._controls.show_stats:
                image = draw_overlay(image, self._overlay_lines(frame))
            screen = self._screen
            size = screen.get_size()
            if size != (image.shape[1], image.shape[0]):
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            surface = pygame.image.frombuffer(image.tobytes(), size, "BGR")
            screen.blit(surface, (0, 0))
            pygame.display.flip()
            self.frames_shown += 1
        return event_out

    def close(self) -> None:
        if self._screen is not None:
            import pygame

            pygame.display.quit()
            self._screen = None
