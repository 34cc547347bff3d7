"""Face identity (dlib's ResNet descriptor, the optional ``[identity]`` extra) and ``--select reference``.

Real faces only: scikit-image's astronaut, insightface's group photo ``t1.jpg`` and the demo source that moves
them. The tests that need dlib skip with the reason where the extra is not installed; the caching of embeddings
per track and the missing-extra message are tested without it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from test_build_pipeline import _config
from test_detect import insightface_image

from realtime_swap.detect import identity
from realtime_swap.detect.blazeface import BlazeFaceModel
from realtime_swap.detect.identity import SAME_PERSON_DISTANCE, ReferenceIdentity, embedding_distance
from realtime_swap.detect.stage import AnalyzerOptions, FaceAnalyzer
from realtime_swap.detect.tracker import FaceSelection, FaceTracker, TrackerOptions
from realtime_swap.errors import ConfigError
from realtime_swap.pipeline import build_pipeline
from realtime_swap.sources.demo import DemoSource

CENTRE_SMILING = (464, 282, 573, 408)  # t1.jpg: the FaceMesh box of the "centre, smiling" face, px


def _needs_dlib() -> identity.FaceEmbedder:
    pytest.importorskip("dlib", reason="the [identity] extra (dlib-bin) is not installed")
    ok, why = identity.identity_available()
    if not ok:
        pytest.skip(why)
    return identity.FaceEmbedder()


@pytest.fixture(scope="module")
def embedder() -> identity.FaceEmbedder:
    return _needs_dlib()


def _astronaut_photo(tmp_path: Path) -> Path:
    from skimage import data

    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), np.ascontiguousarray(data.astronaut()[:, :, ::-1]))
    return path


class _PositionEmbedder:
    """A stand-in identity model: the face's box centre x (px) as a 1-d 'descriptor', counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.array([(box[0] + box[2]) / 2.0], np.float32)


def test_reference_selection_keeps_the_reference_face_and_embeds_at_track_start_and_every_n() -> None:
    source = DemoSource(640, 480, faces=2, realtime=False, frames=25)
    # The left actor sits near x = 160 px, the right one near x = 480: "the reference" is the left one.
    reference = ReferenceIdentity(np.array([[160.0]], np.float32), ("left",))
    options = TrackerOptions(
        selection=FaceSelection.REFERENCE, reference=reference, reference_distance=80.0, reference_every=10,
        max_faces=2,
    )  # fmt: skip
    fake = _PositionEmbedder()
    tracker = FaceTracker(options, embedder=fake)  # type: ignore[arg-type]
    for _ in range(25):
        item = source.read()
        assert item is not None
        faces = tracker.update(*item)
        assert tracker.faces_tracked == 2
        assert len(faces) == 1 and (faces[0].box[0] + faces[0].box[2]) / 2 < 320
    # two tracks, embedded when they start (frame 1) and again at frames 11 and 21
    assert fake.calls == tracker.embeddings_run == 6


def test_reference_selection_needs_a_reference() -> None:
    with pytest.raises(ConfigError, match="reference"):
        TrackerOptions(selection=FaceSelection.REFERENCE)
    with pytest.raises(ConfigError, match="--reference"):
        _config("--select", "reference", "--null")


def test_without_the_extra_select_reference_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(identity, "identity_models_dir", lambda: None)
    with pytest.raises(ConfigError, match=r"pip install .*identity"):
        identity.FaceEmbedder()
    cfg = _config("--select", "reference", "--reference", str(_astronaut_photo(tmp_path)), "--null")
    with pytest.raises(ConfigError, match=r"--select reference: face identity needs .*pip install"):
        build_pipeline(cfg)


def test_same_person_is_near_and_other_people_are_far(embedder: identity.FaceEmbedder, tmp_path: Path) -> None:
    reference = identity.load_reference([_astronaut_photo(tmp_path)], embedder)
    # the astronaut moved, scaled, rotated and relit by the demo source
    source = DemoSource(640, 480, faces=1, realtime=False, frames=60)
    tracker = FaceTracker()
    same = []
    for index in range(60):
        item = source.read()
        assert item is not None
        faces = tracker.update(*item)
        if index % 20 == 0:
            assert faces
            same.append(reference.distance(embedder.embed(item[0], faces[0].box)))
    assert max(same) < SAME_PERSON_DISTANCE, same
    group = insightface_image("t1.jpg")
    faces = FaceAnalyzer(AnalyzerOptions(detector=BlazeFaceModel.FULL_RANGE)).analyze(group)
    assert len(faces) == 6
    descriptors = [embedder.embed(group, f.box) for f in faces]
    different = [reference.distance(d) for d in descriptors]
    different += [
        embedding_distance(a, b) for i, a in enumerate(descriptors) for b in descriptors[i + 1 :]
    ]  # fmt: skip
    assert min(different) > SAME_PERSON_DISTANCE, sorted(different)[:3]


def test_reference_selection_on_a_group_photo_swaps_only_that_person(
    embedder: identity.FaceEmbedder, tmp_path: Path
) -> None:
    group = insightface_image("t1.jpg")
    # The reference: that person's face cut out, mirrored, enlarged 1.5x and darkened (another "photo").
    x0, y0, x1, y1 = CENTRE_SMILING
    crop = group[y0 - 60 : y1 + 60, x0 - 60 : x1 + 60]
    photo = cv2.resize(crop[:, ::-1], None, fx=1.5, fy=1.5) * np.float32(0.8)
    path = tmp_path / "reference.png"
    cv2.imwrite(str(path), photo.astype(np.uint8))
    reference = identity.load_reference([path], embedder)
    options = TrackerOptions(
        detector=BlazeFaceModel.FULL_RANGE, selection=FaceSelection.REFERENCE, reference=reference, max_faces=6
    )
    tracker = FaceTracker(options, embedder=embedder)
    for t in range(3):
        faces = tracker.update(group, t / 30.0)
        assert tracker.faces_tracked == 6
        assert len(faces) == 1
        box = faces[0].box
        assert x0 - 10 < (box[0] + box[2]) / 2 < x1 + 10 and y0 - 10 < (box[1] + box[3]) / 2 < y1 + 10


def test_select_reference_live_swaps_only_the_reference_person(tmp_path: Path) -> None:
    _needs_dlib()
    from realtime_swap.sinks.null import NullSink

    cfg = _config(
        "--select", "reference", "--reference", str(_astronaut_photo(tmp_path)), "--max-faces", "2",
        "--demo-faces", "2", "--no-realtime", "--frames", "12", "--null", "--quiet",
    )  # fmt: skip
    pipeline, notices = build_pipeline(cfg)
    assert any("1 reference face" in n for n in notices)
    assert any(isinstance(s, NullSink) for s in pipeline.sinks)
    swapped_x: list[list[float]] = []

    class _Faces(NullSink):
        def write(self, frame) -> None:  # type: ignore[no-untyped-def]
            swapped_x.append([float(f.box[0] + f.box[2]) / 2 for f in frame.faces if f.swapped is not None])

    pipeline.sinks = [_Faces()]
    pipeline.run()
    # the demo's two actors: the astronaut on the left half, Tom Hanks on the right
    assert len(swapped_x) == 12 and all(len(xs) == 1 and xs[0] < 320 for xs in swapped_x), swapped_x


def test_a_faceset_is_a_reference_too(embedder: identity.FaceEmbedder, tmp_path: Path) -> None:
    from realtime_swap.train.extract import ExtractOptions, FaceExtractor, Frame
    from realtime_swap.types import FaceType

    photo = cv2.imread(str(_astronaut_photo(tmp_path)))
    extractor = FaceExtractor(ExtractOptions(resolution=128, face_type=FaceType.WHOLE_FACE, max_faces=1))
    frames = [Frame(photo, "astronaut", 0), Frame(cv2.flip(photo, 1), "mirrored", 0)]
    with extractor.open_writer(tmp_path / "faceset") as writer:
        extractor.extract(frames, writer, progress=False)
    from_faceset = identity.load_reference([tmp_path / "faceset"], embedder)
    assert len(from_faceset.names) == 2  # one descriptor per crop, boxed by the crop's landmarks
    from_photo = identity.load_reference([tmp_path / "astronaut.png"], embedder)
    assert from_faceset.distance(from_photo.embeddings[0]) < SAME_PERSON_DISTANCE
    group = insightface_image("t1.jpg")
    stranger = FaceAnalyzer(AnalyzerOptions(detector=BlazeFaceModel.FULL_RANGE)).analyze(group)[0]
    assert from_faceset.distance(embedder.embed(group, stranger.box)) > SAME_PERSON_DISTANCE
