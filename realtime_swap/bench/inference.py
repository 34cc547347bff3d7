"""The swap model alone: session creation and inference timed, with CUDA events on a GPU, the wall clock on a CPU."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from realtime_swap.bench.settings import BenchSettings
from realtime_swap.metrics import percentiles


def measure_session(model: Path, s: BenchSettings) -> tuple[float, dict[str, Any]]:
    """Create the swap model's session alone (timed), time inference on a batch of ``faces`` crops, close it.

    Returns (session_create_s, inference figures: clock, batch, backend, device, p50/p95/p99 ms ...).
    On CUDA the crops live on the device and each call is timed with CUDA events after a synchronize.
    """
    from realtime_swap.swap.model import SwapModel

    t0 = time.perf_counter()
    swap = SwapModel.load(model, s.backend, options=s.runtime)
    session_s = time.perf_counter() - t0
    try:
        rng = np.random.default_rng(0)
        r = swap.resolution
        crops = rng.random((s.faces, r, r, 3), dtype=np.float32)
        on_cuda = swap.runner.device.startswith("cuda")
        times = _time_cuda(swap, crops, s.inference_iters) if on_cuda else _time_host(swap, crops, s.inference_iters)
        figures: dict[str, Any] = {
            "clock": "cuda-event" if on_cuda else "host-wall",
            "batch": s.faces,
            "model_resolution": r,
            "face_type": swap.face_type.value,
            "backend": swap.backend.value,
            "device": swap.runner.device,
            "backend_notes": list(swap.notes),
            **percentiles(times),
        }
    finally:
        swap.close()
    return session_s, figures


def _time_host(swap: Any, crops: np.ndarray, iters: int) -> list[float]:
    times = []
    swap.swap(crops)  # first call: allocations, kernel selection
    for _ in range(iters):
        t0 = time.perf_counter()
        swap.swap(crops)
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def _time_cuda(swap: Any, crops: np.ndarray, iters: int) -> list[float]:
    import torch

    device = torch.device(swap.runner.device)
    batch = torch.as_tensor(crops, device=device)
    swap.swap(batch)
    torch.cuda.synchronize(device)
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        swap.swap(batch)
        end.record()
        end.synchronize()
        times.append(float(start.elapsed_time(end)))
    return times
