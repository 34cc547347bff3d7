"""Shared fixtures: small real media written by the tests themselves."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = 16  # px per bit of the frame-number code


@pytest.fixture(scope="module")
def torch_one_thread() -> Iterator[None]:
    """One torch thread for a module's tests: the CI box has 2 shared cores and OpenMP spin-waits badly when
    oversubscribed (use with ``pytestmark = pytest.mark.usefixtures("torch_one_thread")``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def encode_index(index: int, width: int = 160, height: int = 120) -> np.ndarray:
    """A BGR frame whose top row of 8 blocks spells ``index`` in binary (white = 1), robust to H.264 loss."""
    image = np.full((height, width, 3), 60, np.uint8)
    image[BLOCK:, :] = (index * 37) % 200 + 30  # something that changes below the code
    for bit in range(8):
        if (index >> bit) & 1:
            image[:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 255
    return image


def decode_index(image: np.ndarray) -> int:
    """Inverse of ``encode_index`` on a decoded frame."""
    value = 0
    for bit in range(8):
        block = image[2 : BLOCK - 2, bit * BLOCK + 2 : (bit + 1) * BLOCK - 2]
        if block.mean() > 160:
            value |= 1 << bit
    return value


def write_test_video(path: Path, frames: int = 60, fps: int = 30, fragmented: bool = False) -> Path:
    """An H.264 mp4 of ``frames`` frames carrying their own index (see ``encode_index``)."""
    av = pytest.importorskip("av", reason="PyAV is not installed (a GPU machine gets it from .whl/)")
    options = {"movflags": "frag_keyframe+empty_moov"} if fragmented else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = {"crf": "10", "preset": "ultrafast"}
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(encode_index(i), format="bgr24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


@pytest.fixture
def test_video(tmp_path: Path) -> Path:
    return write_test_video(tmp_path / "indexed.mp4")


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python run_live.py ARGS`` headless and capture its output."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
    return subprocess.run(
        [sys.executable, str(ROOT / "run_live.py"), *args],
        cwd=cwd or ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


NGINX = shutil.which("nginx")
RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")


@pytest.fixture
def nginx_rtmp(tmp_path: Path) -> Iterator[int]:
    """An nginx-rtmp server (Debian: nginx-light + libnginx-mod-rtmp) on a free loopback port."""
    if NGINX is None or not RTMP_MODULE.is_file():
        pytest.skip("nginx with the RTMP module is not installed (apt-get install nginx-light libnginx-mod-rtmp)")
    port = free_port()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"load_module {RTMP_MODULE};\n"
        f"daemon off; master_process off; worker_processes 1;\n"
        f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;\n"
        "events { worker_connections 64; }\n"
        f"rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; }} }} }}\n"
    )
    proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start: {proc.stderr.read() if proc.stderr else ''!r}") from None
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def facesets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """A source and a destination faceset of four 64 px faces each, from the packaged sample photos
    ("astronaut", "t1_c"), for training tests; read-only."""
    from realtime_swap.train.faceset import Faceset
    from realtime_swap.train.sample_faces import write_packaged_faceset

    root = tmp_path_factory.mktemp("facesets")
    src = write_packaged_faceset(root / "src", ["astronaut"], 4, 64, seed=1)
    dst = write_packaged_faceset(root / "dst", ["t1_c"], 4, 64, seed=2)
    return Faceset.load(src), Faceset.load(dst)
