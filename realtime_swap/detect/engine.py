"""Where the detector and the landmarker run: ONNX Runtime, or torch through the ONNX→torch conversion.

The MediaPipe models are small; what matters is where the frame is. When the swap model runs on torch on a
CUDA device, the detector and landmarker run there too (the same conversion as the swap model,
``realtime_swap.infer.onnx_torch``), so one process holds one GPU runtime; everywhere else they run on ONNX
Runtime, on the swap's ONNX Runtime provider when it has one (``auto`` when the swap runs on native TensorRT).
``DetectBackend`` is the user's choice (``--detect-backend``); :func:`detect_engine_for` turns it and the swap
model's engine into a :class:`DetectEngine`.

Measured on this project's 2-core development machine (no GPU, cores shared), one FaceMesh run (1, 192, 192, 3)
fp32, one thread each, p50 of 50: ORT CPU 4.0 ms, torch on the CPU 11.9 ms; so ``auto`` keeps ORT on the CPU,
and ``torch`` there is for checking the torch path, not for speed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from realtime_swap.errors import ConfigError, ModelError
from realtime_swap.infer.runner import TensorInfo
from realtime_swap.infer.session import ORT_PROVIDER, Backend


class DetectBackend(str, enum.Enum):
    """The ``--detect-backend`` choices: AUTO (torch on the swap's CUDA device when the swap runs on torch
    there, else ONNX Runtime), ORT (ONNX Runtime, the swap's provider when it is an ORT one), TORCH (torch on
    the swap's torch device, else the CPU)."""

    AUTO = "auto"
    ORT = "ort"
    TORCH = "torch"


@dataclass(frozen=True)
class DetectEngine:
    """One engine for the detector and the landmarker.

    backend: an ONNX Runtime backend (``AUTO``, ``ORT_CPU``, ``ORT_CUDA``, ``ORT_TRT``) or ``TORCH``.
    device: the torch device ("cpu", "cuda", "cuda:1") when backend is TORCH; "cpu" otherwise.
    """

    backend: Backend = Backend.AUTO
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.backend is not Backend.AUTO and self.backend is not Backend.TORCH and self.backend not in ORT_PROVIDER:
            raise ConfigError(
                f"detector engine: backend '{self.backend.value}' runs swap models only; "
                "the detector runs on ONNX Runtime or torch"
            )
        if self.backend is not Backend.TORCH and self.device != "cpu":
            raise ConfigError(f"detector engine: device '{self.device}' applies to backend 'torch' only")

    def describe(self) -> str:
        """One word for logs and metrics: ``ort-cpu``, ``auto`` (ORT's fastest provider), ``torch:cuda:0``."""
        return f"torch:{self.device}" if self.backend is Backend.TORCH else self.backend.value


def detect_engine_for(requested: DetectBackend, swap_backend: Backend | None, swap_device: str | None) -> DetectEngine:
    """The detector's engine for the user's choice and the swap model's engine (None, None: no swap model).

    swap_backend: the backend the swap model runs on (resolved, never AUTO once a model is loaded); swap_device:
    its runner's device ("cpu", "cuda:0").
    """
    swap_on_torch = swap_backend is Backend.TORCH and swap_device is not None
    if requested is DetectBackend.TORCH:
        return DetectEngine(Backend.TORCH, swap_device if swap_on_torch and swap_device else "cpu")
    if requested is DetectBackend.AUTO and swap_on_torch and swap_device and swap_device.startswith("cuda"):
        return DetectEngine(Backend.TORCH, swap_device)
    if swap_backend in ORT_PROVIDER:
        return DetectEngine(swap_backend)
    return DetectEngine(Backend.AUTO)


class DetectorModel(Protocol):
    """One detector/landmarker model on its engine: a single input named ``input``, outputs in model order."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    def run(self, tensor: Any) -> list[np.ndarray]:
        """Run on one (N, S, S, 3) float32 batch (a host array; a torch tensor on the torch engine's device too);
        return every output as float32 host arrays."""
        ...


class _OrtDetectorModel:
    def __init__(self, path: Path, backend: Backend, threads: int | None) -> None:
        from realtime_swap.infer.ort_runtime import _infos
        from realtime_swap.infer.session import create_ort_session

        self._session: Any = create_ort_session(path, backend, threads)
        self.inputs = _infos(self._session.get_inputs())
        self.outputs = _infos(self._session.get_outputs())
        self.provider = str(self._session.get_providers()[0])

    def run(self, tensor: np.ndarray) -> list[np.ndarray]:
        return list(self._session.run(None, {"input": tensor}))


class _TorchDetectorModel:
    """fp32 always: landmarks in fp16 move by a visible fraction of a pixel at 4K."""

    def __init__(self, path: Path, device: str) -> None:
        from realtime_swap.infer.runner import Precision
        from realtime_swap.infer.torch_runtime import TorchRunner

        self.runner = TorchRunner(path, device=device, precision=Precision.FP32)
        self.inputs = self.runner.inputs
        self.outputs = self.runner.outputs
        self._fetch = [info.name for info in self.outputs]

    def run(self, tensor: Any) -> list[np.ndarray]:
        return self.runner.run({"input": tensor}, self._fetch)


def open_detector_model(path: Path, engine: DetectEngine, threads: int | None) -> DetectorModel:
    """Load a MediaPipe model on ``engine``. threads: ONNX Runtime intra-op threads (ignored by torch, whose
    CPU threads are per process). Raises ModelError for a missing or unreadable file, ConfigError for an engine
    this machine lacks."""
    if engine.backend is Backend.TORCH:
        return _TorchDetectorModel(path, engine.device)
    return _OrtDetectorModel(path, engine.backend, threads)


def check_model_io(model: DetectorModel, path: Path, size: int, outputs: tuple[str, ...]) -> None:
    """Refuse a model whose input/output names, rank or resolution are not the ones its wrapper expects."""
    inputs = model.inputs
    if len(inputs) != 1 or inputs[0].name != "input":
        raise ModelError(f"{path}: expected one input named 'input', got {[i.name for i in inputs]}")
    shape = inputs[0].shape
    if len(shape) != 4 or list(shape[1:]) != [size, size, 3]:
        raise ModelError(f"{path}: expected input (N, {size}, {size}, 3), got {inputs[0].shape_text()}")
    names = [o.name for o in model.outputs]
    if names != list(outputs):
        raise ModelError(f"{path}: expected outputs {list(outputs)}, got {names}")
