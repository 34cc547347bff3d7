"""The one TensorRT engine builder (TensorRT >= 10 Python API) and its one cache, for ``export --format tensorrt``
and ``--backend tensorrt`` alike, so an engine built by one is found by the other.

* cache: ``<cache>/trt-native/<stem>-<key>.engine`` with a ``.json`` beside it (what the engine was built for),
  and the builder's timing cache ``<cache>/trt-native/timing-<gpu>-trt<version>.cache`` (loaded before, saved
  after every build: a rebuild after a model change skips most tactic timing). ``<cache>`` is ``cache_dir`` or
  ``realtime_swap.infer.session.default_cache_dir()``; the ONNX Runtime TensorRT EP keeps its own in
  ``<cache>/trt``;
* key: the ONNX bytes, the GPU name, the TensorRT version, the precision, the batch profile (1, opt, max) and
  the values folded into the graph (below); engines are specific to the GPU and TensorRT that built them;
* batch: one optimisation profile per dynamic-batch input from 1 to ``max_batch`` (default
  :data:`DEFAULT_MAX_BATCH`, the same for both callers), tuned for ``opt_batch``;
* DFM morph (AMP) models: ``morph_value:0`` (1,) float32 sizes a channel split, so TensorRT sees it as a shape
  tensor; TensorRT takes shape-tensor inputs of type Int32/Int64 only (``ITensor::isShapeTensor``), so the
  builder folds the morph factor into the graph as a constant (:func:`fold_inputs`), keys the engine on it,
  and the runner checks that the factor it is fed is the one built in. Any other shape-tensor input is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from realtime_swap.errors import ConfigError, ModelError
from realtime_swap.infer.session import default_cache_dir

log = logging.getLogger(__name__)

TRT_MISSING = "TensorRT is not installed (pip install 'realtime_swap[trt]')"
DEFAULT_MAX_BATCH = 8
"""The largest batch (faces per call) an engine is built for unless asked otherwise, by either caller."""
ENGINE_FOLDER = "trt-native"


def import_tensorrt() -> Any:
    """The ``tensorrt`` module (>= 10), or ConfigError with the install hint."""
    try:
        import tensorrt
    except ImportError as exc:
        raise ConfigError(TRT_MISSING) from exc
    major = int(str(getattr(tensorrt, "__version__", "0")).split(".")[0] or 0)
    if major < 10:
        raise ConfigError(f"tensorrt {tensorrt.__version__} is too old (the builder uses the TensorRT 10 API)")
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
    onnx_bytes: bytes,
    gpu: str,
    trt_version: str,
    fp16: bool,
    batch_profile: tuple[int, int, int],
    folded: Mapping[str, float] | None = None,
) -> str:
    """16 hex digits naming one build: model bytes, GPU, TensorRT version, precision, profile, folded inputs."""
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(onnx_bytes).digest())
    digest.update(f"|{gpu}|{trt_version}|fp16={fp16}|batch={batch_profile}".encode())
    for name in sorted(folded or {}):
        digest.update(f"|{name}={float(np.float32((folded or {})[name]))!r}".encode())
    return digest.hexdigest()[:16]


def engine_folder(cache_dir: str | Path | None = None) -> Path:
    """The folder holding the engines and the timing caches."""
    return (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / ENGINE_FOLDER


def fold_inputs(onnx_bytes: bytes, values: Mapping[str, float]) -> bytes:
    """The model with each named (1,) float input replaced by a constant of that value (serialized ONNX).

    Raises ModelError when a name is not an input of the model.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    names = {i.name for i in graph.input}
    for name, value in values.items():
        if name not in names:
            raise ModelError(f"cannot fold '{name}': not an input of the model (inputs: {sorted(names)})")
        kept = [i for i in graph.input if i.name != name]
        del graph.input[:]
        graph.input.extend(kept)
        graph.initializer.append(numpy_helper.from_array(np.array([value], np.float32), name))
    return bytes(model.SerializeToString())


@dataclass(frozen=True, slots=True)
class EngineBuild:
    """engine: the engine file; cached: found in the engine cache (no build); build_s: seconds spent; key: the
    cache key; gpu / trt_version: what it was built for; folded: inputs built in as constants (name -> value)."""

    engine: Path
    cached: bool
    build_s: float
    key: str
    gpu: str
    trt_version: str
    folded: dict[str, float]


def read_folded(engine: Path) -> dict[str, float]:
    """The inputs built into ``engine`` as constants, from the ``.json`` beside it ({} when there is none)."""
    meta = engine.with_suffix(".json")
    if not meta.is_file():
        return {}
    try:
        return {str(k): float(v) for k, v in json.loads(meta.read_text())["folded"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"{meta}: unreadable engine description ({exc})") from None


def _profile(trt: Any, builder: Any, network: Any, path: Path, opt_batch: int, max_batch: int) -> Any:
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        shape = tuple(int(d) for d in tensor.shape)
        if getattr(tensor, "is_shape_tensor", False):
            raise ModelError(
                f"tensorrt: input '{tensor.name}' of {path} is a shape tensor (its values size other tensors); "
                "TensorRT needs a value range for it, which this builder knows only for a DFM morph factor"
            )
        if len(shape) > 1 and -1 in shape[1:]:
            raise ModelError(f"tensorrt: input '{tensor.name}' of {path} has dynamic dims {shape} past the batch axis")
        if shape and shape[0] == -1:
            rest = shape[1:]
            top = max_batch if rest else 1
            profile.set_shape(tensor.name, (1, *rest), (min(opt_batch, top), *rest), (top, *rest))
    return profile


def build_engine(
    onnx_path: str | Path,
    out: str | Path | None = None,
    *,
    fp16: bool = True,
    max_batch: int = DEFAULT_MAX_BATCH,
    opt_batch: int = 1,
    morph: float | None = None,
    workspace_mb: int = 2048,
    cache_dir: str | Path | None = None,
) -> EngineBuild:
    """Build (or take from the cache) the TensorRT engine of an ONNX model.

    out: a copy of the engine (and its ``.json``) there too (default: the cache entry only). fp16: allow
    half-precision kernels (I/O stays as the ONNX declares it). morph: the factor built into a morph DFM
    (``morph_value:0``; None: DeepFaceLive's default, 0.75); ignored by models without that input. Raises
    ConfigError without TensorRT or a GPU or for bad options, ModelError when the ONNX is missing, fails to
    parse or the build fails.
    """
    from realtime_swap.swap.dfm_io import DFM_MORPH  # here: realtime_swap.swap imports this module
    from realtime_swap.swap.model import DEFAULT_MORPH

    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelError(f"model not found: {onnx_path}")
    if not 1 <= opt_batch <= max_batch:
        raise ConfigError(f"need 1 <= opt_batch <= max_batch, got opt {opt_batch}, max {max_batch}")
    onnx_bytes = onnx_path.read_bytes()
    folded: dict[str, float] = {}
    if DFM_MORPH.encode() in onnx_bytes and _has_input(onnx_bytes, DFM_MORPH):
        value = DEFAULT_MORPH if morph is None else float(morph)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"morph must be in [0, 1], got {value}")
        folded[DFM_MORPH] = float(np.float32(value))
    gpu = gpu_name()
    version = str(trt.__version__)
    batches = (1, opt_batch, max_batch)
    key = engine_cache_key(onnx_bytes, gpu, version, fp16, batches, folded)
    folder = engine_folder(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    cached = folder / f"{onnx_path.stem}-{key}.engine"
    target = Path(out) if out is not None else cached
    if cached.is_file():
        log.info("tensorrt: engine cache hit %s", cached)
        _copy(cached, target)
        return EngineBuild(target, True, 0.0, key, gpu, version, folded)

    t0 = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(fold_inputs(onnx_bytes, folded) if folded else onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"tensorrt cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if fp16 and hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)
    elif fp16:  # TensorRT releases without weak typing build the precision the ONNX declares
        log.warning("tensorrt %s has no FP16 builder flag: export an fp16 ONNX for half precision", trt.__version__)
    timing_file = folder / f"timing-{_slug(gpu)}-trt{version}.cache"
    timing = config.create_timing_cache(timing_file.read_bytes() if timing_file.is_file() else b"")
    config.set_timing_cache(timing, False)
    config.add_optimization_profile(_profile(trt, builder, network, onnx_path, opt_batch, max_batch))
    log.info("tensorrt: building %s (fp16=%s, batch 1..%d, folded %s); this takes a while", onnx_path, fp16,
             max_batch, folded or "nothing")  # fmt: skip
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(f"tensorrt failed to build an engine for {onnx_path} (see TensorRT's log above)")
    tmp = cached.with_suffix(f".tmp{time.monotonic_ns()}")
    tmp.write_bytes(bytes(serialized))
    about = {"onnx": str(onnx_path), "gpu": gpu, "tensorrt": version, "fp16": fp16, "batch": batches, "folded": folded}
    cached.with_suffix(".json").write_text(json.dumps(about))
    tmp.replace(cached)
    timing_file.write_bytes(bytes(config.get_timing_cache().serialize()))
    _copy(cached, target)
    build_s = time.perf_counter() - t0
    log.info("tensorrt: built %s in %.1f s (%s, TensorRT %s)", cached, build_s, gpu, version)
    return EngineBuild(target, False, build_s, key, gpu, version, folded)


def _has_input(onnx_bytes: bytes, name: str) -> bool:
    import onnx

    return any(i.name == name for i in onnx.load_from_string(onnx_bytes).graph.input)


def _copy(cached: Path, target: Path) -> None:
    if target == cached:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cached, target)
    if cached.with_suffix(".json").is_file():
        shutil.copyfile(cached.with_suffix(".json"), target.with_suffix(".json"))
