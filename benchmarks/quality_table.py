"""The quality report of the shipped model for each ``--color`` mode and each ``--mask`` rule, as a table, on the
demo stream and on a clip made from a real photo; then which faces ``--select reference`` swaps on a group photo
and on a two-person stream.

Clips (built here, seeded, into ``--work``):

* ``demo``: the built-in demo source (scikit-image's astronaut cut-out moving and relit over a wall), 640x480;
* ``clip``: scikit-image's full astronaut photo filmed by a virtual hand-held camera: a slow pan and zoom (1.4 to
  1.8 frame px per photo px), hand shake (±2 px, ±0.6°), a light level drift (±12 %) and sensor noise (σ 2
  levels), encoded with H.264 (crf 23) at 640x480, 30 fps — the shipped model's target person, but not its
  training framing;
* ``static``: the same photo, still, with sensor noise and H.264 only (landmark jitter is then raw error).

The source identity (for the 'became the source' distance) is the shipped model's celeb: the crop of t1.jpg
that ``trained_models/demo_swap/make_facesets.py`` renders; ``--faceset`` renders of it with another seed than
the training ones give the reconstruction SSIM.

Usage: ``python benchmarks/quality_table.py --work /tmp/quality [--frames 150] [--only demo,clip]``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from realtime_swap.cli import _config_from_args, build_parser
from realtime_swap.color import ColorMode
from realtime_swap.quality.report import QualityOptions, run_quality
from realtime_swap.sinks.null import NullSink
from realtime_swap.swap.model import FaceMask
from realtime_swap.types import Frame

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "trained_models" / "demo_swap"))


def _astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])


def write_clip(path: Path, frames: int, moving: bool, seed: int = 0) -> Path:
    """The hand-held (``moving``) or still clip of the astronaut photo described in the module docstring."""
    photo = _astronaut().astype(np.float32)
    rng = np.random.default_rng(seed)
    width, height, fps = 640, 480, 30
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for i in range(frames):
            t = i / fps
            if moving:
                zoom = 1.0 + 0.3 * (0.5 - 0.5 * math.cos(math.pi * i / max(frames - 1, 1)))
                cx = 225 + 30 * math.sin(2 * math.pi * 0.1 * t) + rng.normal(0, 2.0)
                cy = 165 + 15 * math.sin(2 * math.pi * 0.07 * t) + rng.normal(0, 2.0)
                angle = 3.0 * math.sin(2 * math.pi * 0.13 * t) + rng.normal(0, 0.6)
                gain = 1.0 + 0.12 * math.sin(2 * math.pi * 0.2 * t)
            else:
                zoom, cx, cy, angle, gain = 1.0, 225.0, 165.0, 0.0, 1.0
            scale = zoom * 1.4  # photo px -> frame px: the face (~100 px in the photo) 140 to 180 px wide
            m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
            m[:, 2] += (width / 2 - cx, height / 2 - cy)
            image = cv2.warpAffine(photo, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            image = image * gain + rng.normal(0, 2.0, image.shape)
            frame = av.VideoFrame.from_ndarray(np.clip(image + 0.5, 0, 255).astype(np.uint8), format="bgr24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def celeb_reference(work: Path) -> Path:
    """The shipped model's celeb (the t1.jpg crop its faceset is rendered from), as a photo."""
    from make_facesets import celeb_photo

    crop, _ = celeb_photo()
    path = work / "celeb.png"
    cv2.imwrite(str(path), crop)
    return path


def celeb_heldout_faceset(work: Path, count: int) -> Path:
    """``count`` renders of the celeb photo with a seed the training renders did not use (seed 0)."""
    from make_facesets import FACE_TYPE, RESOLUTION, celeb_photo, renders

    from realtime_swap.train.extract import ExtractOptions, FaceExtractor

    out = work / "celeb_heldout"
    if (out / "faceset.json").is_file():
        return out
    extractor = FaceExtractor(ExtractOptions(resolution=RESOLUTION, face_type=FACE_TYPE, max_faces=1))
    photo, centre = celeb_photo()
    with extractor.open_writer(out) as writer:
        extractor.extract(renders(extractor, photo, "t1.jpg", count, 1000, centre), writer, total=count, progress=False)
    return out


def quality(argv: list[str], out: Path, options: QualityOptions) -> dict[str, Any]:
    parser, _ = build_parser()
    args = parser.parse_args(["live", *argv])
    return run_quality(_config_from_args(args), out, options, progress=False)


def _f(value: Any, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def row(name: str, s: dict[str, Any]) -> str:
    c, ident = s["coverage"], s["identity"]
    recon = s["reconstruction"]["ssim"] if s.get("reconstruction") else None
    return (
        f"| {name} | {c['frames_swapped']}/{c['frames']} | {_f(s['flicker_ratio'])} | {_f(s['landmark_jitter_px'])} | "
        f"{_f(s['delta_e']['swapped'], 1)} ({_f(s['delta_e']['original'], 1)}) | "
        f"{_f(s['delta_e']['to_original_face'], 1)} | "
        f"{_f(s['seam_energy']['swapped'])} ({_f(s['seam_energy']['original'])}) | "
        f"{_f(ident.get('to_original'))} | {_f(ident.get('to_source'))} | {_f(recon, 3)} |"
    )


HEADER = (
    "| configuration | swapped | flicker ratio | jitter px | ΔE00 to skin ring (original's) | ΔE00 to original face | "
    "seam (original's) | id → original ↑ | id → source ↓ | recon SSIM |\n|---|---|---|---|---|---|---|---|---|---|"
)


class _SwappedFaces(NullSink):
    """A sink recording, per frame, the faces the tracker followed and the box centres x (px) of those swapped."""

    def __init__(self, detect: Any) -> None:
        super().__init__()
        self.detect = detect
        self.tracked: list[int] = []
        self.swapped: list[tuple[int, ...]] = []

    def write(self, frame: Frame) -> None:
        self.tracked.append(self.detect.tracker.faces_tracked)
        self.swapped.append(tuple(int((f.box[0] + f.box[2]) / 2) for f in frame.faces if f.swapped is not None))


def reference_figures(work: Path) -> list[str]:
    """Which faces --select reference swaps on t1.jpg (reference: one of its faces, mirrored, enlarged and
    darkened) and on the two-person demo (reference: the astronaut photo)."""
    from test_identity import CENTRE_SMILING  # tests/ is on the path (main)

    from realtime_swap.pipeline import build_pipeline
    from realtime_swap.sources.demo import insightface_images_dir

    folder = insightface_images_dir()
    assert folder is not None
    group = cv2.imread(str(folder / "t1.jpg"))
    x0, y0, x1, y1 = CENTRE_SMILING
    crop = group[y0 - 60 : y1 + 60, x0 - 60 : x1 + 60]
    reference = work / "t1_reference.png"
    cv2.imwrite(str(reference), (cv2.resize(crop[:, ::-1], None, fx=1.5, fy=1.5) * 0.8).astype(np.uint8))
    astronaut = work / "astronaut.png"
    cv2.imwrite(str(astronaut), _astronaut())
    lines = []
    runs = [
        ("t1.jpg (6 people), reference: a mirrored/enlarged/darkened crop of the centre face",
         [str(folder / "t1.jpg"), "--detector", "full", "--max-faces", "6", "--reference", str(reference)]),
        ("demo --demo-faces 2 (astronaut, Tom Hanks), reference: the astronaut photo",
         ["demo", "--demo-faces", "2", "--max-faces", "2", "--reference", str(astronaut)]),
    ]  # fmt: skip
    for title, (source, *rest) in runs:
        parser, _ = build_parser()
        args = parser.parse_args(
            ["live", "--source", source, "--select", "reference", "--frames", "30", "--no-realtime", "--null", *rest]
        )
        pipeline, _ = build_pipeline(_config_from_args(args))
        detect = pipeline.stages[0]
        sink = _SwappedFaces(detect)
        pipeline.sinks = [sink]
        pipeline.run()
        tracked, swapped = sink.tracked, sink.swapped
        embeddings = detect.tracker.embeddings_run  # type: ignore[attr-defined]
        centres = sorted({x for s in swapped for x in s})
        lines.append(
            f"- {title}: {len(swapped)} frames, faces tracked per frame {min(tracked)}–{max(tracked)}, faces swapped "
            f"per frame {min(map(len, swapped))}–{max(map(len, swapped))}, swapped face centre x {centres[0]}–"
            f"{centres[-1]} px; {embeddings} identity embeddings"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--only", default="demo,clip,static,reference")
    parser.add_argument("--heldout", type=int, default=40, help="celeb renders for the reconstruction SSIM")
    args = parser.parse_args()
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT / "tests"))
    only = set(args.only.split(","))
    celeb = celeb_reference(work)
    faceset = celeb_heldout_faceset(work, args.heldout)
    base = QualityOptions(identity=(celeb,), identity_every=10)
    with_recon = QualityOptions(identity=(celeb,), identity_every=10, faceset=faceset, holdout=1.0)
    results: dict[str, Any] = {}
    clips = {
        "demo": ["--source", "demo", "--frames", str(args.frames)],
        "clip": ["--source", str(write_clip(work / "clip.mp4", args.frames, moving=True))],
        "static": ["--source", str(write_clip(work / "static.mp4", args.frames, moving=False))],
    }
    for clip, source in clips.items():
        if clip not in only:
            continue
        print(f"\n### {clip}\n\n{HEADER}", flush=True)
        variants: list[tuple[str, list[str]]] = [("defaults (rct, celeb)", [])]
        if clip != "static":
            variants += [(f"--color {m.value}", ["--color", m.value]) for m in ColorMode if m is not ColorMode.RCT]
            variants += [(f"--mask {m.value}", ["--mask", m.value]) for m in FaceMask if m is not FaceMask.CELEB]
        for name, extra in variants:
            options = with_recon if name.startswith("defaults") else base
            summary = quality([*source, *extra], work / clip / name.replace(" ", "_"), options)
            summary.pop("series", None)
            results[f"{clip}:{name}"] = summary
            print(row(name, summary), flush=True)
            if clip == "static":
                d = summary["flicker_mean_abs_diff"]
                print(
                    f"\nstatic clip: raw landmark RMS {_f(summary['landmark_static_rms_px'])} px; mean |Δ| between "
                    f"consecutive frames in the face region: swapped {_f(d['swapped'])}, source {_f(d['original'])} "
                    "levels",
                    flush=True,
                )
    if "reference" in only:
        print("\n### --select reference\n")
        for line in reference_figures(work):
            print(line, flush=True)
    (work / "quality_table.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
