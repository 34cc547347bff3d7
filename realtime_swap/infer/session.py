"""ONNX Runtime session factory shared by every model in the product.

One place decides execution providers, thread counts and cache folders, so the detector and the swap models
run on the same engine the user asked for.
"""

from __future__ import annotations

import enum
import logging
import os
from pathlib import Path

from realtime_swap.errors import ConfigError, ModelError

log = logging.getLogger(__name__)


class Backend(str, enum.Enum):
    """Execution engines; the CLI's ``--backend`` choices come from this enum."""

    AUTO = "auto"
    ORT_CPU = "ort-cpu"
    ORT_CUDA = "ort-cuda"
    ORT_TRT = "ort-trt"
    TENSORRT = "tensorrt"
    TORCH = "torch"


_ORT_PROVIDER = {
    Backend.ORT_CPU: "CPUExecutionProvider",
    Backend.ORT_CUDA: "CUDAExecutionProvider",
    Backend.ORT_TRT: "TensorrtExecutionProvider",
}


def default_cache_dir() -> Path:
    """Folder for engine/timing caches: $REALTIME_SWAP_CACHE or ~/.cache/realtime_swap."""
    env = os.environ.get("REALTIME_SWAP_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "realtime_swap"


def ort_providers_for(backend: Backend) -> list[str | tuple[str, dict[str, str]]]:
    """The ONNX Runtime provider list for a backend, CPU last as the fallback for unsupported nodes.

    ``Backend.AUTO`` picks the fastest provider this onnxruntime build has. Raises ConfigError when the
    requested provider is not in this build, saying why.
    """
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    if backend is Backend.AUTO:
        for candidate in (Backend.ORT_TRT, Backend.ORT_CUDA):
            if _ORT_PROVIDER[candidate] in available:
                return ort_providers_for(candidate)
        return ["CPUExecutionProvider"]
    if backend not in _ORT_PROVIDER:
        raise ConfigError(f"backend '{backend.value}' is not an ONNX Runtime backend")
    name = _ORT_PROVIDER[backend]
    if name not in available:
        raise ConfigError(
            f"backend '{backend.value}' needs {name}, which this onnxruntime build lacks "
            f"(available: {', '.join(sorted(available))}); install onnxruntime-gpu (pip install "
            f"'realtime_swap[gpu]') on a machine with CUDA"
        )
    providers: list[str | tuple[str, dict[str, str]]] = []
    if backend is Backend.ORT_TRT:
        cache = default_cache_dir() / "trt"
        cache.mkdir(parents=True, exist_ok=True)
        providers.append(
            (
                name,
                {
                    "trt_fp16_enable": "True",
                    "trt_engine_cache_enable": "True",
                    "trt_engine_cache_path": str(cache),
                    "trt_timing_cache_enable": "True",
                    "trt_timing_cache_path": str(cache),
                },
            )
        )
        providers.append("CUDAExecutionProvider")
    elif backend is Backend.ORT_CUDA:
        providers.append(name)
    providers.append("CPUExecutionProvider")
    return providers


def create_ort_session(
    model: str | Path | bytes,
    backend: Backend = Backend.AUTO,
    intra_op_threads: int | None = None,
) -> object:
    """Create an ``onnxruntime.InferenceSession`` for a model file or serialized bytes.

    intra_op_threads: CPU threads per op (default: the core count). Raises ModelError for a missing or
    unreadable model (naming the path) and ConfigError for an unavailable backend.
    """
    import onnxruntime as ort

    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise ModelError(f"model not found: {path}")
        source: str | bytes = str(path)
        label = str(path)
    else:
        source = model
        label = "<in-memory model>"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads or (os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    providers = ort_providers_for(backend)
    try:
        session = ort.InferenceSession(source, sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        raise ModelError(f"cannot load model {label}: {str(exc).splitlines()[0]}") from exc
    log.info("loaded %s on %s", label, session.get_providers()[0])
    return session
