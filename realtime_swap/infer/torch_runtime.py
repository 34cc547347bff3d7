"""PyTorch as a ModelRunner: the ONNX graph converted back to torch, eager or ``torch.compile``d, fp32/fp16/bf16.

Half precision is for CUDA only (CPU half kernels are slow or missing). Inputs of rank <= 1 (DFM's
``morph_value:0``) are passed to the converted graph as host numbers, so they can size slices.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from realtime_swap.errors import ConfigError
from realtime_swap.infer.onnx_info import load_onnx, onnx_io
from realtime_swap.infer.runner import ModelRunner, Precision, is_torch_tensor
from realtime_swap.infer.session import Backend

log = logging.getLogger(__name__)


def torch_unavailable_reason() -> str | None:
    """Why the torch backend cannot run here, or None."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return "torch is not installed (pip install 'realtime_swap[train]')"
    return None


class CompiledOrEager:
    """``torch.compile(module)`` that runs ``module`` itself once compiling has failed (no C compiler, no Triton,
    an op inductor cannot lower): the first failure is logged as a warning and kept in ``error``; from then on
    every call runs eager. Errors of the model itself (wrong shapes, ...) are raised as they are."""

    def __init__(self, module: Callable[..., Any], compiled: Callable[..., Any]) -> None:
        self.module = module
        self.compiled = compiled
        self.error: str | None = None

    def __call__(self, *args: Any) -> Any:
        if self.error is None:
            from torch._dynamo.exc import BackendCompilerFailed  # inductor's InductorError is one

            try:
                return self.compiled(*args)
            except BackendCompilerFailed as exc:
                self.error = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
                log.warning("torch backend: torch.compile failed (%s); running the model uncompiled", self.error)
        return self.module(*args)


class StaticGraphs:
    """One captured graph per batch size, with static input and output buffers (CUDA graphs replay on fixed
    addresses): a call copies its inputs into the batch size's buffers, replays, and returns the static outputs
    (valid until the next call with that batch size).

    fn: the module call, (*tensors) -> tuple of tensors; host: values passed as they are (a DFM morph factor,
    which sizes a slice: each value is its own graph). capture: (fn, static inputs) -> (replay, static outputs);
    default :func:`cuda_graph_capture`; tests pass one that runs on the CPU.
    """

    def __init__(self, fn: Callable[..., tuple[Any, ...]], capture: Callable[..., Any] | None = None) -> None:
        self._fn = fn
        self._capture = capture or cuda_graph_capture
        self._slots: dict[tuple[Any, ...], tuple[list[Any], Callable[[], None], tuple[Any, ...]]] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def __call__(self, *args: Any) -> tuple[Any, ...]:
        import torch

        key = tuple((tuple(a.shape), a.dtype) if isinstance(a, torch.Tensor) else ("host", repr(a)) for a in args)
        slot = self._slots.get(key)
        if slot is None:
            statics = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
            replay, outputs = self._capture(self._fn, statics)
            self._slots[key] = slot = (statics, replay, outputs)
        statics, replay, outputs = slot
        for static, value in zip(statics, args, strict=True):
            if isinstance(static, torch.Tensor):
                static.copy_(value, non_blocking=True)
        replay()
        return outputs


def cuda_graph_capture(fn: Callable[..., tuple[Any, ...]], statics: list[Any]) -> tuple[Callable[[], None], Any]:
    """Capture ``fn(*statics)`` in a CUDA graph after warm-up runs on a side stream (torch's recipe)."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(3):  # cuDNN/cuBLAS pick their algorithms outside the capture
            fn(*statics)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    # thread_local: the pipeline's other threads (detection, colour, paste-back on the GPU) may allocate or sync
    # meanwhile; under the default "global" mode any such call of theirs invalidates this capture
    with torch.inference_mode(), torch.cuda.graph(graph, capture_error_mode="thread_local"):
        outputs = tuple(fn(*statics))
    return graph.replay, outputs


class TorchRunner(ModelRunner):
    """An ONNX model run as a converted torch module.

    device: "cpu" or "cuda[:id]"; precision: None = fp16 on CUDA, fp32 on the CPU; compile: wrap the module
    in ``torch.compile`` (the first call per batch size compiles: do it in warm-up; where compiling fails the model
    runs eager, with the reason in ``compile_error``, :class:`CompiledOrEager`); cuda_graph: capture one
    CUDA graph per batch size (and morph value) with static buffers (:class:`StaticGraphs`; CUDA only);
    channels_last: convolution weights in NHWC memory order (None: on CUDA; the DFM input is NHWC already, so
    the activations are too and cuDNN's fastest fp16/bf16 kernels need no layout conversions).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        device: str = "cpu",
        precision: Precision | None = None,
        compile: bool = False,
        cuda_graph: bool = False,
        channels_last: bool | None = None,
    ) -> None:
        reason = torch_unavailable_reason()
        if reason is not None:
            raise ConfigError(f"backend 'torch': {reason}")
        import torch

        from realtime_swap.infer.onnx_torch import OnnxModule

        self.backend = Backend.TORCH
        self._path = Path(path)
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"backend 'torch': device {device} asked, but torch {torch.__version__} sees no CUDA")
        precision = precision or (Precision.FP16 if dev.type == "cuda" else Precision.FP32)
        if dev.type != "cuda" and precision is not Precision.FP32:
            raise ConfigError(f"backend 'torch': {precision.value} runs on CUDA only; on the CPU use fp32")
        self.precision = precision
        self._dtype = {Precision.FP32: torch.float32, Precision.FP16: torch.float16, Precision.BF16: torch.bfloat16}[
            precision
        ]
        model = load_onnx(self._path, weights=True)
        self.inputs, self.outputs = onnx_io(model)
        if cuda_graph and dev.type != "cuda":
            raise ConfigError("backend 'torch': CUDA graphs need a CUDA device")
        module = OnnxModule(model, str(self._path)).to(device=dev, dtype=self._dtype).eval()
        self.channels_last = dev.type == "cuda" if channels_last is None else channels_last
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # 4-D weights only
        self._input_names = module.input_names
        self._output_index = {name: i for i, name in enumerate(module.output_names)}
        self._fn: Any = CompiledOrEager(module, torch.compile(module, dynamic=False)) if compile else module
        self.graphs: StaticGraphs | None = StaticGraphs(self._fn) if cuda_graph else None
        self._device = dev
        self.device = str(dev)
        first = self.inputs[0].shape[0] if self.inputs and self.inputs[0].shape else None
        self.fixed_batch = first if isinstance(first, int) else None
        self._host_inputs = {info.name for info in self.inputs if len(info.shape) <= 1}
        self._torch = torch
        log.info("torch backend: %s on %s, %s, compile=%s, cuda_graph=%s, channels_last=%s", self._path.name, dev,
                 precision.value, compile, cuda_graph, self.channels_last)  # fmt: skip

    @property
    def compile_error(self) -> str | None:
        """Why ``torch.compile`` was given up for eager execution (None: not asked, not tried yet, or compiled)."""
        return self._fn.error if isinstance(self._fn, CompiledOrEager) else None

    def _forward(self, feeds: Mapping[str, Any]) -> tuple[Any, ...]:
        from realtime_swap.infer.onnx_torch import host_scalar

        torch = self._torch
        args = []
        for name in self._input_names:
            value = feeds[name]
            if name in self._host_inputs:
                flat = value.reshape(-1) if hasattr(value, "reshape") else np.asarray(value).reshape(-1)
                args.append(host_scalar(float(flat[0])))
                continue
            tensor = value if is_torch_tensor(value) else torch.from_numpy(np.ascontiguousarray(value))
            args.append(tensor.to(self._device, self._dtype, non_blocking=True))
        if self.graphs is not None:
            return self.graphs(*args)
        with torch.inference_mode():
            return tuple(self._fn(*args))

    def run(self, feeds: Mapping[str, np.ndarray], fetch: Sequence[str]) -> list[np.ndarray]:
        outs = self._forward(feeds)
        return [outs[self._output_index[name]].float().cpu().numpy() for name in fetch]

    def run_into(
        self,
        feeds: Mapping[str, Any],
        outputs: Mapping[str, Any],
        shapes: Mapping[str, tuple[int, ...]],
    ) -> None:
        for name, buffer in outputs.items():
            if not is_torch_tensor(buffer):
                raise ConfigError(f"backend 'torch': output '{name}' needs a torch tensor buffer")
        outs = self._forward(feeds)
        for name, buffer in outputs.items():
            buffer.view(-1).copy_(outs[self._output_index[name]].reshape(-1))
