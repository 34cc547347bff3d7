"""ONNX graphs converted back to torch: a module that runs the graph's nodes as torch ops.

Covers the ops that swap models use (DeepFaceLab/DFM exports through tf2onnx, and torch.onnx exports of the
product's DF/LIAE autoencoders): convolutions, dense layers, activations, pixel shuffles, shape arithmetic.
A graph with any other op is refused at conversion with the list of ops missing.

Shape arithmetic (Shape -> Gather -> Concat -> Reshape, Slice bounds, DFM morph factors) runs on the host as
Python numbers (``HostValue``), so the module traces under ``torch.compile`` without graph breaks; each new
batch size or morph value then specialises a new graph.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from realtime_swap.errors import ModelError
from realtime_swap.infer.host_values import MAX_ELEMENTS, HostValue, broadcast_map, concat


def _onnx_array(tensor: Any) -> np.ndarray:
    from onnx import numpy_helper

    return np.asarray(numpy_helper.to_array(tensor))


class _Ctx:
    """What ops need to know beyond their inputs: the compute dtype for float results and the module's device (a
    tensor an op makes from nothing, ConstantOfShape or Range, goes there, not to the CPU)."""

    def __init__(self, dtype: torch.dtype, device: torch.device) -> None:
        self.dtype = dtype
        self.device = device


def _tensor(value: Any, like: torch.Tensor | None, ctx: _Ctx) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, HostValue):
        dtype = torch.int64 if value.is_int else ctx.dtype
        device = like.device if like is not None else ctx.device
        return torch.tensor(value.values, dtype=dtype, device=device).reshape(value.shape)
    raise ModelError(f"torch backend: unexpected value {type(value).__name__}")


def _ints(value: Any, what: str) -> list[int]:
    if isinstance(value, HostValue):
        return [int(v) for v in value.values]
    if isinstance(value, torch.Tensor):  # a data-dependent shape: only eager mode gets here
        return [int(v) for v in value.reshape(-1).tolist()]
    raise ModelError(f"torch backend: {what} must be integers, got {type(value).__name__}")


def _int_div(x: Any, y: Any) -> Any:
    return int(x / y) if isinstance(x, int) and isinstance(y, int) else x / y


_BINARY: dict[str, tuple[Callable[[Any, Any], Any], Callable[[Any, Any], Any]]] = {
    "Add": (torch.add, lambda x, y: x + y),
    "Sub": (torch.sub, lambda x, y: x - y),
    "Mul": (torch.mul, lambda x, y: x * y),
    "Div": (torch.div, _int_div),
    "Pow": (torch.pow, lambda x, y: x**y),
    "Equal": (torch.eq, lambda x, y: int(x == y)),
    "Less": (torch.lt, lambda x, y: int(x < y)),
    "Greater": (torch.gt, lambda x, y: int(x > y)),
}


def _binary(op: str, ctx: _Ctx, a: Any, b: Any) -> Any:
    tensor_fn, host_fn = _BINARY[op]
    if isinstance(a, HostValue) and isinstance(b, HostValue):
        is_int = (a.is_int and b.is_int) or op in ("Equal", "Less", "Greater")
        return broadcast_map(host_fn, [a, b], is_int)
    like = a if isinstance(a, torch.Tensor) else b
    ta, tb = _tensor(a, like, ctx), _tensor(b, like, ctx)
    if op == "Div" and not ta.is_floating_point() and not tb.is_floating_point():
        return torch.div(ta, tb, rounding_mode="trunc")
    return tensor_fn(ta, tb)


_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "Relu": torch.relu,
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
    "Exp": torch.exp,
    "Log": torch.log,
    "Sqrt": torch.sqrt,
    "Abs": torch.abs,
    "Neg": torch.neg,
    "Erf": torch.erf,
    "Reciprocal": torch.reciprocal,
    "Floor": torch.floor,
    "Ceil": torch.ceil,
    "Not": torch.logical_not,
    "Softplus": F.softplus,
}


def _pads_for(x: torch.Tensor, attrs: dict[str, Any], kernel: Sequence[int], strides: Sequence[int]) -> list[int]:
    """ONNX pads (begin..., end...) for a conv/pool, resolving auto_pad against the input's spatial size."""
    spatial = len(kernel)
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("NOTSET", "VALID"):
        pads = list(attrs.get("pads", [0] * 2 * spatial))
        return pads if auto == "NOTSET" else [0] * 2 * spatial
    dilations = attrs.get("dilations", [1] * spatial)
    begin, end = [], []
    for i in range(spatial):
        size = int(x.shape[2 + i])
        out = math.ceil(size / strides[i])
        total = max((out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begin.append(small if auto == "SAME_UPPER" else large)
        end.append(large if auto == "SAME_UPPER" else small)
    return begin + end


def _torch_pad(pads: Sequence[int]) -> list[int]:
    """ONNX (b1, b2, ..., e1, e2, ...) -> F.pad order (last dim first: b_n, e_n, ..., b_1, e_1)."""
    n = len(pads) // 2
    out: list[int] = []
    for i in reversed(range(n)):
        out += [int(pads[i]), int(pads[i + n])]
    return out


def _conv(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    x, w = args[0], args[1]
    bias = args[2] if len(args) > 2 else None
    spatial = w.dim() - 2
    kernel = list(attrs.get("kernel_shape", w.shape[2:]))
    strides = list(attrs.get("strides", [1] * spatial))
    dilations = list(attrs.get("dilations", [1] * spatial))
    pads = _pads_for(x, attrs, kernel, strides)
    group = int(attrs.get("group", 1))
    if pads[:spatial] == pads[spatial:]:
        padding: Any = pads[:spatial]
    else:
        x = F.pad(x, _torch_pad(pads))
        padding = 0
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[spatial]
    return conv(x, w, bias, strides, padding, dilations, group)


def _conv_transpose(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    x, w = args[0], args[1]
    bias = args[2] if len(args) > 2 else None
    spatial = w.dim() - 2
    if "output_shape" in attrs:
        raise ModelError("torch backend: ConvTranspose with output_shape is not supported")
    auto = attrs.get("auto_pad", b"NOTSET")
    if (auto.decode() if isinstance(auto, bytes) else auto) not in ("NOTSET", "VALID"):
        raise ModelError("torch backend: ConvTranspose with auto_pad SAME is not supported")
    strides = list(attrs.get("strides", [1] * spatial))
    dilations = list(attrs.get("dilations", [1] * spatial))
    out_pad = list(attrs.get("output_padding", [0] * spatial))
    pads = list(attrs.get("pads", [0] * 2 * spatial))
    group = int(attrs.get("group", 1))
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[spatial]
    y = fn(x, w, bias, strides, 0, out_pad, group, dilations)
    index = [slice(None), slice(None)] + [slice(pads[i], y.shape[2 + i] - pads[i + spatial]) for i in range(spatial)]
    return y[tuple(index)]


def _pool(kind: str) -> Callable[[_Ctx, list[Any], dict[str, Any]], Any]:
    def run(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
        x = args[0]
        kernel = list(attrs["kernel_shape"])
        spatial = len(kernel)
        strides = list(attrs.get("strides", [1] * spatial))
        pads = _pads_for(x, attrs, kernel, strides)
        ceil = bool(attrs.get("ceil_mode", 0))
        symmetric = pads[:spatial] == pads[spatial:]
        if kind == "max":
            if not symmetric:
                x = F.pad(x, _torch_pad(pads), value=-math.inf)
            padding = pads[:spatial] if symmetric else 0
            fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[spatial]
            return fn(x, kernel, strides, padding, 1, ceil)
        include = bool(attrs.get("count_include_pad", 0))
        if not symmetric:
            raise ModelError("torch backend: AveragePool with asymmetric pads is not supported")
        fn_avg = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[spatial]
        return fn_avg(x, kernel, strides, pads[:spatial], ceil, include)

    return run


def _gemm(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    a, b = args[0], args[1]
    if attrs.get("transA", 0):
        a = a.t()
    if attrs.get("transB", 0):
        b = b.t()
    y = float(attrs.get("alpha", 1.0)) * (a @ b)
    if len(args) > 2 and args[2] is not None:
        y = y + float(attrs.get("beta", 1.0)) * _tensor(args[2], y, ctx)
    return y


def _shape(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    dims = tuple(int(d) for d in args[0].shape)
    start = int(attrs.get("start", 0))
    end = attrs.get("end")
    return HostValue.vector(dims[start : (int(end) if end is not None else None)])


def _reshape(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    x = args[0]
    shape = _ints(args[1], "Reshape's shape")
    if not attrs.get("allowzero", 0):
        shape = [int(x.shape[i]) if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(shape)  # HostValue and torch.Tensor alike


def _flatten(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    axis = int(attrs.get("axis", 1))
    x = args[0]
    axis = axis % x.dim() if x.dim() else 0
    return x.reshape(math.prod(x.shape[:axis]), -1)


def _transpose(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    x = args[0]
    rank = x.rank if isinstance(x, HostValue) else x.dim()
    perm = attrs.get("perm", list(reversed(range(rank))))
    return x.transpose(perm) if isinstance(x, HostValue) else x.permute(*perm)


def _concat(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    parts = [a for a in args if a is not None]
    if all(isinstance(p, HostValue) for p in parts):
        return concat(parts, int(attrs["axis"]))
    like = next(p for p in parts if isinstance(p, torch.Tensor))
    return torch.cat([_tensor(p, like, ctx) for p in parts], dim=int(attrs["axis"]))


def _slice_params(args: list[Any], attrs: dict[str, Any], rank: int) -> list[tuple[int, int, int, int]]:
    if "starts" in attrs:  # opset < 10
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes = list(attrs.get("axes", range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = _ints(args[1], "Slice starts"), _ints(args[2], "Slice ends")
        axes = _ints(args[3], "Slice axes") if len(args) > 3 and args[3] is not None else list(range(len(starts)))
        steps = _ints(args[4], "Slice steps") if len(args) > 4 and args[4] is not None else [1] * len(starts)
    return [(a % rank, s, e, st) for a, s, e, st in zip(axes, starts, ends, steps, strict=True)]


def _slice(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    x = args[0]
    if isinstance(x, HostValue):
        return x.slice(_slice_params(args, attrs, x.rank))
    index: list[slice] = [slice(None)] * x.dim()
    for axis, start, end, step in _slice_params(args, attrs, x.dim()):
        size = int(x.shape[axis])
        if step < 0:  # torch slicing has no negative steps: pick the indices Python's slicing gives
            picks = list(range(size)[slice(start, end, step)])
            x = x.index_select(axis, torch.tensor(picks, dtype=torch.int64, device=x.device))
            continue
        index[axis] = slice(max(min(start, size), -size), max(min(end, size), -size - 1), step)
    return x[tuple(index)]


def _gather(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    data, idx = args[0], args[1]
    axis = int(attrs.get("axis", 0))
    if isinstance(data, HostValue):
        indices = idx if isinstance(idx, HostValue) else HostValue.vector(_ints(idx, "Gather indices"))
        return data.take(axis, indices)
    axis %= data.dim()
    if isinstance(idx, HostValue) and idx.shape == ():
        return data.select(axis, int(idx.values[0]))
    index = _tensor(idx, data, ctx).to(torch.int64)
    index = torch.where(index < 0, index + data.shape[axis], index)
    picked = data.index_select(axis, index.reshape(-1))
    return picked.reshape(*data.shape[:axis], *index.shape, *data.shape[axis + 1 :])


def _axes(args: list[Any], attrs: dict[str, Any]) -> list[int] | None:
    if "axes" in attrs:
        return [int(a) for a in attrs["axes"]]
    if len(args) > 1 and args[1] is not None:
        return _ints(args[1], "axes")
    return None


def _unsqueeze(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    x = args[0]
    axes = _axes(args, attrs) or []
    if isinstance(x, HostValue):
        shape = list(x.shape)
        for axis in sorted(a % (x.rank + len(axes)) for a in axes):
            shape.insert(axis, 1)
        return x.with_shape(shape)
    rank = x.dim() + len(axes)
    for axis in sorted(a % rank for a in axes):
        x = x.unsqueeze(axis)
    return x


def _squeeze(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    x = args[0]
    axes = _axes(args, attrs)
    if isinstance(x, HostValue):
        drop = {a % x.rank for a in axes} if axes is not None else {i for i, d in enumerate(x.shape) if d == 1}
        return x.with_shape([d for i, d in enumerate(x.shape) if i not in drop])
    if axes is None:
        return x.squeeze()
    for axis in sorted((a % x.dim() for a in axes), reverse=True):
        x = x.squeeze(axis)
    return x


_INT_TYPES = {2: torch.uint8, 3: torch.int8, 5: torch.int16, 6: torch.int32, 7: torch.int64, 9: torch.bool}
_FLOAT_TYPES = {1, 10, 11, 16}


def _cast(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    x, to = args[0], int(attrs["to"])
    if isinstance(x, HostValue):
        return x.cast(to_int=to not in _FLOAT_TYPES)
    if to in _FLOAT_TYPES:
        return x.to(ctx.dtype)  # float casts follow the module's compute precision
    if to not in _INT_TYPES:
        raise ModelError(f"torch backend: Cast to ONNX type {to} is not supported")
    return x.to(_INT_TYPES[to])


def _constant_of_shape(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    shape = _ints(args[0], "ConstantOfShape shape")
    value = _onnx_array(attrs["value"]).reshape(-1) if "value" in attrs else np.zeros(1, np.float32)
    if np.issubdtype(value.dtype, np.integer):
        count = math.prod(shape)
        if count <= MAX_ELEMENTS and len(shape) <= 2:
            return HostValue((int(value[0]),) * count, tuple(shape))
        return torch.full(shape, int(value[0]), dtype=torch.int64, device=ctx.device)
    return torch.full(shape, float(value[0]), dtype=ctx.dtype, device=ctx.device)


def _expand(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    x = _tensor(args[0], None, ctx)
    shape = _ints(args[1], "Expand shape")
    rank = max(x.dim(), len(shape))
    full = [1] * (rank - len(shape)) + shape
    have = [1] * (rank - x.dim()) + list(x.shape)
    target = [max(a, b) if a == 1 or b == 1 else a for a, b in zip(have, full, strict=True)]
    return x.reshape(have).expand(target)


def _split(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    x = args[0]
    axis = int(attrs.get("axis", 0))
    if "split" in attrs:
        sizes = [int(s) for s in attrs["split"]]
    elif len(args) > 1 and args[1] is not None:
        sizes = _ints(args[1], "Split sizes")
    else:
        parts = int(attrs["num_outputs"])
        size = math.ceil(int(x.shape[axis]) / parts)
        sizes = [min(size, int(x.shape[axis]) - i * size) for i in range(parts)]
    return list(torch.split(x, sizes, dim=axis))


def _depth_to_space(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    x, bs = args[0], int(attrs["blocksize"])
    mode = attrs.get("mode", b"DCR")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode == "CRD":
        return F.pixel_shuffle(x, bs)
    b, c, h, w = x.shape
    y = x.reshape(b, bs, bs, c // (bs * bs), h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(b, c // (bs * bs), h * bs, w * bs)


def _space_to_depth(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    x, bs = args[0], int(attrs["blocksize"])
    b, c, h, w = x.shape
    y = x.reshape(b, c, h // bs, bs, w // bs, bs).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(b, c * bs * bs, h // bs, w // bs)


def _text(value: Any, default: str) -> str:
    if value is None:
        return default
    return value.decode() if isinstance(value, bytes) else str(value)


def _resize(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    x = args[0]
    mode = _text(attrs.get("mode"), "nearest")
    transform = _text(attrs.get("coordinate_transformation_mode"), "half_pixel")
    if len(args) == 2:  # opset 10: (X, scales)
        scales_arg, sizes_arg = args[1], None
    else:
        scales_arg = args[2] if len(args) > 2 else None
        sizes_arg = args[3] if len(args) > 3 else None
    if sizes_arg is not None:
        size = _ints(sizes_arg, "Resize sizes")[2:]
        kwargs: dict[str, Any] = {"size": size}
    else:
        scales = [float(s) for s in (scales_arg.values if isinstance(scales_arg, HostValue) else scales_arg.tolist())]
        kwargs = {"scale_factor": scales[2:]}
    if mode == "nearest":
        nearest = _text(attrs.get("nearest_mode"), "round_prefer_floor")
        if transform == "asymmetric" and nearest == "floor":
            return F.interpolate(x, mode="nearest", **kwargs)
        if transform in ("half_pixel", "pytorch_half_pixel") and nearest in ("round_prefer_floor", "floor"):
            return F.interpolate(x, mode="nearest-exact", **kwargs)
    elif mode == "linear":
        interp = {3: "linear", 4: "bilinear", 5: "trilinear"}[x.dim()]
        if transform in ("half_pixel", "pytorch_half_pixel"):
            return F.interpolate(x, mode=interp, align_corners=False, **kwargs)
        if transform == "align_corners":
            return F.interpolate(x, mode=interp, align_corners=True, **kwargs)
    raise ModelError(f"torch backend: Resize mode={mode} coordinate_transformation_mode={transform} unsupported")


def _pad(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    x = args[0]
    mode = _text(attrs.get("mode"), "constant")
    if "pads" in attrs:
        pads, value = list(attrs["pads"]), float(attrs.get("value", 0.0))
    else:
        pads = _ints(args[1], "Pad pads")
        raw = args[2] if len(args) > 2 else None
        value = float(raw.values[0] if isinstance(raw, HostValue) else raw.item()) if raw is not None else 0.0
        if len(args) > 3 and args[3] is not None:
            axes = [a % x.dim() for a in _ints(args[3], "Pad axes")]
            full = [0] * 2 * x.dim()
            for i, a in enumerate(axes):
                full[a], full[a + x.dim()] = pads[i], pads[i + len(axes)]
            pads = full
    torch_mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}[mode]
    torch_pads = _torch_pad(pads)
    while len(torch_pads) > 2 and torch_pads[-1] == 0 and torch_pads[-2] == 0:
        torch_pads = torch_pads[:-2]  # F.pad's reflect/replicate take only the trailing dims
    if torch_mode != "constant":
        if len(torch_pads) > 2 * (x.dim() - 2):
            raise ModelError("torch backend: reflect/edge Pad on batch or channel axes is not supported")
        return F.pad(x, torch_pads, mode=torch_mode)
    return F.pad(x, torch_pads, value=value)


def _reduce(kind: str) -> Callable[[_Ctx, list[Any], dict[str, Any]], Any]:
    def run(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
        x = args[0]
        axes = _axes(args, attrs)
        keep = bool(attrs.get("keepdims", 1))
        if axes is None:
            if attrs.get("noop_with_empty_axes", 0):
                return x
            axes = list(range(x.dim()))
        if kind == "max":
            return torch.amax(x, dim=axes, keepdim=keep)
        if kind == "min":
            return torch.amin(x, dim=axes, keepdim=keep)
        return getattr(torch, kind)(x, dim=axes, keepdim=keep)

    return run


def _batch_norm(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    x, scale, bias, mean, var = args[:5]
    return F.batch_norm(x, mean, var, scale, bias, False, 0.0, float(attrs.get("epsilon", 1e-5)))


def _instance_norm(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    x, scale, bias = args[:3]
    return F.instance_norm(x, weight=scale, bias=bias, eps=float(attrs.get("epsilon", 1e-5)))


def _layer_norm(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    x, scale = args[0], args[1]
    bias = args[2] if len(args) > 2 else None
    axis = int(attrs.get("axis", -1)) % x.dim()
    return F.layer_norm(x, x.shape[axis:], scale, bias, float(attrs.get("epsilon", 1e-5)))


def _clip(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    low: Any = attrs.get("min")
    high: Any = attrs.get("max")
    if len(args) > 1 and args[1] is not None:
        low = args[1].values[0] if isinstance(args[1], HostValue) else args[1]
    if len(args) > 2 and args[2] is not None:
        high = args[2].values[0] if isinstance(args[2], HostValue) else args[2]
    return torch.clamp(args[0], low, high)


def _where(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    cond, a, b = args
    if isinstance(cond, HostValue) and isinstance(a, HostValue) and isinstance(b, HostValue):
        return broadcast_map(lambda c, x, y: x if c else y, [cond, a, b], a.is_int and b.is_int)
    like = next(v for v in args if isinstance(v, torch.Tensor))
    return torch.where(_tensor(cond, like, ctx).bool(), _tensor(a, like, ctx), _tensor(b, like, ctx))


def _variadic(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[..., Any]:
    def run(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
        like = next(v for v in args if isinstance(v, torch.Tensor))
        out = _tensor(args[0], like, ctx)
        for other in args[1:]:
            out = fn(out, _tensor(other, like, ctx))
        return out

    return run


def _range(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    start, limit, delta = (a.values[0] if isinstance(a, HostValue) else a.item() for a in args)
    if all(isinstance(a, HostValue) and a.is_int for a in args):
        return HostValue.vector(range(int(start), int(limit), int(delta)))
    return torch.arange(start, limit, delta, dtype=ctx.dtype, device=ctx.device)


def _tile(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    return args[0].repeat(*_ints(args[1], "Tile repeats"))


def _softmax(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    return torch.softmax(args[0], dim=int(attrs.get("axis", -1)))


def _identity(ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    return args[0]


def _binary_op(op: str, ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    return _binary(op, ctx, args[0], args[1])


def _unary_op(fn: Callable[[torch.Tensor], torch.Tensor], ctx: _Ctx, args: list[Any], attrs: dict[str, Any]) -> Any:
    return fn(args[0])


def _act(fn: Callable[[torch.Tensor, dict[str, Any]], torch.Tensor]) -> Callable[..., Any]:
    return lambda ctx, args, attrs: fn(args[0], attrs)


_OPS: dict[str, Callable[[_Ctx, list[Any], dict[str, Any]], Any]] = {
    **{op: functools.partial(_binary_op, op) for op in _BINARY},
    **{op: functools.partial(_unary_op, fn) for op, fn in _UNARY.items()},
    "LeakyRelu": _act(lambda x, a: F.leaky_relu(x, float(a.get("alpha", 0.01)))),
    "Elu": _act(lambda x, a: F.elu(x, float(a.get("alpha", 1.0)))),
    "HardSigmoid": _act(lambda x, a: torch.clamp(float(a.get("alpha", 0.2)) * x + float(a.get("beta", 0.5)), 0, 1)),
    "Gelu": _act(lambda x, a: F.gelu(x, approximate=_text(a.get("approximate"), "none"))),
    "PRelu": lambda ctx, args, attrs: torch.where(args[0] >= 0, args[0], args[0] * args[1]),
    "Softmax": _softmax,
    "Identity": _identity,
    "Dropout": _identity,
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "GlobalAveragePool": lambda ctx, args, attrs: args[0].mean(dim=tuple(range(2, args[0].dim())), keepdim=True),
    "BatchNormalization": _batch_norm,
    "InstanceNormalization": _instance_norm,
    "LayerNormalization": _layer_norm,
    "Gemm": _gemm,
    "MatMul": lambda ctx, args, attrs: torch.matmul(args[0], args[1]),
    "Shape": _shape,
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Transpose": _transpose,
    "Concat": _concat,
    "Slice": _slice,
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Cast": _cast,
    "ConstantOfShape": _constant_of_shape,
    "Expand": _expand,
    "Split": _split,
    "DepthToSpace": _depth_to_space,
    "SpaceToDepth": _space_to_depth,
    "Resize": _resize,
    "Upsample": _resize,
    "Pad": _pad,
    "ReduceMean": _reduce("mean"),
    "ReduceSum": _reduce("sum"),
    "ReduceMax": _reduce("max"),
    "ReduceMin": _reduce("min"),
    "Clip": _clip,
    "Where": _where,
    "Max": _variadic(torch.maximum),
    "Min": _variadic(torch.minimum),
    "Sum": _variadic(torch.add),
    "Range": _range,
    "Tile": _tile,
}


@dataclass(frozen=True, slots=True)
class _Node:
    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any]


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import AttributeProto, helper

    attrs: dict[str, Any] = {}
    for attr in node.attribute:
        if attr.type == AttributeProto.TENSOR:
            attrs[attr.name] = attr.t
        else:
            attrs[attr.name] = helper.get_attribute_value(attr)
    return attrs


_HOST_PARAMS = {"Range": (0, 1, 2), "Resize": (1, 2), "Pad": (2,)}
"""Inputs an op reads as numbers (Range's bounds, Resize's scales, Pad's fill value): a float constant's host twin
is passed there, not its device tensor, whose read would synchronize the device (and fail a CUDA graph capture)."""


class OnnxModule(torch.nn.Module):
    """An ONNX graph as a torch module: ``forward(*inputs)`` in the graph's input order returns its outputs.

    Float constants become buffers (so ``.to(device, dtype)`` moves and casts them); small int constants stay
    on the host. Raises ModelError listing every op the converter lacks.
    """

    def __init__(self, model: Any, label: str = "<model>") -> None:
        super().__init__()
        graph = model.graph
        nodes = [
            _Node(n.op_type, n.name, tuple(n.input), tuple(n.output), _attributes(n))
            for n in graph.node
            if n.domain in ("", "ai.onnx")
        ]
        foreign = sorted({f"{n.domain}.{n.op_type}" for n in graph.node if n.domain not in ("", "ai.onnx")})
        missing = sorted({n.op for n in nodes if n.op not in _OPS and n.op != "Constant"})
        if foreign or missing:
            raise ModelError(
                f"model {label}: the torch backend cannot convert ops {', '.join(foreign + missing)} "
                "(use an ONNX Runtime or TensorRT backend)"
            )
        self._host: dict[str, HostValue] = {}
        self._twins: dict[str, HostValue] = {}
        self._buffer_names: dict[str, str] = {}
        initializers = {t.name: _onnx_array(t) for t in graph.initializer}
        constants: dict[str, np.ndarray] = {}
        for n in nodes:
            if n.op == "Constant" and "value" in n.attrs:
                constants[n.outputs[0]] = _onnx_array(n.attrs["value"])
            elif n.op == "Constant":  # value_float(s) / value_int(s)
                key, value = next(iter(n.attrs.items()))
                constants[n.outputs[0]] = np.asarray(value, dtype=np.float32 if "float" in key else np.int64)
        for index, (name, array) in enumerate({**initializers, **constants}.items()):
            small = array.ndim <= 2 and array.size <= MAX_ELEMENTS
            if small and (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
                self._host[name] = HostValue.from_array(array)
                continue
            if small:  # float: a tensor for data ops, and a host twin for arithmetic with host values
                self._twins[name] = HostValue.from_array(array)
            buffer = f"const_{index}"
            tensor = torch.from_numpy(array.copy())
            if tensor.is_floating_point():
                tensor = tensor.float()
            self.register_buffer(buffer, tensor, persistent=False)
            self._buffer_names[name] = buffer
        self._nodes = [n for n in nodes if n.op != "Constant"]
        self._inputs = [i.name for i in graph.input if i.name not in initializers]
        self._outputs = [o.name for o in graph.output]
        # Follows .half()/.to(dtype): float results take the precision the module was cast to.
        self.register_buffer("dtype_probe", torch.zeros(()), persistent=False)

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def forward(self, *inputs: Any) -> tuple[Any, ...]:
        probe = self.dtype_probe
        assert isinstance(probe, torch.Tensor)
        ctx = _Ctx(probe.dtype, probe.device)
        env: dict[str, Any] = dict(self._host)
        for name, buffer in self._buffer_names.items():
            env[name] = getattr(self, buffer)
        for name, value in zip(self._inputs, inputs, strict=True):
            env[name] = value
        for node in self._nodes:
            args = [env[name] if name else None for name in node.inputs]
            if any(isinstance(a, HostValue) for a in args):  # keep e.g. morph * channels on the host
                args = [self._twins.get(name, a) for name, a in zip(node.inputs, args, strict=True)]
            elif node.op in _HOST_PARAMS:
                host = _HOST_PARAMS[node.op]
                names = node.inputs
                args = [self._twins.get(names[i], a) if i in host else a for i, a in enumerate(args)]
            try:
                result = _OPS[node.op](ctx, args, node.attrs)
            except ModelError:
                raise
            except Exception as exc:
                raise ModelError(f"torch backend: node '{node.name}' ({node.op}) failed: {exc}") from exc
            if isinstance(result, list):
                env.update(zip(node.outputs, result, strict=False))
            else:
                env[node.outputs[0]] = result
        return tuple(env[name] for name in self._outputs)


def host_scalar(value: float) -> HostValue:
    """A per-call float input (e.g. DFM ``morph_value:0``, shape (1,)) passed to ``OnnxModule`` on the host."""
    return HostValue.vector([float(value)], is_int=False)
