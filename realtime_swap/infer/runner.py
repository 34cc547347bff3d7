"""The one interface every inference engine implements, whatever runs the graph (ONNX Runtime, TensorRT, torch).

A runner executes one model with named inputs and outputs. Two paths:

* host: ``run(feeds, fetch)`` takes numpy arrays and returns numpy arrays;
* device: ``run_into(feeds, outputs, shapes)`` takes device arrays (torch CUDA tensors, or ONNX Runtime
  ``OrtValue`` on CUDA where the runner says so) and writes into caller-allocated device buffers, so data can
  stay on the GPU between stages.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from realtime_swap.errors import ConfigError
from realtime_swap.infer.session import Backend

Dim = int | str | None
"""A tensor dimension: an int when fixed, a name (``"batch"``) or None when dynamic."""


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """Name, shape and element type of one model input or output, as the model file declares them.

    dtype: numpy-style name ("float32", "float16", "int64", ...).
    """

    name: str
    shape: tuple[Dim, ...]
    dtype: str

    def shape_text(self) -> str:
        """The shape as people write it: ``(N,224,224,3)``, with ``N``/names/``?`` for dynamic dims."""
        parts = [str(d) if isinstance(d, int) else (d or "?") for d in self.shape]
        return "(" + ",".join(parts) + ")"


def is_torch_tensor(value: object) -> bool:
    """True for a torch.Tensor, without importing torch where nobody else did."""
    return type(value).__module__.startswith("torch") and hasattr(value, "data_ptr") and hasattr(value, "dim")


def is_ort_value(value: object) -> bool:
    """True for an onnxruntime.OrtValue."""
    return type(value).__name__ == "OrtValue" and hasattr(value, "data_ptr") and hasattr(value, "device_name")


class ModelRunner(abc.ABC):
    """One loaded model on one execution engine.

    backend: the engine actually in use; device: "cpu" or "cuda:<id>"; inputs/outputs: the model's I/O as the
    engine sees it; max_batch: the largest batch one call accepts (None: unbounded); fixed_batch: the only
    batch size the model accepts (None when the batch axis is dynamic).
    """

    backend: Backend
    device: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    max_batch: int | None = None
    fixed_batch: int | None = None
    accepts_ort_values: bool = False

    @abc.abstractmethod
    def run(self, feeds: Mapping[str, np.ndarray], fetch: Sequence[str]) -> list[np.ndarray]:
        """Run on host arrays; return the fetched outputs in ``fetch`` order (float outputs as float32)."""

    def run_into(
        self,
        feeds: Mapping[str, Any],
        outputs: Mapping[str, Any],
        shapes: Mapping[str, tuple[int, ...]],
    ) -> None:
        """Run on device arrays, writing each fetched output into the caller's buffer.

        feeds: input name -> device array (torch CUDA tensor; OrtValue where ``accepts_ort_values``), or a
        host numpy array for small scalar inputs (``morph_value:0``).
        outputs: output name -> contiguous float32 device buffer holding as many elements as the output.
        shapes: output name -> the output's shape as the model produces it (the buffer may be a view of it
        with another shape, e.g. (N,S,S) for a (N,S,S,1) mask).
        """
        raise ConfigError(f"backend '{self.backend.value}' keeps its tensors on the host; pass numpy arrays")

    def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Release the session/engine and any device memory it holds."""


class Precision(str, enum.Enum):
    """Arithmetic precision a backend computes in (I/O stays float32)."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
