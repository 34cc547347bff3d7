"""DetectStage: tracked, aligned, masked faces on the frames of the demo stream."""

from __future__ import annotations

import numpy as np
import pytest

from realtime_swap.align import face_transform
from realtime_swap.detect.stage import DetectStage
from realtime_swap.detect.tracker import FaceTracker, TrackerOptions
from realtime_swap.errors import ConfigError
from realtime_swap.sources.demo import DemoSource
from realtime_swap.stages import Controls
from realtime_swap.types import FaceType, Frame


def frames(count: int) -> list[Frame]:
    source = DemoSource(640, 480, fps=30.0, faces=1, realtime=False, frames=count)
    out: list[Frame] = []
    while (item := source.read()) is not None:
        image, pts = item
        out.append(Frame(index=len(out), image=image, t_capture=0.0, pts=pts))
    return out


@pytest.mark.parametrize(("face_type", "size"), [(FaceType.WHOLE_FACE, 224), (FaceType.ARCFACE, 128)])
def test_stage_fills_aligned_masked_faces(face_type, size) -> None:
    stage = DetectStage(TrackerOptions(detect_every=3), face_type=face_type, size=size)
    assert stage.name == "detect"
    stage.warmup(DemoSource(640, 480, realtime=False).info)
    ids = set()
    for frame in frames(8):
        out = stage.process(frame, Controls())
        assert out is frame
        (face,) = frame.faces
        ids.add(face.id)
        aligned = face.aligned
        assert face.landmarks is not None and face.keypoints is not None
        assert aligned is not None and aligned.face_type is face_type
        assert aligned.image.shape == (size, size, 3) and aligned.image.dtype == np.uint8
        # the crop is cut with the transform of the face's own (smoothed) landmarks
        np.testing.assert_allclose(aligned.matrix, face_transform(face.landmarks, face_type, size), atol=1e-9)
        mask = aligned.mask
        assert mask is not None and mask.shape == (size, size) and mask.dtype == np.float32
        assert mask.min() >= 0.0 and mask.max() <= 1.0
        # the face oval covers the eyes and the nose in crop px, not the crop's corners
        m = aligned.matrix
        kp = face.keypoints @ m[:, :2].T + m[:, 2]
        for x, y in np.round(kp[:3]).astype(int):
            assert mask[y, x] == 1.0
        assert mask[0, 0] == 0.0 and mask[-1, -1] == 0.0
    assert ids == {0}


def test_stage_without_mask_and_with_an_existing_tracker() -> None:
    tracker = FaceTracker()
    stage = DetectStage(tracker, FaceType.FULL, 96, mask=False)
    assert stage.tracker is tracker
    frame = frames(1)[0]
    stage.process(frame, Controls())
    (face,) = frame.faces
    assert face.aligned is not None and face.aligned.mask is None


def test_stage_on_a_frame_without_face() -> None:
    stage = DetectStage()
    frame = Frame(index=0, image=np.full((480, 640, 3), 90, np.uint8), t_capture=0.0, pts=0.0)
    assert stage.process(frame, Controls()).faces == []


def test_stage_refuses_a_tiny_crop() -> None:
    with pytest.raises(ConfigError, match="crop size"):
        DetectStage(size=8)
