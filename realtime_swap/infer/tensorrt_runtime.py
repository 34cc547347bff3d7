"""Native TensorRT (>= 10) as a ModelRunner: engines built from ONNX with fp16 and caches, run on CUDA streams.

Written against TensorRT's name-based tensor API (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``). Device memory is torch CUDA tensors, and the engine runs on torch's current CUDA stream,
so its outputs are ordered with whatever the caller does next on that stream.

Engines are cached in ``<cache>/trt-native/``, keyed by the ONNX bytes, TensorRT version, GPU name, precision and
the batch range; the builder's timing cache lives next to them, so a rebuild after a model change is quick.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from realtime_swap.errors import ConfigError, ModelError
from realtime_swap.infer.runner import Dim, ModelRunner, TensorInfo, is_torch_tensor
from realtime_swap.infer.session import Backend, default_cache_dir

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


def engine_cache_path(onnx_path: Path, *, fp16: bool, max_batch: int, cache_dir: Path | None = None) -> Path:
    """Where the engine for this ONNX file, this GPU, this TensorRT and these build settings is cached."""
    trt = _import_tensorrt()
    import torch

    gpu = torch.cuda.get_device_name(torch.cuda.current_device())
    digest = hashlib.sha256(onnx_path.read_bytes())
    digest.update(f"|trt={trt.__version__}|gpu={gpu}|fp16={fp16}|max_batch={max_batch}".encode())
    folder = (cache_dir or default_cache_dir()) / "trt-native"
    return folder / f"{onnx_path.stem}-{digest.hexdigest()[:20]}.engine"


def build_engine(onnx_path: Path, *, fp16: bool = True, max_batch: int = 8, cache_dir: Path | None = None) -> Path:
    """Build (or find in the cache) a TensorRT engine for an ONNX model; return the engine file's path.

    fp16: allow half-precision kernels (I/O stays as the ONNX declares it). max_batch: the largest batch of the
    optimisation profile on a dynamic batch axis (opt = 1: one face is the common live case). Raises ModelError
    naming the ONNX parser's or builder's complaint, ConfigError when TensorRT cannot run here.
    """
    trt = _import_tensorrt()
    engine_path = engine_cache_path(onnx_path, fp16=fp16, max_batch=max_batch, cache_dir=cache_dir)
    if engine_path.is_file():
        log.info("tensorrt: engine cache hit %s", engine_path)
        return engine_path
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    logger = _logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"tensorrt cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    if fp16 and hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = tuple(int(d) for d in tensor.shape)
        if -1 in shape[1:] and len(shape) > 1:
            raise ModelError(
                f"tensorrt: input '{tensor.name}' of {onnx_path} has dynamic dims {shape} beyond the batch axis"
            )
        if shape and shape[0] == -1:
            rest = shape[1:]
            low, high = (1, *rest), ((max_batch if len(shape) > 1 else 1), *rest)
            profile.set_shape(tensor.name, low, low, high)
    config.add_optimization_profile(profile)
    timing_path = engine_path.parent / "timing.cache"
    timing_cache = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(timing_cache, False)
    log.info("tensorrt: building engine for %s (fp16=%s, batch 1..%d); this takes a while", onnx_path, fp16, max_batch)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(f"tensorrt failed to build an engine for {onnx_path} (see TensorRT's log above)")
    tmp = engine_path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(serialized)
    tmp.replace(engine_path)
    with open(timing_path, "wb") as handle:
        handle.write(config.get_timing_cache().serialize())
    return engine_path


def _np_dtype(trt: Any, dtype: Any) -> str:
    return str(np.dtype(trt.nptype(dtype)))


class TensorRTRunner(ModelRunner):
    """A serialized TensorRT engine with one execution context, run on torch's current CUDA stream."""

    def __init__(self, engine_path: str | Path, *, device_id: int = 0) -> None:
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
        self.inputs, self.outputs = tuple(inputs), tuple(outputs)
        first = self.inputs[0]
        if first.shape and first.shape[0] is None:
            self.max_batch = int(self._engine.get_tensor_profile_shape(first.name, 0)[2][0])
        elif first.shape:
            self.fixed_batch = self.max_batch = int(first.shape[0] or 1)
        self._dtypes = {info.name: info.dtype for info in (*self.inputs, *self.outputs)}

    def _torch_dtype(self, name: str) -> Any:
        return getattr(self._torch, self._dtypes[name])

    def _execute(self, feeds: Mapping[str, Any], outputs: Mapping[str, Any]) -> dict[str, Any]:
        """Bind, enqueue on the current stream; returns output name -> tensor (the caller's buffer or scratch)."""
        torch = self._torch
        ctx = self._context
        staged = []  # inputs converted here stay referenced until the work is enqueued
        for name, value in feeds.items():
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
