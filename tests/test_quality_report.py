"""``realtime-swap quality`` end to end on the demo stream: a swap that changes nothing reads as such, and the
shipped model's report has every figure and file."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_build_pipeline import _config

from realtime_swap.cli import main
from realtime_swap.detect.identity import identity_available
from realtime_swap.quality.report import run_quality
from realtime_swap.swap.model import DFM_INPUT, OUT_CELEB_FACE, OUT_CELEB_MASK, OUT_FACE_MASK


def _identity_swap_model(path: Path, size: int = 256) -> Path:
    """A DFM-signature ONNX model that returns its input face with all-ones masks (a swap that does nothing)."""
    from onnx import TensorProto, helper, numpy_helper, save

    face = helper.make_tensor_value_info(DFM_INPUT, TensorProto.FLOAT, ["n", size, size, 3])
    outs = [
        helper.make_tensor_value_info(OUT_CELEB_FACE, TensorProto.FLOAT, ["n", size, size, 3]),
        helper.make_tensor_value_info(OUT_CELEB_MASK, TensorProto.FLOAT, ["n", size, size, 1]),
        helper.make_tensor_value_info(OUT_FACE_MASK, TensorProto.FLOAT, ["n", size, size, 1]),
    ]
    zero, one = (
        numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
        numpy_helper.from_array(np.ones(1, np.float32), "one"),
    )
    nodes = [
        helper.make_node("Identity", [DFM_INPUT], [OUT_CELEB_FACE]),
        helper.make_node("ReduceMean", [DFM_INPUT], ["grey"], axes=[3], keepdims=1),
        helper.make_node("Mul", ["grey", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "one"], [OUT_CELEB_MASK]),
        helper.make_node("Identity", [OUT_CELEB_MASK], [OUT_FACE_MASK]),
    ]
    graph = helper.make_graph(nodes, "identity_swap", [face], outs, initializer=[zero, one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    save(model, str(path))
    return path


def test_a_swap_that_changes_nothing_adds_no_flicker_no_seam_and_keeps_the_identity(tmp_path: Path) -> None:
    model = _identity_swap_model(tmp_path / "identity.onnx")
    cfg = _config("--model", str(model), "--color", "none", "--frames", "24", "--face-type", "whole_face")
    summary = run_quality(cfg, tmp_path / "report", progress=False)
    assert summary["coverage"]["frames"] == 24
    assert summary["coverage"]["frames_swapped"] == 24
    # what remains is the crop's bilinear resampling there and back (256 px crops of a ~110 px face)
    assert summary["flicker_ratio"] == pytest.approx(1.0, abs=0.15)
    assert summary["seam_energy"]["swapped"] == pytest.approx(summary["seam_energy"]["original"], rel=0.15)
    assert summary["delta_e"]["swapped"] == pytest.approx(summary["delta_e"]["original"], abs=1.0)
    assert summary["landmark_jitter_px"] is not None and summary["landmark_jitter_px"] < 1.0
    if identity_available()[0]:
        assert summary["identity"]["samples"] == 3  # frames 0, 10, 20
        assert summary["identity"]["to_original"] < 0.3
    else:
        assert "pip install" in summary["identity"]["unavailable"]
    written = json.loads((tmp_path / "report" / "quality.json").read_text())
    assert len(written["series"]["index"]) == 24


def test_quality_command_writes_the_report_of_the_shipped_model(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="timeline.png needs matplotlib (the dev extra)")
    out = tmp_path / "q"
    code = main(["quality", "--out", str(out), "--frames", "16", "--quiet", "--mask", "both", "--sheet-frames", "3"])
    assert code == 0
    summary = json.loads((out / "quality.json").read_text())
    assert summary["config"]["mask"] == "both"
    assert summary["coverage"]["frames_with_face"] == 16
    for key in ("flicker_ratio", "landmark_jitter_px"):
        assert summary[key] is not None and np.isfinite(summary[key])
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[1] == 3 * 320 and sheet.shape[0] == 3 * 240
    assert cv2.imread(str(out / "timeline.png")) is not None
