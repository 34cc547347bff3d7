"""Choosing the execution engine for a swap model and opening it: which backends this machine has, and why not.

``Backend.AUTO`` tries the fastest first — native TensorRT, ONNX Runtime's TensorRT EP, its CUDA EP, torch on
CUDA — and settles on ONNX Runtime's CPU provider, which every install has. Each backend passed over leaves a
one-line reason ("ort-trt: TensorrtExecutionProvider not in this onnxruntime build ..."), logged at debug level
and kept on the model (``SwapModel.notes``); the user sees one line (:func:`backend_summary`). Asking for one
backend by name that cannot run here is a ConfigError with the same reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from realtime_swap.errors import ConfigError, ModelError
from realtime_swap.infer.runner import ModelRunner, Precision
from realtime_swap.infer.session import ORT_PROVIDER, Backend, ort_install_hint
from realtime_swap.infer.tensorrt_build import DEFAULT_MAX_BATCH

log = logging.getLogger(__name__)

AUTO_ORDER = (Backend.TENSORRT, Backend.ORT_TRT, Backend.ORT_CUDA, Backend.TORCH, Backend.ORT_CPU)
"""Fastest first: the order ``auto`` tries."""


@dataclass(frozen=True)
class BackendOptions:
    """How a backend runs a model; options that do not apply to the chosen backend are ConfigErrors when that
    backend was named, and ignored (logged) under ``auto``.

    precision: None = each backend's fast default (fp16 for tensorrt / ort-trt / torch on CUDA, fp32 elsewhere).
    torch_compile: wrap the torch backend's module in ``torch.compile``.
    cuda_graph: capture CUDA graphs in ort-cuda / ort-trt / torch on CUDA (one per batch size, static buffers).
    cpu_threads: ONNX Runtime intra-op threads (default: the core count).
    max_batch: the largest batch a native TensorRT engine is built for (faces per call; more are split).
    cache_dir: TensorRT engine/timing caches (default: ``realtime_swap.infer.session.default_cache_dir()``).
    morph: the morph factor a native TensorRT engine of a morph DFM is built for (TensorRT takes no float shape
    input, ``realtime_swap.infer.tensorrt_build``); None: the model's default.
    """

    precision: Precision | None = None
    torch_compile: bool = False
    cuda_graph: bool = False
    cpu_threads: int | None = None
    max_batch: int = DEFAULT_MAX_BATCH
    cache_dir: Path | None = None
    morph: float | None = None


def _cuda_device_reason() -> str | None:
    """Why there is no CUDA device, as far as torch can tell (None when there is one or torch is absent)."""
    try:
        import torch
    except ImportError:
        return None  # cannot tell without torch; onnxruntime reports it when the session starts
    if torch.version.cuda is None:
        return None  # a CPU build of torch cannot see GPUs either way
    if not torch.cuda.is_available():
        return f"no CUDA device (torch {torch.__version__} sees none)"
    return None


def unavailable_reason(backend: Backend, *, engine_file: bool = False) -> str | None:
    """Why ``backend`` cannot run a model here (one line), or None when it can."""
    if backend is Backend.AUTO:
        return None
    if engine_file and backend is not Backend.TENSORRT:
        return "a serialized TensorRT engine runs on backend 'tensorrt' only"
    if backend in ORT_PROVIDER:
        import onnxruntime as ort

        provider = ORT_PROVIDER[backend]
        available = ort.get_available_providers()
        if provider not in available:
            return f"{provider} not in this onnxruntime build (providers: {', '.join(available)}; {ort_install_hint()})"
        return None if backend is Backend.ORT_CPU else _cuda_device_reason()
    if backend is Backend.TENSORRT:
        from realtime_swap.infer.tensorrt_runtime import tensorrt_unavailable_reason

        return tensorrt_unavailable_reason()
    from realtime_swap.infer.torch_runtime import torch_unavailable_reason

    return torch_unavailable_reason()


def _check_options(backend: Backend, options: BackendOptions) -> None:
    p = options.precision
    if options.torch_compile and backend is not Backend.TORCH:
        raise ConfigError(f"torch.compile applies to backend 'torch', not '{backend.value}'")
    if options.cuda_graph and backend not in (Backend.ORT_CUDA, Backend.ORT_TRT, Backend.TORCH):
        raise ConfigError(f"CUDA graphs apply to backends 'ort-cuda', 'ort-trt' and 'torch', not '{backend.value}'")
    if p in (Precision.FP16, Precision.BF16) and backend in (Backend.ORT_CPU, Backend.ORT_CUDA):
        raise ConfigError(f"backend '{backend.value}' runs the model's own precision (export an fp16 model instead)")
    if p is not None and p is not Precision.FP16 and backend is Backend.ORT_TRT:
        raise ConfigError("backend 'ort-trt' always builds fp16 engines; use backend 'tensorrt' for another precision")
    if p is Precision.BF16 and backend is Backend.TENSORRT:
        raise ConfigError("backend 'tensorrt' builds fp16 or fp32 engines, not bf16")


def _open(path: Path, backend: Backend, options: BackendOptions, engine_file: bool) -> ModelRunner:
    if backend in ORT_PROVIDER:
        from realtime_swap.infer.ort_runtime import OrtRunner

        trt_cache = options.cache_dir / "trt" if options.cache_dir is not None else None
        return OrtRunner(path, backend, cuda_graph=options.cuda_graph, threads=options.cpu_threads, cache_dir=trt_cache)
    if backend is Backend.TENSORRT:
        from realtime_swap.infer.tensorrt_build import build_engine
        from realtime_swap.infer.tensorrt_runtime import TensorRTRunner

        if engine_file:
            return TensorRTRunner(path)
        fp16 = options.precision is not Precision.FP32
        build = build_engine(
            path, fp16=fp16, max_batch=options.max_batch, morph=options.morph, cache_dir=options.cache_dir
        )
        return TensorRTRunner(build.engine, folded=build.folded)
    from realtime_swap.infer.torch_runtime import TorchRunner

    device = "cuda" if _torch_has_cuda() else "cpu"
    return TorchRunner(
        path, device=device, precision=options.precision, compile=options.torch_compile, cuda_graph=options.cuda_graph
    )


def _torch_has_cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _fit_options(backend: Backend, options: BackendOptions) -> BackendOptions:
    """Under ``auto``: drop the options the candidate cannot use (the user did not pick the backend)."""
    try:
        _check_options(backend, options)
        return options
    except ConfigError as exc:
        log.info("backend auto -> %s: ignoring an option (%s)", backend.value, exc)
    return BackendOptions(
        precision=None,
        torch_compile=options.torch_compile and backend is Backend.TORCH,
        cuda_graph=options.cuda_graph and backend in (Backend.ORT_CUDA, Backend.ORT_TRT, Backend.TORCH),
        cpu_threads=options.cpu_threads,
        max_batch=options.max_batch,
        cache_dir=options.cache_dir,
        morph=options.morph,
    )


def open_runner(
    path: Path, backend: Backend, options: BackendOptions, *, engine_file: bool = False
) -> tuple[ModelRunner, tuple[str, ...]]:
    """Open ``path`` on ``backend`` (or the fastest that works, for AUTO).

    Returns the runner and, for AUTO, one "backend: reason" line per faster backend passed over.
    Under AUTO a backend that fails to open the model (ConfigError: not usable here; ModelError: TensorRT could
    not parse or build it, an op the torch converter lacks) is passed over with its reason, logged at info level.
    Raises ConfigError when the named backend (or, for AUTO, every backend) cannot run it here, and the last
    backend's ModelError when the file itself is bad.
    """
    if backend is not Backend.AUTO:
        reason = unavailable_reason(backend, engine_file=engine_file)
        if reason is not None:
            raise ConfigError(f"backend '{backend.value}' is not available: {reason}")
        _check_options(backend, options)
        return _open(path, backend, options, engine_file), ()
    notes: list[str] = []
    last_error: ModelError | None = None
    for candidate in AUTO_ORDER:
        reason = unavailable_reason(candidate, engine_file=engine_file)
        if reason is None and candidate is Backend.TORCH and not _torch_has_cuda():
            reason = "no CUDA device; on the CPU ort-cpu is faster"
        if reason is not None:
            notes.append(f"{candidate.value}: {reason}")
            continue
        try:
            runner = _open(path, candidate, _fit_options(candidate, options), engine_file)
        except (ConfigError, ModelError) as exc:
            # onnxruntime fell back to the CPU (ConfigError), TensorRT could not parse or build the graph, or a
            # converter lacks an op (ModelError): this backend cannot run this model; the next one may
            log.info("backend auto: %s cannot run %s (%s); trying the next one", candidate.value, path.name, exc)
            notes.append(f"{candidate.value}: {exc}")
            last_error = exc if isinstance(exc, ModelError) else None
            continue
        log.debug("backend auto -> %s for %s; passed over: %s", candidate.value, path.name, "; ".join(notes) or "none")
        return runner, tuple(notes)
    if last_error is not None:  # the last resort (ort-cpu) refused the file itself: that is the error to show
        raise last_error
    raise ConfigError(f"no backend can run {path}: " + "; ".join(notes))


def backend_summary(backend: Backend, notes: tuple[str, ...]) -> str | None:
    """The one line a user reads about the swap model's engine after ``auto`` passed faster ones over (None when
    nothing was passed over); the reasons themselves (``notes``) are for ``--debug`` and the metrics JSON."""
    if not notes:
        return None
    if backend is Backend.ORT_CPU:
        return "swap model on ort-cpu; no GPU backend available here — see README, GPU machines (--debug: why)"
    passed = ", ".join(note.split(":", 1)[0] for note in notes)
    return f"swap model on {backend.value}; faster ones passed over: {passed} (--debug: why)"
