"""Native TensorRT (>= 10) as a ModelRunner: engines built from ONNX with fp16 and caches, run on CUDA streams.

Written against TensorRT's name-based tensor API (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``). Device memory is torch CUDA tensors, and the engine runs on torch's current CUDA stream,
so its outputs are ordered with whatever the caller does next on that stream.

Engines come from the one builder, ``realtime_swap.infer.tensorrt_build`` (its cache is the one ``export --format
tensorrt`` fills). Inputs the builder folded into the engine as constants (a morph DFM's ``morph_value:0``) are
still listed in ``inputs`` and may be fed; a value other than the one built in is a ConfigError.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from realtime_swap.errors import ConfigError, ModelError
from realtime_swap.infer.runner import Dim, ModelRunner, TensorInfo, is_torch_tensor
from realtime_swap.infer.session import Backend

log = logging.getLogger(__name__)

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
"""File endings taken as serialized TensorRT engines rather than ONNX."""


def tensorrt_unavailable_reason() -> str | None:
    """Why native TensorRT cannot run here (missing package, old version, no CUDA device), or None if it can."""
    try:
        import tensorrt as trt
    except ImportError:
        return "python package 'tensorrt' is not installed (pip install 'realtime_swap[trt]')"
    except Exception as exc:  # a broken install raises OSError/RuntimeError from its shared libraries
        return f"'import tensorrt' failed: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    major = int(str(getattr(trt, "__version__", "0")).split(".")[0] or 0)
    if major < 10:
        return f"tensorrt {trt.__version__} is too old (the runner uses the TensorRT 10 tensor API)"
    try:
        import torch
    except ImportError:
        return "the TensorRT runner keeps its buffers in torch CUDA tensors, and torch is not installed"
    if not torch.cuda.is_available():
        return f"no CUDA device visible to torch {torch.__version__}"
    return None


def _import_tensorrt() -> Any:
    reason = tensorrt_unavailable_reason()
    if reason is not None:
        raise ConfigError(f"backend 'tensorrt': {reason}")
    import tensorrt as trt

    return trt


def _logger(trt: Any) -> Any:
    return trt.Logger(trt.Logger.WARNING)


def _np_dtype(trt: Any, dtype: Any) -> str:
    return str(np.dtype(trt.nptype(dtype)))


class TensorRTRunner(ModelRunner):
    """A serialized TensorRT engine with one execution context, run on torch's current CUDA stream."""

    def __init__(
        self, engine_path: str | Path, *, device_id: int = 0, folded: Mapping[str, float] | None = None
    ) -> None:
        from realtime_swap.infer.tensorrt_build import read_folded

        trt = _import_tensorrt()
        import torch

        self._torch = torch
        self._trt = trt
        self.backend = Backend.TENSORRT
        self._path = Path(engine_path)
        if not self._path.is_file():
            raise ModelError(f"TensorRT engine not found: {self._path}")
        torch.cuda.set_device(device_id)
        self._device = torch.device("cuda", device_id)
        self.device = f"cuda:{device_id}"
        self._runtime = trt.Runtime(_logger(trt))
        self._engine = self._runtime.deserialize_cuda_engine(self._path.read_bytes())
        if self._engine is None:
            raise ModelError(
                f"cannot deserialize TensorRT engine {self._path} (built by another TensorRT version or GPU?)"
            )
        self._context = self._engine.create_execution_context()
        inputs: list[TensorInfo] = []
        outputs: list[TensorInfo] = []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            dims: tuple[Dim, ...] = tuple(None if d < 0 else int(d) for d in self._engine.get_tensor_shape(name))
            info = TensorInfo(name, dims, _np_dtype(trt, self._engine.get_tensor_dtype(name)))
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (inputs if is_input else outputs).append(info)
        self._folded = dict(read_folded(self._path) if folded is None else folded)
        inputs += [TensorInfo(name, (1,), "float32") for name in self._folded]
        self.inputs, self.outputs = tuple(inputs), tuple(outputs)
        first = self.inputs[0]
        if first.shape and first.shape[0] is None:
            self.max_batch = int(self._engine.get_tensor_profile_shape(first.name, 0)[2][0])
        elif first.shape:
            self.fixed_batch = self.max_batch = int(first.shape[0] or 1)
        self._dtypes = {info.name: info.dtype for info in (*self.inputs, *self.outputs)}

    def _torch_dtype(self, name: str) -> Any:
        return getattr(self._torch, self._dtypes[name])

    def _check_folded(self, name: str, value: Any) -> None:
        got = float(np.asarray(value.cpu() if is_torch_tensor(value) else value, np.float32).reshape(-1)[0])
        if got != np.float32(self._folded[name]):
            raise ConfigError(
                f"tensorrt engine {self._path.name} was built for {name} = {self._folded[name]:g}, fed {got:g}: "
                "a TensorRT engine takes no float shape input, so each morph factor is its own engine (--morph)"
            )

    def _execute(self, feeds: Mapping[str, Any], outputs: Mapping[str, Any]) -> dict[str, Any]:
        """Bind, enqueue on the current stream; returns output name -> tensor (the caller's buffer or scratch)."""
        torch = self._torch
        ctx = self._context
        staged = []  # inputs converted here stay referenced until the work is enqueued
        for name, value in feeds.items():
            if name in self._folded:
                self._check_folded(name, value)
                continue
            tensor = value if is_torch_tensor(value) else torch.from_numpy(np.ascontiguousarray(value))
            # Shape tensors (e.g. a morph factor that sizes a slice) are read by TensorRT from host memory.
            on_host = self._engine.get_tensor_location(name) == self._trt.TensorLocation.HOST
            device = torch.device("cpu") if on_host else self._device
            tensor = tensor.to(device, self._torch_dtype(name), non_blocking=not on_host).contiguous()
            staged.append(tensor)
            if not ctx.set_input_shape(name, tuple(tensor.shape)):
                shape = tuple(tensor.shape)
                raise ConfigError(f"tensorrt engine {self._path.name}: input '{name}' rejects shape {shape}")
            ctx.set_tensor_address(name, tensor.data_ptr())
        results: dict[str, Any] = {}
        for info in self.outputs:
            shape = tuple(int(d) for d in ctx.get_tensor_shape(info.name))
            buffer: Any = outputs.get(info.name)
            direct = (
                buffer is not None
                and buffer.dtype == self._torch_dtype(info.name)
                and buffer.is_contiguous()
                and buffer.numel() == int(np.prod(shape))
            )
            dtype = self._torch_dtype(info.name)
            target: Any = buffer if direct else torch.empty(shape, dtype=dtype, device=self._device)
            ctx.set_tensor_address(info.name, target.data_ptr())
            results[info.name] = target
        stream = torch.cuda.current_stream(self._device)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise ModelError(f"tensorrt engine {self._path.name}: execute_async_v3 failed (see TensorRT's log)")
        for name, buffer in outputs.items():
            if results[name] is not buffer:
                buffer.view(-1).copy_(results[name].reshape(-1))
                results[name] = buffer
        return results

    def run(self, feeds: Mapping[str, np.ndarray], fetch: Sequence[str]) -> list[np.ndarray]:
        results = self._execute(feeds, {})
        host = [results[name].float().cpu().numpy() for name in fetch]  # .cpu() waits for the stream
        return host

    def run_into(
        self,
        feeds: Mapping[str, Any],
        outputs: Mapping[str, Any],
        shapes: Mapping[str, tuple[int, ...]],
    ) -> None:
        for name, buffer in outputs.items():
            if not is_torch_tensor(buffer) or not buffer.is_cuda:
                raise ConfigError(f"backend 'tensorrt': output '{name}' needs a torch CUDA tensor buffer")
        self._execute(feeds, outputs)

    def close(self) -> None:
        self._context = None
        self._engine = None
