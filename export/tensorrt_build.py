"""ONNX -> serialized TensorRT engine through TensorRT's Python API (TensorRT 10), with caches.

* precision: FP16 kernels allowed (``BuilderFlag.FP16``) unless fp16=False; the ONNX stays float32;
* dynamic batch: one optimisation profile for ``in_face:0`` from (1, S, S, 3) to (max_batch, S, S, 3),
  tuned for ``opt_batch``;
* timing cache: ``<cache>/timing-<gpu>-trt<version>.cache`` is loaded before and saved after every build
  (``IBuilderConfig.create_timing_cache`` / ``set_timing_cache`` / ``ITimingCache.serialize``), so rebuilding
  similar models skips most tactic timing;
* engine cache: engines live in ``<cache>/engines/<stem>-<key>.engine`` where key hashes the ONNX bytes, the GPU
  name, the TensorRT version, the precision and the batch profile; a hit is copied instead of rebuilt.

``<cache>`` is ``realtime_swap.infer.session.default_cache_dir() / "trt"`` unless given. Engines are specific to
the GPU and TensorRT version that built them, hence the key. Where TensorRT is not installed every entry point
raises ConfigError("TensorRT is not installed (pip install 'realtime_swap[trt]')").
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from realtime_swap.errors import ConfigError, ModelError
from realtime_swap.infer.session import default_cache_dir
from realtime_swap.swap.dfm_io import DFM_INPUT

log = logging.getLogger(__name__)

TRT_MISSING = "TensorRT is not installed (pip install 'realtime_swap[trt]')"


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or ConfigError with the install hint."""
    try:
        import tensorrt
    except ImportError as exc:
        raise ConfigError(TRT_MISSING) from exc
    return tensorrt


def gpu_name(device: int = 0) -> str:
    """The CUDA GPU's marketing name (torch when it sees CUDA, else nvidia-smi); ConfigError when none."""
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(device))
    except ImportError:
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", str(device)],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        name = out.stdout.strip().splitlines()[0].strip()
        if name:
            return name
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    raise ConfigError("no CUDA GPU visible: a TensorRT engine is built on and for the GPU that runs it")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def engine_cache_key(
    onnx_bytes: bytes, gpu: str, trt_version: str, fp16: bool, batch_profile: tuple[int, int, int]
) -> str:
    """16 hex digits identifying an engine build: model bytes, GPU, TensorRT version, precision, profile."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(onnx_bytes).digest())
    digest.update(f"|{gpu}|{trt_version}|fp16={fp16}|batch={batch_profile}".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class EngineBuild:
    """engine: the written engine; cached: taken from the engine cache (no build); build_s: seconds spent;
    key: the cache key; gpu / trt_version: what it was built for."""

    engine: Path
    cached: bool
    build_s: float
    key: str
    gpu: str
    trt_version: str


def build_engine(
    onnx_path: str | Path,
    out: str | Path | None = None,
    fp16: bool = True,
    max_batch: int = 4,
    opt_batch: int = 1,
    workspace_mb: int = 2048,
    cache_dir: str | Path | None = None,
) -> EngineBuild:
    """Build (or take from the cache) a TensorRT engine for a DFM-signature ONNX model.

    out: where to put the engine (default: the cache entry itself). Raises ConfigError without TensorRT or a
    GPU, ModelError when the ONNX is missing, fails to parse or the build fails.
    """
    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelError(f"model not found: {onnx_path}")
    if not 1 <= opt_batch <= max_batch:
        raise ConfigError(f"need 1 <= opt_batch <= max_batch, got opt {opt_batch}, max {max_batch}")
    onnx_bytes = onnx_path.read_bytes()
    gpu = gpu_name()
    version = str(trt.__version__)
    profile_batches = (1, opt_batch, max_batch)
    key = engine_cache_key(onnx_bytes, gpu, version, fp16, profile_batches)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "trt"
    (cache / "engines").mkdir(parents=True, exist_ok=True)
    cached_engine = cache / "engines" / f"{onnx_path.stem}-{key}.engine"
    target = Path(out) if out is not None else cached_engine
    if cached_engine.is_file():
        if target != cached_engine:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cached_engine, target)
        log.info("TensorRT engine cache hit: %s", cached_engine)
        return EngineBuild(target, True, 0.0, key, gpu, version)

    t0 = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    timing_file = cache / f"timing-{_slug(gpu)}-trt{version}.cache"
    timing = config.create_timing_cache(timing_file.read_bytes() if timing_file.is_file() else b"")
    config.set_timing_cache(timing, False)
    shape = tuple(network.get_input(0).shape)[1:]
    if network.get_input(0).name != DFM_INPUT:
        raise ModelError(f"{onnx_path}: first input is '{network.get_input(0).name}', expected '{DFM_INPUT}'")
    profile = builder.create_optimization_profile()
    profile.set_shape(DFM_INPUT, (1, *shape), (opt_batch, *shape), (max_batch, *shape))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    cached_engine.write_bytes(bytes(serialized))
    timing_file.write_bytes(bytes(config.get_timing_cache().serialize()))
    if target != cached_engine:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cached_engine, target)
    build_s = time.perf_counter() - t0
    log.info("built TensorRT engine %s in %.1f s (%s, TensorRT %s)", target, build_s, gpu, version)
    return EngineBuild(target, False, build_s, key, gpu, version)
