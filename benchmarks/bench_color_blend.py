"""Benchmark of colour transfer and paste-back; prints tables (one run).

1. Colour transfer per mode on a 256 x 256 face crop with its mask, live dtypes (float32 swapped face, uint8
   aligned crop): numba kernels (1 thread and all numba threads) against the numpy reference; median (min) ms.
2. Paste-back of a 256 px crop at 720p / 1080p / 4K (face about a third of the frame's height): region-only
   blend against the whole-frame warp blend of the same crop, in the same run; also the seamless mode and the
   copy-on-write frame copy the blend stage makes.
3. Colour flicker on a still scene (sensor noise, landmark-mask jitter, model-output noise): mean frame-to-frame
   change of a fixed face patch's mean colour (8-bit levels), without and with time smoothing.

Run: ``nice -n 10 python benchmarks/bench_color_blend.py`` (about a minute). On a shared machine the numbers
move with other processes' load: the script prints the load average; minima are the least disturbed figures.
numpy's BLAS (used by the references' small matrix products) is held to one thread, like the 1-thread kernels:
on busy cores a multi-threaded BLAS mostly waits for its own threads and would flatter the ratios.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS

import argparse
import functools
import importlib.util
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numba
import numpy as np
from skimage import data

from realtime_swap.blend import BlendMode, paste_back_full_frame, paste_back_roi
from realtime_swap.blend import warmup as warmup_blend
from realtime_swap.color import ColorMode, ColorStatsSmoother, color_transfer, warmup
from realtime_swap.color.jit import configure_kernel_cache

S = 256


def _timings(func: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, min) wall time of ``func`` in ms over ``repeat`` calls after one untimed call."""
    func()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times)


def _fmt(t: tuple[float, float]) -> str:
    return f"{t[0]:8.3f} ({t[1]:7.3f})"


def _face_crop(image: np.ndarray, cx: float, cy: float, side: float) -> np.ndarray:
    m = cv2.getRotationMatrix2D((cx, cy), 0.0, S / side)
    m[:, 2] += np.array([S / 2, S / 2]) - np.array([cx, cy])
    return cv2.warpAffine(image, m, (S, S), flags=cv2.INTER_AREA)


def _faces() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(swapped face float32 [0, 1], frame's face uint8, mask float32): real faces, 256 x 256 crops."""
    spec = importlib.util.find_spec("insightface")
    assert spec is not None and spec.submodule_search_locations
    t1 = cv2.imread(str(Path(spec.submodule_search_locations[0]) / "data" / "images" / "t1.jpg"))
    assert t1 is not None
    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    swapped = _face_crop(t1, 1175, 335, 170).astype(np.float32) / 255.0
    target = _face_crop(astronaut, 226, 118, 170)
    mask = np.zeros((S, S), np.float32)
    cv2.ellipse(mask, (128, 140), (72, 100), 0, 0, 360, 1.0, -1)
    return swapped, target, cv2.GaussianBlur(mask, (0, 0), 3.0)


def bench_color(repeat: int) -> None:
    swapped, target, mask = _faces()
    threads = numba.get_num_threads()
    print(
        f"\n1. colour transfer, 256 x 256 crop, float32 source / uint8 target, median (min) ms over {repeat} runs;"
        " ratio of minima, numpy / best numba"
    )
    print(f"{'mode':5} | {'numba, 1 thread':>18} | {f'numba, {threads} threads':>18} | {'numpy':>18} | ratio")
    for mode in ColorMode:
        if mode is ColorMode.NONE:
            continue
        fast = functools.partial(color_transfer, mode, swapped, target, mask)
        slow = functools.partial(color_transfer, mode, swapped, target, mask, reference=True)
        numba.set_num_threads(1)
        one = _timings(fast, repeat)
        numba.set_num_threads(threads)
        many = _timings(fast, repeat)
        ref = _timings(slow, max(3, repeat // 4))
        best = min(one[1], many[1])
        print(f"{mode.value:5} | {_fmt(one)} | {_fmt(many)} | {_fmt(ref)} | {ref[1] / best:5.1f}x")
    numba.set_num_threads(threads)


def _scene(width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    frame = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (width, height))
    cx, cy, side = width * 0.44, height * 0.23, height * 0.36  # the astronaut's face
    m = cv2.getRotationMatrix2D((cx, cy), 10.0, S / side)
    m[:, 2] += np.array([S / 2, S / 2]) - np.array([cx, cy])
    crop = cv2.warpAffine(frame, m, (S, S)).astype(np.float32) / 255.0
    mask = np.zeros((S, S), np.float32)
    cv2.ellipse(mask, (128, 140), (80, 105), 0, 0, 360, 1.0, -1)
    return frame, crop, mask, m


def _paste_row(name: str, width: int, height: int, repeat: int) -> str:
    frame, crop, mask, m = _scene(width, height)
    work = frame.copy()
    roi = _timings(lambda: paste_back_roi(work, crop, mask, m), repeat)
    full = _timings(lambda: paste_back_full_frame(work, crop, mask, m), max(3, repeat // 4))
    seamless = _timings(lambda: paste_back_roi(work, crop, mask, m, mode=BlendMode.SEAMLESS), max(3, repeat // 4))
    copy = _timings(frame.copy, repeat)
    ratio = full[1] / roi[1]
    return f"{name:9} | {_fmt(roi)} | {_fmt(full)} | {ratio:5.1f}x | {_fmt(seamless)} | {copy[0]:6.2f}"


def bench_paste(repeat: int) -> None:
    print(f"\n2. paste-back of a 256 px crop (blur 8 px), median (min) ms over {repeat} runs; ratio of minima")
    print(
        f"{'frame':9} | {'region blend':>18} | {'full-frame blend':>18} |  ratio | {'seamless region':>18} | frame copy"
    )
    for name, (w, h) in (("720p", (1280, 720)), ("1080p", (1920, 1080)), ("4K", (3840, 2160))):
        print(_paste_row(name, w, h, repeat))


def bench_flicker(frames: int = 90) -> None:
    swapped, target, _ = _faces()
    rng_seed = 11
    fps = 30.0
    print(f"\n3. colour flicker, still scene at {fps:.0f} fps for {frames} frames: sensor noise sigma 4 levels,")
    print("   landmark mask jitter +-1 px, swapped-face noise sigma 1 level; mean |frame-to-frame change| of a fixed")
    print("   face patch's mean colour, 8-bit levels (lower is steadier)")
    print(f"{'mode':5} | {'no smoothing':>12} | {'tau 0.25 s':>10} | {'tau 0.5 s':>10} | {'frame face':>10}")
    for mode in ColorMode:
        if mode is ColorMode.NONE:
            continue
        results = []
        for tau in (None, 0.25, 0.5):
            rng = np.random.default_rng(rng_seed)
            smoother = None if tau is None else ColorStatsSmoother(tau)
            means, inputs = [], []
            for i in range(frames):
                noisy = np.clip(target + rng.normal(0.0, 4.0, target.shape), 0, 255).astype(np.uint8)
                face = np.clip(swapped + rng.normal(0.0, 1.0 / 255, swapped.shape), 0, 1).astype(np.float32)
                mask = np.zeros((S, S), np.float32)
                centre = (128 + int(rng.integers(-1, 2)), 140 + int(rng.integers(-1, 2)))
                cv2.ellipse(mask, centre, (72, 100), 0, 0, 360, 1.0, -1)
                if smoother is None:
                    out = color_transfer(mode, face, noisy, mask)
                else:
                    out = smoother.transfer(0, mode, face, noisy, mask, 1.0, i / fps)
                means.append(out[90:190, 80:176].reshape(-1, 3).mean(axis=0) * 255.0)
                inputs.append(noisy[90:190, 80:176].reshape(-1, 3).mean(axis=0))
            results.append(float(np.abs(np.diff(np.array(means[10:]), axis=0)).mean()))
        source_flicker = float(np.abs(np.diff(np.array(inputs[10:]), axis=0)).mean())
        print(f"{mode.value:5} | {results[0]:12.3f} | {results[1]:10.3f} | {results[2]:10.3f} | {source_flicker:10.3f}")
    print("   (frame face: the same measure on the noisy input face itself)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=40, help="timed runs per figure (default 40)")
    args = parser.parse_args()
    start = time.perf_counter()
    warmup()
    warmup_blend()
    where = configure_kernel_cache() or "next to the sources (__pycache__)"
    print(f"kernel warm-up (compile, or load from numba's disk cache {where}): {time.perf_counter() - start:.2f} s")
    print(
        f"numba {numba.__version__} with {numba.get_num_threads()} threads (layer {numba.threading_layer()}); "
        f"OpenCV {cv2.__version__} with {cv2.getNumThreads()} threads; "
        f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    bench_color(args.repeat)
    bench_paste(args.repeat)
    bench_flicker()
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
