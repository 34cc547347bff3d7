"""The ``serve`` subcommand: the WebRTC page and signalling server, one engine per browser session, one shared
swap executor (in-process, or Ray Serve replicas with ``--ray``)."""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from realtime_swap.errors import ConfigError

if TYPE_CHECKING:
    from realtime_swap.config import FaceSpec
    from realtime_swap.swap.executor import SwapExecutor


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` subcommand."""
    from realtime_swap.cli import add_inference_arguments, positive_float, positive_int
    from realtime_swap.color import ColorMode
    from realtime_swap.sinks.stream_url import StreamEncoder

    p = subparsers.add_parser(
        "serve",
        help="serve live swaps to browsers over WebRTC (needs the [serve] extra)",
        description=(
            "A web page that sends the browser's camera over WebRTC and plays the swapped stream back, with "
            "controls and live figures. Each browser session runs through the same stages as `live`; the swap "
            "model is shared by all sessions and batches their faces into one call. Binds 127.0.0.1 by default; "
            "any other address needs an access token (--token, or one is generated and printed)."
        ),
    )
    n = p.add_argument_group("network")
    n.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    n.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    n.add_argument("--token", help="access token every client must send (default: generated when not loopback)")
    n.add_argument("--max-sessions", type=positive_int, default=4, help="browser sessions at once (default 4)")
    n.add_argument("--cert", type=Path, help="TLS certificate (PEM): browsers allow the camera only on https")
    n.add_argument("--key", type=Path, help="TLS private key (PEM) for --cert")
    f = p.add_argument_group("faces")
    f.add_argument("--model", type=Path, action="append", help="swap model (default: the shipped one); repeatable")
    f.add_argument("--models-dir", type=Path, metavar="DIR", help="folder searched first for the shipped models")
    f.add_argument(
        "--color", choices=[m.value for m in ColorMode], default=ColorMode.RCT.value, help="initial colour mode"
    )
    f.add_argument("--detect-every", type=positive_int, default=5, help="full detection every N frames")
    f.add_argument("--max-faces", type=positive_int, default=1, help="faces swapped per frame (default 1)")
    add_inference_arguments(p)
    b = p.add_argument_group("shared swap executor")
    b.add_argument(
        "--batch-window",
        type=float,
        default=3.0,
        metavar="MS",
        help="gather faces of several streams for at most MS ms into one model call (default 3; 0: no wait)",
    )
    b.add_argument("--batch-faces", type=positive_int, default=8, help="faces per model call at most (default 8)")
    b.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="run the swap model on a Ray Serve deployment of this cluster ('auto', "
        "ray://host:10001, host:6379); needs the [ray] extra",
    )
    b.add_argument("--ray-replicas", type=positive_int, default=1, help="swap replicas at start (default 1)")
    b.add_argument("--ray-max-replicas", type=positive_int, help="autoscale up to this many replicas (queue length)")
    b.add_argument(
        "--ray-gpus", type=float, default=0.0, metavar="FRACTION", help="GPUs per replica, e.g. 0.25 (default 0)"
    )
    o = p.add_argument_group("server outputs (the first session that starts while they are free)")
    o.add_argument("--record", type=Path, help="record sessions to files (out.mp4 -> out-<session>.mp4)")
    o.add_argument("--vcam", nargs="?", const="auto", metavar="DEVICE", help="a session's output to a virtual camera")
    o.add_argument("--stream", action="append", default=[], metavar="URL", help="a session's output to a stream")
    o.add_argument("--stream-encoder", choices=[e.value for e in StreamEncoder], default=StreamEncoder.AUTO.value)
    p.add_argument("--idle-timeout", type=positive_float, default=10.0, metavar="S", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the server until Ctrl-C; every session is closed before it returns."""
    try:
        from aiohttp import web
    except ImportError:
        raise ConfigError('serve needs the [serve] extra: pip install -e ".[serve]"') from None
    from realtime_swap.cli import backend_options_from_args
    from realtime_swap.color import ColorMode
    from realtime_swap.config import EngineConfig, FaceSpec, OutputSpec
    from realtime_swap.gpu import GpuPath
    from realtime_swap.infer.session import Backend
    from realtime_swap.serve.app import ServeSettings, make_app, needs_token, tls_context
    from realtime_swap.sinks.stream_url import StreamEncoder

    if args.gpu_path is not None and GpuPath(args.gpu_path) is not GpuPath.OFF:
        raise ConfigError("--gpu-path is not served: the shared swap executor runs the model for every session")
    if args.batch_window < 0:
        raise ConfigError(f"--batch-window must be >= 0 ms, got {args.batch_window:g}")
    faces = FaceSpec(
        model=args.model[0] if args.model else None,
        extra_models=tuple(args.model[1:]) if args.model else (),
        models_dir=args.models_dir,
        backend=Backend(args.backend),
        color=ColorMode(args.color),
        detect_every=args.detect_every,
        max_faces=args.max_faces,
        runtime=backend_options_from_args(args),
    )
    outputs = OutputSpec(
        preview=False,
        record=args.record,
        vcam=args.vcam,
        streams=tuple(args.stream),
        stream_encoder=StreamEncoder(args.stream_encoder),
    )
    cfg = EngineConfig(faces=faces, outputs=outputs)
    token = args.token
    if token is None and needs_token(args.host):
        token = secrets.token_urlsafe(18)
        print(f"note: {args.host} is not loopback: clients need the access token {token}", file=sys.stderr)
    ssl_context = tls_context(args.cert, args.key)
    executor = build_executor(args, faces)
    try:
        settings = ServeSettings(token=token, max_sessions=args.max_sessions, idle_timeout_s=args.idle_timeout)
        app = make_app(cfg, executor, settings)
        scheme = "https" if ssl_context is not None else "http"
        shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
        url = f"{scheme}://{shown}:{args.port}/" + (f"?token={token}" if token else "")
        line = f"serving on {url} (at most {args.max_sessions} sessions; Ctrl-C stops)"

        def bound(_message: str) -> None:  # run_app calls this once the port is bound
            print(line, file=sys.stderr, flush=True)

        # no access log: the page's request line carries the token (?token=...)
        web.run_app(app, host=args.host, port=args.port, ssl_context=ssl_context, print=bound, access_log=None)
    finally:
        if executor is not None:
            executor.close()
    return 0


def build_executor(args: argparse.Namespace, faces: FaceSpec) -> SwapExecutor | None:
    """The shared swap executor: Ray Serve replicas with ``--ray``, else in-process; None without a model."""
    from realtime_swap.pipeline import load_swap_models
    from realtime_swap.swap.executor import BatchingSwapExecutor

    if args.ray:
        from realtime_swap.serve.ray_executor import RayDeploymentOptions, RaySwapExecutor

        options = RayDeploymentOptions(
            replicas=args.ray_replicas,
            max_replicas=args.ray_max_replicas,
            num_gpus=args.ray_gpus,
            window_ms=args.batch_window,
            max_batch=args.batch_faces,
        )
        return RaySwapExecutor.start(faces, args.ray, options)
    models = load_swap_models(faces)
    if not models:
        print("note: no swap model found: sessions detect and align faces only", file=sys.stderr)
        return None
    return BatchingSwapExecutor(models, window_ms=args.batch_window, max_batch=args.batch_faces)
