"""The preview window under SDL's dummy video driver: keys change the live controls, overlays are drawn where
the faces are, the screenshot key writes the output frame as a PNG."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pygame
import pytest

from realtime_swap.pipeline import Pipeline
from realtime_swap.sinks.base import SinkEvent
from realtime_swap.sinks.delay import DelaySink
from realtime_swap.sinks.window import WindowSink, face_mask_in_frame
from realtime_swap.sources.images import ImageSource
from realtime_swap.stages import Controls
from realtime_swap.types import AlignedFace, Face, FaceType, Frame, StreamInfo

W, H = 320, 240


@pytest.fixture(autouse=True)
def dummy_display(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """SDL's dummy video driver for these tests only (read when pygame initialises its display)."""
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    yield
    pygame.display.quit()


@pytest.fixture
def window(tmp_path: Path) -> Iterator[tuple[WindowSink, Controls]]:
    controls = Controls(color_mode="rct")
    sink = WindowSink(
        controls, color_modes=("rct", "lct", "mkl"), models=("alice", "bob", "carol"), screenshot_dir=tmp_path / "shots"
    )
    sink.open(StreamInfo(W, H, 30.0, live=True, name="test"))
    yield sink, controls
    sink.close()


def a_face() -> Face:
    """A face whose 64 px aligned crop is the frame region x 100..228, y 60..188 (scale 0.5) with a round mask."""
    matrix = np.array([[0.5, 0.0, -50.0], [0.0, 0.5, -30.0]])
    yy, xx = np.mgrid[:64, :64]
    mask = ((xx - 31.5) ** 2 + (yy - 31.5) ** 2 < 28**2).astype(np.float32)
    landmarks = np.array([[130.0, 100.0], [200.0, 100.0], [164.0, 150.0]], np.float32)
    return Face(
        id=3,
        box=np.array([100, 60, 228, 188], np.float32),
        score=0.9,
        landmarks=landmarks,
        aligned=AlignedFace(np.zeros((64, 64, 3), np.uint8), matrix, FaceType.WHOLE_FACE, mask),
    )


def frame_with_face() -> Frame:
    image = np.full((H, W, 3), 40, np.uint8)
    image[:, :, 2] = np.linspace(0, 255, W, dtype=np.uint8)[None, :]
    return Frame(index=0, image=image, t_capture=0.0, pts=0.0, faces=[a_face()])


def read_png(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, f"cannot read {path}"
    return image


def press(sink: WindowSink, *keys: int) -> SinkEvent | None:
    for key in keys:
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode=""))
    return sink.service()


def test_keys_change_the_controls(window: tuple[WindowSink, Controls]) -> None:
    sink, controls = window
    sink.write(frame_with_face())
    assert sink.service() is None  # opens the window, shows the frame
    press(sink, pygame.K_SPACE)
    assert controls.swap_enabled is False
    press(sink, pygame.K_c, pygame.K_c)
    assert controls.color_mode == "mkl"
    press(sink, pygame.K_c)
    assert controls.color_mode == "rct"
    press(sink, pygame.K_TAB)
    assert controls.model_index == 1
    press(sink, pygame.K_3)
    assert controls.model_index == 2
    press(sink, pygame.K_n)
    assert controls.model_index == 0
    press(sink, pygame.K_9)  # no ninth model: unchanged
    assert controls.model_index == 0
    press(sink, pygame.K_l, pygame.K_m, pygame.K_t, pygame.K_h)
    assert (controls.show_landmarks, controls.show_mask, controls.show_stats, sink.show_help) == (
        True,
        True,
        False,
        False,
    )
    assert press(sink, pygame.K_q) is SinkEvent.QUIT


def test_screenshot_key_writes_the_output_frame(window: tuple[WindowSink, Controls], tmp_path: Path) -> None:
    sink, controls = window
    controls.show_landmarks = True  # overlays are for the preview only: the PNG is the clean output frame
    frame = frame_with_face()
    sink.write(frame)
    sink.service()
    press(sink, pygame.K_p)
    press(sink, pygame.K_F12)
    shots = sorted((tmp_path / "shots").glob("*.png"))
    assert len(shots) == 2 and shots == sorted(sink.screenshots)
    assert re.fullmatch(r"realtime_swap_\d{8}-\d{6}-\d{3}(_\d+)?\.png", shots[0].name)
    assert np.array_equal(read_png(shots[0]), frame.image)


def test_landmarks_and_masks_are_drawn_where_the_face_is(window: tuple[WindowSink, Controls]) -> None:
    sink, controls = window
    frame = frame_with_face()
    controls.show_stats, sink.show_help = False, False
    assert sink.compose(frame) is frame.image  # nothing asked: the output frame itself, no copy

    controls.show_landmarks = True
    drawn = sink.compose(frame)
    for x, y in frame.faces[0].landmarks.astype(int):  # type: ignore[union-attr]
        assert tuple(drawn[y, x]) == (80, 255, 80)
    assert tuple(drawn[60, 150]) == (0, 220, 255)  # the box's top edge
    assert np.array_equal(drawn[:, :90], frame.image[:, :90])  # nothing drawn away from the face

    controls.show_landmarks, controls.show_mask = False, True
    tinted = sink.compose(frame).astype(int) - frame.image
    assert tinted[124, 164, 1] > 40  # mask centre (crop 32, 32) turned green
    assert np.abs(tinted[124, 104]).max() == 0  # outside the round mask (crop x 2)
    assert np.abs(tinted[:50]).max() == 0

    found = face_mask_in_frame(frame.faces[0], H, W)
    assert found is not None
    mask, (x0, y0) = found
    assert (x0, y0) == (100, 60) and mask.shape == (128, 128)
    assert mask[64, 64] == pytest.approx(1.0) and mask[64, 2] == 0.0

    sink.write(frame)
    sink.service()
    shown = pygame.surfarray.array3d(pygame.display.get_surface()).transpose(1, 0, 2)[..., ::-1]
    assert np.array_equal(shown, sink.compose(frame))  # the window shows the composed preview


def test_keys_reach_a_running_pipeline_through_the_delay_buffer(tmp_path: Path) -> None:
    """Pipeline.run services the window on the main thread; a screenshot then q stop the run."""
    image = np.full((H, W, 3), (30, 90, 200), np.uint8)
    cv2.imwrite(str(tmp_path / "face.png"), image)
    controls = Controls()
    window = WindowSink(controls, screenshot_dir=tmp_path / "shots")
    pipeline = Pipeline(ImageSource(tmp_path / "face.png", fps=30.0), [], [DelaySink([window], 0.05)], controls)
    pygame.display.init()

    def user_presses() -> None:  # a person at the keyboard: SDL's event queue takes events from any thread
        for key in (pygame.K_m, pygame.K_p, pygame.K_q):
            time.sleep(0.3)
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=0, unicode=""))

    keyboard = threading.Thread(target=user_presses, daemon=True)
    keyboard.start()
    report = pipeline.run()
    keyboard.join()
    assert report.stopped_by == "quit" and controls.show_mask
    shots = list((tmp_path / "shots").glob("*.png"))
    assert len(shots) == 1 and np.array_equal(read_png(shots[0]), image)


def test_the_models_loaded_by_the_engine_are_the_ones_tab_walks(tmp_path: Path) -> None:
    controls = Controls(model_names=("alice", "bob"))
    sink = WindowSink(controls, screenshot_dir=tmp_path)
    sink.open(StreamInfo(W, H, 30.0, live=True, name="test"))
    try:
        sink.write(frame_with_face())
        assert sink.service() is None
        press(sink, pygame.K_TAB)
        assert controls.model_index == 1
        press(sink, pygame.K_TAB)
        assert controls.model_index == 0
        press(sink, pygame.K_3)  # only two models: unchanged
        assert controls.model_index == 0
    finally:
        sink.close()


def test_the_engine_notice_is_shown_on_the_preview_only(window: tuple[WindowSink, Controls]) -> None:
    sink, controls = window
    controls.show_stats, sink.show_help = False, False
    frame = frame_with_face()
    assert sink.compose(frame) is frame.image  # nothing to draw: the output picture itself
    frame.notice = "at capacity: swap is the bottleneck (97 % busy)"
    shown = sink.compose(frame)
    assert shown is not frame.image and not np.array_equal(shown[:30], frame.image[:30])  # a band at the top
    assert np.array_equal(shown[60:], frame.image[60:])
