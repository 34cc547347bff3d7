"""What an ONNX file declares about itself, read without creating a session: I/O tensors and metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from realtime_swap.errors import ModelError
from realtime_swap.infer.runner import Dim, TensorInfo

_ELEMENT_TYPES = {1: "float32", 10: "float16", 11: "float64", 16: "bfloat16", 6: "int32", 7: "int64", 9: "bool"}


def _dims(value_info: Any) -> tuple[Dim, ...]:
    dims: list[Dim] = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            dims.append(int(d.dim_value))
        else:
            dims.append(d.dim_param or None)
    return tuple(dims)


def _info(value_info: Any) -> TensorInfo:
    elem = value_info.type.tensor_type.elem_type
    return TensorInfo(value_info.name, _dims(value_info), _ELEMENT_TYPES.get(elem, f"onnx-type-{elem}"))


def load_onnx(path: Path, *, weights: bool) -> Any:
    """Parse an ONNX file (weights=False skips external data: enough for I/O and metadata).

    Raises ModelError naming the path when the file is missing or is not ONNX.
    """
    import onnx

    if not path.is_file():
        raise ModelError(f"model not found: {path}")
    try:
        return onnx.load(str(path), load_external_data=weights)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise ModelError(f"model {path}: not an ONNX file ({type(exc).__name__}: {exc})") from exc


def onnx_io(model: Any) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """The graph's real inputs (initializers listed as inputs by old exporters left out) and outputs."""
    graph = model.graph
    constants = {t.name for t in graph.initializer}
    inputs = tuple(_info(v) for v in graph.input if v.name not in constants)
    outputs = tuple(_info(v) for v in graph.output)
    return inputs, outputs


def onnx_metadata(model: Any) -> dict[str, str]:
    """The model's ``metadata_props`` as a dict."""
    return {p.key: p.value for p in model.metadata_props}
