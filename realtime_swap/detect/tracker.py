"""Face tracking: BlazeFace every N frames, FaceMesh on the previous frame's landmarks in between.

Per frame, each tracked face's FaceMesh ROI comes from its landmarks in the previous frame (as in MediaPipe's
face_landmark_front graphs), so the detector runs only every ``detect_every`` frames, when there is no face, or
when a track is lost (FaceMesh's face-presence score falls under ``min_presence``). Faces keep an id for as
long as they are tracked; landmarks are steadied by a One-Euro filter per face.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from realtime_swap.detect.blazeface import BlazeFaceDetector, BlazeFaceModel, Detection, box_iou
from realtime_swap.detect.engine import DetectEngine
from realtime_swap.detect.facemesh import (
    FaceMeshLandmarker,
    MeshResult,
    Roi,
    roi_from_detection,
    roi_from_landmarks,
)
from realtime_swap.detect.identity import SAME_PERSON_DISTANCE, FaceEmbedder, ReferenceIdentity
from realtime_swap.detect.mesh import keypoints_from_mesh
from realtime_swap.detect.smoothing import DEFAULT_BETA, DEFAULT_D_CUTOFF, DEFAULT_MIN_CUTOFF, OneEuroFilter
from realtime_swap.errors import ConfigError
from realtime_swap.infer.session import Backend
from realtime_swap.types import Face, check_bgr_image


class FaceSelection(str, enum.Enum):
    """Which faces to keep when there are more than ``max_faces``; the CLI's choices come from here.

    LARGEST: the ``max_faces`` biggest ones, biggest first. CLOSEST: the ``max_faces`` ones nearest
    ``select_point``, nearest first. ALL: every face, ``max_faces`` ignored, left to right. REFERENCE: the
    ``max_faces`` faces whose identity is within ``reference_distance`` of the reference person
    (``TrackerOptions.reference``), nearest first; every face is tracked, the others are not returned.
    """

    LARGEST = "largest"
    CLOSEST = "closest"
    ALL = "all"
    REFERENCE = "reference"


@dataclass(frozen=True)
class SmoothingOptions:
    """One-Euro filter on the landmarks (frame px, time in s). enabled=False passes raw landmarks through.

    min_cutoff (Hz): smoothing of a still face (lower: steadier, more lag at low speed); beta (Hz per px/s):
    how fast the cut-off rises with speed (higher: less lag when moving), stated for a face
    ``reference_width`` px wide and scaled per face by reference_width / face width, so that a face's
    smoothing does not depend on its size in the frame; d_cutoff (Hz): cut-off of the speed estimate.
    Defaults: ``realtime_swap.detect.smoothing``'s tuning.
    """

    enabled: bool = True
    min_cutoff: float = DEFAULT_MIN_CUTOFF
    beta: float = DEFAULT_BETA
    d_cutoff: float = DEFAULT_D_CUTOFF
    reference_width: float = 200.0

    def __post_init__(self) -> None:
        if self.min_cutoff <= 0 or self.d_cutoff <= 0 or self.beta < 0 or self.reference_width <= 0:
            raise ConfigError(
                f"smoothing: need min_cutoff > 0, d_cutoff > 0, beta >= 0, reference_width > 0; got "
                f"{self.min_cutoff}, {self.d_cutoff}, {self.beta}, {self.reference_width}"
            )


@dataclass(frozen=True)
class TrackerOptions:
    """How faces are found and followed.

    detector: BlazeFace short range (webcam distance) or full range (people further away, groups).
    detect_every: run the detector every N frames (1: every frame); it also runs whenever no face is
    tracked or a track is lost.
    max_faces / selection / select_point: how many faces, which ones (see ``FaceSelection``); select_point
    is (x, y) in [0, 1] frame units for ``FaceSelection.CLOSEST``.
    min_detection_score: BlazeFace confidence threshold. min_presence: FaceMesh face-presence score under
    which a track is lost. match_iou: IoU above which a detection is the same face as a track.
    reclaim_frames: a face found again within this many frames of losing it, where it was lost (IoU above
    match_iou or centred in its last box), gets its old id back (a hand passing over the face).
    reference / reference_every / reference_distance: for ``FaceSelection.REFERENCE``, the person to keep
    (``realtime_swap.detect.identity.ReferenceIdentity``), how often a tracked face's identity is embedded again
    (every N frames; also when its track starts), and the distance under which it is that person.
    engine: where the detector and landmarker run (ONNX Runtime or torch on a device; ``detect.engine``).
    tiles: whether a detection pass also searches four overlapping tiles of the frame, where small faces are
    found (``BlazeFaceDetector.detect(tiled=True)``; 5 detector runs instead of 1); None: when more than one face
    is wanted (``max_faces`` > 1, ``ALL``, ``REFERENCE``) and fewer are tracked.
    intra_op_threads: ONNX Runtime threads per model (None: one per core). 1 by default: these models are
    small (a 2nd thread saves ~15 % of a FaceMesh run on an idle CPU) and the live pipeline's other stages
    share the cores; two sessions with multi-thread, spinning pools slow each other down by 2-3x on 2 cores.
    """

    detector: BlazeFaceModel = BlazeFaceModel.SHORT_RANGE
    detect_every: int = 5
    max_faces: int = 1
    selection: FaceSelection = FaceSelection.LARGEST
    select_point: tuple[float, float] = (0.5, 0.5)
    min_detection_score: float = 0.5
    min_presence: float = 0.5
    match_iou: float = 0.3
    reclaim_frames: int = 15
    reference: ReferenceIdentity | None = None
    reference_every: int = 30
    reference_distance: float = SAME_PERSON_DISTANCE
    smoothing: SmoothingOptions = field(default_factory=SmoothingOptions)
    engine: DetectEngine = field(default_factory=DetectEngine)
    tiles: bool | None = None
    model_dir: Path | None = None
    intra_op_threads: int | None = 1

    def __post_init__(self) -> None:
        if self.detect_every < 1:
            raise ConfigError(f"detect_every must be >= 1, got {self.detect_every}")
        if self.max_faces < 1:
            raise ConfigError(f"max_faces must be >= 1, got {self.max_faces}")
        if self.reclaim_frames < 0:
            raise ConfigError(f"reclaim_frames must be >= 0, got {self.reclaim_frames}")
        if self.reference_every < 1:
            raise ConfigError(f"reference_every must be >= 1, got {self.reference_every}")
        if self.reference_distance <= 0:
            raise ConfigError(f"reference_distance must be > 0, got {self.reference_distance}")
        if self.selection is FaceSelection.REFERENCE and self.reference is None:
            raise ConfigError("selection 'reference' needs a reference identity (--reference PHOTO)")
        for name in ("min_detection_score", "min_presence", "match_iou"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {value}")
        x, y = self.select_point
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise ConfigError(f"select_point must be in [0, 1] x [0, 1], got {self.select_point}")


def landmarks_box(landmarks: np.ndarray) -> np.ndarray:
    """(4,) float32 x0, y0, x1, y1 around (N, 2) points."""
    lo, hi = landmarks.min(axis=0), landmarks.max(axis=0)
    return np.array([lo[0], lo[1], hi[0], hi[1]], np.float32)


@dataclass
class _Track:
    id: int
    mesh: MeshResult  # raw (unsmoothed) landmarks of the last frame
    detection_box: np.ndarray  # the last detection box matched to this face: its size for the selection
    smoother: OneEuroFilter | None = None
    identity: float | None = None  # distance to the reference person (FaceSelection.REFERENCE)
    identity_frame: int = 0  # the tracker frame count when ``identity`` was measured

    @property
    def box(self) -> np.ndarray:
        return landmarks_box(self.mesh.landmarks)


@dataclass
class _Candidate:
    """A face competing for selection: an existing track or a new detection.

    Sizes compare detection boxes on both sides (a track keeps its last matched one): a landmark box and a
    detection box of one face differ in size by a factor that depends on the head pose.
    """

    area: float
    centre: np.ndarray
    track: _Track | None = None
    detection: Detection | None = None

    @classmethod
    def of_track(cls, track: _Track) -> _Candidate:
        b, d = track.box, track.detection_box
        centre = np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
        return cls(float((d[2] - d[0]) * (d[3] - d[1])), centre, track=track)

    @classmethod
    def of_detection(cls, detection: Detection) -> _Candidate:
        d = detection.box
        centre = np.array([(d[0] + d[2]) / 2, (d[1] + d[3]) / 2])
        return cls(float((d[2] - d[0]) * (d[3] - d[1])), centre, detection=detection)


class FaceTracker:
    """Faces of a video stream, frame after frame, with stable ids and smoothed landmarks.

    ``update(image, t)`` takes frames in order (t: their time in s, increasing) and returns the selected faces.
    Models load on ``warmup()`` or on the first frame. embedder: the identity model for
    ``FaceSelection.REFERENCE`` (default: a ``FaceEmbedder``, created with the first face).
    """

    def __init__(self, options: TrackerOptions | None = None, embedder: FaceEmbedder | None = None) -> None:
        self.options = options or TrackerOptions()
        self._embedder = embedder
        self._detector: BlazeFaceDetector | None = None
        self._landmarker: FaceMeshLandmarker | None = None
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._since_detection = 0
        self._last_t: float | None = None
        self._frame = 0
        self._lost: list[tuple[int, np.ndarray, int]] = []  # (id, last landmark box, frame it was lost)
        self.detections_run = 0  # how many frames ran the detector (for metrics and tests)
        self.embeddings_run = 0  # how many identity embeddings FaceSelection.REFERENCE computed
        self.faces_tracked = 0  # faces followed in the last frame (more than returned under REFERENCE)

    @property
    def detector(self) -> BlazeFaceDetector:
        if self._detector is None:
            o = self.options
            self._detector = BlazeFaceDetector(
                o.detector, o.engine, o.min_detection_score, model_dir=o.model_dir,
                intra_op_threads=o.intra_op_threads,
            )  # fmt: skip
        return self._detector

    @property
    def landmarker(self) -> FaceMeshLandmarker:
        if self._landmarker is None:
            o = self.options
            self._landmarker = FaceMeshLandmarker(o.engine, o.model_dir, o.intra_op_threads)
        return self._landmarker

    @property
    def device(self) -> str | None:
        """The torch device the detector and landmarker read frames on (``update``'s ``pixels``), or None when
        they run on ONNX Runtime and read host frames."""
        engine = self.options.engine
        return engine.device if engine.backend is Backend.TORCH else None

    def warmup(self) -> None:
        """Load both models on their engine and run each once on a blank frame."""
        blank = np.zeros((64, 64, 3), np.uint8)
        self.detector.detect(blank)
        self.landmarker.landmark(blank, [Roi(32.0, 32.0, 48.0, 0.0)])

    def reset(self) -> None:
        """Forget every track (ids restart at 0)."""
        self._tracks = []
        self._next_id = 0
        self._since_detection = 0
        self._last_t = None
        self._frame = 0
        self._lost = []

    def update(self, image: np.ndarray, t: float, pixels: Any = None) -> list[Face]:
        """Faces in the next frame, (H, W, 3) uint8 BGR at time ``t`` s, ordered by the selection rule.

        Each Face: id, box (landmarks' bounding box), score (FaceMesh face-presence probability), landmarks
        (468, 2) smoothed, keypoints (5, 2) from those landmarks; frame px. No face: an empty list.
        pixels: the same frame as a (H, W, 3) uint8 tensor on the engine's torch device, or None: with it, a
        torch engine reads the frame where it already is (``reads_device_frames``) and nothing is uploaded.
        """
        image = check_bgr_image(image, "FaceTracker.update")
        if self._last_t is not None and t < self._last_t:  # a seek back or a looped file: smoothers restart
            for track in self._tracks:
                track.smoother = None
        self._last_t = t
        self._frame += 1
        self._lost = [e for e in self._lost if self._frame - e[2] <= self.options.reclaim_frames]
        lost = self._follow(image, pixels)
        o = self.options
        if not self._tracks or lost or self._since_detection + 1 >= o.detect_every:
            self._detect(image, pixels)
            self._since_detection = 0
        else:
            self._since_detection += 1
        self._drop_duplicates()
        ranked = self._rank([_Candidate.of_track(tr) for tr in self._tracks], image.shape)
        self._tracks = [c.track for c in ranked if c.track is not None]
        self.faces_tracked = len(self._tracks)
        return [self._emit(track, t) for track in self._selected(image)]

    def _selected(self, image: np.ndarray) -> list[_Track]:
        """The tracks to return: all of them, or under REFERENCE the ones that are the reference person."""
        o = self.options
        if o.selection is not FaceSelection.REFERENCE:
            return self._tracks
        assert o.reference is not None  # TrackerOptions checks it
        for track in self._tracks:
            if track.identity is None or self._frame - track.identity_frame >= o.reference_every:
                if self._embedder is None:
                    self._embedder = FaceEmbedder()
                track.identity = o.reference.distance(self._embedder.embed(image, track.box))
                track.identity_frame = self._frame
                self.embeddings_run += 1
        matching = [tr for tr in self._tracks if tr.identity is not None and tr.identity <= o.reference_distance]
        return sorted(matching, key=lambda tr: float(tr.identity or 0.0))[: o.max_faces]

    # ----------------------------------------------------------------------------------------------------------

    def _follow(self, image: np.ndarray, pixels: Any) -> bool:
        """Landmark every track in its ROI from the last frame; drop the lost ones. True when one was lost."""
        if not self._tracks:
            return False
        rois = [roi_from_landmarks(track.mesh.landmarks) for track in self._tracks]
        meshes = self.landmarker.landmark(image, rois, pixels)
        kept = []
        for track, mesh in zip(self._tracks, meshes, strict=True):
            if mesh.score >= self.options.min_presence:
                track.mesh = mesh
                kept.append(track)
            else:
                self._lost.append((track.id, track.box, self._frame))
        lost = len(kept) < len(self._tracks)
        self._tracks = kept
        return lost

    def _detect(self, image: np.ndarray, pixels: Any) -> None:
        """Run the detector; start tracks for the new faces the selection keeps."""
        self.detections_run += 1
        detections = self.detector.detect(image, pixels, tiled=self._wants_more_faces())
        unmatched = self._match(detections)
        candidates = [_Candidate.of_track(tr) for tr in self._tracks]
        candidates += [_Candidate.of_detection(d) for d in unmatched]
        chosen = self._rank(candidates, image.shape)
        new = [c.detection for c in chosen if c.detection is not None]
        self._tracks = [c.track for c in chosen if c.track is not None]
        if not new:
            return
        meshes = self.landmarker.landmark_refined(image, [roi_from_detection(d) for d in new], 2, pixels)
        for detection, mesh in zip(new, meshes, strict=True):
            if mesh.score >= self.options.min_presence:
                self._tracks.append(_Track(self._new_id(landmarks_box(mesh.landmarks)), mesh, detection.box))

    def _wants_more_faces(self) -> bool:
        """Whether a detection pass also searches the frame's tiles (``TrackerOptions.tiles``; auto: when more
        than one face is wanted and fewer are tracked)."""
        o = self.options
        if o.tiles is not None:
            return o.tiles
        if o.selection in (FaceSelection.ALL, FaceSelection.REFERENCE):
            return True
        return o.max_faces > 1 and len(self._tracks) < o.max_faces

    def _new_id(self, box: np.ndarray) -> int:
        """The id of a face lost here lately (best overlap), else a fresh one."""
        best, best_iou = None, 0.0
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        for entry in self._lost:
            old = entry[1]
            iou = box_iou(old, box)
            if (iou > self.options.match_iou or (old[0] <= cx <= old[2] and old[1] <= cy <= old[3])) and (
                best is None or iou > best_iou
            ):
                best, best_iou = entry, iou
        if best is not None:
            self._lost.remove(best)
            return best[0]
        self._next_id += 1
        return self._next_id - 1

    def _match(self, detections: list[Detection]) -> list[Detection]:
        """Pair detections with tracks (greedy, best IoU first; a detection centred in a track's landmark box
        also counts); matched tracks take the detection's box. Returns the detections of new faces."""
        pairs = []
        for i, track in enumerate(self._tracks):
            box = track.box
            for j, det in enumerate(detections):
                iou = box_iou(box, det.box)
                cx, cy = (det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2
                inside = box[0] <= cx <= box[2] and box[1] <= cy <= box[3]
                if iou > self.options.match_iou or inside:
                    pairs.append((iou, i, j))
        used_t: set[int] = set()
        used_d: set[int] = set()
        for _, i, j in sorted(pairs, reverse=True):
            if i in used_t or j in used_d:
                continue
            used_t.add(i)
            used_d.add(j)
            self._tracks[i].detection_box = detections[j].box
        return [d for j, d in enumerate(detections) if j not in used_d]

    def _rank(self, candidates: list[_Candidate], shape: tuple[int, ...]) -> list[_Candidate]:
        """The candidates the selection rule keeps, in its order."""
        o = self.options
        if o.selection in (FaceSelection.ALL, FaceSelection.REFERENCE):  # REFERENCE picks in _selected
            return sorted(candidates, key=lambda c: float(c.centre[0]))
        if o.selection is FaceSelection.CLOSEST:
            point = np.array([o.select_point[0] * shape[1], o.select_point[1] * shape[0]])
            return sorted(candidates, key=lambda c: float(np.linalg.norm(c.centre - point)))[: o.max_faces]
        return sorted(candidates, key=lambda c: -c.area)[: o.max_faces]

    def _drop_duplicates(self) -> None:
        """Two tracks that converged on one face: keep the older (smaller id)."""
        kept: list[_Track] = []
        for track in sorted(self._tracks, key=lambda tr: tr.id):
            if all(box_iou(track.box, other.box) <= 0.5 for other in kept):
                kept.append(track)
        self._tracks = kept

    def _emit(self, track: _Track, t: float) -> Face:
        s = self.options.smoothing
        landmarks = track.mesh.landmarks
        if s.enabled:
            if track.smoother is None:
                track.smoother = OneEuroFilter(s.min_cutoff, s.beta, s.d_cutoff)
            track.smoother.beta = s.beta * s.reference_width / max(float(np.ptp(landmarks[:, 0])), 1.0)
            landmarks = np.asarray(track.smoother(landmarks, t), np.float32)
        landmarks = np.ascontiguousarray(landmarks, np.float32)
        return Face(
            id=track.id,
            box=landmarks_box(landmarks),
            score=track.mesh.score,
            landmarks=landmarks,
            keypoints=np.asarray(keypoints_from_mesh(landmarks), np.float32),
        )
