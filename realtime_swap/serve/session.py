"""One browser session: a peer connection whose camera track runs through the engine's stages and back.

Life of a session: ``negotiate`` answers the browser's offer (the outgoing track is attached then); the first
camera frame builds the session's engine (``build_stream_pipeline``: detect → swap → blend per stream, the swap
model shared through the server's executor) and starts it in a thread; the data channel carries controls in
(``{"swap": bool, "color": "rct", "model": 0, "mask": bool}``) and figures out once a second. Whatever ends it —
the peer closing or failing, the camera track ending, no frame for the idle timeout, the server stopping —
``close`` stops capture, waits for the engine's threads, closes the peer connection and calls ``on_closed``
once, so no thread and no session outlives it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import av
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from realtime_swap.color.modes import ColorMode
from realtime_swap.config import EngineConfig
from realtime_swap.pipeline import Pipeline, build_stream_pipeline
from realtime_swap.serve.tracks import SwappedTrack, TrackSink, TrackSource
from realtime_swap.stages import Controls
from realtime_swap.swap.executor import SwapExecutor

log = logging.getLogger(__name__)


class OfferError(ValueError):
    """The client's offer cannot be used (a 400: the message says why)."""


class Session:
    """One browser stream. ``cfg``: the engine's configuration for it (its ``outputs``: the server outputs this
    session feeds, if any); ``executor``: the shared swap executor (None: no swap model, detection only)."""

    def __init__(
        self,
        session_id: str,
        cfg: EngineConfig,
        executor: SwapExecutor | None,
        on_closed: Callable[[Session], None],
        first_frame_timeout_s: float = 20.0,
        idle_timeout_s: float = 10.0,
    ) -> None:
        self.id = session_id
        self.cfg = cfg
        self.executor = executor
        self._on_closed = on_closed
        self.first_frame_timeout_s = first_frame_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.pc = RTCPeerConnection()
        self.out_track: SwappedTrack | None = None
        self.source: TrackSource | None = None
        self.pipeline: Pipeline | None = None
        self.controls = Controls(color_mode=cfg.faces.color)  # replaced by the engine's once it is built
        self.channel: RTCDataChannel | None = None
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()

    # -- signalling ----------------------------------------------------------------------------------------
    async def negotiate(self, sdp: str, kind: str) -> RTCSessionDescription:
        """Answer the browser's offer; OfferError when it is malformed or has no video to swap."""
        if kind != "offer":
            raise OfferError(f"expected an SDP offer, got type '{kind}'")
        if not sdp.startswith("v=0") or "\nm=video " not in sdp.replace("\r\n", "\n"):
            raise OfferError("the SDP offer must start with v=0 and carry a video track (m=video)")
        pc = self.pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind != "video" or self.out_track is not None:
                return
            self.out_track = SwappedTrack()
            pc.addTrack(self.out_track)
            self._tasks.append(asyncio.ensure_future(self._ingest(track)))

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            self.channel = channel
            channel.on("message", self._on_message)
            self._tasks.append(asyncio.ensure_future(self._report()))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self.close_soon(f"connection {pc.connectionState}")

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            if self.out_track is None:
                raise OfferError("the SDP offer has no video track to receive")
            await pc.setLocalDescription(await pc.createAnswer())
        except OfferError:
            raise
        except Exception as exc:  # aiortc's parser and negotiation raise many kinds on bad input
            raise OfferError(f"the SDP offer could not be used: {exc}") from exc
        self._tasks.append(asyncio.ensure_future(self._first_frame_watchdog()))
        return pc.localDescription

    # -- media -----------------------------------------------------------------------------------------------
    async def _ingest(self, track: MediaStreamTrack) -> None:
        """Camera frames into the engine; the first one builds and starts it."""
        try:
            first = await track.recv()
            assert self.out_track is not None and isinstance(first, av.VideoFrame)
            self.source = TrackSource(first, f"browser session {self.id}", idle_timeout_s=self.idle_timeout_s)
            sink = TrackSink(self.out_track)
            pipeline, notices = await asyncio.to_thread(
                build_stream_pipeline, self.cfg, self.source, [sink], self.executor
            )
            for notice in notices:
                log.info("session %s: %s", self.id, notice)
            self._apply(self.controls, pipeline.controls)
            self.controls = sink.controls = pipeline.controls
            self.pipeline = pipeline
            loop = asyncio.get_running_loop()
            self._thread = threading.Thread(
                target=self._run_engine, args=(pipeline, loop), name=f"session-{self.id}", daemon=True
            )
            self._thread.start()
            while True:
                frame = await track.recv()
                if isinstance(frame, av.VideoFrame):
                    self.source.push(frame)
        except MediaStreamError:
            self.close_soon("camera track ended")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("session %s: %s", self.id, exc)
            self.error = str(exc)
            self.close_soon(f"error: {exc}")

    def _run_engine(self, pipeline: Pipeline, loop: asyncio.AbstractEventLoop) -> None:
        try:
            report = pipeline.run()
            log.info("session %s ended: %d frames out, fps %.1f", self.id, report.frames_processed, report.fps)
        except Exception as exc:
            log.warning("session %s: engine stopped: %s", self.id, exc)
            self.error = str(exc)
        with contextlib.suppress(RuntimeError):  # the loop is gone only when the server already stopped
            loop.call_soon_threadsafe(self.close_soon, "engine ended")

    async def _first_frame_watchdog(self) -> None:
        await asyncio.sleep(self.first_frame_timeout_s)
        if self.pipeline is None:
            self.close_soon(f"no camera frame within {self.first_frame_timeout_s:g} s")

    # -- controls and figures -------------------------------------------------------------------------------
    @staticmethod
    def _apply(wanted: Controls, controls: Controls) -> None:
        controls.swap_enabled = wanted.swap_enabled
        controls.color_mode = wanted.color_mode
        controls.show_mask = wanted.show_mask
        if controls.model_names:
            controls.model_index = wanted.model_index % len(controls.model_names)

    def _on_message(self, message: object) -> None:
        """A control message from the page; bad ones are answered with an error and otherwise ignored."""
        try:
            data = json.loads(message) if isinstance(message, str) else None
            if not isinstance(data, dict):
                raise ValueError("expected a JSON object")
            c = self.controls
            if "swap" in data:
                c.swap_enabled = bool(data["swap"])
            if "mask" in data:
                c.show_mask = bool(data["mask"])
            if "color" in data:
                c.color_mode = ColorMode(data["color"])
            if "model" in data:
                index = int(data["model"])
                if c.model_names and not 0 <= index < len(c.model_names):
                    raise ValueError(f"no model {index}")
                c.model_index = index
        except (ValueError, TypeError) as exc:
            self._send({"type": "error", "error": f"bad control message: {exc}"})

    def _send(self, data: dict[str, Any]) -> None:
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            channel.send(json.dumps(data))

    def figures(self) -> dict[str, Any]:
        """What the page shows: engine fps, capture-to-output latency p50 (ms), controls and their choices."""
        c = self.controls
        out: dict[str, Any] = {
            "type": "stats",
            "session": self.id,
            "swap": c.swap_enabled,
            "mask": c.show_mask,
            "color": c.color_mode.value,
            "colors": [m.value for m in ColorMode],
            "model": c.model_index,
            "models": list(c.model_names),
        }
        if self.pipeline is not None:
            status = self.pipeline.metrics.status()
            out["fps"] = status["fps"]
            out["latency_ms"] = status["latency_p50"]
            out["dropped"] = status["dropped"]
        return out

    async def _report(self) -> None:
        while not self._closed.is_set():
            self._send(self.figures())
            await asyncio.sleep(1.0)

    # -- end ---------------------------------------------------------------------------------------------------
    def close_soon(self, reason: str) -> None:
        """Start closing (idempotent); ``wait_closed`` waits for the end."""
        if self._closing is None:
            log.info("session %s closing: %s", self.id, reason)
            self._closing = asyncio.ensure_future(self._close())

    async def close(self, reason: str = "server stopping") -> None:
        self.close_soon(reason)
        await self.wait_closed()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    @property
    def thread(self) -> threading.Thread | None:
        """The engine's runner thread (None before the first frame)."""
        return self._thread

    async def _close(self) -> None:
        try:
            if self.source is not None:
                self.source.close()
            if self.pipeline is not None:
                self.pipeline.stop("session ended")
            if self._thread is not None:
                await asyncio.to_thread(self._thread.join, 30.0)
            current = asyncio.current_task()
            for task in self._tasks:
                if task is not current:
                    task.cancel()
            await asyncio.gather(*(t for t in self._tasks if t is not current), return_exceptions=True)
            if self.out_track is not None:
                self.out_track.stop()
            await self.pc.close()
        finally:
            self._closed.set()
            self._on_closed(self)
