"""The HTTP side of ``serve``: the page, ``POST /offer`` (signalling), who may connect, and the sessions.

``POST /offer`` takes ``{"sdp": "...", "type": "offer"}`` (JSON) and answers the same shape, or an error as
``{"error": "..."}``: 401 without a token where one is required, 403 with a wrong one, 503 when
``max_sessions`` are running, 400 for anything malformed (never a traceback). All of this is decided before a
peer connection exists, so no media flows for a refused client.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import logging
import ssl
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from aiohttp import web

from realtime_swap.config import EngineConfig, OutputSpec
from realtime_swap.serve.page import CLIENT_JS, CONTENT_SECURITY_POLICY, INDEX_HTML, STYLE_CSS
from realtime_swap.serve.session import OfferError, Session
from realtime_swap.swap.executor import SwapExecutor

log = logging.getLogger(__name__)

MAX_OFFER_BYTES = 64 * 1024
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class ServeSettings:
    """token: required from every client when set (None: anyone who can reach the port, loopback only);
    max_sessions: sessions at once; first_frame_timeout_s / idle_timeout_s: a session that sends no camera
    frame this long after its answer / since its last frame is closed (a client that vanished)."""

    token: str | None = None
    max_sessions: int = 4
    first_frame_timeout_s: float = 20.0
    idle_timeout_s: float = 10.0


class ServeState:
    """The sessions (from their offer on), and who holds the server's outputs
    (a recording, a virtual camera, streams: one session at a time, the first that starts while they are free)."""

    def __init__(self, cfg: EngineConfig, executor: SwapExecutor | None, settings: ServeSettings) -> None:
        self.cfg = cfg
        self.executor = executor
        self.settings = settings
        self.sessions: dict[str, Session] = {}
        self.outputs_holder: str | None = None
        self._ids = itertools.count(1)
        self.refused = {"unauthorized": 0, "forbidden": 0, "full": 0, "malformed": 0}

    @property
    def routed(self) -> bool:
        o = self.cfg.outputs
        return o.record is not None or o.vcam is not None or o.v4l2 is not None or bool(o.streams)

    def session_config(self, session_id: str) -> EngineConfig:
        """The engine configuration of a new session: the server's outputs if they are free, else none."""
        if self.routed and self.outputs_holder is None:
            self.outputs_holder = session_id
            record = self.cfg.outputs.record
            if record is not None:  # one file per session: out.mp4 -> out-3.mp4
                record = record.with_name(f"{record.stem}-{session_id}{record.suffix}")
            return replace(self.cfg, outputs=replace(self.cfg.outputs, record=record, preview=False))
        return replace(self.cfg, outputs=OutputSpec(preview=False))

    def next_id(self) -> str:
        return str(next(self._ids))

    def closed(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        if self.outputs_holder == session.id:
            self.outputs_holder = None


STATE = web.AppKey("state", ServeState)


def _error(status: type[web.HTTPException], message: str) -> web.HTTPException:
    return status(text=json.dumps({"error": message}), content_type="application/json")


@web.middleware
async def _security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"  # the page's URL carries the token
    response.headers["Cache-Control"] = "no-store"
    if isinstance(response, web.HTTPException):
        raise response
    return response


def _static(body: str, content_type: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(text=body, content_type=content_type, charset="utf-8")

    return handler


def _check_token(request: web.Request, state: ServeState) -> None:
    expected = state.settings.token
    if expected is None:
        return
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header.startswith("Bearer ") else request.query.get("token", "")
    if not given:
        state.refused["unauthorized"] += 1
        raise _error(web.HTTPUnauthorized, "this server needs its access token (the ?token= of the printed URL)")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        state.refused["forbidden"] += 1
        raise _error(web.HTTPForbidden, "wrong access token")


async def _read_offer(request: web.Request, state: ServeState) -> tuple[str, str]:
    try:
        raw = await request.read()
        data = json.loads(raw)
    except (web.HTTPRequestEntityTooLarge, ValueError, UnicodeDecodeError):
        state.refused["malformed"] += 1
        raise _error(
            web.HTTPBadRequest,
            f'expected a JSON body {{"sdp": ..., "type": "offer"}} under {MAX_OFFER_BYTES // 1024} KiB',
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("sdp"), str) or not isinstance(data.get("type"), str):
        state.refused["malformed"] += 1
        raise _error(web.HTTPBadRequest, 'expected {"sdp": string, "type": "offer"}')
    return data["sdp"], data["type"]


async def offer(request: web.Request) -> web.Response:
    """``POST /offer``: check the token and the room, answer the SDP offer, start the session."""
    state = request.app[STATE]
    _check_token(request, state)
    sdp, kind = await _read_offer(request, state)
    # No await from this check to the session's registration: concurrent offers cannot both take the last room.
    if len(state.sessions) >= state.settings.max_sessions:
        state.refused["full"] += 1
        raise _error(
            web.HTTPServiceUnavailable,
            f"server full: {state.settings.max_sessions} sessions at most at once; try again when one ends",
        )
    session_id = state.next_id()
    s = state.settings
    session = Session(
        session_id,
        state.session_config(session_id),
        state.executor,
        state.closed,
        first_frame_timeout_s=s.first_frame_timeout_s,
        idle_timeout_s=s.idle_timeout_s,
    )
    state.sessions[session_id] = session
    try:
        answer = await session.negotiate(sdp, kind)
    except OfferError as exc:
        state.refused["malformed"] += 1
        await session.close("bad offer")
        raise _error(web.HTTPBadRequest, str(exc)) from None
    except BaseException:
        await asyncio.shield(session.close("offer abandoned"))
        raise
    log.info("session %s started (%d running)", session_id, len(state.sessions))
    return web.json_response({"sdp": answer.sdp, "type": answer.type, "session": session_id})


async def health(request: web.Request) -> web.Response:
    """``GET /health``: sessions running and the executor's counters (needs the token like ``/offer``)."""
    state = request.app[STATE]
    _check_token(request, state)
    executor = state.executor.stats() if state.executor is not None else {}
    return web.json_response({"sessions": len(state.sessions), "executor": executor, "refused": state.refused})


async def _close_sessions(app: web.Application) -> None:
    sessions = list(app[STATE].sessions.values())
    await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)


def make_app(cfg: EngineConfig, executor: SwapExecutor | None, settings: ServeSettings) -> web.Application:
    """The server's aiohttp application; closing it (cleanup) closes every session. The executor stays the
    caller's to close."""
    app = web.Application(client_max_size=MAX_OFFER_BYTES, middlewares=[_security_headers])
    app[STATE] = ServeState(cfg, executor, settings)
    app.router.add_get("/", _static(INDEX_HTML, "text/html"))
    app.router.add_get("/client.js", _static(CLIENT_JS, "text/javascript"))
    app.router.add_get("/style.css", _static(STYLE_CSS, "text/css"))
    app.router.add_post("/offer", offer)
    app.router.add_get("/health", health)
    app.on_shutdown.append(_close_sessions)
    return app


def needs_token(host: str) -> bool:
    """Binding anything but loopback exposes the engine to the network: a token is then required."""
    return host not in LOOPBACK


def tls_context(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """An SSL context for ``--cert/--key`` (browsers give the camera only to https pages or localhost)."""
    if cert is None and key is None:
        return None
    from realtime_swap.errors import ConfigError

    if cert is None or key is None:
        raise ConfigError("--cert and --key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS certificate {cert} / key {key}: {exc}") from None
    return context


class BackgroundServer:
    """``app`` served on ``host`` from a thread with its own event loop (tests, benchmarks); ``url`` once
    entered. Leaving it closes every session and stops the loop."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="serve-loop", daemon=True)
        self._runner = web.AppRunner(app)

    def _call(self, coro: Awaitable[object], timeout_s: float = 60.0) -> object:
        async def wrapped() -> object:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapped(), self._loop).result(timeout_s)

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        self._call(self._runner.setup())
        site = web.TCPSite(self._runner, self.host, self.port)
        self._call(site.start())
        self.port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{self.port}"
        return self

    def state(self) -> ServeState:
        return self.app[STATE]

    def __exit__(self, *exc: object) -> None:
        try:
            self._call(self._runner.cleanup())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10.0)
            self._loop.close()
