"""A Python WebRTC client of ``serve`` (aiortc): sends coded face frames, receives the swapped stream.

Used by the tests and ``benchmarks/bench_serve.py``. Each sent frame carries its number in a strip of blocks
along the bottom-left (``draw_code`` / ``read_code``), outside any face, so the received frame says which sent
frame it is: order and latency are read from the pictures themselves.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass, field

import av
import cv2
import numpy as np
from aiohttp import ClientSession
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

CODE_BITS = 10
CODE_BLOCK = 16  # px per bit
_TIME_BASE = fractions.Fraction(1, 90000)


def draw_code(image: np.ndarray, value: int) -> None:
    """Write ``value`` (mod 2**CODE_BITS) into the bottom-left strip of ``image`` (H, W, 3) uint8 BGR, in place."""
    h = image.shape[0]
    strip = image[h - CODE_BLOCK : h, : CODE_BITS * CODE_BLOCK]
    strip[:] = 0
    for bit in range(CODE_BITS):
        if (value >> bit) & 1:
            strip[:, bit * CODE_BLOCK : (bit + 1) * CODE_BLOCK] = 255


def read_code(image: np.ndarray) -> int:
    """The value ``draw_code`` wrote (robust to lossy video coding: each block's centre is averaged)."""
    h = image.shape[0]
    value = 0
    for bit in range(CODE_BITS):
        block = image[h - CODE_BLOCK + 4 : h - 4, bit * CODE_BLOCK + 4 : (bit + 1) * CODE_BLOCK - 4]
        if block.mean() > 128:
            value |= 1 << bit
    return value


def face_picture(width: int = 320, height: int = 240, mirror: bool = False) -> np.ndarray:
    """scikit-image's astronaut scaled to ``width`` and cut to ``height`` (her face in the upper middle),
    (H, W, 3) uint8 BGR; ``mirror``: flipped left-right (a second, different stream)."""
    from skimage import data

    bgr = np.ascontiguousarray(data.astronaut()[:, :, ::-1])
    scaled = cv2.resize(bgr, (width, width), interpolation=cv2.INTER_AREA)[:height]
    return np.ascontiguousarray(scaled[:, ::-1] if mirror else scaled)


class CodedFaceTrack(MediaStreamTrack):
    """A camera stand-in: ``picture`` at ``fps`` with the frame number drawn in (``sent_at[n]``: when frame n
    left, perf_counter s)."""

    kind = "video"

    def __init__(self, picture: np.ndarray, fps: float = 30.0) -> None:
        super().__init__()
        self.picture = picture
        self.fps = fps
        self.count = 0
        self.sent_at: dict[int, float] = {}
        self._t0: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.perf_counter()
        if self._t0 is None:
            self._t0 = now
        due = self._t0 + self.count / self.fps
        if due > now:
            await asyncio.sleep(due - now)
        image = self.picture.copy()
        draw_code(image, self.count)
        self.sent_at[self.count % (1 << CODE_BITS)] = time.perf_counter()
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = int(self.count * 90000 / self.fps)
        frame.time_base = _TIME_BASE
        self.count += 1
        return frame


@dataclass
class Received:
    """Frames received: their codes, arrival times (perf_counter s), send-to-receive latencies (ms) and the last
    few pictures (BGR)."""

    codes: list[int] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    pictures: list[np.ndarray] = field(default_factory=list)
    keep: int = 5


class StreamClient:
    """One browser-like session: ``connect`` posts the offer (with ``token``); ``receive`` collects frames."""

    def __init__(self, base_url: str, track: CodedFaceTrack, token: str | None = None) -> None:
        self.base_url = base_url
        self.track = track
        self.token = token
        self.pc = RTCPeerConnection()
        self.received = Received()
        self.remote: MediaStreamTrack | None = None
        self.session_id: str | None = None
        self._got_track = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        """Negotiate; raises ``RuntimeError('HTTP <status>: <error>')`` when the server refuses."""
        pc = self.pc
        pc.addTrack(self.track)
        pc.createDataChannel("controls")

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.remote = track
            self._got_track.set()

        await pc.setLocalDescription(await pc.createOffer())
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        body = {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
        async with ClientSession() as http, http.post(self.base_url + "/offer", json=body, headers=headers) as r:
            data = await r.json()
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}: {data.get('error')}")
        self.session_id = data["session"]
        await pc.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type=data["type"]))
        await asyncio.wait_for(self._got_track.wait(), 10.0)
        self._task = asyncio.ensure_future(self._collect())

    async def _collect(self) -> None:
        assert self.remote is not None
        r = self.received
        try:
            while True:
                frame = await self.remote.recv()
                assert isinstance(frame, av.VideoFrame)
                image = frame.to_ndarray(format="bgr24")
                now = time.perf_counter()
                code = read_code(image)
                r.arrived.append(now)
                r.codes.append(code)
                if code in self.track.sent_at:
                    r.latency_ms.append((now - self.track.sent_at[code]) * 1000.0)
                r.pictures.append(image)
                del r.pictures[: -r.keep]
        except MediaStreamError:
            return

    async def wait_frames(self, count: int, timeout_s: float) -> None:
        """Wait until ``count`` frames arrived; TimeoutError after ``timeout_s``."""
        deadline = time.perf_counter() + timeout_s
        while len(self.received.codes) < count:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{len(self.received.codes)} of {count} frames in {timeout_s:g} s")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.pc.close()
