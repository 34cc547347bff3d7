"""FaceTracker on synthetic moving-face streams with a known transform per frame, and on still photos.

Ground truth for a stream: ``DemoSource`` pastes a real photo (scikit-image's astronaut, and insightface's
Tom Hanks crop) into each frame through a known similarity transform (``actor_transform``: roll +-10 deg,
scale +-12 %, drift of tens of px, under changing light). The still photo's own FaceMesh landmarks (found
once, by ``FaceAnalyzer``) mapped through that transform are where the tracked landmarks must be.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_detect import T1_FACES, insightface_image

from realtime_swap.detect.blazeface import BlazeFaceDetector, BlazeFaceModel
from realtime_swap.detect.stage import AnalyzerOptions, FaceAnalyzer
from realtime_swap.detect.tracker import FaceSelection, FaceTracker, SmoothingOptions, TrackerOptions
from realtime_swap.errors import ConfigError
from realtime_swap.sources.demo import DemoSource

FPS = 30.0


def still_landmarks(source: DemoSource) -> list[np.ndarray]:
    """FaceMesh landmarks of each actor's photo (photo px), from a 3-pass single-image analysis."""
    analyzer = FaceAnalyzer(AnalyzerOptions(detector=BlazeFaceModel.SHORT_RANGE, max_faces=1))
    out = []
    for actor in source.actors:
        (face,) = analyzer.analyze(actor.image)
        assert face.landmarks is not None
        out.append(face.landmarks.astype(np.float64))
    return out


def run_stream(options: TrackerOptions, faces: int, frames: int) -> tuple[dict[int, list], int, FaceTracker]:
    """Track a demo stream; per actor, a list of (frame, face id or None, mean landmark error px)."""
    source = DemoSource(640, 480, fps=FPS, faces=faces, realtime=False, frames=frames)
    truth = still_landmarks(source)
    tracker = FaceTracker(options)
    results: dict[int, list] = {k: [] for k in range(faces)}
    for index in range(frames):
        item = source.read()
        assert item is not None
        image, pts = item
        found = tracker.update(image, pts)
        for k in range(faces):
            m = source.actor_transform(index, k)
            expected = truth[k] @ m[:, :2].T + m[:, 2]
            errors = [float(np.linalg.norm(f.landmarks - expected, axis=1).mean()) for f in found]
            if errors and min(errors) < 20.0:  # this face is tracked: its error, its id
                best = int(np.argmin(errors))
                results[k].append((index, found[best].id, errors[best]))
            else:
                results[k].append((index, None, float("inf")))
    return results, len(source.actors), tracker


@pytest.mark.parametrize(
    ("smoothing", "frame_bound", "mean_bound"),
    [
        # raw FaceMesh tracking: measured 0.6 px mean, 1.1 px worst frame (face ~115 px wide)
        (SmoothingOptions(enabled=False), 2.5, 1.5),
        # default One-Euro smoothing adds lag on this moving face: measured 1.5 px mean, 3.2 px worst frame
        (SmoothingOptions(), 5.0, 2.5),
    ],
    ids=["raw", "smoothed"],
)
def test_single_face_stream_detection_rate_error_and_id(smoothing, frame_bound, mean_bound) -> None:
    frames = 90
    results, _, tracker = run_stream(TrackerOptions(detect_every=5, smoothing=smoothing), 1, frames)
    rows = results[0]
    tracked = [r for r in rows if r[1] is not None]
    assert len(tracked) / frames >= 0.99, f"detection rate {len(tracked)}/{frames}"
    errors = np.array([r[2] for r in tracked])
    assert errors.max() < frame_bound, f"worst frame mean landmark error {errors.max():.2f} px"
    assert errors.mean() < mean_bound, f"mean landmark error {errors.mean():.2f} px"
    assert {r[1] for r in tracked} == {0}, "the face changed id"
    assert tracker.detections_run == frames // 5  # detection every 5th frame only, no track was lost


def test_three_faces_keep_three_ids() -> None:
    frames = 45
    options = TrackerOptions(detector=BlazeFaceModel.FULL_RANGE, max_faces=3, selection=FaceSelection.ALL)
    results, n, _ = run_stream(options, 3, frames)
    ids = []
    for k in range(n):
        rows = results[k]
        assert sum(r[1] is not None for r in rows) / frames >= 0.99, f"actor {k} detection rate"
        actor_ids = {r[1] for r in rows}
        assert len(actor_ids) == 1, f"actor {k} had ids {actor_ids}"
        assert np.mean([r[2] for r in rows]) < 3.0
        ids.append(actor_ids.pop())
    assert len(set(ids)) == 3


@pytest.mark.parametrize(("gap", "reclaim", "new_id"), [(6, 15, 0), (6, 3, 1), (20, 15, 1)])
def test_lost_face_is_found_again(gap, reclaim, new_id) -> None:
    """A face that vanishes (blank frames) and comes back where it was: its old id within ``reclaim_frames``."""
    source = DemoSource(640, 480, fps=FPS, faces=1, realtime=False)
    tracker = FaceTracker(TrackerOptions(detect_every=10, reclaim_frames=reclaim))
    blank = np.full((480, 640, 3), 128, np.uint8)
    seen = []
    for i, phase in enumerate(["face"] * 6 + ["blank"] * gap + ["face"] * 6):
        image = source.render(i) if phase == "face" else blank
        seen.append([f.id for f in tracker.update(image, i / FPS)])
    assert seen[:6] == [[0]] * 6
    assert seen[6 : 6 + gap] == [[]] * gap
    assert seen[6 + gap :] == [[new_id]] * 6


def test_detect_every_sets_how_often_the_detector_runs() -> None:
    source = DemoSource(640, 480, fps=FPS, faces=1, realtime=False)
    frames = [source.render(i) for i in range(12)]
    for every, expected in ((1, 12), (4, 3), (12, 1)):
        tracker = FaceTracker(TrackerOptions(detect_every=every))
        for i, image in enumerate(frames):
            assert len(tracker.update(image, i / FPS)) == 1
        assert tracker.detections_run == expected, f"detect_every={every}"


@pytest.fixture(scope="module")
def t1() -> np.ndarray:
    return insightface_image("t1.jpg")


def _owner(face_box: np.ndarray) -> str:
    """Which measured t1 face a box belongs to (the one whose 5 points it holds)."""
    for name, pts in T1_FACES.items():
        p = np.array(pts)
        if ((p >= face_box[:2]) & (p <= face_box[2:])).all():
            return name
    return "?"


# BlazeFace full-range box areas on t1 (px^2): top right 18564, far left 13630, centre smiling 13282, second
# 11460, far right 9158, centre right 9111. Centres (frame fraction): centre smiling (0.40, 0.39), centre right
# (0.61, 0.46), far right (0.91, 0.38).
@pytest.mark.parametrize(
    ("selection", "max_faces", "point", "expected"),
    [
        (FaceSelection.LARGEST, 1, (0.5, 0.5), ["top right, near profile"]),
        (FaceSelection.LARGEST, 3, (0.5, 0.5), ["top right, near profile", "far left, head tilted",
                                                 "centre, smiling"]),
        (FaceSelection.CLOSEST, 1, (0.92, 0.39), ["far right, eyes closed"]),
        (FaceSelection.CLOSEST, 2, (0.45, 0.42), ["centre, smiling", "centre right, laughing"]),
        (FaceSelection.ALL, 1, (0.5, 0.5), ["far left, head tilted", "second, three-quarter", "centre, smiling",
                                            "centre right, laughing", "top right, near profile",
                                            "far right, eyes closed"]),
    ],
)  # fmt: skip
def test_selection_on_a_group_photo(t1, selection, max_faces, point, expected) -> None:
    tracker = FaceTracker(
        TrackerOptions(
            detector=BlazeFaceModel.FULL_RANGE,
            max_faces=max_faces,
            selection=selection,
            select_point=point,
            detect_every=2,
        )
    )
    first_ids = None
    for i in range(4):  # a still stream: the same faces, the same ids, frame after frame
        faces = tracker.update(t1, i / FPS)
        owners = [_owner(f.box) for f in faces]
        if selection is FaceSelection.LARGEST and max_faces > 1:  # the 2nd and 3rd differ by 2.6 % in area
            assert owners[0] == expected[0] and sorted(owners) == sorted(expected)
        else:
            assert owners == expected
        ids = [f.id for f in faces]
        first_ids = first_ids or ids
        assert ids == first_ids
    for f in faces:
        assert f.landmarks is not None and f.landmarks.shape == (468, 2) and f.landmarks.dtype == np.float32
        assert f.keypoints is not None and f.keypoints.shape == (5, 2) and f.keypoints.dtype == np.float32
        assert f.box.shape == (4,) and 0.5 <= f.score <= 1.0


def test_detector_box_areas_behind_the_selection_expectations(t1) -> None:
    dets = BlazeFaceDetector(BlazeFaceModel.FULL_RANGE).detect(t1)
    areas = {_owner_of_detection(d.box): float((d.box[2] - d.box[0]) * (d.box[3] - d.box[1])) for d in dets}
    ranked = sorted(areas, key=lambda k: -areas[k])
    assert ranked[0] == "top right, near profile"
    assert set(ranked[1:3]) == {"far left, head tilted", "centre, smiling"}


def _owner_of_detection(box: np.ndarray) -> str:
    for name, pts in T1_FACES.items():
        p = np.array(pts)[:3]  # a detection box holds the eyes and the nose, not always the mouth
        if ((p >= box[:2]) & (p <= box[2:])).all():
            return name
    return "?"


def test_time_going_backwards_restarts_smoothing_without_error() -> None:
    source = DemoSource(640, 480, fps=FPS, faces=1, realtime=False)
    tracker = FaceTracker()
    a = tracker.update(source.render(0), 1.0)
    b = tracker.update(source.render(30), 0.5)  # a seek back: no smoothing across it
    raw = FaceTracker(TrackerOptions(smoothing=SmoothingOptions(enabled=False)))
    raw.update(source.render(0), 1.0)
    c = raw.update(source.render(30), 0.5)
    assert a[0].id == b[0].id
    assert b[0].landmarks is not None and c[0].landmarks is not None
    np.testing.assert_allclose(b[0].landmarks, c[0].landmarks, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"detect_every": 0},
        {"max_faces": 0},
        {"min_presence": 1.5},
        {"select_point": (2.0, 0.5)},
        {"reclaim_frames": -1},
    ],
)
def test_bad_options_are_config_errors(kwargs) -> None:
    with pytest.raises(ConfigError):
        TrackerOptions(**kwargs)
    with pytest.raises(ConfigError):
        SmoothingOptions(min_cutoff=0.0)


def test_tracker_refuses_a_grey_frame() -> None:
    with pytest.raises(ValueError, match=r"FaceTracker.update: expected \(H, W, 3\) uint8 BGR, got \(48, 64\)"):
        FaceTracker().update(np.zeros((48, 64), np.uint8), 0.0)


def test_tiles_cover_the_frame_and_overlap() -> None:
    from realtime_swap.detect.blazeface import TILE_FRACTION, tile_boxes

    boxes = tile_boxes(720, 1280)
    assert len(boxes) == 4
    covered = np.zeros((720, 1280), bool)
    for x0, y0, x1, y1 in boxes:
        assert (x1 - x0, y1 - y0) == (round(1280 * TILE_FRACTION), round(720 * TILE_FRACTION))
        assert 0 <= x0 < x1 <= 1280 and 0 <= y0 < y1 <= 720
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    # the middle band lies in every tile: a face of up to 0.2 of the frame there is whole in one of them
    assert all(x0 <= 512 and x1 >= 768 and y0 <= 288 and y1 >= 432 for x0, y0, x1, y1 in boxes)


def test_one_detection_per_face_across_tiles() -> None:
    from realtime_swap.detect.blazeface import Detection, one_per_face

    def det(x0: float, y0: float, x1: float, y1: float, score: float) -> Detection:
        return Detection(np.array([x0, y0, x1, y1], np.float32), score, np.zeros((6, 2), np.float32))

    whole = det(100, 100, 200, 200, 0.9)
    cut = det(150, 100, 200, 200, 0.95)  # the same face, half of it, at a tile's edge: inside the whole one
    shifted = det(105, 102, 205, 198, 0.8)  # the same face found in another tile
    other = det(400, 100, 480, 180, 0.7)
    kept = one_per_face([cut, shifted, other], 0.3, also=[whole])
    assert kept == [other]  # the whole frame's detection of the first face stands; only the new face is added
    assert one_per_face([whole, shifted, other], 0.3) == [whole, other]


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (1920, 1080)])
def test_four_small_faces_are_found_in_the_tiles(width: int, height: int) -> None:
    """Four people in a 720p/1080p frame are each about 8 % of its width: ~10 px of the short-range model's
    128 px letterbox, too few for it; in the tiles they are found (without them, one of four)."""
    source = DemoSource(width, height, faces=4, realtime=False)
    image, _ = source.read()  # type: ignore[misc]
    untiled = FaceTracker(TrackerOptions(max_faces=4, tiles=False))
    tiled = FaceTracker(TrackerOptions(max_faces=4))
    assert len(untiled.update(image, 0.0)) < 4
    faces = tiled.update(image, 0.0)
    assert len(faces) == 4
    quarters = {(int((f.box[0] + f.box[2]) / width), int((f.box[1] + f.box[3]) / height)) for f in faces}
    assert quarters == {(0, 0), (1, 0), (0, 1), (1, 1)}  # one face in each quarter, where the demo puts them


def test_a_single_face_does_not_pay_for_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    original = BlazeFaceDetector.detect

    def spy(self, image, pixels=None, tiled=False):  # type: ignore[no-untyped-def]
        calls.append(tiled)
        return original(self, image, pixels, tiled)

    monkeypatch.setattr(BlazeFaceDetector, "detect", spy)
    source = DemoSource(640, 480, faces=1, realtime=False)
    one, four = FaceTracker(TrackerOptions(max_faces=1)), FaceTracker(TrackerOptions(max_faces=4, detect_every=1))
    image, _ = source.read()  # type: ignore[misc]
    one.update(image, 0.0)
    assert calls == [False]
    four.update(image, 0.0)  # one face where four are wanted: it keeps looking, in the tiles too
    assert calls[-1] is True
