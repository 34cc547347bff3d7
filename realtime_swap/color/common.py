"""What the numba kernels and their numpy references share: the sampling grid, the constants of each transfer,
and the small (O(1)-sized) maths that turns statistics into a per-pixel map.

Statistics are computed over the **mask's pixels with weight > 0.5** (a hard cut, DeepFaceLive's
``mask_cutoff``), sampled on a regular grid with a stride chosen so that at most a fixed budget of pixels is read
(:func:`sample_stride`). Moment-based transfers (rct, lct, mkl) need few samples; distribution-based ones
(hist, idt, sot) get more. An empty sample set (empty mask, or a mask smaller than the grid) means "no
statistics": the transfer then returns the source unchanged.
"""

from __future__ import annotations

import math

import numpy as np

MASK_CUTOFF = 0.5
"""Pixels whose mask weight is above this take part in the statistics."""

MOMENT_SAMPLES = 4096
"""Grid budget for rct, lct and mkl (mean and (co)variance converge long before this)."""

DISTRIBUTION_SAMPLES = 16384
"""Grid budget for hist, idt and sot (histograms need more samples)."""

RCT_STD_FLOOR = 0.1
"""L*a*b* units: a source channel flatter than this is treated as having this spread (no division by 0)."""

LINEAR_EPS = 1e-5
"""Added to the covariance diagonals (BGR [0, 1]² units) before the square roots of lct and mkl."""

HIST_BINS = 256
"""hist: one bin per 8-bit level, on the 0..255 scale (bin i covers [i - 0.5, i + 0.5))."""

SLICED_BINS = 512
SLICED_LO = -1.5
SLICED_HI = 1.5
"""idt / sot: histograms of projections of (BGR - 0.5) on unit axes over [-1.5, 1.5] (5.9e-3 per bin): the
cube projects inside +-0.87 and the intermediate clouds stay within +-1.5; anything beyond counts in the end
bins."""

IDT_ITERATIONS = 10
"""idt: number of random orthonormal bases; each step matches the cloud's 3 marginals on one basis at once."""

SOT_STEPS = 10
SOT_DIRECTIONS = 4
"""sot: steps of sliced optimal transport, each averaging the 1-D transports along this many directions."""


def _idt_bases(seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bases = np.empty((IDT_ITERATIONS, 3, 3))
    for i in range(IDT_ITERATIONS):
        q, r = np.linalg.qr(rng.standard_normal((3, 3)))
        bases[i] = (q * np.sign(np.diag(r))).T  # rows are the axes
    return bases


def _sot_directions(seed: int = 11) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d = rng.standard_normal((SOT_STEPS, SOT_DIRECTIONS, 3))
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


IDT_BASES: np.ndarray = _idt_bases()
"""(IDT_ITERATIONS, 3, 3) float64: fixed, so that runs are reproducible and target statistics can be smoothed."""

SOT_DIRECTIONS_TABLE: np.ndarray = _sot_directions()
"""(SOT_STEPS, SOT_DIRECTIONS, 3) float64 unit vectors, fixed for the same reasons."""


def sample_stride(height: int, width: int, budget: int) -> int:
    """Grid stride (px) so that at most about ``budget`` pixels of an (height, width) image are sampled."""
    return max(1, int(math.sqrt(height * width / budget)))


def grid_index(mask: np.ndarray, stride: int) -> np.ndarray:
    """(n,) int64 row-major flat indices of the grid pixels (every ``stride``-th row and column) whose mask
    weight is > 0.5; the same pixels, in the same order, as :func:`samples`."""
    ys, xs = np.nonzero(mask[::stride, ::stride] > MASK_CUTOFF)
    return (ys * (stride * mask.shape[1]) + xs * stride).astype(np.int64)


def to_unit_float(image: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 or float -> C-contiguous float32 in [0, 1] (uint8 is divided by 255; floats are kept)."""
    if image.dtype == np.uint8:
        return np.multiply(image, np.float32(1.0 / 255.0), dtype=np.float32)
    return np.ascontiguousarray(image, dtype=np.float32)


def samples(image: np.ndarray, mask: np.ndarray, budget: int) -> np.ndarray:
    """(n, 3) float32 [0, 1]: the BGR values of the sampled mask pixels of an (H, W, 3) image."""
    stride = sample_stride(mask.shape[0], mask.shape[1], budget)
    picked = image[::stride, ::stride][mask[::stride, ::stride] > MASK_CUTOFF]
    return np.ascontiguousarray(to_unit_float(picked))


def rct_coefficients(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(2, 3) float64 [scale; shift] per L*a*b* channel from two (6,) [mean L, a, b, std L, a, b] vectors."""
    scale = target[3:] / np.maximum(source[3:], RCT_STD_FLOOR)
    return np.stack([scale, target[:3] - source[:3] * scale])


def _sqrtm_sym(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def linear_map(mkl: bool, source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A (3, 3), b (3,)) with x' = A x + b moving the source's mean/covariance onto the target's.

    ``source``/``target``: (12,) [mean B, G, R; covariance 3x3 row-major] in BGR [0, 1]. lct uses the ratio of
    symmetric square roots (DeepFaceLab's "pca" variant); mkl the Monge-Kantorovich closed form
    ``Cs^-1/2 (Cs^1/2 Ct Cs^1/2)^1/2 Cs^-1/2`` (Pitié & Kokaram 2007).
    """
    eye = np.eye(3) * LINEAR_EPS
    cs = source[3:].reshape(3, 3) + eye
    ct = target[3:].reshape(3, 3) + eye
    cs_half = _sqrtm_sym(cs)
    cs_half_inv = np.linalg.inv(cs_half)
    a = cs_half_inv @ _sqrtm_sym(cs_half @ ct @ cs_half) @ cs_half_inv if mkl else _sqrtm_sym(ct) @ cs_half_inv
    return np.ascontiguousarray(a), target[:3] - a @ source[:3]
