"""numba kernels of the colour transfers; :mod:`realtime_swap.color.reference` holds their numpy twins.

Pixels travel as **flat** float32 arrays ``(3N,)`` of BGR triplets in [0, 1] (an (H, W, 3) image raveled, or
n sampled mask pixels), so each kernel has one compiled signature and LLVM can vectorise the per-pixel loops
(a constant stride of 3, loops that start at 0: see :func:`_chunk`). Parallel kernels split the pixels into
chunks with ``prange`` and run a serial, vectorised loop per chunk.

All kernels, and every constant they read, live in this one file on purpose: numba's disk cache is invalidated
by a change of the kernel's own source file only, not of the files its callees or globals come from.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import prange
from numpy.polynomial import chebyshev

from realtime_swap.color.jit import kernel
from realtime_swap.color.lab import (
    BGR_TO_XYZN,
    DECODE_KNEE,
    ENCODE_KNEE,
    F_INV_KNEE,
    F_KNEE,
    F_OFFSET,
    F_SLOPE,
    XYZN_TO_BGR,
)

# --- CIE L*a*b* (sRGB, D65): the per-pixel kernels of realtime_swap.color.lab's definition ----------------------


def _fit(curve: Callable[[np.ndarray], np.ndarray], lo: float, hi: float) -> tuple[np.float32, ...]:
    """(centre, 1 / half-width, 9 power coefficients highest first) of a degree-8 Chebyshev fit on [lo, hi]."""
    x = np.cos(np.linspace(0.0, np.pi, 4000)) * (hi - lo) / 2 + (lo + hi) / 2
    coef = chebyshev.cheb2poly(chebyshev.chebfit((2 * x - (lo + hi)) / (hi - lo), curve(x), 8))[::-1]
    return tuple(np.float32(v) for v in ((lo + hi) / 2, 2 / (hi - lo), *coef))


# The per-pixel L*a*b* maths runs in float32 (16 AVX-512 lanes instead of 8; the result differs from float64 by
# ~2e-6) with float32 constants: a Python float literal would promote the whole expression to float64.
# The three non-linear curves are polynomials (max abs error < 1e-6 on their domains, far below 1/255): a
# transcendental per channel per pixel cannot be vectorised by LLVM and would cost more than the transfer.
# Cube root and the 1/2.4 power are singular at 0; they are fitted in u = t^(1/4) (two hardware square roots).
_DECODE_FIT = _fit(lambda c: ((c + 0.055) / 1.055) ** 2.4, DECODE_KNEE, 1.0)
_ENCODE_FIT = _fit(lambda u: u ** (2.0 / 3.0), ENCODE_KNEE**0.25, 1.0)  # c^(5/12) = u * u^(2/3)
_CBRT_FIT = _fit(lambda u: u ** (1.0 / 3.0), F_KNEE**0.25, 1.0)  # t^(1/3) = u * u^(1/3)
_M32 = tuple(np.float32(v) for v in BGR_TO_XYZN)
_M32_INV = tuple(np.float32(v) for v in XYZN_TO_BGR)
_0 = np.float32(0.0)
_1 = np.float32(1.0)
_16 = np.float32(16.0)
_116 = np.float32(116.0)
_500 = np.float32(500.0)
_200 = np.float32(200.0)
_INV_116 = np.float32(1.0 / 116.0)
_INV_500 = np.float32(1.0 / 500.0)
_INV_200 = np.float32(1.0 / 200.0)
_DECODE_KNEE = np.float32(DECODE_KNEE)
_DECODE_SLOPE = np.float32(1.0 / 12.92)
_ENCODE_KNEE = np.float32(ENCODE_KNEE)
_ENCODE_SLOPE = np.float32(12.92)
_ENCODE_GAIN = np.float32(1.055)
_ENCODE_OFFSET = np.float32(0.055)
_F_KNEE = np.float32(F_KNEE)
_F_SLOPE = np.float32(F_SLOPE)
_F_INV_SLOPE = np.float32(1.0 / F_SLOPE)
_F_OFFSET = np.float32(F_OFFSET)
_F_INV_KNEE = np.float32(F_INV_KNEE)


@kernel(inline=True)
def _poly(fit: tuple, x: np.float32) -> np.float32:
    # Unrolled on purpose: a loop over the tuple keeps LLVM from vectorising the callers.
    s = (x - fit[0]) * fit[1]
    p = fit[2] * s + fit[3]
    p = p * s + fit[4]
    p = p * s + fit[5]
    p = p * s + fit[6]
    p = p * s + fit[7]
    p = p * s + fit[8]
    p = p * s + fit[9]
    return p * s + fit[10]


@kernel(inline=True)
def srgb_decode(c: np.float32) -> np.float32:
    """sRGB-encoded -> linear, input clamped to [0, 1]."""
    c = min(max(c, _0), _1)
    return c * _DECODE_SLOPE if c <= _DECODE_KNEE else _poly(_DECODE_FIT, c)


@kernel(inline=True)
def srgb_encode(c: np.float32) -> np.float32:
    """Linear -> sRGB-encoded, input clamped to [0, 1]."""
    c = min(max(c, _0), _1)
    u = np.sqrt(np.sqrt(c))
    return _ENCODE_SLOPE * c if c <= _ENCODE_KNEE else _ENCODE_GAIN * u * _poly(_ENCODE_FIT, u) - _ENCODE_OFFSET


@kernel(inline=True)
def lab_f(t: np.float32) -> np.float32:
    """CIE f (cube root above the knee, linear below), input clamped to [0, 1]."""
    t = min(max(t, _0), _1)
    u = np.sqrt(np.sqrt(t))
    return _F_SLOPE * t + _F_OFFSET if t <= _F_KNEE else u * _poly(_CBRT_FIT, u)


@kernel(inline=True)
def lab_f_inverse(f: np.float32) -> np.float32:
    return f * f * f if f > _F_INV_KNEE else (f - _F_OFFSET) * _F_INV_SLOPE


@kernel(inline=True)
def bgr_to_lab(b: np.float32, g: np.float32, r: np.float32) -> tuple[np.float32, np.float32, np.float32]:
    """One float32 BGR [0, 1] pixel -> float32 (L*, a*, b*)."""
    m = _M32
    lb = srgb_decode(b)
    lg = srgb_decode(g)
    lr = srgb_decode(r)
    fx = lab_f(m[0] * lb + m[1] * lg + m[2] * lr)
    fy = lab_f(m[3] * lb + m[4] * lg + m[5] * lr)
    fz = lab_f(m[6] * lb + m[7] * lg + m[8] * lr)
    return _116 * fy - _16, _500 * (fx - fy), _200 * (fy - fz)


@kernel(inline=True)
def lab_to_bgr(light: np.float32, a: np.float32, bb: np.float32) -> tuple[np.float32, np.float32, np.float32]:
    """float32 (L*, a*, b*) -> one float32 BGR pixel in [0, 1] (out-of-gamut values clipped)."""
    m = _M32_INV
    # Reciprocals written out: a division does not vectorise as cheaply as a product.
    fy = (light + _16) * _INV_116
    x = lab_f_inverse(fy + a * _INV_500)
    y = lab_f_inverse(fy)
    z = lab_f_inverse(fy - bb * _INV_200)
    return (
        srgb_encode(m[0] * x + m[1] * y + m[2] * z),
        srgb_encode(m[3] * x + m[4] * y + m[5] * z),
        srgb_encode(m[6] * x + m[7] * y + m[8] * z),
    )


@kernel(inline=True)
def _chunk(n: int, chunks: int, k: int) -> tuple[int, int]:
    """Pixel range [lo, hi) of chunk k of n pixels split in ``chunks``."""
    return k * n // chunks, (k + 1) * n // chunks


@kernel()
def chunk_count(n: int) -> int:
    """Chunks for a parallel loop over n pixels: about 8192 pixels each, at most 64."""
    return max(1, min(64, n // 8192))


# --- rct: Reinhard mean/std transfer in L*a*b* -----------------------------------------------------------------


@kernel(vector_reductions=True)
def rct_lab_moments(samples: np.ndarray) -> np.ndarray:
    """(3n,) float32 BGR samples -> (6,) float64 [mean L, a, b, std L, a, b] (zeros when n == 0)."""
    n = samples.shape[0] // 3
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    q0 = 0.0
    q1 = 0.0
    q2 = 0.0
    for i in range(n):
        lab = bgr_to_lab(samples[3 * i], samples[3 * i + 1], samples[3 * i + 2])
        light = np.float64(lab[0])
        a = np.float64(lab[1])
        b = np.float64(lab[2])
        s0 += light
        s1 += a
        s2 += b
        q0 += light * light
        q1 += a * a
        q2 += b * b
    out = np.zeros(6)
    if n > 0:
        out[0] = s0 / n
        out[1] = s1 / n
        out[2] = s2 / n
        out[3] = np.sqrt(max(q0 / n - out[0] * out[0], 0.0))
        out[4] = np.sqrt(max(q1 / n - out[1] * out[1], 0.0))
        out[5] = np.sqrt(max(q2 / n - out[2] * out[2], 0.0))
    return out


@kernel(contract=True)
def _rct_rows(src: np.ndarray, out: np.ndarray, coef: tuple, amount: float) -> None:
    c0 = np.float32(coef[0])
    c1 = np.float32(coef[1])
    c2 = np.float32(coef[2])
    c3 = np.float32(coef[3])
    c4 = np.float32(coef[4])
    c5 = np.float32(coef[5])
    amt = np.float32(amount)
    for i in range(src.shape[0] // 3):
        b = src[3 * i]
        g = src[3 * i + 1]
        r = src[3 * i + 2]
        light, ca, cb = bgr_to_lab(b, g, r)
        nb, ng, nr = lab_to_bgr(light * c0 + c3, ca * c1 + c4, cb * c2 + c5)
        out[3 * i] = b + amt * (nb - b)
        out[3 * i + 1] = g + amt * (ng - g)
        out[3 * i + 2] = r + amt * (nr - r)


@kernel(parallel=True)
def rct_apply(src: np.ndarray, out: np.ndarray, coef: tuple, amount: float) -> None:
    """out = src + amount * (Lab^-1(scale * Lab(src) + shift) - src); ``coef`` = (scale L, a, b, shift L, a, b)."""
    n = src.shape[0] // 3
    chunks = chunk_count(n)
    for k in prange(chunks):
        lo, hi = _chunk(n, chunks, k)
        _rct_rows(src[3 * lo : 3 * hi], out[3 * lo : 3 * hi], coef, amount)


# --- lct, mkl: affine maps from first and second moments in BGR -------------------------------------------------


@kernel(vector_reductions=True)
def bgr_moments(samples: np.ndarray) -> np.ndarray:
    """(3n,) float32 BGR samples -> (12,) float64 [mean B, G, R; population covariance row-major]."""
    n = samples.shape[0] // 3
    out = np.zeros(12)
    if n == 0:
        return out
    m0 = 0.0
    m1 = 0.0
    m2 = 0.0
    for i in range(n):
        m0 += samples[3 * i]
        m1 += samples[3 * i + 1]
        m2 += samples[3 * i + 2]
    m0 /= n
    m1 /= n
    m2 /= n
    c00 = 0.0
    c01 = 0.0
    c02 = 0.0
    c11 = 0.0
    c12 = 0.0
    c22 = 0.0
    for i in range(n):
        d0 = samples[3 * i] - m0
        d1 = samples[3 * i + 1] - m1
        d2 = samples[3 * i + 2] - m2
        c00 += d0 * d0
        c01 += d0 * d1
        c02 += d0 * d2
        c11 += d1 * d1
        c12 += d1 * d2
        c22 += d2 * d2
    out[0] = m0
    out[1] = m1
    out[2] = m2
    out[3] = c00 / n
    out[4] = c01 / n
    out[5] = c02 / n
    out[6] = c01 / n
    out[7] = c11 / n
    out[8] = c12 / n
    out[9] = c02 / n
    out[10] = c12 / n
    out[11] = c22 / n
    return out


@kernel()
def _affine_rows(src: np.ndarray, out: np.ndarray, a: tuple, b: tuple, amount: float) -> None:
    for i in range(src.shape[0] // 3):
        x0 = src[3 * i]
        x1 = src[3 * i + 1]
        x2 = src[3 * i + 2]
        v0 = min(max(a[0] * x0 + a[1] * x1 + a[2] * x2 + b[0], 0.0), 1.0)
        v1 = min(max(a[3] * x0 + a[4] * x1 + a[5] * x2 + b[1], 0.0), 1.0)
        v2 = min(max(a[6] * x0 + a[7] * x1 + a[8] * x2 + b[2], 0.0), 1.0)
        out[3 * i] = x0 + amount * (v0 - x0)
        out[3 * i + 1] = x1 + amount * (v1 - x1)
        out[3 * i + 2] = x2 + amount * (v2 - x2)


@kernel(parallel=True)
def affine_apply(src: np.ndarray, out: np.ndarray, a: tuple, b: tuple, amount: float) -> None:
    """out = src + amount * (clip(A src + b, 0, 1) - src); ``a`` is A row-major (9 floats), ``b`` 3 floats."""
    n = src.shape[0] // 3
    chunks = chunk_count(n)
    for k in prange(chunks):
        lo, hi = _chunk(n, chunks, k)
        _affine_rows(src[3 * lo : 3 * hi], out[3 * lo : 3 * hi], a, b, amount)


# --- 1-D distribution matching, shared by hist, idt and sot -----------------------------------------------------


@kernel(parallel=True)
def projection_histograms(
    points: np.ndarray, index: np.ndarray, dirs: np.ndarray, lo: float, inv_width: float, bins: int
) -> np.ndarray:
    """(K, bins) float64 counts of ``dirs[k] . point[index[j]]`` on the bins [lo + i / inv_width, ...).

    ``points`` is (3N,) flat; ``dirs`` (K, 3). Values below/above the range (and NaN) count in the end bins.
    """
    k_dirs = dirs.shape[0]
    counts = np.zeros((k_dirs, bins))
    for k in prange(k_dirs):
        d0 = dirs[k, 0]
        d1 = dirs[k, 1]
        d2 = dirs[k, 2]
        for j in range(index.shape[0]):
            i = 3 * index[j]
            pos = (d0 * points[i] + d1 * points[i + 1] + d2 * points[i + 2] - lo) * inv_width
            if not pos > 0.0:
                bin_ = 0
            elif pos >= bins:
                bin_ = bins - 1
            else:
                bin_ = int(pos)
            counts[k, bin_] += 1.0
    return counts


@kernel()
def edge_mappings(source: np.ndarray, target: np.ndarray, lo: float, width: float) -> np.ndarray:
    """(K, B+1) float64: the value each bin edge of ``source`` maps to under 1-D optimal transport.

    ``source``/``target``: (K, B) non-negative histograms on the same bins (each row with a positive sum),
    read as piecewise-uniform densities; the edge at cumulative mass u goes to the target's u-quantile (edges
    below the source's support go to the bottom of the target's).
    """
    k_rows, bins = source.shape
    out = np.empty((k_rows, bins + 1))
    cs = np.empty(bins + 1)
    ct = np.empty(bins + 1)
    for row in range(k_rows):
        cs[0] = 0.0
        ct[0] = 0.0
        for j in range(bins):
            cs[j + 1] = cs[j] + source[row, j]
            ct[j + 1] = ct[j] + target[row, j]
        cs_total = cs[bins]
        ct_total = ct[bins]
        for j in range(bins + 1):
            cs[j] = cs[j] / cs_total
            ct[j] = ct[j] / ct_total
        first = 0
        while first < bins - 1 and not ct[first + 1] - ct[first] > 0.0:
            first += 1
        k = 0
        for j in range(bins + 1):
            u = cs[j]
            if not u > 0.0:
                out[row, j] = lo + first * width
                continue
            while k < bins - 1 and ct[k + 1] < u:
                k += 1
            mass = ct[k + 1] - ct[k]
            frac = (u - ct[k]) / mass if mass > 0.0 else 0.0
            frac = min(max(frac, 0.0), 1.0)
            out[row, j] = lo + (k + frac) * width
    return out


@kernel(inline=True)
def map_value(mapping: np.ndarray, p: float, lo: float, inv_width: float, bins: int) -> float:
    """Piecewise-linear evaluation of one row of :func:`edge_mappings` at value ``p`` (clamped to the range)."""
    pos = (p - lo) * inv_width
    if not pos > 0.0:
        pos = 0.0
    elif pos > bins:
        pos = float(bins)
    j = min(int(pos), bins - 1)
    return float(mapping[j] + (pos - j) * (mapping[j + 1] - mapping[j]))


# --- hist: per-channel histogram matching on the 0..255 scale ---------------------------------------------------


@kernel()
def _hist_rows(
    src: np.ndarray, out: np.ndarray, maps: np.ndarray, lo: float, inv_width: float, bins: int, amount: float
) -> None:
    n = src.shape[0] // 3
    for c in range(3):  # channel-outer: one table per inner loop
        mapping = maps[c]
        for i in range(n):
            s = src[3 * i + c]
            v = map_value(mapping, s * 255.0, lo, inv_width, bins) * (1.0 / 255.0)
            out[3 * i + c] = s + amount * (min(max(v, 0.0), 1.0) - s)


@kernel(parallel=True)
def hist_apply(
    src: np.ndarray, out: np.ndarray, maps: np.ndarray, lo: float, inv_width: float, bins: int, amount: float
) -> None:
    """out = src + amount * (map_c(255 src) / 255 - src) per channel c; ``maps`` is (3, bins + 1)."""
    n = src.shape[0] // 3
    chunks = chunk_count(n)
    for k in prange(chunks):
        lo_i, hi_i = _chunk(n, chunks, k)
        _hist_rows(src[3 * lo_i : 3 * hi_i], out[3 * lo_i : 3 * hi_i], maps, lo, inv_width, bins, amount)


# --- idt / sot: sliced transports of the colour cloud -----------------------------------------------------------


@kernel(parallel=True)
def sliced_update(
    x: np.ndarray, dirs: np.ndarray, maps: np.ndarray, lo: float, inv_width: float, bins: int, weight: float
) -> None:
    """x += weight * sum_k (map_k(d_k . x) - d_k . x) d_k for every point of the (3N,) float32 cloud ``x``."""
    k_dirs = dirs.shape[0]
    for i in prange(x.shape[0] // 3):
        x0 = x[3 * i]
        x1 = x[3 * i + 1]
        x2 = x[3 * i + 2]
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        for k in range(k_dirs):
            p = dirs[k, 0] * x0 + dirs[k, 1] * x1 + dirs[k, 2] * x2
            delta = map_value(maps[k], p, lo, inv_width, bins) - p
            s0 += delta * dirs[k, 0]
            s1 += delta * dirs[k, 1]
            s2 += delta * dirs[k, 2]
        x[3 * i] = x0 + weight * s0
        x[3 * i + 1] = x1 + weight * s1
        x[3 * i + 2] = x2 + weight * s2


@kernel()
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
) -> None:
    """Move the (3N,) float32 cloud ``x`` (BGR - 0.5) in place, one step per ``dirs[s]`` (K, 3).

    Each step histograms the points ``index`` along the step's directions, matches them to ``target[s]``
    (K, B) and moves every point by ``weight`` times the sum of the 1-D displacements (idt: an orthonormal
    basis and weight 1; sot: K random directions and weight 1/K). ``source`` (S, K, B) holds the source
    histograms used at each step, updated in place: ``source[s] += source_weight * (measured - source[s])``
    (1: the measured histograms; less: averaged over time by the caller's smoothing).
    """
    bins = target.shape[2]
    inv_width = 1.0 / width
    n = index.shape[0]
    for s in range(dirs.shape[0]):
        counts = projection_histograms(x, index, dirs[s], lo, inv_width, bins)
        for k in range(counts.shape[0]):
            for b in range(bins):
                source[s, k, b] += source_weight * (counts[k, b] / n - source[s, k, b])
        maps = edge_mappings(source[s], target[s], lo, width)
        sliced_update(x, dirs[s], maps, lo, inv_width, bins, weight)


@kernel()
def _finish_rows(src: np.ndarray, x: np.ndarray, out: np.ndarray, amount: float) -> None:
    for i in range(src.shape[0]):
        s = src[i]
        out[i] = s + amount * (min(max(x[i] + 0.5, 0.0), 1.0) - s)


@kernel(parallel=True)
def sliced_finish(src: np.ndarray, x: np.ndarray, out: np.ndarray, amount: float) -> None:
    """out = src + amount * (clip(x + 0.5, 0, 1) - src), element-wise on (3N,) arrays."""
    n = src.shape[0] // 3
    chunks = chunk_count(n)
    for k in prange(chunks):
        lo, hi = _chunk(n, chunks, k)
        _finish_rows(src[3 * lo : 3 * hi], x[3 * lo : 3 * hi], out[3 * lo : 3 * hi], amount)
