"""``serve`` with real WebRTC clients (aiortc) on loopback: swapped streams per session, in order; sessions that
end free their engine; who may connect (token, session limit, malformed offers) and the page's CSP."""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import av
import numpy as np
import pytest

pytest.importorskip("aiortc", reason="serve needs the [serve] extra (aiortc)")
pytest.importorskip("aiohttp", reason="serve needs the [serve] extra (aiohttp)")

from aiohttp import ClientSession, web
from conftest import ROOT, free_port

from realtime_swap.config import EngineConfig, FaceSpec, OutputSpec
from realtime_swap.infer.session import Backend
from realtime_swap.pipeline import load_swap_models
from realtime_swap.serve.app import STATE, ServeSettings, make_app, needs_token
from realtime_swap.serve.client import CodedFaceTrack, StreamClient, face_picture
from realtime_swap.swap.executor import BatchingSwapExecutor

FACES = FaceSpec(backend=Backend.ORT_CPU, detect_every=1)
FACE = (slice(40, 140), slice(110, 210))  # rows, columns of the astronaut's face in face_picture()
BACKGROUND = (slice(150, 215), slice(230, 320))  # her shoulder and the backdrop: no face, no code strip


@pytest.fixture(scope="module")
def executor() -> Iterator[BatchingSwapExecutor]:
    shared = BatchingSwapExecutor(load_swap_models(FACES), window_ms=3.0, max_batch=8)
    yield shared
    shared.close()


@asynccontextmanager
async def server(
    executor: BatchingSwapExecutor, outputs: OutputSpec | None = None, **settings: object
) -> AsyncIterator[tuple[str, web.Application]]:
    cfg = EngineConfig(faces=FACES, outputs=outputs or OutputSpec())
    app = make_app(cfg, executor, ServeSettings(**settings))  # type: ignore[arg-type]
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        await runner.cleanup()


def engine_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("session-") or t.name in ("capture", "output")]


async def until(condition: object, timeout_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        if condition():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.1)
    return bool(condition())  # type: ignore[operator]


def assert_swapped_in_order(client: StreamClient, sent: np.ndarray) -> None:
    codes = client.received.codes
    steps = [(b - a) % 1024 for a, b in itertools.pairwise(codes)]
    assert all(0 < s < 512 for s in steps), f"frames out of order: {codes}"
    got = client.received.pictures[-1].astype(np.float32)
    ref = sent.astype(np.float32)
    face = float(np.abs(got[FACE] - ref[FACE]).mean())
    rest = float(np.abs(got[BACKGROUND] - ref[BACKGROUND]).mean())
    assert rest < 12.0, f"background changed by {rest:.1f} grey levels"
    assert face > rest + 6.0, f"face region changed by {face:.1f}, background by {rest:.1f}: no swap"


@pytest.mark.slow
def test_two_sessions_at_once_each_get_their_own_swapped_stream_in_order(
    executor: BatchingSwapExecutor, tmp_path: Path
) -> None:
    pictures = [face_picture(), face_picture(mirror=True)]

    async def main() -> None:
        async with server(executor, OutputSpec(record=tmp_path / "rec.mp4")) as (url, app):
            clients = [StreamClient(url, CodedFaceTrack(p, fps=15.0)) for p in pictures]
            for c in clients:
                await c.connect()
            try:
                for c in clients:
                    await c.wait_frames(25, timeout_s=90.0)
                assert len(app[STATE].sessions) == 2
            finally:
                for c in clients:
                    await c.close()
            for c, p in zip(clients, pictures, strict=True):
                assert_swapped_in_order(c, p)
            # each stream got its own picture back: the mirrored one is not the other's
            a, b = (c.received.pictures[-1][BACKGROUND].astype(np.float32) for c in clients)
            assert float(np.abs(a - b).mean()) > 20.0
            assert await until(lambda: not app[STATE].sessions, 20.0)

    calls_before = executor.calls
    asyncio.run(main())
    assert executor.calls > calls_before
    # the server's recording went to the first session only, as a file of its own
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec-1.mp4"]
    with av.open(str(tmp_path / "rec-1.mp4")) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames >= 10


@pytest.mark.slow
def test_a_client_that_disconnects_mid_stream_frees_its_session_and_threads(executor: BatchingSwapExecutor) -> None:
    async def main() -> None:
        async with server(executor, idle_timeout_s=3.0) as (url, app):
            client = StreamClient(url, CodedFaceTrack(face_picture(), fps=15.0))
            await client.connect()
            await client.wait_frames(5, timeout_s=60.0)
            session = next(iter(app[STATE].sessions.values()))
            assert session.thread is not None and session.thread.is_alive()
            client.track.stop()  # the camera stops mid-stream, then the peer goes away
            await client.pc.close()
            assert await until(lambda: not app[STATE].sessions, 30.0), "session not released"
            assert not session.thread.is_alive()
            assert await until(lambda: not engine_threads(), 10.0), engine_threads()

    asyncio.run(main())


def test_refusals_token_room_and_malformed_offers(executor: BatchingSwapExecutor) -> None:
    async def post(url: str, body: object, token: str | None = None, raw: bytes | None = None) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with ClientSession() as http:
            kwargs: dict[str, object] = {"data": raw} if raw is not None else {"json": body}
            async with http.post(url + "/offer", headers=headers, **kwargs) as r:  # type: ignore[arg-type]
                return r.status, (await r.json())["error"]

    async def main() -> None:
        async with server(executor, token="s3cret", max_sessions=1) as (url, app):
            state = app[STATE]
            offer = {"sdp": "v=0\r\n", "type": "offer"}
            assert (await post(url, offer))[0] == 401
            assert (await post(url, offer, token="wrong"))[0] == 403
            for body, raw in (
                (None, b"{not json"),
                ([1, 2], None),
                ({"type": "offer"}, None),
                ({"sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "type": "answer"}, None),
                ({"sdp": "hello", "type": "offer"}, None),
                ({"sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=garbage\r\n", "type": "offer"}, None),
            ):
                status, error = await post(url, body, token="s3cret", raw=raw)
                assert status == 400 and error, (body, raw, status)
            assert not state.sessions
            first = StreamClient(url, CodedFaceTrack(face_picture(), fps=10.0), token="s3cret")
            await first.connect()
            try:
                second = StreamClient(url, CodedFaceTrack(face_picture(), fps=10.0), token="s3cret")
                with pytest.raises(RuntimeError, match="HTTP 503: server full: 1 sessions at most"):
                    await second.connect()
                await second.close()
            finally:
                await first.close()
            assert await until(lambda: not state.sessions, 30.0)
            async with ClientSession() as http, http.get(url + "/") as page:
                csp = page.headers["Content-Security-Policy"]
                assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
                assert '<script src="/client.js"' in await page.text()
            assert state.refused["unauthorized"] == 1 and state.refused["forbidden"] == 1
            assert state.refused["full"] == 1 and state.refused["malformed"] == 6

    asyncio.run(main())


def test_only_loopback_binds_without_a_token() -> None:
    assert not needs_token("127.0.0.1") and not needs_token("::1")
    assert needs_token("0.0.0.0") and needs_token("192.168.1.20")


def test_the_serve_command_serves_the_page_and_stops_on_sigint() -> None:
    port = free_port()
    cmd = [
        sys.executable,
        str(ROOT / "run_live.py"),
        "serve",
        "--port",
        str(port),
        "--token",
        "t0k",
        "--backend",
        "ort-cpu",
    ]
    process = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        lines: list[str] = []
        assert process.stderr is not None
        for line in process.stderr:  # the URL line comes once the port is bound
            lines.append(line)
            if line.startswith("serving on"):
                break
        assert f"serving on http://127.0.0.1:{port}/?token=t0k" in "".join(lines), lines

        async def get() -> tuple[int, str, int]:
            async with ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{port}/") as page:
                    csp = page.headers["Content-Security-Policy"]
                async with http.post(f"http://127.0.0.1:{port}/offer", json={"sdp": "", "type": "offer"}) as r:
                    return page.status, csp, r.status

        status, csp, refused = asyncio.run(get())
        assert status == 200 and "default-src 'none'" in csp and refused == 401
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_a_client_that_goes_silent_is_closed_after_the_idle_timeout(executor: BatchingSwapExecutor) -> None:
    async def main() -> None:
        async with server(executor, idle_timeout_s=2.0) as (url, app):
            client = StreamClient(url, CodedFaceTrack(face_picture(), fps=15.0))
            await client.connect()
            await client.wait_frames(3, timeout_s=60.0)
            session = next(iter(app[STATE].sessions.values()))

            async def silent() -> object:  # the camera goes quiet, the peer says nothing: a vanished client
                await asyncio.Event().wait()
                return None

            client.track.recv = silent  # type: ignore[method-assign]
            try:
                assert await until(lambda: not app[STATE].sessions, 30.0), "silent session not released"
                assert session.thread is not None and not session.thread.is_alive()
            finally:
                await client.close()

    asyncio.run(main())
