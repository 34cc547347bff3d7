"""Plain numpy twins of :mod:`realtime_swap.color.kernels`: same inputs, same definitions, whole-array numpy.

They are what the kernels are tested against and the baseline the benchmark divides by. Differences to the
kernels: ``rct`` evaluates the L*a*b* curves exactly where the kernels interpolate tables (< 2e-5), and
summation orders differ (float64 rounding). Pixels are (N, 3) float32 BGR rows in [0, 1], as for the kernels;
functions return new arrays instead of writing into ``out``.
"""

from __future__ import annotations

import numpy as np

from realtime_swap.color.lab import bgr_to_lab, lab_to_bgr


def rct_lab_moments(samples: np.ndarray) -> np.ndarray:
    """(n, 3) float32 BGR samples -> (6,) float64 [mean L, a, b, std L, a, b] (zeros when n == 0)."""
    if samples.shape[0] == 0:
        return np.zeros(6)
    lab = bgr_to_lab(samples)
    return np.concatenate([lab.mean(axis=0), lab.std(axis=0)])


def rct_apply(src: np.ndarray, coef: np.ndarray, amount: float) -> np.ndarray:
    """src + amount * (Lab^-1(scale * Lab(src) + shift) - src); ``coef`` is (2, 3) [scale; shift]."""
    moved = lab_to_bgr(bgr_to_lab(src) * coef[0] + coef[1])
    return (src + amount * (moved - src)).astype(np.float32)


def bgr_moments(samples: np.ndarray) -> np.ndarray:
    """(n, 3) float32 BGR samples -> (12,) float64 [mean B, G, R; population covariance row-major]."""
    if samples.shape[0] == 0:
        return np.zeros(12)
    x = samples.astype(np.float64)
    mean = x.mean(axis=0)
    d = x - mean
    return np.concatenate([mean, (d.T @ d / x.shape[0]).ravel()])


def affine_apply(src: np.ndarray, a: np.ndarray, b: np.ndarray, amount: float) -> np.ndarray:
    """src + amount * (clip(A src + b, 0, 1) - src)."""
    moved = np.clip(src.astype(np.float64) @ a.T + b, 0.0, 1.0)
    return (src + amount * (moved - src)).astype(np.float32)


def _project(points: np.ndarray, d: np.ndarray) -> np.ndarray:
    x = points.astype(np.float64)
    return d[0] * x[:, 0] + d[1] * x[:, 1] + d[2] * x[:, 2]


def projection_histograms(
    points: np.ndarray, index: np.ndarray, dirs: np.ndarray, lo: float, inv_width: float, bins: int
) -> np.ndarray:
    """(K, bins) float64 counts of ``dirs[k] . points[index]``; out-of-range values count in the end bins."""
    picked = points[index]
    counts = np.empty((dirs.shape[0], bins))
    for k in range(dirs.shape[0]):
        pos = (_project(picked, dirs[k]) - lo) * inv_width
        which = np.clip(np.floor(pos), 0, bins - 1).astype(np.int64)
        counts[k] = np.bincount(which, minlength=bins)
    return counts


def edge_mappings(source: np.ndarray, target: np.ndarray, lo: float, width: float) -> np.ndarray:
    """(K, B+1): where each source bin edge goes under 1-D optimal transport (see the kernel's docstring)."""
    bins = source.shape[1]
    out = np.empty((source.shape[0], bins + 1))
    for row in range(source.shape[0]):
        cs = np.concatenate([[0.0], np.cumsum(source[row])])
        ct = np.concatenate([[0.0], np.cumsum(target[row])])
        cs = cs / cs[-1]
        ct = ct / ct[-1]
        mass = np.diff(ct)
        k = np.minimum(np.searchsorted(ct[1:], cs, side="left"), bins - 1)
        safe = np.where(mass[k] > 0.0, mass[k], 1.0)
        frac = np.clip(np.where(mass[k] > 0.0, (cs - ct[k]) / safe, 0.0), 0.0, 1.0)
        first = int(np.argmax(mass > 0.0))
        out[row] = np.where(cs > 0.0, lo + (k + frac) * width, lo + first * width)
    return out


def map_values(mapping: np.ndarray, p: np.ndarray, lo: float, inv_width: float, bins: int) -> np.ndarray:
    """Piecewise-linear evaluation of one row of :func:`edge_mappings` at the values ``p`` (clamped)."""
    pos = np.clip((p - lo) * inv_width, 0.0, float(bins))
    j = np.minimum(pos.astype(np.int64), bins - 1)
    return mapping[j] + (pos - j) * (mapping[j + 1] - mapping[j])


def hist_apply(src: np.ndarray, maps: np.ndarray, lo: float, inv_width: float, bins: int, amount: float) -> np.ndarray:
    """src + amount * (map_c(255 src) / 255 - src) per channel c; ``maps`` is (3, bins + 1)."""
    out = np.empty_like(src)
    for c in range(3):
        s = src[:, c].astype(np.float64)
        v = np.clip(map_values(maps[c], s * 255.0, lo, inv_width, bins) * (1.0 / 255.0), 0.0, 1.0)
        out[:, c] = s + amount * (v - s)
    return out


def sliced_transfer(
    x: np.ndarray,
    index: np.ndarray,
    dirs: np.ndarray,
    target: np.ndarray,
    lo: float,
    width: float,
    weight: float,
    source: np.ndarray,
    source_weight: float,
) -> np.ndarray:
    """The moved (N, 3) float32 cloud; ``source`` is updated in place (see the kernel's docstring)."""
    bins = target.shape[2]
    inv_width = 1.0 / width
    x = x.copy()
    for s in range(dirs.shape[0]):
        measured = projection_histograms(x, index, dirs[s], lo, inv_width, bins) / index.shape[0]
        source[s] += source_weight * (measured - source[s])
        maps = edge_mappings(source[s], target[s], lo, width)
        shift = np.zeros((x.shape[0], 3))
        for k in range(dirs.shape[1]):
            p = _project(x, dirs[s, k])
            shift += np.outer(map_values(maps[k], p, lo, inv_width, bins) - p, dirs[s, k])
        x = (x + weight * shift).astype(np.float32)
    return x


def sliced_finish(src: np.ndarray, x: np.ndarray, amount: float) -> np.ndarray:
    """src + amount * (clip(x + 0.5, 0, 1) - src)."""
    return (src + amount * (np.clip(x + 0.5, 0.0, 1.0) - src)).astype(np.float32)
