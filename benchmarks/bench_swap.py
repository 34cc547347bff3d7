"""Issue #7 figures: swap-model inference per backend and model size, and the engine's fps/latency per resolution.

1. Inference alone, per backend this machine has (``--backends``, default every one ``auto`` could pick) and per
   untrained synthetic DFM model size (``--sizes``, px): session creation s and ms per call at batch ``--faces``
   (CUDA: CUDA events around device-resident I/O after a synchronize; CPU: wall clock).
2. The engine (``realtime_swap bench``'s measurement) at each ``--resolution``: pipelined and sequential fps,
   latency, per-stage p50, with the model ``--model`` (default: the shipped one, else a synthetic
   ``--synthetic-resolution`` px one) on ``--backend``; rounds alternate sequential and pipelined. Every option
   of ``realtime_swap bench`` applies (``--gpu-path``, ``--precision``, ``--cuda-graph``, ...).

    python benchmarks/bench_swap.py [--frames 150] [--rounds 3] [--resolution 480p,720p] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from realtime_swap.bench import (
    BenchSettings,
    ModelResolver,
    add_arguments,
    format_result,
    machine,
    measure,
    measure_session,
    settings_from_args,
)
from realtime_swap.infer.session import Backend
from realtime_swap.swap.backends import AUTO_ORDER, unavailable_reason
from realtime_swap.swap.synthetic import build_dfm_model


def inference_table(backends: list[Backend], sizes: list[int], faces: int, iters: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            path = Path(tmp) / f"synthetic_{size}.onnx"
            path.write_bytes(build_dfm_model(size))
            for backend in backends:
                settings = BenchSettings(backend=backend, faces=faces, inference_iters=iters)
                session_s, figures = measure_session(path, settings)
                rows.append({"size": size, "session_create_s": session_s, **figures})
                print(
                    f"{size:>5} px  {backend.value:<9} batch {faces}  session {session_s:6.2f} s  "
                    f"p50 {figures['p50']:8.2f}  p95 {figures['p95']:8.2f}  p99 {figures['p99']:8.2f} ms "
                    f"({figures['clock']})",
                    flush=True,
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)  # the engine table takes every option of `realtime_swap bench`
    parser.add_argument("--backends", help="comma-separated backends for the inference table (default: available)")
    parser.add_argument("--sizes", default="128,224", help="synthetic model sizes for the inference table, px")
    parser.add_argument("--json", type=Path)
    parser.set_defaults(resolution="480p,720p", frames=150, warmup=15, rounds=3, inference_iters=50)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    if args.backends:
        backends = [Backend(b) for b in args.backends.split(",")]
    else:
        backends = [b for b in AUTO_ORDER if unavailable_reason(b) is None and b is not Backend.TORCH]
    sizes = [int(s) for s in args.sizes.split(",") if s]
    print(f"== inference alone ({', '.join(b.value for b in backends)})")
    rows = inference_table(backends, sizes, args.faces, args.inference_iters)

    models = ModelResolver()
    results = []
    try:
        for text in args.resolution.split(","):
            result = measure(settings_from_args(args, text), models, sequential=args.sequential)
            results.append(result)
            print(format_result(result), flush=True)
    finally:
        models.close()
    if args.json:
        document = {"machine": machine(), "inference": rows, "engine": results}
        args.json.write_text(json.dumps(document, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
