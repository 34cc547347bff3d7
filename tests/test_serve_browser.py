"""``serve`` end to end in a real browser: headless Chromium (Debian's, driven by Playwright) with a fake camera
playing a .y4m of a packaged face; the page connects, plays the swapped stream, and a frame read back in the
page shows the swap (the face differs from the camera's picture, the rest matches) until the page's swap box
is unticked."""

from __future__ import annotations

import base64
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("aiortc", reason="serve needs the [serve] extra (aiortc)")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test drives Chromium with playwright")

from realtime_swap.config import EngineConfig, FaceSpec  # noqa: E402
from realtime_swap.infer.session import Backend  # noqa: E402
from realtime_swap.pipeline import load_swap_models  # noqa: E402
from realtime_swap.serve.app import BackgroundServer, ServeSettings, make_app  # noqa: E402
from realtime_swap.serve.client import draw_code, face_picture  # noqa: E402
from realtime_swap.swap.executor import BatchingSwapExecutor  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH, HEIGHT = 640, 480
FACE = (slice(80, 280), slice(220, 420))  # rows, columns of the astronaut's face in face_picture(640, 480)
BACKGROUND = (slice(300, 430), slice(460, 640))  # her shoulder and the backdrop

READ_REMOTE = """() => {
  const v = document.getElementById('remote');
  const c = document.createElement('canvas');
  c.width = v.videoWidth; c.height = v.videoHeight;
  c.getContext('2d').drawImage(v, 0, 0);
  return c.toDataURL('image/png').split(',')[1];
}"""


def write_y4m(path: Path, picture: np.ndarray, frames: int, fps: int = 30) -> np.ndarray:
    """A 4:2:0 .y4m of ``picture`` (BGR) with the frame number drawn in; returns the picture as the camera
    delivers it (through 4:2:0 and back, code strip of frame 0)."""
    h, w = picture.shape[:2]
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for n in range(frames):
            image = picture.copy()
            draw_code(image, n)
            f.write(b"FRAME\n" + cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420).tobytes())
    return cv2.cvtColor(cv2.cvtColor(picture, cv2.COLOR_BGR2YUV_I420), cv2.COLOR_YUV2BGR_I420)


def browser_args(y4m: Path) -> list[str]:
    return [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={y4m}",
        "--autoplay-policy=no-user-gesture-required",
    ]


@pytest.fixture(scope="module")
def served() -> Iterator[BackgroundServer]:
    faces = FaceSpec(backend=Backend.ORT_CPU, detect_every=1)
    executor = BatchingSwapExecutor(load_swap_models(faces), window_ms=3.0)
    app = make_app(EngineConfig(faces=faces), executor, ServeSettings(token="tok"))
    try:
        with BackgroundServer(app) as server:
            yield server
    finally:
        executor.close()


def read_remote(page: object) -> np.ndarray:
    data = base64.b64decode(page.evaluate(READ_REMOTE))  # type: ignore[attr-defined]
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (HEIGHT, WIDTH, 3), None if image is None else image.shape
    return image


def region_diffs(got: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    g, r = got.astype(np.float32), ref.astype(np.float32)
    return float(np.abs(g[FACE] - r[FACE]).mean()), float(np.abs(g[BACKGROUND] - r[BACKGROUND]).mean())


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (.ci/run installs Debian's chromium)")
def test_a_browser_session_shows_the_swap_and_the_page_turns_it_off(served: BackgroundServer, tmp_path: Path) -> None:
    y4m = tmp_path / "camera.y4m"
    camera = write_y4m(y4m, face_picture(WIDTH, HEIGHT), frames=30)
    with sync_api.sync_playwright() as pw:
        try:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=browser_args(y4m))
        except Exception as exc:  # a chromium that cannot start here (no sandbox support, missing libraries)
            pytest.skip(f"chromium did not start: {str(exc).splitlines()[0]}")
        try:
            page = browser.new_page()
            page.goto(served.url + "/?token=tok")
            page.click("#start")
            page.wait_for_function("() => window.realtimeSwap.framesIn > 40", timeout=90_000)
            assert page.evaluate("() => window.realtimeSwap.connected")
            face, rest = region_diffs(read_remote(page), camera)
            assert rest < 10.0, f"the background changed by {rest:.1f} grey levels"
            assert face > rest + 6.0, f"the face changed by {face:.1f}, the background by {rest:.1f}: no swap"
            page.wait_for_function("() => window.realtimeSwap.last && window.realtimeSwap.last.fps > 0", timeout=30_000)
            assert float(page.inner_text("#fps-engine")) > 0
            page.uncheck("#swap")
            page.wait_for_function("() => window.realtimeSwap.last.swap === false", timeout=30_000)
            frames = page.evaluate("() => window.realtimeSwap.framesIn")
            page.wait_for_function("(n) => window.realtimeSwap.framesIn > n", arg=frames + 15, timeout=60_000)
            face_off, _ = region_diffs(read_remote(page), camera)
            assert face_off < face - 4.0, f"swap off: the face still differs by {face_off:.1f} (on: {face:.1f})"
        finally:
            browser.close()
    state = served.state()
    deadline = time.monotonic() + 30.0
    while state.sessions and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not state.sessions, "the browser's session outlived the browser"
