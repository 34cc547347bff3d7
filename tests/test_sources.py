"""Sources: the demo, images, files, a network stream on loopback, and bad input through the library."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import decode_index, encode_index, free_port

from realtime_swap.errors import SourceError
from realtime_swap.sources import SourceSpec, open_source
from realtime_swap.sources.av_source import AVSource
from realtime_swap.sources.demo import DemoSource
from realtime_swap.sources.images import ImageSource


@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (3840, 2160)])
def test_demo_source_sizes_and_motion(size: tuple[int, int]) -> None:
    source = DemoSource(*size, realtime=False)
    first, pts0 = source.read()  # type: ignore[misc]
    for _ in range(14):
        source.read()
    later, pts15 = source.read()  # type: ignore[misc]
    assert first.shape == (size[1], size[0], 3) and first.dtype == np.uint8
    assert pts15 - pts0 == pytest.approx(15 / 30)
    assert np.abs(first.astype(int) - later.astype(int)).mean() > 1.0  # the face moves / light changes


def test_demo_source_places_the_photo_by_its_known_transform() -> None:
    source = DemoSource(640, 480, realtime=False)
    actor = source.actors[0]
    for index in (0, 37):
        frame = source.render(index)
        matrix = source.actor_transform(index, 0)
        # the photo's centre pixel lands where the transform says, in the right colour (up to the light gain)
        cy, cx = actor.image.shape[0] // 2, actor.image.shape[1] // 2
        x, y = matrix @ np.array([cx, cy, 1.0])
        expected = actor.image[cy - 2 : cy + 3, cx - 2 : cx + 3].reshape(-1, 3).mean(0) * source.light(index)
        px, py = round(x), round(y)
        got = frame[py - 1 : py + 2, px - 1 : px + 2]
        assert np.abs(got.reshape(-1, 3).mean(0) - expected).max() < 25


def test_demo_paced_at_its_fps() -> None:
    source = DemoSource(160, 120, fps=50, realtime=True)
    start = time.perf_counter()
    for _ in range(11):
        source.read()
    assert time.perf_counter() - start >= 10 / 50 * 0.95


def test_demo_refuses_sizes_above_4k() -> None:
    with pytest.raises(SourceError, match="out of range"):
        DemoSource(7680, 4320)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (np.full((20, 30), 128, np.uint8), (20, 30, 3)),  # grey
        (np.full((20, 30, 4), 128, np.uint8), (20, 30, 3)),  # BGRA
        (np.full((20, 30, 3), 40000, np.uint16), (20, 30, 3)),  # 16-bit
        (np.full((1, 1, 3), 9, np.uint8), (1, 1, 3)),  # 1x1
    ],
)
def test_image_source_converts_odd_formats(tmp_path: Path, image: np.ndarray, expected: tuple[int, ...]) -> None:
    path = tmp_path / "odd.png"
    assert cv2.imwrite(str(path), image)
    out, _ = ImageSource(path, realtime=False).read()  # type: ignore[misc]
    assert out.shape == expected and out.dtype == np.uint8


def test_image_source_bad_files(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(SourceError, match=r"cannot decode image .*broken\.png"):
        ImageSource(tmp_path / "broken.png")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no images in folder"):
        ImageSource(empty)


def test_file_source_realtime_pacing(test_video: Path) -> None:
    source = AVSource(test_video, realtime=True)
    start = time.perf_counter()
    for _ in range(16):
        assert source.read() is not None
    assert time.perf_counter() - start >= 15 / 30 * 0.95
    source.close()


def test_open_source_dispatch(tmp_path: Path, test_video: Path) -> None:
    assert isinstance(open_source(SourceSpec("demo", width=320, height=240)), DemoSource)
    assert isinstance(open_source(SourceSpec(str(test_video))), AVSource)
    cv2.imwrite(str(tmp_path / "a.png"), encode_index(3))
    assert isinstance(open_source(SourceSpec(str(tmp_path))), ImageSource)
    with pytest.raises(SourceError, match="unsupported URL scheme 'gopher'"):
        open_source(SourceSpec("gopher://example.org/x"))
    with pytest.raises(SourceError, match="input not found"):
        open_source(SourceSpec(str(tmp_path / "missing.mp4")))
    with pytest.raises(SourceError, match="camera 7"):
        open_source(SourceSpec("7"))


def test_corrupt_and_truncated_videos(tmp_path: Path, test_video: Path) -> None:
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(SourceError, match=r"cannot open .*corrupt\.mp4"):
        AVSource(corrupt)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(test_video.read_bytes()[: test_video.stat().st_size // 2])  # moov atom lost
    with pytest.raises(SourceError, match=r"truncated\.mp4"):
        AVSource(truncated)


def test_network_source_reads_mpegts_over_tcp_on_loopback() -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("stream_server.py")), f"tcp://127.0.0.1:{port}?listen=1", "40"],
        cwd=Path(__file__).parent,
    )
    source = None
    for _ in range(50):  # the server's listen() comes a moment after the thread starts
        try:
            source = AVSource(f"tcp://127.0.0.1:{port}", open_timeout_s=5)
            break
        except SourceError:
            time.sleep(0.1)
    assert source is not None, "could not connect to the loopback server"
    assert source.info.live
    codes = []
    while (got := source.read()) is not None:
        codes.append(decode_index(got[0]))
    source.close()
    assert server.wait(10) == 0
    assert codes == list(range(len(codes)))
    assert len(codes) >= 35  # mpegts may lose the frames before the first keyframe; not more


def test_dead_url_fails_with_a_message() -> None:
    port = free_port()  # nobody listens there
    with pytest.raises(SourceError, match=rf"cannot open tcp://127\.0\.0\.1:{port}"):
        AVSource(f"tcp://127.0.0.1:{port}", open_timeout_s=2)
