"""Untrained DFM-signature models built in memory: for tests and inference benchmarks, never for swapping.

The graph has DeepFaceLab's DF shape — NHWC->NCHW transpose, strided conv + LeakyReLU encoder, two dense
layers, pixel-shuffle (DepthToSpace) decoders, sigmoid face and mask heads, NCHW->NHWC transposes — with
random weights from a fixed seed, so it costs what a real model of that width costs. With ``morph=True`` it takes
``morph_value:0`` and mixes two intermediate codes the way DeepFaceLab's AMP export does (a channel split
sized by the morph factor).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from realtime_swap.swap.dfm_io import DFM_INPUT, DFM_MORPH, OUT_CELEB_FACE, OUT_CELEB_MASK, OUT_FACE_MASK


class _Graph:
    def __init__(self, seed: int) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.rng = np.random.default_rng(seed)
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, array: np.ndarray, stem: str = "c") -> str:
        from onnx import numpy_helper

        name = self.name(stem)
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        from onnx import helper

        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, kernel: int, stride: int = 1, act: bool = True) -> str:
        scale = np.sqrt(2.0 / (cin * kernel * kernel))
        w = self.const((self.rng.standard_normal((cout, cin, kernel, kernel)) * scale).astype(np.float32), "w")
        b = self.const((self.rng.standard_normal(cout) * 0.05).astype(np.float32), "b")
        pad = kernel // 2
        y = self.node("Conv", [x, w, b], kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4)
        return self.node("LeakyRelu", [y], alpha=0.1) if act else y

    def dense(self, x: str, cin: int, cout: int) -> str:
        w = self.const((self.rng.standard_normal((cin, cout)) * np.sqrt(1.0 / cin)).astype(np.float32), "w")
        b = self.const(np.zeros(cout, np.float32), "b")
        return self.node("Add", [self.node("MatMul", [x, w]), b])

    def upscale(self, x: str, cin: int, cout: int) -> str:
        return self.node("DepthToSpace", [self.conv(x, cin, cout * 4, 3)], blocksize=2, mode="DCR")


def build_dfm_model(
    resolution: int = 64,
    *,
    width: int = 16,
    ae_dims: int = 64,
    morph: bool = False,
    dynamic_batch: bool = True,
    seed: int = 0,
    metadata: Mapping[str, str] | None = None,
) -> bytes:
    """Serialized ONNX (opset 17) with the DFM signature for ``resolution`` px crops (a multiple of 16).

    Input ``in_face:0`` (N,S,S,3) float32 BGR [0,1] [+ ``morph_value:0`` (1,) float32]; outputs
    ``out_face_mask:0`` (N,S,S,1), ``out_celeb_face:0`` (N,S,S,3), ``out_celeb_face_mask:0`` (N,S,S,1).
    width: channels of the first encoder conv (doubling per level); ae_dims: the dense bottleneck.
    """
    from onnx import TensorProto, helper

    if resolution % 16 or resolution < 16:
        raise ValueError(f"resolution must be a multiple of 16, got {resolution}")
    g = _Graph(seed)
    s = resolution
    x = g.node("Transpose", [DFM_INPUT], perm=[0, 3, 1, 2])
    channels = [3, width, width * 2, width * 4, width * 8]
    for cin, cout in itertools.pairwise(channels):
        x = g.conv(x, cin, cout, 5, stride=2)
    low = s // 16
    code_c = channels[-1]
    flat = g.node("Reshape", [x, g.const(np.array([-1, code_c * low * low], np.int64))])
    bottleneck = g.dense(flat, code_c * low * low, ae_dims)

    def inter() -> str:
        y = g.dense(bottleneck, ae_dims, code_c * low * low)
        return g.node("Reshape", [y, g.const(np.array([-1, code_c, low, low], np.int64))])

    code = inter()
    if morph:
        other = inter()
        # DeepFaceLab AMP: the first int(C * morph) channels from one code, the rest from the other.
        first = g.node("Gather", [DFM_MORPH, g.const(np.array(0, np.int64))], axis=0)
        split = g.node("Cast", [g.node("Mul", [first, g.const(np.array(float(code_c), np.float32))])], to=7)
        split_1d = g.node("Unsqueeze", [split, g.const(np.array([0], np.int64))])
        axis = g.const(np.array([1], np.int64))
        lead = g.node("Slice", [code, g.const(np.array([0], np.int64)), split_1d, axis])
        rest = g.node("Slice", [other, split_1d, g.const(np.array([code_c], np.int64)), axis])
        code = g.node("Concat", [lead, rest], axis=1)

    def decoder() -> tuple[str, int]:
        y, c, size = code, code_c, low
        while size < s:
            cout = max(c // 2, width)
            y, c, size = g.upscale(y, c, cout), cout, size * 2
        return y, c

    src, src_c = decoder()
    dst, dst_c = decoder()

    def head(features: str, cin: int, cout: int) -> str:
        y = g.conv(features, cin, cout, 1, act=False)
        return g.node("Transpose", [g.node("Sigmoid", [y])], perm=[0, 2, 3, 1])

    outputs = {
        OUT_FACE_MASK: head(dst, dst_c, 1),
        OUT_CELEB_FACE: head(src, src_c, 3),
        OUT_CELEB_MASK: head(src, src_c, 1),
    }
    for name, produced in outputs.items():
        g.nodes.append(helper.make_node("Identity", [produced], [name], name=f"out_{name}"))
    batch: int | str = "N" if dynamic_batch else 1
    inputs = [helper.make_tensor_value_info(DFM_INPUT, TensorProto.FLOAT, [batch, s, s, 3])]
    if morph:
        inputs.append(helper.make_tensor_value_info(DFM_MORPH, TensorProto.FLOAT, [1]))
    outs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, s, s, 3 if name == OUT_CELEB_FACE else 1])
        for name in outputs
    ]
    graph = helper.make_graph(g.nodes, "synthetic_dfm", inputs, outs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="realtime_swap")
    model.ir_version = 8  # opset 17's IR: loadable by every onnxruntime >= 1.13
    helper.set_model_props(model, dict(metadata or {}))
    return model.SerializeToString()
