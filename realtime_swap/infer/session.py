"""ONNX Runtime session factory shared by every model in the product.

One place decides execution providers, thread counts and cache folders, so the detector and the swap models
run on the same engine the user asked for.

CPU threads: a session gets one intra-op thread per core this process may run on (its affinity mask, which in
containers is often smaller than ``os.cpu_count()``). The live engine runs several sessions at once (detector,
landmarker, swap model, each in its own pipeline thread, next to numba kernels and the source), so idle
intra-op threads sleep rather than spin (``allow_spinning=False``, the default here; ONNX Runtime's own default
spins, which on a 2-core machine took a core from the other stages: ``bench`` at 640x480 with a 128 px model went
from about 25 to 34 fps pipelined and 16 to 30 fps sequential with spinning off).
"""

from __future__ import annotations

import enum
import logging
import os
from pathlib import Path
from typing import Any

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


ORT_PROVIDER = {
    Backend.ORT_CPU: "CPUExecutionProvider",
    Backend.ORT_CUDA: "CUDAExecutionProvider",
    Backend.ORT_TRT: "TensorrtExecutionProvider",
}

ProviderList = list[str | tuple[str, dict[str, str]]]


def default_cache_dir() -> Path:
    """Folder for engine/timing caches: $REALTIME_SWAP_CACHE or ~/.cache/realtime_swap."""
    env = os.environ.get("REALTIME_SWAP_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "realtime_swap"


def ort_install_hint() -> str:
    """How to get ONNX Runtime's GPU providers into this environment, as one clause for an error message.

    ``onnxruntime`` and ``onnxruntime-gpu`` install the same ``onnxruntime`` module: with both present, whichever
    pip wrote last wins and usually the CUDA/TensorRT providers are gone (microsoft/onnxruntime#26996). The
    base install of this project brings ``onnxruntime``, so ``.[gpu]`` on top of it is exactly that case.
    """
    from importlib import metadata

    installed = set()
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            metadata.version(dist)
            installed.add(dist)
        except metadata.PackageNotFoundError:
            pass
    if installed == {"onnxruntime", "onnxruntime-gpu"}:
        return (
            "both onnxruntime and onnxruntime-gpu are installed and the CPU one shadows the GPU one; "
            "fix with: pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"
        )
    return "on a machine with CUDA: pip uninstall -y onnxruntime && pip install onnxruntime-gpu"


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask; ``os.cpu_count()`` where there is none)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _cuda_options(device_id: int, cuda_graph: bool, user_compute_stream: int | None) -> dict[str, str]:
    """CUDA EP options; empty when every value is the provider's default."""
    options: dict[str, str] = {}
    if device_id:
        options["device_id"] = str(device_id)
    if cuda_graph:
        options["enable_cuda_graph"] = "1"
    if user_compute_stream is not None:
        options["has_user_compute_stream"] = "1"
        options["user_compute_stream"] = str(int(user_compute_stream))
    return options


def ort_providers_for(
    backend: Backend,
    *,
    device_id: int = 0,
    cuda_graph: bool = False,
    user_compute_stream: int | None = None,
    cache_dir: Path | None = None,
) -> ProviderList:
    """The ONNX Runtime provider list for a backend, CPU last as the fallback for unsupported nodes.

    ``Backend.AUTO`` picks the fastest provider this onnxruntime build has. device_id: the CUDA device;
    cuda_graph: capture and replay CUDA graphs (CUDA EP ``enable_cuda_graph``, TensorRT EP
    ``trt_cuda_graph_enable``); user_compute_stream: a ``cudaStream_t`` as an int (e.g.
    ``torch.cuda.current_stream().cuda_stream``) for the GPU providers to run on, so their work is ordered
    with the caller's; cache_dir: the TensorRT EP's engine and timing caches (default: ``default_cache_dir() /
    "trt"``). A GPU provider whose options are all defaults is listed by name alone. Raises
    ConfigError when the requested provider is not in this build, saying why, or when a GPU option is asked
    of the CPU provider.
    """
    import onnxruntime as ort

    if device_id < 0:
        raise ConfigError(f"device_id must be >= 0, got {device_id}")
    gpu_asked = bool(device_id or cuda_graph or user_compute_stream is not None)
    available = set(ort.get_available_providers())
    if backend is Backend.AUTO:
        for candidate in (Backend.ORT_TRT, Backend.ORT_CUDA):
            if ORT_PROVIDER[candidate] in available:
                return ort_providers_for(
                    candidate,
                    device_id=device_id,
                    cuda_graph=cuda_graph,
                    user_compute_stream=user_compute_stream,
                    cache_dir=cache_dir,
                )
        if gpu_asked:
            raise ConfigError("device_id / cuda_graph / user_compute_stream need a GPU provider; none in this build")
        return ["CPUExecutionProvider"]
    if backend not in ORT_PROVIDER:
        raise ConfigError(f"backend '{backend.value}' is not an ONNX Runtime backend")
    name = ORT_PROVIDER[backend]
    if name not in available:
        raise ConfigError(
            f"backend '{backend.value}' needs {name}, which this onnxruntime build lacks "
            f"(available: {', '.join(sorted(available))}); {ort_install_hint()}"
        )
    if backend is Backend.ORT_CPU and gpu_asked:
        raise ConfigError("backend 'ort-cpu': device_id, cuda_graph and user_compute_stream apply to GPU backends")
    providers: ProviderList = []
    cuda = _cuda_options(device_id, cuda_graph, user_compute_stream)
    if backend is Backend.ORT_TRT:
        cache = cache_dir if cache_dir is not None else default_cache_dir() / "trt"
        cache.mkdir(parents=True, exist_ok=True)
        trt = {
            "trt_fp16_enable": "True",
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": "True",
            "trt_timing_cache_path": str(cache),
        }
        if device_id:
            trt["device_id"] = str(device_id)
        if cuda_graph:
            trt["trt_cuda_graph_enable"] = "True"
        if user_compute_stream is not None:
            trt["has_user_compute_stream"] = "1"
            trt["user_compute_stream"] = str(int(user_compute_stream))
        providers.append((name, trt))
        # CUDA graphs are captured by the TensorRT EP; the CUDA EP only runs the nodes TensorRT rejects.
        fallback = _cuda_options(device_id, False, user_compute_stream)
        providers.append(("CUDAExecutionProvider", fallback) if fallback else "CUDAExecutionProvider")
    elif backend is Backend.ORT_CUDA:
        providers.append((name, cuda) if cuda else name)
    providers.append("CPUExecutionProvider")
    return providers


def create_ort_session(
    model: str | Path | bytes,
    backend: Backend = Backend.AUTO,
    intra_op_threads: int | None = None,
    *,
    device_id: int = 0,
    cuda_graph: bool = False,
    user_compute_stream: int | None = None,
    allow_spinning: bool | None = False,
    cache_dir: Path | None = None,
) -> Any:
    """Create an ``onnxruntime.InferenceSession`` for a model file or serialized bytes.

    intra_op_threads: CPU threads per op (default: :func:`usable_cores`). allow_spinning: whether idle intra-op
    threads busy-wait for work (default False: several sessions share the cores; None: ONNX Runtime's default, on).
    device_id, cuda_graph, user_compute_stream, cache_dir: GPU provider options (see :func:`ort_providers_for`).
    Raises ModelError for a missing or unreadable model (naming the path) and ConfigError for an unavailable
    backend or a bad option.
    """
    import onnxruntime as ort

    if intra_op_threads is not None and intra_op_threads < 1:
        raise ConfigError(f"intra_op_threads must be >= 1, got {intra_op_threads}")
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
    opts.intra_op_num_threads = intra_op_threads or usable_cores()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if allow_spinning is not None:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    providers = ort_providers_for(
        backend,
        device_id=device_id,
        cuda_graph=cuda_graph,
        user_compute_stream=user_compute_stream,
        cache_dir=cache_dir,
    )
    try:
        session = ort.InferenceSession(source, sess_options=opts, providers=providers)
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
        raise ModelError(f"cannot load model {label}: {str(exc).splitlines()[0]}") from exc
    log.debug("loaded %s on %s", label, session.get_providers()[0])
    return session
