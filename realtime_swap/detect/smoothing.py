"""Temporal smoothing of landmarks: the One-Euro filter, and a moving average to compare it with.

Both are called once per frame with the new measurement and its time, ``filter(x, t) -> estimate``, and work
element-wise on an array of any (fixed) shape, e.g. a face's (468, 2) landmarks in px.

One-Euro (Casiez, Roussel, Vogel, CHI 2012): an exponential low-pass whose cutoff rises with the measured
speed, ``cutoff = min_cutoff + beta * |dx/dt|``, so a still face is smoothed hard (no shake) and a moving one
lightly (little lag). ``beta`` is in Hz per px/s: the defaults were tuned on a 200 px wide face at 30 fps
with 1 px sensor noise (``benchmarks/bench_smoothing.py``); for much larger or smaller faces scale ``beta``
inversely with the face size.
"""

from __future__ import annotations

import math

import numpy as np

# Tuned with benchmarks/bench_smoothing.py (468-point face, 200 px wide, 30 fps, sigma = 1 px noise):
# still-face jitter 1.41 -> ~0.46 px RMS, lag ~0.25 frame at 300 px/s.
DEFAULT_MIN_CUTOFF = 0.3
DEFAULT_BETA = 0.05
DEFAULT_D_CUTOFF = 1.0


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of a first-order low-pass with the given cutoff (Hz) sampled every dt s."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def _measurement(x: np.ndarray, t: float, shape: tuple[int, ...] | None, what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{what}: expected an array of shape {shape} as before, got {arr.shape}")
    if not math.isfinite(t):
        raise ValueError(f"{what}: time must be finite seconds, got {t!r}")
    return arr


class OneEuroFilter:
    """One-Euro low-pass filter, element-wise over an array of any shape.

    min_cutoff: Hz, the cutoff of a still signal (lower = steadier, slower). beta: Hz per unit/s, how fast
    the cutoff rises with speed (higher = less lag when moving). d_cutoff: Hz, the low-pass on the speed.

    ``__call__(x, t)``: x the new measurement (fixed shape), t its time in s. Returns the estimate, same shape,
    float64. The first call (and the first after ``reset``) returns x. A repeated ``t`` returns the last
    estimate unchanged; a ``t`` earlier than the last one (a seek, a looped file) restarts the filter at x.
    """

    def __init__(
        self,
        min_cutoff: float = DEFAULT_MIN_CUTOFF,
        beta: float = DEFAULT_BETA,
        d_cutoff: float = DEFAULT_D_CUTOFF,
    ) -> None:
        if not (min_cutoff > 0 and math.isfinite(min_cutoff)):
            raise ValueError(f"OneEuroFilter: min_cutoff must be > 0 Hz, got {min_cutoff!r}")
        if not (beta >= 0 and math.isfinite(beta)):
            raise ValueError(f"OneEuroFilter: beta must be >= 0, got {beta!r}")
        if not (d_cutoff > 0 and math.isfinite(d_cutoff)):
            raise ValueError(f"OneEuroFilter: d_cutoff must be > 0 Hz, got {d_cutoff!r}")
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    def reset(self) -> None:
        """Forget the past: the next call starts afresh (also accepts a new shape)."""
        self._x = None
        self._dx = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        t = float(t)
        prev = self._x
        arr = _measurement(x, t, None if prev is None else prev.shape, "OneEuroFilter")
        if prev is None or self._dx is None or t < self._t:
            self._x = arr.copy()
            self._dx = np.zeros_like(arr)
            self._t = t
            return arr.copy()
        dt = t - self._t
        if dt == 0.0:
            return prev.copy()
        a_d = _alpha(self.d_cutoff, dt)
        dx = self._dx + a_d * ((arr - prev) / dt - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(dx)
        a = _alpha(cutoff, dt)
        est = prev + a * (arr - prev)
        self._x, self._dx, self._t = est, dx, t
        return est.copy()


class MovingAverage:
    """Mean of the last ``window`` measurements, element-wise; same call contract as OneEuroFilter.

    Its lag on a steady motion is (window - 1) / 2 frames and it divides white-noise jitter by sqrt(window):
    the baseline the One-Euro filter is measured against. ``t`` only detects repeats and restarts.
    """

    def __init__(self, window: int) -> None:
        if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 1:
            raise ValueError(f"MovingAverage: window must be a positive int, got {window!r}")
        self.window = int(window)
        self._buf: np.ndarray | None = None
        self._count = 0
        self._t = 0.0

    def reset(self) -> None:
        """Forget the past: the next call starts afresh (also accepts a new shape)."""
        self._buf = None
        self._count = 0

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        t = float(t)
        buf = self._buf
        arr = _measurement(x, t, None if buf is None else buf.shape[1:], "MovingAverage")
        if buf is None or t < self._t:
            buf = self._buf = np.empty((self.window, *arr.shape), dtype=np.float64)
            self._count = 0
        elif t == self._t:
            return buf[: min(self._count, self.window)].mean(axis=0)
        buf[self._count % self.window] = arr
        self._count += 1
        self._t = t
        return buf[: min(self._count, self.window)].mean(axis=0)
