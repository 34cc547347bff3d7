"""The GPU suite: one command that checks and measures the torch CUDA path, at most 8 minutes on an H200.

    python benchmarks/gpu_suite.py --out DIR            # on the GPU machine (full mode)
    python benchmarks/gpu_suite.py --out DIR --smoke    # anywhere, on the CPU, in seconds (CI runs this)

Parts, each under its own time budget (``PART_BUDGET_S``; what a budget leaves out is listed under
``not_run`` with the reason, never dropped silently), in this order:

* ``tests``: ``pytest -m gpu`` over every test module that has GPU tests, then the GPU-path tests (the detector
  engine, the torch backend and its fast path, the GPU-resident stage, the TensorRT builder) in full mode;
  counts from pytest's JUnit XML;
* ``swap_model``: the swap model alone (the product's DF, ``live`` preset widths, untrained weights: timings do
  not depend on them), exported to ONNX and run by the torch backend with device tensors in and out: p50/p95 ms
  per call at 96, 128, 224 and 320 px, batch 1 and 4, fp32/fp16/bf16, eager / CUDA graph / torch.compile, each
  mode in a worker process of its own killed at the budget (a failed graph capture can spoil the CUDA context; an
  inductor compile cannot be interrupted); "fp32" is true fp32: TF32, cuDNN's default for convolutions, is off
  while it runs (each row records the TF32 flags it ran with);
* ``bench``: ``realtime-swap bench`` end to end on the shipped demo model with ``--backend torch --gpu-path
  cuda`` (the frame uploaded once), at 1080p and 4K, 1 and 4 faces, unpaced and paced at 60 fps: per-stage
  p50/p95/p99, fps, capture-to-output latency (what the engine adds), dropped frames;
* ``training``: training it/s of DF and LIAE at 128 and 224 px, batch 16 and 32, with AMP (the trainer's
  choice: bf16 on Ampere and newer, fp16 with a scaler before), batches prepared beforehand; then the same steps
  with each iteration's batches augmented on the device inside the timed loop (``--augment-on device``), and the
  rate at which one CPU core prepares batch pairs (numpy/OpenCV), for comparison.

Writes ``gpu_suite.json`` (every figure, the machine and versions, per part its status, seconds and not_run)
and ``gpu_suite.log`` into ``--out``, nothing else (scratch goes to a temporary folder), so ``--out $OUT`` on the
device machine brings back two files. Exit code 0 when every part ran without error (tests that fail make the
``tests`` part ``failed`` and the exit code 1; figures are never asserted).

Needs nothing from the network. The project runs from this checkout (``PYTHONPATH``), without pygame and the
other extras. PyAV (``bench`` and the test suite's conftest need it) comes from a ``.whl/`` folder at the
checkout's root when it is not installed: the suite installs those wheels into a temporary folder first. Made
on a machine with internet, at the checkout's root (``.whl/`` is git-ignored; the wheel is about 35 MB):

    python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \\
        -d .whl "av>=12"

(checked: it fetched av-19.0.2-cp312-abi3-manylinux_2_28_x86_64.whl, 35.0 MB, which has no dependencies).
On this project's device machine the prepared command is ``PYTHONUNBUFFERED=1 python3 benchmarks/gpu_suite.py
--out $OUT`` with ``.whl`` carried (the checkout and the wheel together stay under the 64 MiB that travels),
timeout 540 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

log = logging.getLogger("gpu_suite")

PARTS = ("tests", "swap_model", "bench", "training")
PART_BUDGET_S = {"tests": 120.0, "swap_model": 160.0, "bench": 100.0, "training": 60.0}
"""Seconds per part in full mode: 440 s together; with the whole-run cap (450 s, the wheel install included) the
run stays under 8 minutes: tests, swap_model and bench run in processes killed at their budget, and only one
training configuration can run past its part's (seconds)."""
SUITE_LIMIT_S = {"full": 450.0, "smoke": 150.0}
"""The whole run's cap: a part that overran (one item past its budget) shortens the parts after it."""
MODE_RESERVE = {"eager": 0.0, "cuda_graph": 0.2, "compile": 0.45}
"""The share of swap_model's budget kept for each mode while the modes before it run: the compile worker needs its
start, a probe compile and 45 s for its first configuration; without a reserve the 24 eager and CUDA-graph
configurations leave it nothing (estimates: the log's timestamps say how each share was spent)."""
SMOKE_BUDGET_S = {"tests": 40.0, "swap_model": 20.0, "bench": 40.0, "training": 20.0}
GPU_PATH_TESTS = (
    "tests/test_detect_engine.py",
    "tests/test_torch_fast_path.py",
    "tests/test_backends_torch.py",
    "tests/test_gpu_path.py",
    "tests/test_tensorrt_build.py",
)


@dataclass(frozen=True)
class Plan:
    """What one mode measures."""

    device: str
    resolutions: tuple[int, ...]
    batches: tuple[int, ...]
    precisions: tuple[str, ...]
    modes: tuple[str, ...]
    iters: int
    warmup_calls: int
    compile_backend: str
    bench_resolutions: tuple[str, ...]
    bench_faces: tuple[int, ...]
    bench_paced: tuple[float | None, ...]
    bench_frames: int
    bench_warmup: int
    bench_inference_iters: int
    bench_gpu_path: str
    train_resolutions: tuple[int, ...]
    train_batches: tuple[int, ...]
    train_steps: int
    budget_s: dict[str, float] = field(default_factory=dict)


FULL = Plan(
    device="cuda",
    resolutions=(96, 128, 224, 320),
    batches=(1, 4),
    precisions=("fp32", "fp16", "bf16"),
    modes=("eager", "cuda_graph", "compile"),
    iters=50,
    warmup_calls=3,
    compile_backend="inductor",
    bench_resolutions=("1080p", "4k"),
    bench_faces=(1, 4),
    bench_paced=(None, 60.0),
    bench_frames=120,
    bench_warmup=20,
    bench_inference_iters=20,
    bench_gpu_path="cuda",
    train_resolutions=(128, 224),
    train_batches=(16, 32),
    train_steps=10,
    budget_s=PART_BUDGET_S,
)
SMOKE = Plan(
    device="cpu",
    resolutions=(64,),
    batches=(1, 2),
    precisions=("fp32",),
    modes=("eager", "cuda_graph", "compile"),
    iters=2,
    warmup_calls=1,
    compile_backend="eager",  # dynamo's tracing without inductor's C++ build: seconds, not minutes
    bench_resolutions=("320x240",),
    bench_faces=(1,),
    bench_paced=(None, 60.0),
    bench_frames=3,
    bench_warmup=1,
    bench_inference_iters=1,
    bench_gpu_path="cpu",
    train_resolutions=(64,),
    train_batches=(2,),
    train_steps=1,
    budget_s=SMOKE_BUDGET_S,
)


class Budget:
    """Seconds left of one part."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._t0 = time.perf_counter()

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self._t0)


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99 (nearest rank) and the mean of ``values`` (ms)."""
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "mean": statistics.fmean(ordered)}


# -- environment ---------------------------------------------------------------------------------------------


def prepare_wheels(env: dict[str, str]) -> list[str]:
    """Install ``.whl/*.whl`` into a temporary folder when PyAV is missing; put it on sys.path and ``env``'s
    PYTHONPATH. Returns the wheels installed."""
    import importlib.util

    wheels = sorted((ROOT / ".whl").glob("*.whl"))
    if importlib.util.find_spec("av") is not None or not wheels:
        return []
    usable = [w for w in wheels if wheel_fits(w.name)]
    for wheel in sorted(set(wheels) - set(usable)):
        log.warning("%s is not for this interpreter (Python %s on %s): not installed", wheel.name,
                    platform.python_version(), platform.machine())  # fmt: skip
    wheels = usable
    if not wheels:
        return []
    target = Path(tempfile.mkdtemp(prefix="gpu_suite_site_"))
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    try:
        subprocess.run([*cmd, "--target", str(target), *map(str, wheels)], check=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:  # no pip for this interpreter: a wheel is a zip
        log.warning("pip could not install %s (%s); unpacking them instead", [w.name for w in wheels], exc)
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(target)
    sys.path.insert(0, str(target))
    env["PYTHONPATH"] = os.pathsep.join([str(target), env.get("PYTHONPATH", "")])
    return [w.name for w in wheels]


def _interpreter_tags() -> set[str]:
    """The wheel tags this interpreter installs ("cp312-abi3-manylinux_2_28_x86_64", ...), from ``packaging``
    (pip's own copy where it is not installed); empty when neither is there."""
    try:
        from packaging.tags import sys_tags
    except ImportError:
        try:
            from pip._vendor.packaging.tags import sys_tags
        except ImportError:
            return set()
    return {str(tag) for tag in sys_tags()}


def wheel_fits(name: str, tags: set[str] | None = None) -> bool:
    """True when the wheel file ``name`` (PEP 427: name-version[-build]-python-abi-platform.whl) installs on this
    interpreter: one of its tag triples is one of ``tags`` (default: this interpreter's). With no tag list to
    compare (neither packaging nor pip), a pure-Python wheel fits and a binary one fits its own CPython minor."""
    parts = name[: -len(".whl")].split("-")
    if len(parts) < 5:
        return False
    pythons, abis, platforms = (p.split(".") for p in parts[-3:])
    offered = {f"{py}-{abi}-{plat}" for py in pythons for abi in abis for plat in platforms}
    known = _interpreter_tags() if tags is None else tags
    if known:
        return bool(offered & known)
    here = f"cp{sys.version_info.major}{sys.version_info.minor}"
    return any(t.endswith("-none-any") for t in offered) or any(t.startswith(f"{here}-") for t in offered)


def machine() -> dict[str, Any]:
    import numpy
    import onnxruntime
    import torch

    info: dict[str, Any] = {
        "host": platform.node(),
        "python": platform.python_version(),
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "numpy": numpy.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnxruntime_providers": onnxruntime.get_available_providers(),
        "gpu": None,
        "tf32_default": tf32_flags(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}",
            "bf16": bool(torch.cuda.is_bf16_supported()),
        }
    return info


# -- parts ---------------------------------------------------------------------------------------------------


def _junit_counts(path: Path) -> dict[str, int]:
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if not path.is_file():
        return counts
    root = ET.parse(path).getroot()
    for suite in root.iter("testsuite"):
        for key in counts:
            counts[key] += int(suite.get(key, 0))
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts


def gpu_test_files() -> list[str]:
    """Test modules that hold at least one test marked ``gpu``."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py") if "mark.gpu" in p.read_text())


def part_tests(plan: Plan, work: Path, env: dict[str, str], budget: Budget, smoke: bool) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    not_run: list[dict[str, str]] = []
    suites = [("gpu_marked", ["-m", "gpu", *gpu_test_files()])]
    if smoke:
        not_run.append({"what": "gpu_path_tests", "reason": "smoke mode: CI runs them in the whole suite"})
    else:
        suites.append(("gpu_path", ["-m", "not gpu", *GPU_PATH_TESTS]))  # the gpu ones ran in the first
    failed = False
    for name, args in suites:
        if budget.left() < 10:
            not_run.append({"what": name, "reason": "time budget spent"})
            continue
        xml = work / f"tests_{name}.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", f"--junitxml={xml}", *args]
        t0 = time.perf_counter()
        rc, out, err, timed_out = run_bounded(cmd, cwd=ROOT, env=env, timeout=budget.left())
        tail = (out + err)[-4000:] + (
            f"\ntimed out after {time.perf_counter() - t0:.0f} s (budget)" if timed_out else ""
        )
        log.info("pytest %s: rc %s\n%s", name, rc, tail)
        counts = _junit_counts(xml)
        failed = failed or rc not in (0, 5) or counts["failures"] > 0 or counts["errors"] > 0
        runs.append({"name": name, "args": args, "returncode": rc, "seconds": time.perf_counter() - t0, **counts})
    return {"status": "failed" if failed else "ok", "runs": runs, "not_run": not_run}


def _swap_model_file(resolution: int, folder: Path, smoke: bool) -> Path:
    """The product's DF at ``resolution`` (live widths; tiny in smoke mode), exported to DFM-signature ONNX."""
    from export.onnx_export import module_to_onnx
    from realtime_swap.train.archs import build_model
    from realtime_swap.train.config import Arch, Preset, model_config_for

    path = folder / f"df_{resolution}.onnx"
    if not path.is_file():
        config = model_config_for(Arch.DF, Preset.TINY if smoke else Preset.LIVE, resolution)
        path.write_bytes(module_to_onnx(build_model(config)))
    return path


def _timer(device: str) -> Callable[[Callable[[], Any]], float]:
    import torch

    if device.startswith("cuda"):

        def cuda_ms(fn: Callable[[], Any]) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end))

        return cuda_ms

    def host_ms(fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1000.0

    return host_ms


def tf32_flags() -> dict[str, Any]:
    """torch's TF32 switches as they stand: cuDNN convolutions (on by default: "fp32" convolutions are TF32 unless
    it is turned off) and cuBLAS matmuls. A value that cannot be read (legacy and new APIs mixed) is its error."""
    import torch

    flags: dict[str, Any] = {}
    for name, owner in (("cudnn_conv", torch.backends.cudnn), ("matmul", torch.backends.cuda.matmul)):
        try:
            flags[name] = bool(owner.allow_tf32)
        except RuntimeError as exc:
            flags[name] = f"unreadable: {exc}"
    return flags


@contextlib.contextmanager
def tf32_allowed(allowed: bool) -> Iterator[dict[str, Any]]:
    """Turn TF32 on or off for cuDNN convolutions and cuBLAS matmuls, restoring both after; yields the flags in
    force. Uses the legacy ``allow_tf32`` switches, which set convolutions and RNNs alike (mixing them with the
    ``fp32_precision`` API makes torch refuse to read them)."""
    import torch

    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.allow_tf32, matmul.allow_tf32)
    cudnn.allow_tf32 = matmul.allow_tf32 = allowed
    try:
        yield tf32_flags()
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = before


def run_bounded(cmd: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> tuple[int, str, str, bool]:
    """Run ``cmd`` in its own process group for at most ``timeout`` s: (returncode, stdout, stderr, timed_out).
    On timeout the whole group is killed: pytest and bench start children of their own that hold the output pipes,
    and killing the direct child alone (what ``subprocess.run`` does) leaves the suite waiting on those pipes."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=max(timeout, 0.1))
        return proc.returncode, out, err, False
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # a grandchild left the group and holds a pipe: stop reading
            proc.kill()
            out, err = "", ""
        return -1, out or "", err or "", True


def swap_model_order(plan: Plan) -> list[tuple[str, int, str]]:
    """(mode, px, precision) in the order measured: eager and CUDA graphs everywhere first; torch.compile last
    (its first call per shape compiles for tens of seconds, so the budget decides how many fit), half precision
    at the live sizes 128 and 224 px first."""
    quick = [(m, r, p) for m in plan.modes if m != "compile" for r in plan.resolutions for p in plan.precisions]
    slow = [("compile", r, p) for r in plan.resolutions for p in plan.precisions if "compile" in plan.modes]
    slow.sort(key=lambda c: (c[2] == "fp32", c[1] not in (128, 224), c[1]))
    return quick + slow


def _compile_unavailable_reason(device: str, backend: str) -> str | None:
    """Why ``torch.compile`` with ``backend`` cannot build a kernel on ``device`` (no C compiler, no Triton, ...),
    tried on a toy function; None when it can."""
    import torch

    torch._dynamo.reset()
    try:
        probe = torch.compile(lambda x: x * 2.0 + 1.0, backend=backend, dynamic=False)
        probe(torch.ones(8, device=device))
    except Exception as exc:
        return f"torch.compile(backend={backend!r}) fails on a toy function: {type(exc).__name__}: {exc}"[:600]
    finally:
        torch._dynamo.reset()
    return None


def swap_worker(plan: Plan, mode: str, folder: Path, seconds: float, smoke: bool, rows: Path) -> None:
    """Measure the swap model in one ``mode`` (in a process of its own: a failed CUDA graph capture can leave the
    CUDA context unusable, and an inductor compile cannot be stopped from inside), appending one JSON line per
    result row or left-out configuration to ``rows`` as it goes, so a kill at the budget keeps what was done."""
    import torch

    from realtime_swap.infer.runner import Precision
    from realtime_swap.infer.session import Backend
    from realtime_swap.swap import BackendOptions, SwapModel

    budget = Budget(seconds)
    cuda = plan.device.startswith("cuda") and torch.cuda.is_available()
    device = plan.device if cuda else "cpu"
    timer = _timer(device)

    def emit(kind: str, row: dict[str, Any]) -> None:
        with rows.open("a") as f:
            f.write(json.dumps({"kind": kind, **row}) + "\n")

    configs = [c for c in swap_model_order(plan) if c[0] == mode and (cuda or c[2] == "fp32")]  # see the parent
    compile_reason = _compile_unavailable_reason(device, plan.compile_backend) if mode == "compile" else None
    if compile_reason is not None:  # the machine lacks a compiler or Triton: left out, the suite goes on
        log.warning("swap compile: %s", compile_reason)
    for _, resolution, precision in configs:
        what = _config_name(mode, resolution, precision)
        if compile_reason is not None:
            emit("not_run", {"what": what, "reason": compile_reason})
            continue
        if budget.left() < (45 if mode == "compile" and not smoke else 3):
            emit("not_run", {"what": what, "reason": "time budget spent"})
            continue
        options = BackendOptions(
            precision=Precision(precision), torch_compile=mode == "compile", cuda_graph=mode == "cuda_graph"
        )
        if mode == "compile" and plan.compile_backend != "inductor":
            options = BackendOptions(precision=Precision(precision))
        model = None
        # "fp32" is true fp32: TF32 (cuDNN's default for convolutions) off while it is loaded, captured, measured
        with tf32_allowed(False) if precision == "fp32" else contextlib.nullcontext(tf32_flags()) as tf32:
            try:
                model = SwapModel.load(folder / f"df_{resolution}.onnx", Backend.TORCH, options=options)
                if mode == "compile" and plan.compile_backend != "inductor":
                    runner: Any = model.runner
                    runner._fn = torch.compile(runner._fn, backend=plan.compile_backend, dynamic=False)
                for batch in plan.batches:
                    if budget.left() < (30 if mode == "compile" and not smoke else 1):  # each batch compiles anew
                        emit("not_run", {"what": f"{what} batch {batch}", "reason": "time budget spent"})
                        continue
                    crops = torch.rand(batch, resolution, resolution, 3, device=device)
                    if cuda:
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    for _ in range(plan.warmup_calls):  # warm-up: algorithm choice, graph capture, compile
                        model.swap(crops)
                    if cuda:
                        torch.cuda.synchronize()
                    first_s = time.perf_counter() - t0
                    fell_back = getattr(model.runner, "compile_error", None)
                    if mode == "compile" and fell_back:  # it ran eager: not a compile figure
                        emit("not_run", {"what": f"{what} batch {batch}", "reason": f"error: {fell_back}"[:600]})
                        continue
                    times = [timer(lambda m=model, c=crops: m.swap(c)) for _ in range(plan.iters)]
                    stats = percentiles(times)
                    emit("result", {
                        "resolution": resolution, "batch": batch, "precision": precision, "mode": mode,
                        "iters": plan.iters, "p50_ms": stats["p50"], "p95_ms": stats["p95"],
                        "ms_per_face_p50": stats["p50"] / batch, "warmup_s": first_s, "device": device,
                        "tf32": tf32,
                    })  # fmt: skip
                    log.info("swap %s batch %d: p50 %.3f ms p95 %.3f ms", what, batch, stats["p50"], stats["p95"])
            except Exception as exc:  # a configuration that fails is a finding, not the end of the suite
                log.exception("swap %s failed", what)
                emit("not_run", {"what": what, "reason": f"error: {type(exc).__name__}: {exc}"[:600]})
            finally:
                if model is not None:
                    model.close()


def _config_name(mode: str, resolution: int, precision: str) -> str:
    return f"{mode} {resolution}px {precision}"


def part_swap_model(plan: Plan, work: Path, env: dict[str, str], budget: Budget, smoke: bool) -> dict[str, Any]:
    """Export the models here, then measure each mode in a worker process of its own (:func:`swap_worker`), killed
    at the part's budget; each mode still to come keeps its share of the part's budget (``MODE_RESERVE``)."""
    import torch

    not_run: list[dict[str, str]] = []
    results: list[dict[str, Any]] = []
    cuda = plan.device.startswith("cuda") and torch.cuda.is_available()
    folder = work / "models"
    folder.mkdir(exist_ok=True)
    for resolution in plan.resolutions:
        _swap_model_file(resolution, folder, smoke)
    configs = []
    for mode, resolution, precision in swap_model_order(plan):
        if not cuda and (mode == "cuda_graph" or precision != "fp32"):
            reason = "CUDA graphs need a CUDA device" if mode == "cuda_graph" else "half precision runs on CUDA only"
            not_run.append({"what": _config_name(mode, resolution, precision), "reason": reason})
        else:
            configs.append((mode, resolution, precision))
    modes = [m for m in plan.modes if any(c[0] == m for c in configs)]
    for index, mode in enumerate(modes):
        seconds = budget.left() - budget.seconds * sum(MODE_RESERVE[m] for m in modes[index + 1 :])
        rows = work / f"swap_{mode}.jsonl"
        rc, err, timed_out = -1, "", False
        if seconds >= 5:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--swap-worker", mode, "--out", str(folder)]
            cmd += ["--worker-seconds", f"{seconds:.1f}", "--worker-rows", str(rows), *(["--smoke"] if smoke else [])]
            rc, _, err, timed_out = run_bounded(cmd, cwd=work, env=env, timeout=max(budget.left(), 5.0))
            killed = " (killed at the budget)" if timed_out else ""
            log.info("swap_model worker %s: rc %s%s\n%s", mode, rc, killed, err[-6000:])
        done: set[str] = set()
        for line in rows.read_text().splitlines() if rows.is_file() else []:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # the line being written when the worker was killed
                continue
            kind = row.pop("kind")
            (results if kind == "result" else not_run).append(row)
            done.add(
                _config_name(row["mode"], row["resolution"], row["precision"]) if kind == "result" else row["what"]
            )
        if rc == 0:
            continue
        if seconds < 5:
            reason = "time budget spent"
        elif timed_out:
            reason = "worker killed at the time budget (a configuration ran past it)"
        else:
            reason = f"error: worker exited {rc}: {err.strip().splitlines()[-1:]}"
        for what in (_config_name(*c) for c in configs if c[0] == mode):
            if what not in done and not any(w.startswith(what + " batch") for w in done):
                not_run.append({"what": what, "reason": reason})
    status = "failed" if any(n["reason"].startswith("error") for n in not_run) else "ok"
    device, timer = (plan.device, "cuda-event") if cuda else ("cpu", "perf_counter")
    return {"status": status, "device": device, "timer": timer, "tf32_default": tf32_flags(),
            "results": results, "not_run": not_run}  # fmt: skip


def part_bench(plan: Plan, work: Path, env: dict[str, str], budget: Budget) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    not_run: list[dict[str, str]] = []
    errors = 0
    # 1080p unpaced and paced before 4K: where the budget runs out, the common case is measured
    for resolution in plan.bench_resolutions:
        for faces in plan.bench_faces:
            for paced in plan.bench_paced:
                what = f"{resolution} {faces} face(s) " + (f"paced {paced:g} fps" if paced else "unpaced")
                if budget.left() < 15:
                    not_run.append({"what": what, "reason": "time budget spent"})
                    continue
                target = work / f"bench_{resolution}_{faces}_{int(paced or 0)}.json"
                args = ["--resolution", resolution, "--faces", str(faces), "--frames", str(plan.bench_frames)]
                args += ["--warmup", str(plan.bench_warmup), "--inference-iters", str(plan.bench_inference_iters)]
                args += ["--no-sequential"]
                args += ["--backend", "torch", "--gpu-path", plan.bench_gpu_path, "--json", str(target)]
                if paced:
                    args += ["--paced-fps", f"{paced:g}"]
                cmd = [sys.executable, "-m", "realtime_swap", "bench", *args]
                rc, _, err, timed_out = run_bounded(cmd, cwd=work, env=env, timeout=budget.left())
                tail = err[-3000:] + ("\ntimed out (budget)" if timed_out else "")
                log.info("bench %s: rc %s\n%s", what, rc, tail)
                if rc != 0 or not target.is_file():
                    errors += 1
                    not_run.append({"what": what, "reason": f"bench exited {rc}: {tail.strip().splitlines()[-1:]}"})
                    continue
                (result,) = json.loads(target.read_text())["results"]
                run = result["pipelined"]
                runs.append({
                    "resolution": resolution, "faces": faces, "paced_fps": paced, "backend": result["backend"],
                    "gpu_path": result["gpu_path"], "fps": run["fps"], "stages_ms": run["stages"],
                    "added_latency_ms": run["latency_ms"], "frames_measured": run["frames_measured"],
                    "frames_captured": run["frames_captured"], "frames_dropped": run["frames_dropped"],
                    "frames_swapped": run["frames_swapped"], "inference_ms": result["inference_ms"],
                    "faces_found_per_frame": run["faces_found_per_frame"],
                    "faces_swapped_per_frame": run["faces_swapped_per_frame"], "notices": result["notices"],
                })  # fmt: skip
                if run["faces_swapped_per_frame"] < faces:  # the figure is not the one it is named after
                    log.warning("bench %s: %.2f of %d faces swapped per frame", what, run["faces_swapped_per_frame"],
                                faces)  # fmt: skip
    return {"status": "failed" if errors else "ok", "runs": runs, "not_run": not_run}


def part_training(plan: Plan, work: Path, budget: Budget, smoke: bool) -> dict[str, Any]:
    import torch

    from realtime_swap.train.augment_torch import DeviceAugmenter
    from realtime_swap.train.config import PRESETS, Arch, Preset, TrainConfig, model_config_for
    from realtime_swap.train.data import AugmentSettings, iteration_rng, make_batch
    from realtime_swap.train.faceset import Faceset
    from realtime_swap.train.sample_faces import write_packaged_faceset
    from realtime_swap.train.trainer import Trainer

    results: list[dict[str, Any]] = []
    not_run: list[dict[str, str]] = []
    device = "cuda" if plan.device.startswith("cuda") and torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else lambda: None
    root = work / "training"
    preset = Preset.TINY if smoke else Preset.LIVE
    for resolution in plan.train_resolutions:
        src = dst = None
        for arch in (Arch.DF, Arch.LIAE):
            for batch in plan.train_batches:
                what = f"{arch.value} {resolution}px batch {batch}"
                if budget.left() < 8:
                    not_run.append({"what": what, "reason": "time budget spent"})
                    continue
                if src is None or dst is None:
                    res = resolution
                    src = Faceset.load(write_packaged_faceset(root / f"src{res}", ["astronaut"], 4, res, 1))
                    dst = Faceset.load(write_packaged_faceset(root / f"dst{res}", ["t1_c", "t1_d"], 2, res, 2))
                try:
                    mc = model_config_for(arch, preset, resolution)
                    config = TrainConfig(iterations=plan.train_steps + 1, batch_size=batch, device=device,
                                         lr=PRESETS[preset].lr, amp=True)  # fmt: skip
                    trainer = Trainer(src, dst, root / f"{arch.value}_{resolution}_{batch}", mc, config, progress=False)
                    settings = AugmentSettings(True, False, 0.5)
                    t_cpu = time.perf_counter()
                    batches = [
                        (make_batch(iteration_rng(0, i, 0), trainer.src_data, batch, settings, trainer.dst_data),
                         make_batch(iteration_rng(0, i, 1), trainer.dst_data, batch, settings))
                        for i in range(plan.train_steps + 1)
                    ]  # fmt: skip
                    cpu_pairs_per_s = len(batches) / (time.perf_counter() - t_cpu)
                    trainer.step(0, *batches[0])  # warm-up: cuDNN's algorithm search
                    sync()
                    t0 = time.perf_counter()
                    for i in range(1, plan.train_steps + 1):
                        trainer.step(i, *batches[i])
                    sync()
                    seconds = time.perf_counter() - t0
                    augmenter = trainer.device_augmenter or DeviceAugmenter(
                        trainer.src_data, trainer.dst_data, batch, settings, 0, trainer.device
                    )
                    trainer.step(0, *augmenter.get(0))  # warm-up of the augmentation kernels
                    sync()
                    t0 = time.perf_counter()
                    for i in range(1, plan.train_steps + 1):
                        trainer.step(i, *augmenter.get(i))
                    sync()
                    device_seconds = time.perf_counter() - t0
                    results.append({
                        "arch": arch.value, "resolution": resolution, "batch": batch, "steps": plan.train_steps,
                        "its_per_s": plan.train_steps / seconds, "ms_per_it": seconds / plan.train_steps * 1000,
                        "its_per_s_device_augment": plan.train_steps / device_seconds,
                        "cpu_augment_pairs_per_s": cpu_pairs_per_s,
                        "amp": trainer.amp, "amp_dtype": str(trainer.amp_dtype)[6:] if trainer.amp else None,
                        "channels_last": trainer.channels_last, "device": device, "preset_widths": preset.value,
                        "tf32": tf32_flags(),  # what fp32 work outside autocast (losses, blurs) ran with
                    })  # fmt: skip
                    log.info("train %s: %.2f it/s (batches prepared), %.2f it/s (augmented on %s in the loop), "
                             "one CPU core prepares %.2f pairs/s", what, plan.train_steps / seconds,
                             plan.train_steps / device_seconds, device, cpu_pairs_per_s)  # fmt: skip
                except Exception as exc:  # a configuration that fails (out of memory, ...) is a finding
                    log.exception("train %s failed", what)
                    not_run.append({"what": what, "reason": f"error: {type(exc).__name__}: {exc}"})
    status = "failed" if any(n["reason"].startswith("error") for n in not_run) else "ok"
    return {"status": status, "device": device, "results": results, "not_run": not_run}


# -- driver --------------------------------------------------------------------------------------------------


def run_suite(out: Path, smoke: bool, parts: tuple[str, ...]) -> dict[str, Any]:
    """Run ``parts`` of the suite; write and return the report. Scratch files (exported models, training runs,
    each bench's JSON, pytest's XML) go to a temporary folder: ``out`` gets the JSON and the log alone."""
    plan = SMOKE if smoke else FULL
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu_suite_work_"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.setdefault("PYTHONUNBUFFERED", "1")
    if smoke:  # CI's cores are few and shared: oversubscribed OpenMP pools spin-wait each other down
        import torch

        torch.set_num_threads(1)
        env["OMP_NUM_THREADS"] = "1"
    t0 = time.perf_counter()
    suite: dict[str, Any] = {
        "mode": "smoke" if smoke else "full",
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "budget_s": dict(plan.budget_s),
    }
    report: dict[str, Any] = {"suite": suite, "parts": {}}
    # neither may end the run before a JSON exists: without the wheel, bench and pytest record their own errors
    for key, probe in (("wheels_installed", lambda: prepare_wheels(env)), ("machine", machine)):
        try:
            suite[key] = probe()
        except Exception as exc:
            log.exception("%s failed", key)
            suite[key] = {"error": f"{type(exc).__name__}: {exc}"}
    (out / "gpu_suite.json").write_text(json.dumps(report, indent=1, default=str))
    try:
        for name in PARTS:
            if name not in parts:
                left_out = [{"what": name, "reason": "not in --parts"}]
                report["parts"][name] = {"status": "skipped", "seconds": 0.0, "not_run": left_out}
                continue
            later = len(PARTS) - PARTS.index(name) - 1
            cap = SUITE_LIMIT_S["smoke" if smoke else "full"] - (time.perf_counter() - t0) - 10.0 * later
            budget = Budget(max(0.0, min(plan.budget_s[name], cap)))
            start = time.perf_counter()
            log.info("== %s (budget %.0f s)", name, budget.seconds)
            try:
                if name == "tests":
                    result = part_tests(plan, work, env, budget, smoke)
                elif name == "swap_model":
                    result = part_swap_model(plan, work, env, budget, smoke)
                elif name == "bench":
                    result = part_bench(plan, work, env, budget)
                else:
                    result = part_training(plan, work, budget, smoke)
            except Exception as exc:
                log.exception("part %s failed", name)
                result = {"status": "error", "error": f"{type(exc).__name__}: {exc}", "not_run": []}
            result["seconds"] = time.perf_counter() - start
            report["parts"][name] = result
            (out / "gpu_suite.json").write_text(json.dumps(report, indent=1, default=str))  # what ran so far
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["suite"]["seconds"] = time.perf_counter() - t0
    (out / "gpu_suite.json").write_text(json.dumps(report, indent=1, default=str))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_suite.json and gpu_suite.log")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU, seconds (CI)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--swap-worker", choices=FULL.modes, help=argparse.SUPPRESS)  # part_swap_model's workers
    parser.add_argument("--worker-seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument("--worker-rows", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.swap_worker:  # --out is the models' folder here
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        if args.smoke:
            import torch

            torch.set_num_threads(1)
        plan = SMOKE if args.smoke else FULL
        swap_worker(plan, args.swap_worker, args.out, args.worker_seconds, args.smoke, args.worker_rows)
        return 0
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {', '.join(PARTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        handlers=[logging.FileHandler(args.out / "gpu_suite.log"), logging.StreamHandler()],
    )
    report = run_suite(args.out, args.smoke, parts)
    statuses = {name: part["status"] for name, part in report["parts"].items()}
    log.info("done in %.0f s: %s", report["suite"]["seconds"], statuses)
    return 0 if all(s in ("ok", "skipped") for s in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
