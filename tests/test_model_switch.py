"""Several swap models in one run: the window's Tab / 1-9 choice (``controls.model_index``) picks the model, the
detect stage aligns for that model's face type and size, and the swap stage runs the model the frame was
aligned for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
from test_swap_stage import CountingRunner, aligned_face, make_frame

from realtime_swap.cli import _config_from_args, build_parser
from realtime_swap.detect.stage import DetectStage
from realtime_swap.detect.tracker import TrackerOptions
from realtime_swap.infer.session import Backend
from realtime_swap.pipeline import build_pipeline
from realtime_swap.stages import Controls
from realtime_swap.swap import SwapModel, SwapStage
from realtime_swap.swap.synthetic import build_dfm_model
from realtime_swap.types import FaceType, Frame


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("switch")
    small, large = folder / "small.dfm", folder / "large.dfm"
    small.write_bytes(build_dfm_model(32, width=8, ae_dims=32))
    large.write_bytes(build_dfm_model(64, width=8, ae_dims=32))
    return small, large


def _counting(model: SwapModel) -> CountingRunner:
    runner = CountingRunner(model.runner)
    model.runner = runner  # type: ignore[assignment]
    return runner


def test_detect_stage_aligns_for_the_chosen_model() -> None:
    stage = DetectStage(TrackerOptions(), targets=[(FaceType.WHOLE_FACE, 32), (FaceType.FULL, 64)])
    image = np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1])
    controls = Controls()
    for index, (face_type, size, model_index) in enumerate(
        [(FaceType.WHOLE_FACE, 32, 0), (FaceType.FULL, 64, 1), (FaceType.WHOLE_FACE, 32, 0)]
    ):
        controls.model_index = index  # 2 wraps around to the first model
        frame = stage.process(Frame(index=index, image=image, t_capture=0.0, pts=index / 30), controls)
        (face,) = frame.faces
        assert face.aligned is not None
        assert frame.model_index == model_index
        assert (face.aligned.face_type, face.aligned.size, face.aligned.image.shape) == (
            face_type,
            size,
            (size, size, 3),
        )
    stage.close()


def test_swap_stage_runs_the_model_the_frame_was_aligned_for(two_models: tuple[Path, Path]) -> None:
    small = SwapModel.load(two_models[0], Backend.ORT_CPU)
    large = SwapModel.load(two_models[1], Backend.ORT_CPU, face_type=FaceType.FULL)
    counts = [_counting(small), _counting(large)]
    stage = SwapStage([small, large])
    frame = make_frame([aligned_face(0, 64, FaceType.FULL)])
    frame.model_index = 1
    stage.process(frame, Controls(model_index=0))  # the frame's index counts, not the control's current one
    assert (counts[0].calls, counts[1].calls) == ([], [1])
    assert frame.faces[0].swapped is not None and frame.faces[0].swapped.face.shape == (64, 64, 3)
    frame = make_frame([aligned_face(0, 32)])
    stage.process(frame, Controls())
    assert (counts[0].calls, counts[1].calls) == ([1], [1])
    stage.close()


@pytest.mark.parametrize("gpu_path", ["off", "cpu"])
def test_switching_models_in_a_live_run(two_models: tuple[Path, Path], gpu_path: str) -> None:
    small, large = two_models
    parser, _ = build_parser()
    args = ["live", "--model", str(small), "--model", str(large), "--null", "--frames", "8", "--no-realtime"]
    cfg = _config_from_args(parser.parse_args([*args, "--gpu-path", gpu_path]))
    assert cfg.faces.model == small and cfg.faces.extra_models == (large,)
    pipeline, notices = build_pipeline(cfg)
    assert pipeline.controls.model_names == ("small", "large")
    assert any("2 swap models loaded" in n and "Tab" in n for n in notices)
    detect, swap = pipeline.stages[0], pipeline.stages[1]
    assert isinstance(detect, DetectStage) and detect.targets == ((FaceType.WHOLE_FACE, 32), (FaceType.WHOLE_FACE, 64))
    models = swap.models  # type: ignore[attr-defined]
    counts = [_counting(m) for m in models]
    pipeline.controls.model_index = 1  # as the window's Tab key does
    report = pipeline.run()
    assert report.frames_processed == 8
    # each model warmed up once before capture; then one face per frame, every frame on the second model
    assert counts[0].calls == [1] and counts[1].calls == [1] * 9
