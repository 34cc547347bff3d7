"""The ``extract`` subcommand: videos, recordings, images or image folders -> a faceset of aligned faces."""

from __future__ import annotations

import argparse
from pathlib import Path

from realtime_swap.train.faceset import ImageFormat
from realtime_swap.types import FaceType


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``extract`` subcommand."""
    from realtime_swap.train.extract import ExtractOptions

    defaults = ExtractOptions()
    p = subparsers.add_parser(
        "extract",
        help="extract aligned faces from videos, recordings or images into a faceset",
        description=(
            "Detect, align and mask every face of the inputs (video files, webcam recordings, images, image "
            "folders) and append them to the faceset folder --out. Blurry faces and near-duplicates of the last "
            "kept face of the same track are skipped. Re-running on the same --out resumes: frames already in "
            "the faceset are not analysed again. A summary of kept and rejected faces is printed at the end."
        ),
    )
    p.add_argument("inputs", nargs="+", type=Path, help="video files, recordings, images or image folders")
    p.add_argument("--out", type=Path, required=True, help="faceset folder (created, or resumed when it exists)")
    p.add_argument(
        "--resolution", type=int, default=defaults.resolution, help=f"crop px (default {defaults.resolution})"
    )
    p.add_argument(
        "--face-type",
        choices=[f.value for f in FaceType],
        default=defaults.face_type.value,
        help=f"crop template (default {defaults.face_type.value})",
    )
    p.add_argument(
        "--blur-threshold",
        type=float,
        default=defaults.blur_threshold,
        help=f"minimum variance of the Laplacian inside the face, 0 = keep all (default {defaults.blur_threshold:g})",
    )
    p.add_argument(
        "--duplicate-landmark-px",
        type=float,
        default=defaults.duplicate_landmark_px,
        help="a face is a near-duplicate when its crop landmarks moved less than this (px at 256) ... "
        f"(default {defaults.duplicate_landmark_px:g}; 0 keeps duplicates)",
    )
    p.add_argument(
        "--duplicate-appearance",
        type=float,
        default=defaults.duplicate_appearance,
        help="... and its grey levels changed less than this on average, 0..255 "
        f"(default {defaults.duplicate_appearance:g}; 0 keeps duplicates)",
    )
    p.add_argument(
        "--duplicate-window",
        type=int,
        default=defaults.duplicate_window,
        help=f"compare with this many of the last kept faces of the source (default {defaults.duplicate_window})",
    )
    p.add_argument("--max-faces", type=int, default=None, help="faces per frame, largest first (default: all)")
    p.add_argument("--every", type=int, default=1, help="analyse one video frame in N (default 1)")
    p.add_argument(
        "--image-format",
        choices=[f.value for f in ImageFormat],
        default=defaults.image_format.value,
        help=f"file format of the crops (default {defaults.image_format.value})",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``extract``; prints the summary. Errors propagate as RealtimeSwapError (SourceError, ConfigError)."""
    from realtime_swap.train.extract import ExtractOptions, extract_inputs

    options = ExtractOptions(
        resolution=args.resolution,
        face_type=FaceType(args.face_type),
        blur_threshold=args.blur_threshold,
        duplicate_landmark_px=args.duplicate_landmark_px,
        duplicate_appearance=args.duplicate_appearance,
        duplicate_window=args.duplicate_window,
        max_faces=args.max_faces,
        every=args.every,
        image_format=ImageFormat(args.image_format),
    )
    summary = extract_inputs(args.inputs, args.out, options, progress=not args.quiet)
    print(f"{args.out}: {summary.format()}")
    return 0
