"""The ``quality`` subcommand: the quality report of a swap configuration on a clip (JSON, contact sheet, plots)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``quality`` subcommand: the live command's options, plus where the report goes."""
    from realtime_swap.cli import _add_live_arguments, positive_int
    from realtime_swap.quality.report import DEFAULT_DEMO_FRAMES, QualityOptions

    defaults = QualityOptions()
    p = subparsers.add_parser(
        "quality",
        help="quality report of a swap on a clip: flicker, jitter, colour match, seam, identity (JSON + PNGs)",
        description=(
            "Run the live engine's face stages over every frame of --source with the live options (--model, "
            "--color, --mask, --blend, ...) and report: coverage (frames with a face found / swapped), temporal "
            "flicker in the face region relative to the source's own (1.0 = none added), landmark jitter (px RMS "
            "of the high-frequency residual; static RMS), CIEDE2000 ΔE between the swapped face and the skin ring "
            "just outside the mask, seam energy along the mask edge, the model's masked reconstruction SSIM on a "
            "held-out part of --faceset, and identity distances (with the [identity] extra) of the swapped face "
            "to the frame's original face and to the source identity (--identity). Writes quality.json, "
            f"contact_sheet.png and timeline.png into --out. An endless source stops after {DEFAULT_DEMO_FRAMES} "
            "frames unless --frames says otherwise; the output options of live are ignored."
        ),
    )
    _add_live_arguments(p)
    q = p.add_argument_group("report")
    q.add_argument("--out", type=Path, required=True, help="folder for quality.json and the PNGs (created)")
    q.add_argument(
        "--identity",
        type=Path,
        action="append",
        metavar="PHOTO",
        help="photos, image folders or facesets of the source identity (the person the model produces), for the "
        "'became the source' distance; repeatable",
    )
    q.add_argument(
        "--identity-every",
        type=positive_int,
        default=defaults.identity_every,
        help=f"embed the faces every N frames (~100 ms a face; default {defaults.identity_every})",
    )
    q.add_argument("--faceset", type=Path, help="faceset of the source identity for the reconstruction SSIM")
    q.add_argument(
        "--holdout",
        type=float,
        default=defaults.holdout,
        help=f"the last fraction of --faceset used as held-out faces (default {defaults.holdout:g})",
    )
    q.add_argument("--sheet-frames", type=positive_int, default=defaults.sheet_frames, help="rows of the contact sheet")
    q.add_argument("--no-plots", action="store_true", help="do not write timeline.png")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``quality``; prints the summary figures. Errors propagate as RealtimeSwapError."""
    from realtime_swap.cli import _config_from_args
    from realtime_swap.quality.report import QualityOptions, run_quality

    options = QualityOptions(
        identity=tuple(args.identity or ()),
        identity_every=args.identity_every,
        faceset=args.faceset,
        holdout=args.holdout,
        sheet_frames=args.sheet_frames,
        plots=not args.no_plots,
    )
    summary = run_quality(_config_from_args(args), args.out, options, progress=not args.quiet)
    print(json.dumps(headline(summary), indent=2))
    return 0


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary without its per-frame series (what the command prints)."""
    return {k: v for k, v in summary.items() if k != "series"}
