"""BGR <-> CIE L*a*b* (sRGB primaries and transfer curve, D65 white) in numpy: the reference for ``rct``.

The definition is OpenCV's float ``COLOR_BGR2Lab``: BGR in [0, 1]; L* in [0, 100]; a*, b* roughly in
[-128, 127]. These functions evaluate the curves exactly; the numba kernels (:mod:`.kernels`, which also own the
constants) use polynomial fits of the same curves (error < 1e-6).
"""

from __future__ import annotations

import numpy as np

from realtime_swap.color.kernels import (
    BGR_TO_XYZN,
    DECODE_KNEE,
    ENCODE_KNEE,
    F_INV_KNEE,
    F_KNEE,
    F_OFFSET,
    F_SLOPE,
    XYZN_TO_BGR,
)

_M = np.array(BGR_TO_XYZN).reshape(3, 3)
_M_INV = np.array(XYZN_TO_BGR).reshape(3, 3)


def srgb_decode(c: np.ndarray) -> np.ndarray:
    """sRGB-encoded [0, 1] -> linear [0, 1] (input clipped to [0, 1] first)."""
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= DECODE_KNEE, c / 12.92, np.power((c + 0.055) / 1.055, 2.4))


def srgb_encode(c: np.ndarray) -> np.ndarray:
    """Linear [0, 1] -> sRGB-encoded [0, 1] (input clipped to [0, 1] first: out-of-gamut colours clip)."""
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, 1.0)
    return np.where(c <= ENCODE_KNEE, 12.92 * c, 1.055 * np.power(c, 1.0 / 2.4) - 0.055)


def lab_f(t: np.ndarray) -> np.ndarray:
    """CIE ``f``: cube root above the knee, linear below (input clipped to [0, 1], the gamut's range)."""
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0)
    return np.where(t <= F_KNEE, F_SLOPE * t + F_OFFSET, np.cbrt(t))


def lab_f_inverse(f: np.ndarray) -> np.ndarray:
    """Inverse of :func:`lab_f` (unclipped)."""
    f = np.asarray(f, dtype=np.float64)
    return np.where(f > F_INV_KNEE, f * f * f, (f - F_OFFSET) / F_SLOPE)


def bgr_to_lab(bgr: np.ndarray) -> np.ndarray:
    """(..., 3) BGR float in [0, 1] -> (..., 3) float64 L*a*b*."""
    f = lab_f(srgb_decode(bgr) @ _M.T)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return np.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def lab_to_bgr(lab: np.ndarray) -> np.ndarray:
    """(..., 3) L*a*b* -> (..., 3) float64 BGR in [0, 1] (out-of-gamut colours clipped)."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    return srgb_encode(lab_f_inverse(f) @ _M_INV.T)
