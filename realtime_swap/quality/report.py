"""The quality report of a swap configuration on a clip: the live engine's face stages run over every frame
offline, and the figures of ``realtime_swap.quality.metrics`` gathered from the original and swapped frames.

Outputs in ``out_dir``: ``quality.json`` (summary figures and per-frame series), ``contact_sheet.png``
(original | swapped | blend mask for a few frames spread over the clip) and ``timeline.png`` (the per-frame
series over time; needs matplotlib, else skipped with a note in the JSON).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from realtime_swap.blend import combine_masks, process_mask
from realtime_swap.config import EngineConfig
from realtime_swap.errors import ConfigError
from realtime_swap.quality.metrics import (
    FlickerAccumulator,
    delta_e_between,
    delta_e_to_ring,
    landmark_jitter,
    landmark_static_rms,
    masked_ssim,
    seam_energy,
    skin_pixels,
)
from realtime_swap.sources.base import SourceOutage
from realtime_swap.stages import Stage
from realtime_swap.types import Face, Frame

log = logging.getLogger(__name__)

DEFAULT_DEMO_FRAMES = 150
"""Frames of an endless source (the demo, a camera) when ``--frames`` is not given: 5 s at 30 fps."""
_THUMB_WIDTH = 320
_MAX_THUMBS = 48


@dataclass(frozen=True)
class QualityOptions:
    """What the report measures beyond the clip.

    identity: photos, image folders or facesets of the source identity (the person the model produces), for
    the 'became the source' distance; identity_every: embed the faces every N frames (≈ 100 ms each);
    faceset: a faceset for the model's reconstruction SSIM, of which the last ``holdout`` fraction (at most
    ``holdout_faces`` faces) is used, as faces the model did not train on; sheet_frames: rows of the contact
    sheet; plots: write ``timeline.png``.
    """

    identity: tuple[Path, ...] = ()
    identity_every: int = 10
    faceset: Path | None = None
    holdout: float = 0.2
    holdout_faces: int = 64
    sheet_frames: int = 4
    plots: bool = True

    def __post_init__(self) -> None:
        if self.identity_every < 1:
            raise ConfigError(f"--identity-every must be >= 1, got {self.identity_every}")
        if not 0.0 < self.holdout <= 1.0:
            raise ConfigError(f"--holdout must be in (0, 1], got {self.holdout}")
        if self.sheet_frames < 1:
            raise ConfigError(f"--sheet-frames must be >= 1, got {self.sheet_frames}")


@dataclass
class _Series:
    """Per-frame values (None where a frame has no figure), in frame order."""

    index: list[int] = field(default_factory=list)
    faces_found: list[int] = field(default_factory=list)
    faces_swapped: list[int] = field(default_factory=list)
    flicker: list[float | None] = field(default_factory=list)
    delta_e: list[float | None] = field(default_factory=list)
    delta_e_original: list[float | None] = field(default_factory=list)
    delta_e_face: list[float | None] = field(default_factory=list)
    seam: list[float | None] = field(default_factory=list)
    seam_original: list[float | None] = field(default_factory=list)
    identity_to_original: list[float | None] = field(default_factory=list)
    identity_to_source: list[float | None] = field(default_factory=list)


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(kept)) if kept else None


def face_alpha(face: Face, frame_shape: tuple[int, ...], cfg: EngineConfig) -> np.ndarray | None:
    """(H, W) float32 [0, 1]: the blend weight the compose stage gives this face's swap in frame px (its mask
    combination, erode, feather and opacity, warped back to the frame), or None when it has no swap."""
    aligned, swapped = face.aligned, face.swapped
    if aligned is None or swapped is None:
        return None
    f = cfg.faces
    learned = swapped.mask
    if learned.shape != (aligned.size, aligned.size):
        learned = cv2.resize(learned, (aligned.size, aligned.size), interpolation=cv2.INTER_LINEAR)
    mask = combine_masks(learned, aligned.mask, aligned.mouth_mask if f.keep_mouth else None)
    mask = process_mask(mask, f.erode_px, f.blur_px) * np.float32(f.opacity)
    inverse = cv2.invertAffineTransform(aligned.matrix)
    h, w = int(frame_shape[0]), int(frame_shape[1])
    return cv2.warpAffine(mask, inverse, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0)


class _Thumbnails:
    """Evenly spaced (index, original, swapped, alpha) thumbnails of frames with a swap, in constant memory:
    when full, every other one is dropped and the spacing doubles."""

    def __init__(self) -> None:
        self.items: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
        self.every = 1
        self._seen = 0

    def offer(self, index: int, original: np.ndarray, swapped: np.ndarray, alpha: np.ndarray) -> None:
        self._seen += 1
        if (self._seen - 1) % self.every:
            return
        scale = _THUMB_WIDTH / original.shape[1]
        size = (_THUMB_WIDTH, max(1, round(original.shape[0] * scale)))
        grey = cv2.cvtColor((np.clip(alpha, 0, 1) * 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        a, b, c = (cv2.resize(im, size, interpolation=cv2.INTER_AREA) for im in (original, swapped, grey))
        self.items.append((index, a, b, c))
        if len(self.items) >= _MAX_THUMBS:
            self.items = self.items[::2]
            self.every *= 2

    def sheet(self, rows: int) -> np.ndarray | None:
        if not self.items:
            return None
        picks = np.unique(np.linspace(0, len(self.items) - 1, min(rows, len(self.items))).round().astype(int))
        lines = []
        for i in picks:
            index, *images = self.items[int(i)]
            row = np.concatenate(images, axis=1)
            for k, label in enumerate(("original", "swapped", "mask")):
                text = f"{label}  frame {index}" if k == 0 else label
                cv2.putText(row, text, (k * _THUMB_WIDTH + 6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1)
            lines.append(row)
        return np.concatenate(lines, axis=0)


def _find(stages: Sequence[Stage], kind: type) -> Any:
    return next((s for s in stages if isinstance(s, kind)), None)


def reconstruction_ssim(model: Any, faceset_path: Path, options: QualityOptions) -> dict[str, Any]:
    """Masked SSIM between held-out faceset crops and the model's output for them (the source identity's
    faceset: the model reproduces that person). Mask: the faceset's own mask, else the crop's FaceMesh hull."""
    from realtime_swap.masks import mesh_mask
    from realtime_swap.train.faceset import Faceset

    faceset = Faceset.load(faceset_path)
    n = len(faceset)
    start = min(n - 1, math.floor(n * (1.0 - options.holdout)))
    picks = np.arange(start, n)
    if len(picks) > options.holdout_faces:
        picks = picks[np.linspace(0, len(picks) - 1, options.holdout_faces).round().astype(int)]
    s = model.resolution
    scores = []
    for i in picks:
        crop = cv2.resize(faceset.images[i], (s, s), interpolation=cv2.INTER_AREA)
        item_mask = faceset.masks[i]
        landmarks = faceset.items[i].landmarks
        if item_mask is not None:
            mask = cv2.resize(item_mask, (s, s), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255.0
        elif landmarks is not None:
            mask = mesh_mask(landmarks * np.float32(s / faceset.resolution), s)
        else:
            mask = np.ones((s, s), np.float32)
        out, _ = model.swap(crop[None].astype(np.float32) / np.float32(255.0))
        face = np.clip(out[0] * 255.0 + 0.5, 0, 255).astype(np.uint8)
        scores.append(masked_ssim(crop, face, mask))
    return {
        "faceset": str(faceset_path),
        "faces": len(scores),
        "held_out_from": int(start),
        "ssim": float(np.mean(scores)),
    }


def run_quality(
    cfg: EngineConfig, out_dir: Path, options: QualityOptions | None = None, progress: bool = True
) -> dict[str, Any]:
    """Run ``cfg``'s face stages over its source (``cfg.frames`` frames; an endless source stops at
    ``DEFAULT_DEMO_FRAMES``), write the report files into ``out_dir`` and return the JSON summary."""
    from tqdm import tqdm

    from realtime_swap.detect.identity import FaceEmbedder, identity_available, load_reference
    from realtime_swap.detect.stage import DetectStage
    from realtime_swap.gpu import GpuPath
    from realtime_swap.pipeline import build_face_stages, close_stages
    from realtime_swap.sources import open_source
    from realtime_swap.swap.stage import SwapStage

    options = options or QualityOptions()
    if not cfg.faces.swap:
        raise ConfigError("quality: --no-swap leaves nothing to measure")
    if cfg.faces.gpu_path not in (None, "off"):
        raise ConfigError("quality: runs the CPU stages; leave --gpu-path off")
    cfg = dataclasses.replace(cfg, faces=dataclasses.replace(cfg.faces, gpu_path=GpuPath.OFF))
    source_spec = cfg.source
    if source_spec.realtime is None:  # measure every frame, as fast as the stages go
        source_spec = dataclasses.replace(source_spec, realtime=False)
    stages, controls, notices = build_face_stages(cfg)
    swap_stage = _find(stages, SwapStage)
    if swap_stage is None:
        close_stages(stages)
        raise ConfigError("quality: no swap model (give --model)")
    try:
        source = open_source(source_spec)
    except BaseException:
        close_stages(stages)
        raise
    limit = cfg.frames
    if limit is None and (source.info.live or source_spec.spec.strip() == "demo"):
        limit = DEFAULT_DEMO_FRAMES
    embedder, identity_note, reference = None, "", None
    ok, why = identity_available()
    if ok:
        embedder = FaceEmbedder()
        if options.identity:
            reference = load_reference(options.identity, embedder)
    else:
        identity_note = why
    out_dir.mkdir(parents=True, exist_ok=True)
    series = _Series()
    flicker = FlickerAccumulator()
    tracks: dict[int, list[tuple[int, np.ndarray]]] = {}
    thumbs = _Thumbnails()
    detect = _find(stages, DetectStage)
    try:
        for stage in stages:
            stage.warmup(source.info)
        total = limit
        bar = tqdm(total=total, desc="quality", unit="frame", disable=not progress)
        index = 0
        while limit is None or index < limit:
            got = source.read()
            if got is None:
                break
            if isinstance(got, SourceOutage):  # a stream that is down: nothing to measure until it is back
                continue
            image, pts = got
            frame = Frame(index=index, image=image, t_capture=0.0, pts=pts)
            for stage in stages:
                frame = stage.process(frame, controls)
            _measure(frame, image, cfg, series, flicker, tracks, thumbs, detect, embedder, reference, options)
            index += 1
            bar.update(1)
        bar.close()
        reconstruction = None
        if options.faceset is not None:
            reconstruction = reconstruction_ssim(swap_stage.model, options.faceset, options)
    finally:
        close_stages(stages)
        source.close()
    summary = _summary(cfg, source.info, series, flicker, tracks, reconstruction, options, reference, identity_note)
    summary["notices"] = notices
    sheet = thumbs.sheet(options.sheet_frames)
    if sheet is not None:
        cv2.imwrite(str(out_dir / "contact_sheet.png"), sheet)
        summary["files"]["contact_sheet"] = str(out_dir / "contact_sheet.png")
    if options.plots:
        note = _plot(series, out_dir / "timeline.png")
        if note:
            summary["notices"].append(note)
        else:
            summary["files"]["timeline"] = str(out_dir / "timeline.png")
    summary["series"] = dataclasses.asdict(series)
    (out_dir / "quality.json").write_text(json.dumps(summary, indent=2))
    return summary


def _measure(
    frame: Frame,
    original: np.ndarray,
    cfg: EngineConfig,
    series: _Series,
    flicker: FlickerAccumulator,
    tracks: dict[int, list[tuple[int, np.ndarray]]],
    thumbs: _Thumbnails,
    detect: Any,
    embedder: Any,
    reference: Any,
    options: QualityOptions,
) -> None:
    """One frame's figures into the series and accumulators."""
    from realtime_swap.detect.identity import embedding_distance

    swapped_image = frame.image
    found = detect.tracker.faces_tracked if detect is not None else len(frame.faces)
    alphas = []
    for face in frame.faces:
        if face.landmarks is not None:
            tracks.setdefault(face.id, []).append((frame.index, face.landmarks.copy()))
        if frame.swapped:
            alpha = face_alpha(face, original.shape, cfg)
            if alpha is not None:
                alphas.append((face, alpha))
    series.index.append(frame.index)
    series.faces_found.append(int(found))
    series.faces_swapped.append(len(alphas))
    union = np.maximum.reduce([a for _, a in alphas]) if alphas else None
    series.flicker.append(flicker.add(original, swapped_image, union))
    if union is None:
        for values in (series.delta_e, series.delta_e_original, series.delta_e_face, series.seam, series.seam_original):
            values.append(None)
        series.identity_to_original.append(None)
        series.identity_to_source.append(None)
        return
    skin = skin_pixels(original)
    series.delta_e.append(delta_e_to_ring(swapped_image, union, skin))
    series.delta_e_original.append(delta_e_to_ring(original, union, skin))
    series.delta_e_face.append(delta_e_between(swapped_image, original, union))
    series.seam.append(seam_energy(swapped_image, union))
    series.seam_original.append(seam_energy(original, union))
    thumbs.offer(frame.index, original, swapped_image, union)
    to_original: list[float] = []
    to_source: list[float] = []
    if embedder is not None and frame.index % options.identity_every == 0:
        for face, _ in alphas:
            e_swapped = embedder.embed(swapped_image, face.box)
            to_original.append(embedding_distance(e_swapped, embedder.embed(original, face.box)))
            if reference is not None:
                to_source.append(reference.centroid_distance(e_swapped))
    series.identity_to_original.append(_mean(to_original))
    series.identity_to_source.append(_mean(to_source))


def _jitter(tracks: dict[int, list[tuple[int, np.ndarray]]]) -> tuple[float | None, float | None]:
    """Frame-weighted means over tracks (split where a track skips frames) of landmark jitter and static RMS."""
    jitters, statics = [], []
    for entries in tracks.values():
        runs: list[list[np.ndarray]] = [[]]
        last = None
        for index, landmarks in entries:
            if last is not None and index != last + 1:
                runs.append([])
            runs[-1].append(landmarks)
            last = index
        for run in runs:
            if len(run) < 2:
                continue
            stack = np.stack(run)
            j = landmark_jitter(stack)
            if j is not None:
                jitters.append((j, len(run)))
            s = landmark_static_rms(stack)
            if s is not None:
                statics.append((s, len(run)))

    def weighted(pairs: list[tuple[float, int]]) -> float | None:
        if not pairs:
            return None
        values, weights = zip(*pairs, strict=True)
        return float(np.average(values, weights=weights))

    return weighted(jitters), weighted(statics)


def _summary(
    cfg: EngineConfig,
    info: Any,
    series: _Series,
    flicker: FlickerAccumulator,
    tracks: dict[int, list[tuple[int, np.ndarray]]],
    reconstruction: dict[str, Any] | None,
    options: QualityOptions,
    reference: Any,
    identity_note: str,
) -> dict[str, Any]:
    frames = len(series.index)
    jitter, static = _jitter(tracks)
    f = cfg.faces
    identity: dict[str, Any]
    if identity_note:
        identity = {"unavailable": identity_note}
    else:
        identity = {
            "to_original": _mean(series.identity_to_original),
            "to_source": _mean(series.identity_to_source),
            "source_faces": len(reference.names) if reference is not None else 0,
            "samples": sum(v is not None for v in series.identity_to_original),
            "every_frames": options.identity_every,
        }
    return {
        "clip": {"source": info.name, "width": info.width, "height": info.height, "fps": info.fps, "frames": frames},
        "config": {
            "model": str(f.model) if f.model else "default",
            "color": f.color,
            "mask": f.mask.value,
            "blend": f.blend,
            "erode_px": f.erode_px,
            "blur_px": f.blur_px,
            "keep_mouth": f.keep_mouth,
            "select": f.selection,
            "max_faces": f.max_faces,
        },
        "coverage": {
            "frames": frames,
            "frames_with_face": sum(n > 0 for n in series.faces_found),
            "frames_swapped": sum(n > 0 for n in series.faces_swapped),
            "faces_found_per_frame": float(np.mean(series.faces_found)) if frames else 0.0,
            "faces_swapped_per_frame": float(np.mean(series.faces_swapped)) if frames else 0.0,
        },
        "flicker_ratio": flicker.ratio,
        "flicker_mean_abs_diff": {  # 0..255 levels per pixel and channel, mean over consecutive pairs
            "swapped": flicker.swapped_sum / flicker.pairs if flicker.pairs else None,
            "original": flicker.original_sum / flicker.pairs if flicker.pairs else None,
        },
        "landmark_jitter_px": jitter,
        "landmark_static_rms_px": static,
        "delta_e": {
            "swapped": _mean(series.delta_e),
            "original": _mean(series.delta_e_original),
            "to_original_face": _mean(series.delta_e_face),
        },
        "seam_energy": {"swapped": _mean(series.seam), "original": _mean(series.seam_original)},
        "identity": identity,
        "reconstruction": reconstruction,
        "files": {"json": "quality.json"},
    }


def _plot(series: _Series, path: Path) -> str:
    """Write the per-frame series as stacked plots; returns a note instead when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "timeline.png not written: matplotlib is not installed (pip install matplotlib)"

    def values(v: Sequence[float | int | None]) -> np.ndarray:
        return np.array([np.nan if x is None else x for x in v], np.float64)

    x = np.array(series.index)
    panels: list[tuple[str, list[tuple[str, Sequence[float | int | None]]]]] = [
        ("faces per frame", [("found", series.faces_found), ("swapped", series.faces_swapped)]),
        ("flicker ratio (pair)", [("swapped / source", series.flicker)]),
        (
            "ΔE00",
            [
                ("swapped to skin ring", series.delta_e),
                ("original to skin ring", series.delta_e_original),
                ("swapped to original face", series.delta_e_face),
            ],
        ),
        ("seam energy", [("swapped", series.seam), ("original", series.seam_original)]),
        ("identity distance", [("to original", series.identity_to_original), ("to source", series.identity_to_source)]),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.0 * len(panels)), sharex=True)
    for ax, (title, lines) in zip(axes, panels, strict=True):
        for label, data in lines:
            y = values(data)
            ax.plot(x, y, marker="." if np.isnan(y).mean() > 0.5 else None, label=label, linewidth=1)
        ax.set_ylabel(title, fontsize=8)
        ax.legend(fontsize=7, loc="upper right")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("frame")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return ""
