"""The ``bench`` subcommand: its options, the settings they make, and the run that prints and writes the figures."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from realtime_swap.bench.report import format_compare, format_result, machine, plain
from realtime_swap.bench.run import compare, measure
from realtime_swap.bench.settings import (
    FPS_DEFINITION,
    LATENCY_DEFINITION,
    RESOLUTIONS,
    BenchSettings,
    ModelResolver,
    parse_resolution,
)
from realtime_swap.cli import add_inference_arguments, backend_options_from_args, non_negative_int, positive_int
from realtime_swap.color.modes import ColorMode
from realtime_swap.detect.engine import DetectBackend
from realtime_swap.errors import ConfigError
from realtime_swap.gpu import GpuPath
from realtime_swap.handoff import DropPolicy
from realtime_swap.infer.session import Backend

DESCRIPTION = "FPS and latency of the live engine on a deterministic stream, measured honestly."


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``bench`` (also what ``--compare`` strings may contain)."""
    p.add_argument(
        "--resolution",
        default="480p",
        help=f"comma-separated demo sizes: {', '.join(RESOLUTIONS)} or WxH (default 480p = 640x480)",
    )
    p.add_argument("--faces", type=positive_int, default=1, help="faces in the demo stream, swapped (default 1)")
    p.add_argument("--frames", type=positive_int, default=60, help="measured frames per run (default 60)")
    p.add_argument("--warmup", type=non_negative_int, default=10, help="frames run first and left out (default 10)")
    p.add_argument("--rounds", type=positive_int, default=1, help="runs of each kind, alternated (default 1)")
    p.add_argument("--model", type=Path, help="swap model (.onnx/.dfm; default: the shipped one, else synthetic)")
    p.add_argument(
        "--synthetic-resolution",
        type=positive_int,
        default=128,
        help="px of the untrained synthetic model used when there is no model (multiple of 16, default 128)",
    )
    p.add_argument("--color", choices=[m.value for m in ColorMode], default=ColorMode.RCT.value)
    p.add_argument("--detect-every", type=positive_int, default=5, help="full detection every N frames (default 5)")
    p.add_argument("--queue-size", type=positive_int, default=2, help="bound of each queue between stages")
    p.add_argument(
        "--inference-iters", type=non_negative_int, default=30, help="timed calls of the model alone (default 30)"
    )
    p.add_argument(
        "--paced-fps",
        type=float,
        help="pace the demo at this rate like a camera (live drop policy: newest frame wins) to measure the "
        "latency of a live run; default: unpaced, fps is the engine's throughput",
    )
    p.add_argument(
        "--drop-policy",
        choices=[d.value for d in DropPolicy if d is not DropPolicy.BLOCK],
        default=DropPolicy.LATEST.value,
        help="with --paced-fps: latest (newest frame wins at every hand-off, the live default) or capture (newest "
        'wins at capture, FIFO queues after); e.g. --compare "--drop-policy capture" "--drop-policy latest"',
    )
    p.add_argument(
        "--sequential",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the stages sequentially in one thread and report the pipelined / sequential ratio",
    )
    p.add_argument(
        "--sequential-threads",
        type=non_negative_int,
        default=1,
        help="ONNX Runtime threads of the sequential loop's swap model: 1 (default) makes the baseline a "
        "single-threaded loop; 0: as many as the pipelined run's (a loop whose inference alone uses the cores)",
    )
    add_inference_arguments(p)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    p = subparsers.add_parser(
        "bench",
        help="measure fps and latency on the demo stream (warm-up apart, per-stage percentiles, JSON)",
        description=DESCRIPTION,
    )
    add_arguments(p)
    p.add_argument("--json", type=Path, help="write every figure to this JSON file")
    p.add_argument(
        "--compare",
        nargs=2,
        metavar=("ARGS_A", "ARGS_B"),
        help='two option strings measured alternately, e.g. --compare "--queue-size 1" "--queue-size 4"',
    )
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace, resolution: str) -> BenchSettings:
    label, width, height = parse_resolution(resolution)
    return BenchSettings(
        width=width,
        height=height,
        label=label,
        faces=args.faces,
        frames=args.frames,
        warmup=args.warmup,
        model=args.model,
        synthetic_resolution=args.synthetic_resolution,
        backend=Backend(args.backend),
        detect_backend=DetectBackend(args.detect_backend),
        gpu_path=GpuPath(args.gpu_path) if args.gpu_path else None,
        color=ColorMode(args.color),
        detect_every=args.detect_every,
        queue_size=args.queue_size,
        rounds=args.rounds,
        inference_iters=args.inference_iters,
        paced_fps=args.paced_fps,
        drop_policy=DropPolicy(args.drop_policy),
        runtime=backend_options_from_args(args),
        sequential_threads=args.sequential_threads,
    )


def _variant(args: argparse.Namespace, extra: str) -> argparse.Namespace:
    """``args`` with the options in ``extra`` (a ``--compare`` string) on top."""
    parser = argparse.ArgumentParser(prog="bench --compare", add_help=False, exit_on_error=False)
    add_arguments(parser)
    parser.set_defaults(**{k: v for k, v in vars(args).items() if k not in ("json", "compare", "func")})
    try:
        variant, unknown = parser.parse_known_args(shlex.split(extra))
    except (argparse.ArgumentError, ValueError) as exc:
        raise ConfigError(f"bench --compare '{extra}': {exc}") from None
    if unknown:
        raise ConfigError(f"bench --compare '{extra}': unknown options {' '.join(unknown)}")
    return variant


def run(args: argparse.Namespace) -> int:
    """The ``bench`` command: measure, print the table, write the JSON."""
    resolutions = [r for r in args.resolution.split(",") if r.strip()]
    if not resolutions:
        raise ConfigError("bench: --resolution is empty")
    settings = [settings_from_args(args, r) for r in resolutions]
    variants = [_variant(args, extra) for extra in args.compare] if args.compare else None
    models = ModelResolver()
    document: dict[str, Any] = {
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "fps_definition": FPS_DEFINITION,
        "latency_definition": LATENCY_DEFINITION,
        "machine": machine(),
        "settings": {k: plain(v) for k, v in asdict(settings[0]).items()},
        "results": [],
        "compare": None,
    }
    try:
        for s in settings:
            result = measure(s, models, sequential=args.sequential)
            document["results"].append(result)
            print(format_result(result), file=sys.stderr)
        if variants is not None:
            document["compare"] = {"a_args": args.compare[0], "b_args": args.compare[1], "by_resolution": []}
            for r in resolutions:
                a, b = (settings_from_args(v, r) for v in variants)
                entry = compare(a, replace(b, rounds=a.rounds), models)
                document["compare"]["by_resolution"].append(entry)
                print(format_compare(entry, args.compare), file=sys.stderr)
    finally:
        models.close()
    if args.json:
        Path(args.json).write_text(json.dumps(document, indent=2, default=str) + "\n")
    return 0
