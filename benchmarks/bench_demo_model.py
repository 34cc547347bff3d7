"""Figures of the shipped demo model: held-out reconstruction SSIM, swap SSIM, ONNX Runtime CPU ms per face, size.

Held-out faces: DemoSource frames from ``DEMO_HELDOUT_START`` on (never used for training; the training set
uses frames < ``DEMO_TRAIN_FRAMES``), detected and aligned by the product's own detector exactly as in the live
engine. With ``--checkpoint`` (the training folder, which the shipped ONNX does not contain) it also reports
the reconstruction SSIM of both decoders: dst (astronaut) on held-out demo frames, src (celeb) on fresh
re-renders of its photo drawn with a seed the training set did not use.

SSIM: ``skimage.metrics.structural_similarity`` on BGR [0, 1] crops (channel_axis=2, data_range=1), over the
whole crop and averaged inside the face mask (mesh mask > 0.5).

Usage: ``python benchmarks/bench_demo_model.py [--checkpoint /tmp/demo_swap_work/train] [--faces 40]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from skimage.metrics import structural_similarity

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "trained_models" / "demo_swap"))

import make_facesets  # noqa: E402  (the recipe's constants: held-out range, face type)

from realtime_swap.detect.stage import FaceAnalyzer  # noqa: E402
from realtime_swap.infer import Backend  # noqa: E402
from realtime_swap.sources.demo import DemoSource  # noqa: E402
from realtime_swap.swap.model import SwapModel  # noqa: E402

DEFAULT_MODEL = ROOT / "trained_models" / "demo_swap" / "demo_swap.onnx"


def ssim_pair(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(whole-crop SSIM, mean SSIM inside mask > 0.5) of two (S, S, 3) float [0, 1] images."""
    score, full = structural_similarity(a, b, channel_axis=2, data_range=1.0, full=True)
    inside = mask > 0.5
    return float(score), float(full.mean(axis=2)[inside].mean())


def held_out_crops(count: int, resolution: int, step: int = 7) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Aligned (N, S, S, 3) float32 BGR [0, 1] crops and (N, S, S) masks of held-out DemoSource frames."""
    analyzer = FaceAnalyzer()
    width, height = make_facesets.DEMO_SIZE
    source = DemoSource(width, height, realtime=False)
    crops: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    frames: list[int] = []
    index = make_facesets.DEMO_HELDOUT_START
    while len(crops) < count:
        faces = analyzer.analyze(source.render(index), make_facesets.FACE_TYPE, resolution)
        if faces and faces[0].aligned is not None and faces[0].aligned.mask is not None:
            crops.append(faces[0].aligned.image.astype(np.float32) / 255.0)
            masks.append(faces[0].aligned.mask)
            frames.append(index)
        index += step
    return np.stack(crops), np.stack(masks), frames


def celeb_crops(count: int, resolution: int, seed: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Fresh re-renders of the celeb photo (a seed the training set did not use), aligned like the faceset."""
    from realtime_swap.train.extract import ExtractOptions, FaceExtractor

    extractor = FaceExtractor(ExtractOptions(resolution=resolution, face_type=make_facesets.FACE_TYPE, max_faces=1))
    photo, centre = make_facesets.celeb_photo()
    crops: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    for frame in make_facesets.renders(extractor, photo, "celeb", count, seed, centre):
        faces = extractor.analyzer.analyze(frame.image, make_facesets.FACE_TYPE, resolution)
        if faces and faces[0].aligned is not None and faces[0].aligned.mask is not None:
            crops.append(faces[0].aligned.image.astype(np.float32) / 255.0)
            masks.append(faces[0].aligned.mask)
    return np.stack(crops), np.stack(masks)


def mean_ssim(a: np.ndarray, b: np.ndarray, masks: np.ndarray) -> tuple[float, float]:
    pairs = [ssim_pair(x, y, m) for x, y, m in zip(a, b, masks, strict=True)]
    return float(np.mean([p[0] for p in pairs])), float(np.mean([p[1] for p in pairs]))


def reconstructions(checkpoint: Path, crops: np.ndarray, decoder: str) -> np.ndarray:
    """The checkpoint's own-identity reconstruction of NHWC crops through decoder 'src' or 'dst'."""
    import torch

    from realtime_swap.train.checkpoint import load_model

    model, _ = load_model(checkpoint)
    x = torch.from_numpy(np.ascontiguousarray(crops.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        rec = model.reconstruct(x, x)
    out = rec.src_face if decoder == "src" else rec.dst_face
    return out.clamp(0, 1).numpy().transpose(0, 2, 3, 1)


def ort_ms_per_face(model: SwapModel, crop: np.ndarray, runs: int) -> float:
    batch = crop[None]
    for _ in range(5):
        model.swap(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.swap(batch)
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--checkpoint", type=Path, default=None, help="training folder (adds reconstruction SSIM)")
    parser.add_argument("--faces", type=int, default=40, help="held-out faces (default 40)")
    parser.add_argument("--runs", type=int, default=50, help="timed ONNX Runtime runs (default 50)")
    args = parser.parse_args()

    model = SwapModel.load(args.model, Backend.ORT_CPU)
    s = model.resolution
    crops, masks, frames = held_out_crops(args.faces, s)
    print(
        f"model {args.model.name}: {args.model.stat().st_size / 1e6:.2f} MB, {s} px {model.face_type.value}; "
        f"{len(crops)} held-out DemoSource frames {frames[0]}..{frames[-1]}"
    )
    swapped, swap_masks = model.swap(crops)
    whole, inside = mean_ssim(swapped, crops, masks)
    print(f"swap (celeb decoder) vs input crop: SSIM {whole:.3f} whole crop, {inside:.3f} inside the face mask")
    learned = swap_masks > 0.5
    overlap = float((learned & (masks > 0.5)).sum() / max(1, (learned | (masks > 0.5)).sum()))
    print(f"learned celeb mask vs mesh mask: IoU {overlap:.3f}")
    if args.checkpoint is not None:
        rec = reconstructions(args.checkpoint, crops, "dst")
        whole, inside = mean_ssim(rec, crops, masks)
        print(f"reconstruction SSIM, dst (astronaut), held-out demo frames: {whole:.3f} whole, {inside:.3f} in mask")
        c_crops, c_masks = celeb_crops(max(8, args.faces // 2), s)
        rec = reconstructions(args.checkpoint, c_crops, "src")
        whole, inside = mean_ssim(rec, c_crops, c_masks)
        print(
            f"reconstruction SSIM, src (celeb), {len(c_crops)} fresh re-renders: {whole:.3f} whole, "
            f"{inside:.3f} in mask"
        )
    ms = ort_ms_per_face(model, crops[0], args.runs)
    print(f"ONNX Runtime CPU: {ms:.2f} ms per face (batch 1, median of {args.runs})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
