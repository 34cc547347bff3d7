"""SwapStage on hand-made frames carrying aligned crops of a real face (astronaut): batching, toggling, checks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data

from realtime_swap.errors import ConfigError
from realtime_swap.infer.session import Backend
from realtime_swap.stages import Controls
from realtime_swap.swap import SwapModel, SwapStage
from realtime_swap.swap.synthetic import build_dfm_model
from realtime_swap.types import AlignedFace, Face, FaceType, Frame, StreamInfo

RES = 32


def aligned_face(index: int, size: int = RES, face_type: FaceType = FaceType.WHOLE_FACE) -> Face:
    """A face whose aligned crop is a (size, size, 3) uint8 BGR cut of the astronaut, shifted per index."""
    bgr = np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1])
    x0, y0, side = 150 - 5 * index, 20 + 6 * index, 200
    crop = cv2.resize(bgr[y0 : y0 + side, x0 : x0 + side], (size, size), interpolation=cv2.INTER_AREA)
    scale = size / side
    matrix = np.array([[scale, 0.0, -x0 * scale], [0.0, scale, -y0 * scale]], np.float64)
    box = np.array([x0, y0, x0 + side, y0 + side], np.float32)
    return Face(id=index, box=box, score=0.9, aligned=AlignedFace(np.ascontiguousarray(crop), matrix, face_type))


def make_frame(faces: list[Face]) -> Frame:
    image = np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1])
    return Frame(index=0, image=image, t_capture=0.0, pts=0.0, faces=faces)


class CountingRunner:
    """Wraps a runner and counts inference calls (batching must make one call per frame)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls: list[int] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def run(self, feeds: dict[str, np.ndarray], fetch: list[str]) -> list[np.ndarray]:
        self.calls.append(len(feeds["in_face:0"]))
        return self.inner.run(feeds, fetch)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def dfm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("s") / "tiny.dfm"
    path.write_bytes(build_dfm_model(RES, width=8, ae_dims=32))
    return path


@pytest.fixture
def stage(dfm_path: Path) -> SwapStage:
    model = SwapModel.load(dfm_path, Backend.ORT_CPU)
    model.runner = CountingRunner(model.runner)  # type: ignore[assignment]
    return SwapStage(model)


def calls(stage: SwapStage) -> list[int]:
    runner = stage.model.runner
    assert isinstance(runner, CountingRunner)
    return runner.calls


def test_name_and_warmup_runs_one_inference(stage: SwapStage) -> None:
    assert stage.name == "swap"
    stage.warmup(StreamInfo(width=512, height=512, fps=30.0, live=False, name="test"))
    assert calls(stage) == [1]


def test_all_faces_in_one_call_and_same_as_single_swaps(stage: SwapStage) -> None:
    faces = [aligned_face(i) for i in range(3)]
    frame = make_frame([*faces, Face(id=9, box=np.zeros(4, np.float32), score=0.5)])  # one not aligned
    image_before = frame.image.copy()
    out = stage.process(frame, Controls())
    assert out is frame
    assert calls(stage) == [3]  # one batched inference for the three aligned faces
    assert frame.faces[3].swapped is None
    np.testing.assert_array_equal(frame.image, image_before)  # the swap stage does not composite
    for face in faces:
        result = face.swapped
        assert result is not None
        assert result.face.shape == (RES, RES, 3) and result.face.dtype == np.float32
        assert result.mask.shape == (RES, RES) and result.mask.dtype == np.float32
        assert result.face.min() >= 0.0 and result.face.max() <= 1.0
        assert result.mask.min() >= 0.0 and result.mask.max() <= 1.0
        assert face.aligned is not None
        single_face, single_mask = stage.model.swap(face.aligned.image[None].astype(np.float32) / 255.0)
        np.testing.assert_allclose(result.face, single_face[0], atol=1e-5)
        np.testing.assert_allclose(result.mask, single_mask[0], atol=1e-5)


def test_swap_disabled_passes_the_frame_through(stage: SwapStage) -> None:
    faces = [aligned_face(0), aligned_face(1)]
    frame = make_frame(faces)
    stage.process(frame, Controls(swap_enabled=False))
    assert calls(stage) == []
    assert all(f.swapped is None for f in faces)


def test_frame_without_faces_makes_no_call(stage: SwapStage) -> None:
    stage.process(make_frame([]), Controls())
    assert calls(stage) == []


def test_crops_of_another_size_are_resized_both_ways(stage: SwapStage) -> None:
    face = aligned_face(0, size=48)
    stage.process(make_frame([face]), Controls())
    assert face.swapped is not None
    assert face.swapped.face.shape == (48, 48, 3) and face.swapped.mask.shape == (48, 48)
    assert face.swapped.mask.min() >= 0.0 and face.swapped.mask.max() <= 1.0


def test_face_type_mismatch_is_an_error(stage: SwapStage) -> None:
    face = aligned_face(0, face_type=FaceType.HALF)
    with pytest.raises(ConfigError, match=r"aligned as half, the model tiny\.dfm expects whole_face"):
        stage.process(make_frame([face]), Controls())
