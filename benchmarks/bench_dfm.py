"""Figures of the real-DFM fixtures (tests/fixtures/dfm): load time, ms per face on each CPU backend, max |diff|
to TensorFlow's reference outputs.

Load: ``SwapModel.load`` wall time (file read, signature check, session creation or ONNX→torch conversion),
median of ``--loads``. ms per face: one face per call (the live engine's common case), median of ``--calls`` calls
after ``--warmup``, the morph models at DeepFaceLive's default 0.75. Max |diff|: over all three outputs of the
fixed reference batch and, for morph models, every reference morph value.

Usage: ``python benchmarks/bench_dfm.py [--backends ort-cpu,torch] [--threads 1] [--calls 200]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from realtime_swap.infer.session import Backend
from realtime_swap.swap.backends import BackendOptions
from realtime_swap.swap.model import DFM_INPUT, DFM_MORPH, OUT_CELEB_FACE, OUT_CELEB_MASK, OUT_FACE_MASK, SwapModel

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "dfm"
OUTPUTS = (OUT_FACE_MASK, OUT_CELEB_FACE, OUT_CELEB_MASK)


def max_diff(model: SwapModel, ref: dict[str, np.ndarray]) -> float:
    worst = 0.0
    for morph in [float(m) for m in ref["morph"]] if "morph" in ref else [None]:
        feeds = {DFM_INPUT: ref["in_face"]}
        suffix = ""
        if morph is not None:
            feeds[DFM_MORPH] = np.array([morph], np.float32)
            suffix = f"@{morph}"
        for out, name in zip(model.runner.run(feeds, list(OUTPUTS)), OUTPUTS, strict=True):
            worst = max(worst, float(np.abs(out - ref[name.removesuffix(":0") + suffix]).max()))
    return worst


def measure(path: Path, backend: Backend, args: argparse.Namespace) -> dict[str, float]:
    options = BackendOptions(cpu_threads=args.threads) if backend is not Backend.TORCH else BackendOptions()
    loads = []
    for _ in range(args.loads):
        start = time.perf_counter()
        model = SwapModel.load(path, backend, options=options)
        loads.append((time.perf_counter() - start) * 1e3)
        model.close()
    model = SwapModel.load(path, backend, options=options)
    with np.load(path.with_suffix(".npz")) as data:
        ref = {k: data[k] for k in data.files}
    face = ref["in_face"][:1]
    for _ in range(args.warmup):
        model.swap(face)
    times = []
    for _ in range(args.calls):
        start = time.perf_counter()
        model.swap(face)
        times.append((time.perf_counter() - start) * 1e3)
    diff = max_diff(model, ref)
    model.close()
    return {"load_ms": statistics.median(loads), "ms_per_face": statistics.median(times), "max_diff": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="ort-cpu,torch", help="comma-separated backends (default ort-cpu,torch)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for ORT and torch (default 1)")
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    backends = [Backend(b.strip()) for b in args.backends.split(",")]
    print(f"{'fixture':<12} {'backend':<8} {'load ms':>8} {'ms/face':>8} {'max |diff|':>11}")
    for path in sorted(FIXTURES.glob("*.dfm")):
        for backend in backends:
            r = measure(path, backend, args)
            print(
                f"{path.stem:<12} {backend.value:<8} {r['load_ms']:8.1f} {r['ms_per_face']:8.2f} {r['max_diff']:11.2e}"
            )


if __name__ == "__main__":
    main()
