"""Small arrays evaluated on the host while an ONNX graph runs as torch: shapes, indices, pads, morph factors.

ONNX graphs compute their reshape targets, slice bounds and pads with tensor ops (Shape -> Gather -> Concat,
Reshape/Transpose of a pads constant, ...). Doing that arithmetic on Python numbers keeps it out of the torch
graph: eager mode avoids tiny kernel launches, and ``torch.compile`` sees constants instead of data-dependent
values (no graph breaks). Values are stored flat in row-major order with their shape, like a numpy array.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_ELEMENTS = 64
"""Constants up to this many elements (rank <= 2) are kept on the host."""


@dataclass(frozen=True, slots=True)
class HostValue:
    """A small int (``is_int``) or float array known on the host: ``values`` flat, row-major, of ``shape``."""

    values: tuple[Any, ...]
    shape: tuple[int, ...]
    is_int: bool = True

    @staticmethod
    def vector(values: Sequence[Any], is_int: bool = True) -> HostValue:
        return HostValue(tuple(values), (len(values),), is_int)

    @staticmethod
    def from_array(array: np.ndarray) -> HostValue:
        is_int = bool(np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_)
        values = tuple(int(v) if is_int else float(v) for v in array.reshape(-1))
        return HostValue(values, tuple(int(d) for d in array.shape), is_int)

    @property
    def rank(self) -> int:
        return len(self.shape)

    def _flat_index(self, index: Sequence[int]) -> int:
        flat = 0
        for i, dim in zip(index, self.shape, strict=True):
            flat = flat * dim + i
        return flat

    def select(self, per_axis: Sequence[Sequence[int]]) -> HostValue:
        """The sub-array at the cartesian product of per-axis index lists (indices already non-negative)."""
        values = tuple(self.values[self._flat_index(ix)] for ix in itertools.product(*per_axis))
        return HostValue(values, tuple(len(p) for p in per_axis), self.is_int)

    def reshape(self, shape: Sequence[int]) -> HostValue:
        """Reshape with -1 inferred (0 already resolved by the caller)."""
        dims = list(shape)
        if -1 in dims:
            known = math.prod(d for d in dims if d != -1)
            dims[dims.index(-1)] = len(self.values) // known if known else 0
        return HostValue(self.values, tuple(dims), self.is_int)

    def transpose(self, perm: Sequence[int]) -> HostValue:
        out_shape = tuple(self.shape[p] for p in perm)
        values = []
        for out_index in itertools.product(*(range(d) for d in out_shape)):
            index = [0] * self.rank
            for k, p in enumerate(perm):
                index[p] = out_index[k]
            values.append(self.values[self._flat_index(index)])
        return HostValue(tuple(values), out_shape, self.is_int)

    def take(self, axis: int, indices: HostValue) -> HostValue:
        """ONNX Gather: out shape = shape[:axis] + indices.shape + shape[axis+1:]."""
        axis %= self.rank
        picks = [i % self.shape[axis] for i in indices.values]
        per_axis = [list(range(d)) for d in self.shape]
        per_axis[axis] = picks
        out = self.select(per_axis)
        return out.reshape((*self.shape[:axis], *indices.shape, *self.shape[axis + 1 :]))

    def slice(self, params: Sequence[tuple[int, int, int, int]]) -> HostValue:
        """ONNX Slice: params are (axis, start, end, step); Python slicing clamps bounds as ONNX does."""
        per_axis = [list(range(d)) for d in self.shape]
        for axis, start, end, step in params:
            per_axis[axis] = list(range(self.shape[axis])[slice(start, end, step)])
        return self.select(per_axis)

    def with_shape(self, shape: Sequence[int]) -> HostValue:
        return HostValue(self.values, tuple(shape), self.is_int)

    def cast(self, to_int: bool) -> HostValue:
        """int() truncates toward zero, as ONNX Cast does."""
        values = tuple(int(v) if to_int else float(v) for v in self.values)
        return HostValue(values, self.shape, to_int)

    def moved_to_front(self, axis: int) -> HostValue:
        perm = [axis, *(i for i in range(self.rank) if i != axis)]
        return self.transpose(perm)


def concat(parts: Sequence[HostValue], axis: int) -> HostValue:
    """ONNX Concat of host values along ``axis``."""
    rank = parts[0].rank
    axis %= max(rank, 1)
    is_int = all(p.is_int for p in parts)
    if axis == 0:
        values = tuple(v for p in parts for v in p.values)
        return HostValue(values, (sum(p.shape[0] for p in parts), *parts[0].shape[1:]), is_int)
    front = [p.moved_to_front(axis) for p in parts]
    joined = concat(front, 0)
    back = [*range(1, axis + 1), 0, *range(axis + 1, rank)]
    return HostValue(joined.values, joined.shape, is_int).transpose(back)


def broadcast_map(fn: Callable[..., Any], operands: Sequence[HostValue], is_int: bool) -> HostValue:
    """Elementwise ``fn`` over operands with numpy broadcasting."""
    rank = max(o.rank for o in operands)
    shapes = [(1,) * (rank - o.rank) + o.shape for o in operands]
    out_shape = tuple(max(dims) for dims in zip(*shapes, strict=True)) if rank else ()
    values = []
    for index in itertools.product(*(range(d) for d in out_shape)):
        args = []
        for operand, shape in zip(operands, shapes, strict=True):
            flat = 0
            for i, dim in zip(index, shape, strict=True):
                flat = flat * dim + (i if dim != 1 else 0)
            args.append(operand.values[flat])
        values.append(fn(*args))
    return HostValue(tuple(values), out_shape, is_int)
