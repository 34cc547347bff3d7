"""Training augmentation: DeepFaceLab-style random warp, random affine, flip, and colour transfer.

All functions take (S, S, C) or (S, S) float32 images (BGR in [0, 1] for colour) and a
``numpy.random.Generator``; the same ``WarpParams`` applied to an image, its mask and its eyes/mouth mask keeps
them aligned. The network sees the *warped* face and must reproduce the *target* (same affine and flip, no
local warp), which teaches it to rebuild faces rather than copy pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from realtime_swap.color.lab import bgr_to_lab, lab_to_bgr


@dataclass(frozen=True, slots=True)
class WarpParams:
    """One sample's random geometry.

    map_x, map_y: (S, S) float32 remap tables of the local warp (source px for each output px).
    matrix: (2, 3) float64 affine (rotation about the centre, scale, shift) in px. flip: mirror left-right.
    """

    map_x: np.ndarray
    map_y: np.ndarray
    matrix: np.ndarray
    flip: bool


def sample_warp_params(
    rng: np.random.Generator,
    size: int,
    flip_prob: float = 0.0,
    rotation: float = 10.0,
    scale: float = 0.05,
    shift: float = 0.05,
) -> WarpParams:
    """Draw a random warp for an S x S image.

    Local warp: a coarse grid (cell = S/2, S/4 or S/8 px) whose inner nodes move by N(0, 0.24 * cell) px,
    interpolated linearly to every pixel. Affine: rotation uniform in +-``rotation`` degrees, scale in
    1 +- ``scale``, shift in +- ``shift`` * S px. Flip with probability ``flip_prob``.
    """
    cell = size // int(rng.choice((2, 4, 8)))
    nodes = size // cell + 1
    disp = np.zeros((2, nodes, nodes), np.float32)
    disp[:, 1:-1, 1:-1] = rng.normal(size=(2, nodes - 2, nodes - 2)) * (cell * 0.24)
    grid = np.arange(size, dtype=np.float32)
    map_x = grid[None, :] + cv2.resize(disp[0], (size, size), interpolation=cv2.INTER_LINEAR)
    map_y = grid[:, None] + cv2.resize(disp[1], (size, size), interpolation=cv2.INTER_LINEAR)
    angle = float(rng.uniform(-rotation, rotation))
    zoom = float(rng.uniform(1.0 - scale, 1.0 + scale))
    tx, ty = rng.uniform(-shift, shift, 2) * size
    matrix = cv2.getRotationMatrix2D((size / 2, size / 2), angle, zoom)
    matrix[:, 2] += (tx, ty)
    flip = bool(rng.random() < flip_prob)
    return WarpParams(map_x.astype(np.float32), map_y.astype(np.float32), matrix, flip)


def apply_warp(image: np.ndarray, params: WarpParams, warp: bool) -> np.ndarray:
    """Apply the local warp (when ``warp``), then the affine and the flip; borders replicate. Same shape out."""
    size = image.shape[0]
    out = image
    if warp:
        out = cv2.remap(out, params.map_x, params.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = cv2.warpAffine(out, params.matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if params.flip:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def reinhard_transfer(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Recolour ``image`` towards ``reference`` (Reinhard et al. 2001: per-channel mean/std in CIE L*a*b*).

    Both (S, S, 3) float32 BGR [0, 1] (sizes may differ); returns (S, S, 3) float32 BGR [0, 1].
    """
    lab = bgr_to_lab(image).reshape(-1, 3)
    ref = bgr_to_lab(reference).reshape(-1, 3)
    mean, std = lab.mean(0), lab.std(0)
    ref_mean, ref_std = ref.mean(0), ref.std(0)
    out = (lab - mean) * (ref_std / np.maximum(std, 1e-6)) + ref_mean
    return lab_to_bgr(out.reshape(image.shape)).astype(np.float32)
