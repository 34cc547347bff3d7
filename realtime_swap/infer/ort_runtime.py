"""ONNX Runtime as a ModelRunner: CPU, CUDA EP and TensorRT EP, with IO binding and optional CUDA graphs.

Sessions come from ``realtime_swap.infer.session`` (one place decides providers, threads and TensorRT caches).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from realtime_swap.errors import ConfigError
from realtime_swap.infer.runner import Dim, ModelRunner, TensorInfo, is_ort_value, is_torch_tensor
from realtime_swap.infer.session import ORT_PROVIDER, Backend, create_ort_session

log = logging.getLogger(__name__)

_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
}


def _dim(value: object) -> Dim:
    if isinstance(value, int) and value >= 0:
        return value
    return value if isinstance(value, str) and value else None


def _infos(args: Sequence[Any]) -> tuple[TensorInfo, ...]:
    return tuple(TensorInfo(a.name, tuple(_dim(d) for d in a.shape), _ORT_DTYPES.get(a.type, a.type)) for a in args)


class _CudaArray:
    """Exposes a raw CUDA pointer to torch through ``__cuda_array_interface__`` (zero-copy view)."""

    def __init__(self, ptr: int, shape: tuple[int, ...]) -> None:
        self.__cuda_array_interface__ = {
            "shape": shape,
            "typestr": "<f4",
            "data": (ptr, False),
            "version": 3,
        }


def _device_ptr(value: Any) -> int:
    return int(value.data_ptr())


def _batch_of(value: Any) -> int:
    return int(value.shape()[0]) if is_ort_value(value) else int(value.shape[0])


@dataclass
class _GraphSlot:
    """Fixed device buffers for one batch size: CUDA graphs replay on the same addresses every run."""

    binding: Any
    run_options: Any
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)


class OrtRunner(ModelRunner):
    """A model in an ONNX Runtime session on the CPU, CUDA or TensorRT execution provider.

    cuda_graph: capture one CUDA graph per batch size and replay it (ort-cuda / ort-trt only; needs every node
    on the GPU and fixed output shapes). threads: CPU intra-op threads (default: the usable core count).
    cache_dir: TensorRT EP engine and timing caches (default: ``default_cache_dir() / "trt"``).
    """

    def __init__(
        self,
        path: str | Path,
        backend: Backend,
        *,
        cuda_graph: bool = False,
        threads: int | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        if backend not in ORT_PROVIDER:
            raise ConfigError(f"backend '{backend.value}' is not an ONNX Runtime backend")
        if cuda_graph and backend is Backend.ORT_CPU:
            raise ConfigError("CUDA graphs need backend ort-cuda or ort-trt, not ort-cpu")
        self.backend = backend
        self._path = Path(path)
        self._session = create_ort_session(
            self._path, backend, intra_op_threads=threads, cuda_graph=cuda_graph, cache_dir=cache_dir
        )
        wanted = ORT_PROVIDER[backend]
        used = self._session.get_providers()
        if not used or used[0] != wanted:
            raise ConfigError(
                f"backend '{backend.value}': onnxruntime could not start {wanted} for {self._path} and fell "
                f"back to {used[0] if used else 'nothing'} (CUDA/TensorRT libraries missing or no GPU?)"
            )
        self.device = "cpu" if backend is Backend.ORT_CPU else "cuda:0"
        self.inputs = _infos(self._session.get_inputs())
        self.outputs = _infos(self._session.get_outputs())
        self.accepts_ort_values = backend is not Backend.ORT_CPU
        first = self.inputs[0].shape[0] if self.inputs and self.inputs[0].shape else None
        self.fixed_batch = first if isinstance(first, int) else None
        self._cuda_graph = cuda_graph
        self._graphs: dict[int, _GraphSlot] = {}
        self._dtypes = {info.name: info.dtype for info in (*self.inputs, *self.outputs)}

    def run(self, feeds: Mapping[str, np.ndarray], fetch: Sequence[str]) -> list[np.ndarray]:
        cast = {name: np.ascontiguousarray(value, dtype=self._dtypes[name]) for name, value in feeds.items()}
        if self._cuda_graph:
            slot = self._graph_slot(cast)
            for name, value in cast.items():
                slot.inputs[name].update_inplace(value)
            self._session.run_with_iobinding(slot.binding, slot.run_options)
            results = [slot.outputs[name].numpy() for name in fetch]
        else:
            results = self._session.run(list(fetch), cast)
        return [np.asarray(r, dtype=np.float32) if r.dtype == np.float16 else r for r in results]

    def run_into(
        self,
        feeds: Mapping[str, Any],
        outputs: Mapping[str, Any],
        shapes: Mapping[str, tuple[int, ...]],
    ) -> None:
        if self.backend is Backend.ORT_CPU:
            raise ConfigError("backend 'ort-cpu' keeps tensors on the host; pass numpy arrays")
        device_names = [n for n, v in feeds.items() if not isinstance(v, np.ndarray)] + list(outputs)
        for name in device_names:
            if self._dtypes[name] != "float32":
                raise ConfigError(
                    f"model {self._path}: '{name}' is {self._dtypes[name]}; the device path needs float32 I/O "
                    "(pass numpy arrays to use the host path)"
                )
        uses_torch = any(is_torch_tensor(v) for v in (*feeds.values(), *outputs.values()))
        if uses_torch:
            import torch

            # ONNX Runtime runs on its own CUDA stream: torch's pending writes to the inputs must land first.
            torch.cuda.current_stream().synchronize()
        if self._cuda_graph:
            self._run_graph_into(feeds, outputs, shapes)
            return
        binding = self._session.io_binding()
        for name, value in feeds.items():
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(name, np.ascontiguousarray(value, dtype=self._dtypes[name]))
            elif is_ort_value(value):
                binding.bind_ortvalue_input(name, value)
            elif is_torch_tensor(value):
                if not value.is_cuda or not value.is_contiguous():
                    raise ConfigError(f"input '{name}': expected a contiguous CUDA tensor, got {value.device}")
                binding.bind_input(
                    name, "cuda", value.device.index or 0, np.float32, tuple(value.shape), _device_ptr(value)
                )
            else:
                raise ConfigError(f"input '{name}': unsupported array type {type(value).__name__}")
        for name, buffer in outputs.items():
            binding.bind_output(name, "cuda", 0, np.float32, tuple(shapes[name]), _device_ptr(buffer))
        self._session.run_with_iobinding(binding)

    def _run_graph_into(
        self, feeds: Mapping[str, Any], outputs: Mapping[str, Any], shapes: Mapping[str, tuple[int, ...]]
    ) -> None:
        import torch

        host = {n: np.ascontiguousarray(v, self._dtypes[n]) for n, v in feeds.items() if isinstance(v, np.ndarray)}
        batch = next(_batch_of(v) for v in feeds.values() if not isinstance(v, np.ndarray))
        slot = self._graph_slot_for(batch)
        for name, value in feeds.items():
            if name in host:
                slot.inputs[name].update_inplace(host[name])
            else:
                static = slot.inputs[name]
                view = torch.as_tensor(_CudaArray(static.data_ptr(), tuple(static.shape())), device="cuda")
                source = value if is_torch_tensor(value) else torch.from_dlpack(value)
                view.copy_(source.reshape(view.shape))
        torch.cuda.current_stream().synchronize()
        self._session.run_with_iobinding(slot.binding, slot.run_options)
        for name, buffer in outputs.items():
            static = slot.outputs[name]
            view = torch.as_tensor(_CudaArray(static.data_ptr(), tuple(shapes[name])), device="cuda")
            target = buffer if is_torch_tensor(buffer) else torch.from_dlpack(buffer)
            target.view(-1).copy_(view.reshape(-1))

    def _graph_slot(self, feeds: Mapping[str, np.ndarray]) -> _GraphSlot:
        return self._graph_slot_for(int(feeds[self.inputs[0].name].shape[0]))

    def _graph_slot_for(self, batch: int) -> _GraphSlot:
        slot = self._graphs.get(batch)
        if slot is not None:
            return slot
        import onnxruntime as ort

        def concrete(info: TensorInfo) -> list[int]:
            if len(info.shape) == 1:  # a per-call scalar such as morph_value:0, not batched
                return [info.shape[0] if isinstance(info.shape[0], int) else 1]
            dims = [batch if i == 0 and not isinstance(d, int) else d for i, d in enumerate(info.shape)]
            if not all(isinstance(d, int) for d in dims):
                raise ConfigError(
                    f"model {self._path}: CUDA graphs need fixed shapes, '{info.name}' is {info.shape_text()}"
                )
            return [int(d) for d in dims if isinstance(d, int)]

        run_options = ort.RunOptions()
        run_options.add_run_config_entry("gpu_graph_id", str(batch))
        slot = _GraphSlot(self._session.io_binding(), run_options)
        for info in self.inputs:
            value = ort.OrtValue.ortvalue_from_shape_and_type(concrete(info), np.dtype(info.dtype), "cuda", 0)
            slot.inputs[info.name] = value
            slot.binding.bind_ortvalue_input(info.name, slot.inputs[info.name])
        for info in self.outputs:
            value = ort.OrtValue.ortvalue_from_shape_and_type(concrete(info), np.dtype(info.dtype), "cuda", 0)
            slot.outputs[info.name] = value
            slot.binding.bind_ortvalue_output(info.name, value)
        self._graphs[batch] = slot
        log.info("ort: CUDA graph slot for batch %d of %s", batch, self._path.name)
        return slot

    def close(self) -> None:
        self._graphs.clear()
        self._session = None
