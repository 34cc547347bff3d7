"""Faceset extraction: aligned faces, their landmarks and masks from videos, image folders and recordings.

Every input frame goes through the product's own single-image analysis (``FaceAnalyzer``: BlazeFace + FaceMesh,
the same models the live engine runs), each face is aligned to the chosen face type and resolution, and a face
is kept unless it is

* blurry: the variance of the Laplacian of the crop's grey levels inside the face mask, measured on the crop
  resampled to ``BLUR_ANALYSIS_PX`` so that one threshold fits every resolution, is below ``blur_threshold``;
* a near-duplicate of one of the last ``duplicate_window`` faces kept from the same source: its crop-space
  landmarks differ by less than ``duplicate_landmark_px`` (mean, in px of a 256 px crop) AND its appearance
  by less than ``duplicate_appearance`` (mean absolute grey difference of the two crops at 64 px, 0..255).
  Pose/expression change or a light change are each enough to keep a face; two people differ in appearance.

Kept faces go to a ``FacesetWriter`` with provenance (source name, frame index); a frame already in the
faceset is skipped without analysis, so an interrupted extraction resumes where it stopped (frames whose
faces were all rejected are analysed again). A skipped frame's stored faces are read back from the faceset
as the duplicate references, so a resumed run rejects the same near-duplicates as an uninterrupted one.
Inputs: a video file or a recording (through PyAV, ``AVSource``), one image, or a folder of images (sorted by
name; each image its own source, frame 0).
"""

from __future__ import annotations

import enum
import json
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from realtime_swap.detect.stage import AnalyzerOptions, FaceAnalyzer
from realtime_swap.errors import ConfigError, SourceError
from realtime_swap.masks import landmarks_in_crop
from realtime_swap.progress import progress_bar
from realtime_swap.sources.av_source import AVSource
from realtime_swap.sources.images import IMAGE_SUFFIXES, read_image
from realtime_swap.train.faceset import INDEX_NAME, MIN_RESOLUTION, FacesetItem, FacesetWriter, ImageFormat
from realtime_swap.types import Face, FaceType

BLUR_ANALYSIS_PX = 128
DUPLICATE_REFERENCE_PX = 256.0


class RejectReason(str, enum.Enum):
    """Why a frame or a face did not make it into the faceset."""

    NO_FACE = "no_face"  # a frame (or image) in which no face was found
    BLURRY = "blurry"  # a face below the blur threshold
    DUPLICATE = "duplicate"  # a face too close to a recently kept face of the same source
    UNREADABLE = "unreadable"  # an image file of a folder that could not be decoded


@dataclass(frozen=True, slots=True)
class ExtractOptions:
    """resolution: crop px (>= 16). face_type: the crops' template. blur_threshold: minimum variance of the
    Laplacian (grey 0..255, crop at BLUR_ANALYSIS_PX px, inside the mask); 0 keeps every face.
    duplicate_landmark_px / duplicate_appearance: see the module docstring; 0 for either keeps every face.
    duplicate_window: how many of the last kept faces of a source a new face is compared with (1: only the
    previous one, which lets a slow drift through; larger windows also catch a face returning to a pose).
    max_faces: faces per frame, largest first (None: all). every: analyse one frame in ``every``.
    image_format: PNG or JPEG files. min_detection_score: BlazeFace threshold."""

    resolution: int = 256
    face_type: FaceType = FaceType.WHOLE_FACE
    blur_threshold: float = 100.0
    duplicate_landmark_px: float = 2.0
    duplicate_appearance: float = 3.0
    duplicate_window: int = 8
    max_faces: int | None = None
    every: int = 1
    image_format: ImageFormat = ImageFormat.PNG
    min_detection_score: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "face_type", FaceType(self.face_type))
        object.__setattr__(self, "image_format", ImageFormat(self.image_format))
        if self.resolution < MIN_RESOLUTION:
            raise ConfigError(f"extract: resolution must be >= {MIN_RESOLUTION} px, got {self.resolution}")
        for name in ("blur_threshold", "duplicate_landmark_px", "duplicate_appearance"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ConfigError(f"extract: {name} must be a finite number >= 0, got {value!r}")
        if self.duplicate_window < 1:
            raise ConfigError(f"extract: duplicate_window must be >= 1, got {self.duplicate_window}")
        if self.max_faces is not None and self.max_faces < 1:
            raise ConfigError(f"extract: max_faces must be >= 1 or None, got {self.max_faces}")
        if self.every < 1:
            raise ConfigError(f"extract: every must be >= 1, got {self.every}")
        if not 0.0 < self.min_detection_score < 1.0:
            raise ConfigError(f"extract: min_detection_score must be in (0, 1), got {self.min_detection_score}")


@dataclass(slots=True)
class ExtractSummary:
    """Counts of one extraction: frames read, frames skipped as already extracted (resume), faces kept, and
    rejections per reason (NO_FACE and UNREADABLE count frames/files, BLURRY and DUPLICATE count faces)."""

    frames: int = 0
    resumed: int = 0
    kept: int = 0
    rejected: Counter[RejectReason] = field(default_factory=Counter)

    def merge(self, other: ExtractSummary) -> None:
        self.frames += other.frames
        self.resumed += other.resumed
        self.kept += other.kept
        self.rejected.update(other.rejected)

    def format(self) -> str:
        """One line: 'N frames (R already extracted), K faces kept; rejected: reason n, ...'."""
        reasons = ", ".join(f"{r.value} {self.rejected[r]}" for r in RejectReason if self.rejected[r]) or "none"
        return f"{self.frames} frames ({self.resumed} already extracted), {self.kept} faces kept; rejected: {reasons}"


def blur_score(crop: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Variance of the Laplacian of a crop's grey levels (0..255) at BLUR_ANALYSIS_PX px, inside ``mask``.

    crop: (S, S, 3) uint8 BGR. mask: (S, S) float32 [0, 1] or None (whole crop). Higher is sharper.
    """
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    size = BLUR_ANALYSIS_PX
    interp = cv2.INTER_AREA if grey.shape[0] > size else cv2.INTER_CUBIC
    grey = cv2.resize(grey, (size, size), interpolation=interp).astype(np.float32)
    lap = cv2.Laplacian(grey, cv2.CV_32F, ksize=3)
    if mask is not None:
        inside = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) > 0.5
        # Keep the mask's edge out: the face/background contour is sharp even in a blurred face.
        inside = cv2.erode(inside.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        if inside.sum() >= 16:
            return float(lap[inside].var())
    return float(lap.var())


def _appearance(crop: np.ndarray) -> np.ndarray:
    return cv2.resize(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)


@dataclass(frozen=True, slots=True)
class _Kept:
    landmarks: np.ndarray  # crop px, scaled to a DUPLICATE_REFERENCE_PX crop
    appearance: np.ndarray  # (64, 64) float32 grey


@dataclass(frozen=True, slots=True)
class Frame:
    """One input picture: image (H, W, 3) uint8 BGR, its source name and its frame index in that source."""

    image: np.ndarray
    source: str
    index: int


class FaceExtractor:
    """Analyses frames and appends their good faces to a faceset; keep one for many inputs (it holds the
    detector sessions). Duplicate references are kept per source name (see ``reset``)."""

    def __init__(self, options: ExtractOptions | None = None, analyzer: FaceAnalyzer | None = None) -> None:
        self.options = o = options or ExtractOptions()
        self.analyzer = analyzer or FaceAnalyzer(
            AnalyzerOptions(min_detection_score=o.min_detection_score, max_faces=o.max_faces)
        )
        self._recent: dict[str, deque[_Kept]] = {}
        self._stored: dict[Path, dict[tuple[str, int], list[FacesetItem]]] = {}

    def reset(self) -> None:
        """Forget the duplicate references (e.g. before extracting the same source again elsewhere)."""
        self._recent.clear()
        self._stored.clear()

    def open_writer(self, out: str | Path) -> FacesetWriter:
        """A FacesetWriter for ``out`` with these options' resolution, face type and image format (resumes)."""
        o = self.options
        return FacesetWriter(out, o.resolution, o.face_type, image_format=o.image_format)

    def _kept(self, crop: np.ndarray, crop_landmarks: np.ndarray) -> _Kept:
        scale = DUPLICATE_REFERENCE_PX / crop.shape[0]
        return _Kept(np.asarray(crop_landmarks, np.float32) * scale, _appearance(crop))

    def _is_duplicate(self, source: str, kept: _Kept) -> bool:
        o = self.options
        if o.duplicate_landmark_px <= 0 or o.duplicate_appearance <= 0:
            return False
        for previous in self._recent.get(source, ()):
            moved = float(np.linalg.norm(kept.landmarks - previous.landmarks, axis=1).mean())
            if moved < o.duplicate_landmark_px:
                changed = float(np.abs(kept.appearance - previous.appearance).mean())
                if changed < o.duplicate_appearance:
                    return True
        return False

    def _remember(self, source: str, kept: _Kept) -> None:
        self._recent.setdefault(source, deque(maxlen=self.options.duplicate_window)).append(kept)

    def _remember_stored(self, writer: FacesetWriter, source: str, frame: int) -> None:
        """Take the faces a resumed frame already has in the faceset as duplicate references."""
        stored = self._stored.get(writer.path)
        if stored is None:
            stored = self._stored[writer.path] = {}
            raw = json.loads((writer.path / INDEX_NAME).read_text(encoding="utf-8"))
            for i, entry in enumerate(raw["items"]):
                item = FacesetItem.from_json(entry, f"{writer.path} item {i}")
                if item.source is not None and item.frame is not None:
                    stored.setdefault((item.source, item.frame), []).append(item)
        for item in stored.get((source, frame), []):
            crop = cv2.imread(str(writer.path / item.image), cv2.IMREAD_COLOR)
            if crop is not None and item.landmarks is not None:
                self._remember(source, self._kept(crop, item.landmarks))

    def process(self, frame: Frame, writer: FacesetWriter, summary: ExtractSummary) -> int:
        """Analyse one frame, write its kept faces, count the rest in ``summary``; returns the faces kept.

        A frame already in ``writer`` is counted as resumed and not analysed.
        """
        o = self.options
        summary.frames += 1
        if writer.contains(frame.source, frame.index):
            summary.resumed += 1
            if o.duplicate_landmark_px > 0 and o.duplicate_appearance > 0:
                self._remember_stored(writer, frame.source, frame.index)
            return 0
        faces: list[Face] = self.analyzer.analyze(frame.image, o.face_type, o.resolution, mask=True)
        if not faces:
            summary.rejected[RejectReason.NO_FACE] += 1
            return 0
        added = 0
        for face in faces:
            aligned = face.aligned
            if aligned is None or face.landmarks is None:
                continue
            mask = aligned.mask
            if o.blur_threshold > 0 and blur_score(aligned.image, mask) < o.blur_threshold:
                summary.rejected[RejectReason.BLURRY] += 1
                continue
            crop_landmarks = landmarks_in_crop(face.landmarks, aligned)
            kept = self._kept(aligned.image, crop_landmarks)
            if self._is_duplicate(frame.source, kept):
                summary.rejected[RejectReason.DUPLICATE] += 1
                continue
            writer.add(aligned.image, crop_landmarks, mask, source=frame.source, frame=frame.index)
            self._remember(frame.source, kept)
            added += 1
        summary.kept += added
        return added

    def extract(
        self,
        frames: Iterable[Frame],
        writer: FacesetWriter,
        total: int | None = None,
        progress: bool = True,
        desc: str = "extract",
    ) -> ExtractSummary:
        """Run ``process`` over ``frames`` with a tqdm bar (faces kept in its postfix); returns the counts."""
        summary = ExtractSummary()
        with progress_bar(total=total, desc=desc, unit="frame", disable=not progress) as bar:
            for frame in frames:
                self.process(frame, writer, summary)
                bar.update(1)
                bar.set_postfix(kept=summary.kept, refresh=False)
        return summary


def video_frames(path: str | Path, every: int = 1, source: str | None = None) -> Iterator[Frame]:
    """Frames of a video file or recording through PyAV: one in ``every``, named ``source`` (default: the
    file name). Raises SourceError for a missing, unreadable or corrupt video."""
    path = Path(path)
    name = source or path.name
    with AVSource(path) as reader:
        index = 0
        while True:
            item = reader.read()
            if item is None:
                break
            if index % every == 0:
                yield Frame(item[0], name, index)
            index += 1
    if index == 0:
        raise SourceError(f"{path}: no frame could be decoded (empty or corrupt video)")


def image_files(path: str | Path) -> list[Path]:
    """The image files of a folder (sorted by name), or ``[path]`` for one image. SourceError when none."""
    root = Path(path)
    if root.is_dir():
        files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SourceError(f"no images in folder {root} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        return files
    if root.is_file() and root.suffix.lower() in IMAGE_SUFFIXES:
        return [root]
    raise SourceError(f"input not found: {root}" if not root.exists() else f"not an image or folder: {root}")


def is_image_input(path: str | Path) -> bool:
    """True for a folder or a file with an image suffix (extracted as images, not as a video)."""
    p = Path(path)
    return p.is_dir() or p.suffix.lower() in IMAGE_SUFFIXES


def video_frame_count(path: str | Path) -> int | None:
    """The frame count a container declares for its first video stream, or None when it declares none."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return None
            return int(container.streams.video[0].frames) or None
    except (av.error.FFmpegError, OSError):
        return None


def extract_inputs(
    inputs: Iterable[str | Path],
    out: str | Path,
    options: ExtractOptions | None = None,
    progress: bool = True,
    extractor: FaceExtractor | None = None,
) -> ExtractSummary:
    """Extract every input (video/recording file, image, or image folder) into the faceset ``out``.

    Returns the summed counts. Raises SourceError for a missing or corrupt video or a missing input,
    FacesetError when ``out`` holds a faceset of another resolution/face type. An undecodable image inside a
    folder is counted as UNREADABLE; a named single image that cannot be decoded raises SourceError.
    """
    extractor = extractor or FaceExtractor(options)
    o = extractor.options
    summary = ExtractSummary()
    paths = [Path(p) for p in inputs]
    if not paths:
        raise ConfigError("extract: no input given")
    with extractor.open_writer(out) as writer:
        for path in paths:
            if is_image_input(path):
                files = image_files(path)
                part = ExtractSummary()
                frames = _image_frames(files, path.is_dir(), part)
                done = extractor.extract(frames, writer, total=len(files), progress=progress, desc=path.name)
                done.merge(part)
                summary.merge(done)
            else:
                if not path.exists():
                    raise SourceError(f"input not found: {path}")
                total = video_frame_count(path)
                total = None if total is None else -(-total // o.every)
                frames_iter = video_frames(path, o.every)
                summary.merge(extractor.extract(frames_iter, writer, total=total, progress=progress, desc=path.name))
    return summary


def _image_frames(files: list[Path], in_folder: bool, summary: ExtractSummary) -> Iterator[Frame]:
    for file in files:
        try:
            image = read_image(file)
        except SourceError:
            if not in_folder:
                raise
            summary.frames += 1
            summary.rejected[RejectReason.UNREADABLE] += 1
            continue
        yield Frame(image, file.name, 0)
