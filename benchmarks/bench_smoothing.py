"""Landmark smoothing figures: still-face jitter and moving-face lag, One-Euro against moving averages.

A synthetic track of MediaPipe's canonical 468-point face, scaled to ``--face-width`` px, with Gaussian sensor
noise of ``--sigma`` px on every coordinate of every frame at ``--fps``:

* jitter: RMS distance (px) between the filtered and the true landmarks of a still face;
* lag: mean delay (frames) of the filtered landmarks behind a face moving sideways at a constant speed,
  ``mean(true_x - filtered_x) / (speed / fps)``, measured once the filter has settled.

The moving average of "equal smoothing" is the window whose still-face jitter is closest to the One-Euro's.

    PYTHONPATH=. python benchmarks/bench_smoothing.py [--sweep]     (or after ``pip install -e .``)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from realtime_swap.detect.mesh import canonical_landmarks_2d
from realtime_swap.detect.smoothing import DEFAULT_BETA, DEFAULT_MIN_CUTOFF, MovingAverage, OneEuroFilter

Filter = Callable[[np.ndarray, float], np.ndarray]


def track_errors(
    make_filter: Callable[[], Filter],
    face: np.ndarray,
    speed: float,
    fps: float,
    sigma: float,
    frames: int,
    seed: int,
) -> np.ndarray:
    """Filtered minus true landmarks for every frame: (frames, 468, 2) px."""
    rng = np.random.default_rng(seed)
    filt = make_filter()
    errors = np.empty((frames, *face.shape))
    for i in range(frames):
        t = i / fps
        truth = face + np.array([speed * t, 0.0])
        errors[i] = filt(truth + rng.normal(0.0, sigma, face.shape), t) - truth
    return errors


def jitter_and_lag(
    make_filter: Callable[[], Filter], args: argparse.Namespace, face: np.ndarray, speed: float
) -> tuple[float, float]:
    """(still-face jitter px RMS, lag in frames at ``speed`` px/s), skipping the settling frames."""
    skip = args.settle
    still = track_errors(make_filter, face, 0.0, args.fps, args.sigma, args.frames, args.seed)[skip:]
    jitter = float(np.sqrt((still**2).sum(axis=-1).mean()))
    moving = track_errors(make_filter, face, speed, args.fps, args.sigma, args.frames, args.seed + 1)[skip:]
    lag = float(-moving[..., 0].mean() / (speed / args.fps))
    return jitter, lag


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--sigma", type=float, default=1.0, help="sensor noise, px per coordinate")
    parser.add_argument("--face-width", type=float, default=200.0, help="px")
    parser.add_argument("--speed", type=float, default=300.0, help="px/s of the moving face")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--settle", type=int, default=30, help="frames skipped at the start")
    parser.add_argument("--min-cutoff", type=float, default=DEFAULT_MIN_CUTOFF)
    parser.add_argument("--beta", type=float, default=DEFAULT_BETA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sweep", action="store_true", help="also print a min_cutoff x beta grid")
    args = parser.parse_args()

    face = canonical_landmarks_2d(args.face_width, (320.0, 240.0)).astype(np.float64)
    raw = args.sigma * np.sqrt(2.0)
    print(f"468-point face {args.face_width:.0f} px wide, {args.fps:g} fps, noise sigma {args.sigma:g} px")
    print(f"unfiltered still-face jitter: {raw:.3f} px RMS (expected sigma * sqrt(2))")

    def one_euro() -> Filter:
        return OneEuroFilter(args.min_cutoff, args.beta)

    oe_jitter, oe_lag = jitter_and_lag(one_euro, args, face, args.speed)
    print(f"\nOne-Euro min_cutoff={args.min_cutoff:g} Hz beta={args.beta:g}:")
    print(f"  still jitter {oe_jitter:.3f} px RMS ({raw / oe_jitter:.2f}x less than raw)")
    for speed in (30.0, 100.0, args.speed, 1000.0):
        _, lag = jitter_and_lag(one_euro, args, face, speed)
        print(f"  lag at {speed:6.0f} px/s: {lag:5.2f} frames = {lag * speed / args.fps:5.2f} px")

    print("\nmoving average: window, still jitter px RMS, lag frames at", f"{args.speed:g} px/s")
    best: tuple[float, int, float, float] | None = None
    for window in range(1, 21):

        def moving_average(w: int = window) -> Filter:
            return MovingAverage(w)

        jitter, lag = jitter_and_lag(moving_average, args, face, args.speed)
        print(f"  {window:2d}  {jitter:.3f}  {lag:5.2f}")
        gap = abs(jitter - oe_jitter)
        if best is None or gap < best[0]:
            best = (gap, window, jitter, lag)
    assert best is not None
    _, window, ma_jitter, ma_lag = best
    print(
        f"\nequal smoothing: MovingAverage({window}) jitter {ma_jitter:.3f} px lags {ma_lag:.2f} frames; "
        f"One-Euro jitter {oe_jitter:.3f} px lags {oe_lag:.2f} frames at {args.speed:g} px/s"
    )

    filt = OneEuroFilter(args.min_cutoff, args.beta)
    noisy = face + np.random.default_rng(args.seed).normal(0.0, args.sigma, face.shape)
    n = 2000
    start = time.perf_counter()
    for i in range(n):
        filt(noisy, i / args.fps)
    print(f"\nOne-Euro cost: {(time.perf_counter() - start) / n * 1e6:.1f} us per (468, 2) update")

    if args.sweep:
        print("\nsweep: min_cutoff beta -> still jitter px, lag frames at", f"{args.speed:g} px/s")
        for min_cutoff in (0.1, 0.3, 0.5, 1.0, 2.0):
            for beta in (0.01, 0.02, 0.05, 0.1):

                def swept(mc: float = min_cutoff, b: float = beta) -> Filter:
                    return OneEuroFilter(mc, b)

                jitter, lag = jitter_and_lag(swept, args, face, args.speed)
                print(f"  {min_cutoff:4.1f} {beta:5.2f}  {jitter:.3f}  {lag:5.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
