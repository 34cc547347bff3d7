"""BGR <-> CIE L*a*b* (sRGB primaries and transfer curve, D65 white): the one definition, for numpy and torch.

The definition is OpenCV's float ``COLOR_BGR2Lab``: BGR in [0, 1]; L* in [0, 100]; a*, b* roughly in
[-128, 127]. It is written once, over an array namespace (numpy or torch: the same operators, ``clip``,
``where`` and ``stack``), and evaluated exactly:

* :func:`bgr_to_lab` / :func:`lab_to_bgr` — numpy, float64: the reference of the ``rct`` colour transfer and the
  conversion training's colour augmentation uses;
* :func:`bgr_to_lab_torch` / :func:`lab_to_bgr_torch` — torch, float32, on the tensors' device: the GPU path;
* the numba per-pixel kernels :func:`realtime_swap.color.kernels.bgr_to_lab` / ``lab_to_bgr`` (the live CPU
  path) use these constants with polynomial fits of the same curves (error < 1e-6).

The tests hold the three against each other and against ``skimage.color.rgb2lab``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

F_KNEE = 0.008856
F_SLOPE = 7.787
F_OFFSET = 16.0 / 116.0
F_INV_KNEE = F_SLOPE * F_KNEE + F_OFFSET
DECODE_KNEE = 0.04045
ENCODE_KNEE = 0.0031308

WHITE_D65 = (0.950456, 1.0, 1.088754)
_RGB_TO_XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_M = np.array(_RGB_TO_XYZ)[:, ::-1] / np.array(WHITE_D65)[:, None]
_M_INV = np.linalg.inv(_M)
BGR_TO_XYZN: tuple[float, ...] = tuple(float(v) for v in _M.ravel())
"""Linear B, G, R -> X/Xn, Y/Yn, Z/Zn (OpenCV's sRGB coefficients), 3x3 row-major."""
XYZN_TO_BGR: tuple[float, ...] = tuple(float(v) for v in _M_INV.ravel())


# --- the definition, over an array namespace ``xp`` (numpy or torch) -------------------------------------------


def _srgb_decode(xp: Any, c: Any) -> Any:
    c = xp.clip(c, 0.0, 1.0)
    return xp.where(c <= DECODE_KNEE, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _srgb_encode(xp: Any, c: Any) -> Any:
    c = xp.clip(c, 0.0, 1.0)
    return xp.where(c <= ENCODE_KNEE, 12.92 * c, 1.055 * c ** (1.0 / 2.4) - 0.055)


def _lab_f(xp: Any, t: Any) -> Any:
    t = xp.clip(t, 0.0, 1.0)
    return xp.where(t <= F_KNEE, F_SLOPE * t + F_OFFSET, t ** (1.0 / 3.0))


def _lab_f_inverse(xp: Any, f: Any) -> Any:
    return xp.where(f > F_INV_KNEE, f * f * f, (f - F_OFFSET) / F_SLOPE)


def _to_lab(xp: Any, bgr: Any, to_xyz: Any) -> Any:
    f = _lab_f(xp, _srgb_decode(xp, bgr) @ to_xyz.T)
    fx, fy, fz = f[..., 0], f[..., 1], f[..., 2]
    return xp.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def _from_lab(xp: Any, lab: Any, to_bgr: Any) -> Any:
    fy = (lab[..., 0] + 16.0) / 116.0
    f = xp.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    return _srgb_encode(xp, _lab_f_inverse(xp, f) @ to_bgr.T)


# --- numpy ------------------------------------------------------------------------------------------------------


def srgb_decode(c: np.ndarray) -> np.ndarray:
    """sRGB-encoded [0, 1] -> linear [0, 1] (input clipped to [0, 1] first), float64."""
    return _srgb_decode(np, np.asarray(c, dtype=np.float64))


def srgb_encode(c: np.ndarray) -> np.ndarray:
    """Linear [0, 1] -> sRGB-encoded [0, 1] (input clipped to [0, 1] first: out-of-gamut colours clip), float64."""
    return _srgb_encode(np, np.asarray(c, dtype=np.float64))


def lab_f(t: np.ndarray) -> np.ndarray:
    """CIE ``f``: cube root above the knee, linear below (input clipped to [0, 1], the gamut's range)."""
    return _lab_f(np, np.asarray(t, dtype=np.float64))


def lab_f_inverse(f: np.ndarray) -> np.ndarray:
    """Inverse of :func:`lab_f` (unclipped)."""
    return _lab_f_inverse(np, np.asarray(f, dtype=np.float64))


def bgr_to_lab(bgr: np.ndarray) -> np.ndarray:
    """(..., 3) BGR float in [0, 1] -> (..., 3) float64 L*a*b*."""
    return _to_lab(np, np.asarray(bgr, dtype=np.float64), _M)


def lab_to_bgr(lab: np.ndarray) -> np.ndarray:
    """(..., 3) L*a*b* -> (..., 3) float64 BGR in [0, 1] (out-of-gamut colours clipped)."""
    return _from_lab(np, np.asarray(lab, dtype=np.float64), _M_INV)


# --- torch ------------------------------------------------------------------------------------------------------

_TORCH_MATRICES: dict[Any, tuple[Any, Any]] = {}


def _torch_matrices(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    if device not in _TORCH_MATRICES:
        to_xyz = torch.tensor(BGR_TO_XYZN, dtype=torch.float32, device=device).reshape(3, 3)
        to_bgr = torch.tensor(XYZN_TO_BGR, dtype=torch.float32, device=device).reshape(3, 3)
        _TORCH_MATRICES[device] = (to_xyz, to_bgr)
    return _TORCH_MATRICES[device]


def bgr_to_lab_torch(bgr: torch.Tensor) -> torch.Tensor:
    """(..., 3) BGR float in [0, 1] -> (..., 3) float32 L*a*b*, on ``bgr``'s device (:func:`bgr_to_lab`'s twin)."""
    import torch

    return _to_lab(torch, bgr.float(), _torch_matrices(bgr.device)[0])


def lab_to_bgr_torch(lab: torch.Tensor) -> torch.Tensor:
    """(..., 3) L*a*b* -> (..., 3) float32 BGR in [0, 1], out-of-gamut colours clipped (:func:`lab_to_bgr`'s
    twin)."""
    import torch

    return _from_lab(torch, lab.float(), _torch_matrices(lab.device)[1])
