"""A model run on a face it was not trained for says so once: the shipped demo model on the demo face (known)
and on the faces of insightface's t1.jpg (unknown), through the swap stage."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from realtime_swap.detect.stage import FaceAnalyzer
from realtime_swap.infer import Backend
from realtime_swap.sources.demo import DemoSource, insightface_images_dir
from realtime_swap.stages import Controls
from realtime_swap.swap.face_fit import FIT_SAMPLES, FaceFitCheck, mask_overlap
from realtime_swap.swap.model import SwapModel
from realtime_swap.swap.stage import SwapStage
from realtime_swap.train.sample_faces import load_picture
from realtime_swap.types import FaceType, Frame

MODEL = Path(__file__).resolve().parents[1] / "trained_models" / "demo_swap" / "demo_swap.onnx"


def test_overlap_and_the_once_only_message() -> None:
    face = np.zeros((32, 32), np.float32)
    face[8:24, 8:24] = 1.0
    elsewhere = np.roll(face, 12, axis=1)
    assert mask_overlap(face, face) == 1.0 and mask_overlap(face, elsewhere) < 0.2
    check = FaceFitCheck()
    messages = [check.observe("m.onnx", "/data/me", face, face) for _ in range(FIT_SAMPLES + 3)]
    assert messages == [None] * (FIT_SAMPLES + 3)
    messages = [check.observe("other.onnx", "/data/me", elsewhere, face) for _ in range(FIT_SAMPLES + 3)]
    said = [m for m in messages if m is not None]
    assert len(said) == 1 and messages[FIT_SAMPLES - 1] == said[0]
    assert "other.onnx does not seem to know this face" in said[0] and "/data/me" in said[0]
    assert "make-model" in said[0]


def _frames(images: list[np.ndarray], analyzer: FaceAnalyzer) -> list[Frame]:
    frames = []
    for i, image in enumerate(images):
        faces = analyzer.analyze(image, FaceType.WHOLE_FACE, 96)
        frames.append(Frame(index=i, image=image, t_capture=0.0, pts=i / 30.0, faces=faces))
    return frames


def _warnings(stage: SwapStage, frames: list[Frame], caplog: pytest.LogCaptureFixture) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="realtime_swap.swap.stage"):
        for frame in frames:
            stage.process(frame, Controls())
    return [r.getMessage() for r in caplog.records if "does not seem to know" in r.getMessage()]


@pytest.mark.skipif(insightface_images_dir() is None, reason="insightface (its t1.jpg faces) is not installed")
def test_the_demo_model_knows_the_demo_face_and_says_so_on_another(caplog: pytest.LogCaptureFixture) -> None:
    analyzer = FaceAnalyzer()
    demo = DemoSource(640, 480, realtime=False)
    known = _frames([demo.render(i * 60) for i in range(FIT_SAMPLES)], analyzer)
    unknown = _frames([load_picture("t1")] * 2, analyzer)  # six faces a frame
    model = SwapModel.load(MODEL, Backend.ORT_CPU)
    try:
        assert _warnings(SwapStage(model), known, caplog) == []
        said = _warnings(SwapStage(model), unknown, caplog)
        assert len(said) == 1 and "demo_swap.onnx" in said[0]
    finally:
        model.close()
