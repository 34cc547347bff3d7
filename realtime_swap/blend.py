"""Paste a swapped face back into its frame: mask erode/blur in crop space, warp over the face's region only,
feathered alpha composite, opacity, optional seamless clone and sharpen.

Warping only the region the face covers is what keeps paste-back cheap at high resolutions: the cost follows
the face's size in the frame, not the frame's. :func:`paste_back_full_frame` is the usual whole-frame warp,
kept as the benchmark's baseline; both produce the same pixels (to one 8-bit level: OpenCV's fixed-point
interpolation rounds the shifted matrix's coordinates slightly differently).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any, Protocol

import cv2
import numpy as np

from realtime_swap.color.jit import kernel


class BlendMode(str, enum.Enum):
    """How the warped face is merged into the frame."""

    ALPHA = "alpha"  # feathered alpha composite
    SEAMLESS = "seamless"  # OpenCV seamlessClone (Poisson) into the frame's face in crop space, then ALPHA


@dataclass(frozen=True, slots=True)
class Region:
    """A rectangle of frame pixels: columns [x0, x1), rows [y0, y1)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def check_blend_options(stage: str, *, blur_px: int, opacity: float, sharpen: float, color_amount: float) -> None:
    """Refuse blend settings out of range with a ConfigError naming ``stage`` (the CPU and GPU blend stages)."""
    from realtime_swap.errors import ConfigError

    if blur_px < 0:
        raise ConfigError(f"{stage}: blur_px must be >= 0 crop px, got {blur_px}")
    if not 0.0 <= opacity <= 1.0:
        raise ConfigError(f"{stage}: opacity must be in [0, 1], got {opacity}")
    if not (sharpen >= 0.0 and math.isfinite(sharpen)):
        raise ConfigError(f"{stage}: sharpen must be >= 0, got {sharpen}")
    if not 0.0 <= color_amount <= 1.0:
        raise ConfigError(f"{stage}: color_amount must be in [0, 1], got {color_amount}")


def combine_masks(
    learned: np.ndarray, landmark: np.ndarray | None = None, mouth: np.ndarray | None = None
) -> np.ndarray:
    """The blend mask of one face: ``learned × landmark × (1 − mouth)``, (S, S) float32 in [0, 1].

    learned:  (S, S) float [0, 1], the model's mask (``SwapResult.mask``).
    landmark: (S, S) float [0, 1], the landmark hull mask (``AlignedFace.mask``), or None to skip it.
    mouth:    (S, S) float [0, 1], the mouth interior to keep from the original frame, or None to swap it too.
    """
    if learned.ndim != 2:
        raise ValueError(f"combine_masks: learned mask must be (S, S) float [0, 1], got {learned.shape}")
    out = np.clip(learned, 0.0, 1.0).astype(np.float32)
    for what, extra, keep in (("landmark", landmark, False), ("mouth", mouth, True)):
        if extra is None:
            continue
        if extra.shape != out.shape:
            raise ValueError(f"combine_masks: {what} mask {extra.shape} differs from learned mask {out.shape}")
        extra = np.clip(extra, 0.0, 1.0).astype(np.float32, copy=False)
        out *= (1.0 - extra) if keep else extra
    return out


MASK_SNAP = 1.0 / 255.0  # feathered mask values this close to 0 or 1 become 0 or 1
SHARPEN_SIGMA_PX = 1.0  # the unsharp mask's Gaussian, crop px
SHARPEN_TAPS = 7  # the kernel OpenCV derives for that sigma on uint8 images (2 * round(3 sigma) + 1)


class CropOps(Protocol):
    """The primitives the mask and sharpen recipes below need, for one array type: OpenCV on numpy here (the
    CPU path), torch in :mod:`realtime_swap.gpu.ops` (the GPU path). Masks are (S, S) float32 [0, 1]; faces
    (S, S, 3) 8-bit levels (uint8 here, float32 in torch)."""

    def clip01(self, mask: Any) -> Any:
        """A new float32 array of ``mask`` clipped to [0, 1] (the recipe then writes into it)."""

    def erode(self, mask: Any, element: np.ndarray, dilate: bool) -> Any:
        """Morphological erosion (dilation) with a binary structuring element; the border never wins."""

    def gaussian(self, mask: Any, size: int, sigma: float) -> Any:
        """Gaussian blur of a mask, zeros outside."""

    def snap(self, mask: Any, step: float) -> Any:
        """Values below ``step`` to 0, above 1 - ``step`` to 1."""

    def unsharp(self, face: Any, size: int, sigma: float, amount: float) -> Any:
        """``face + amount * (face - Gaussian(face))``, reflected border, rounded and saturated to 8 bits."""


def erode_element(erode_px: int) -> np.ndarray:
    """The elliptic (2|e| + 1)² structuring element of ``erode_px`` (uint8 0/1)."""
    size = 2 * abs(erode_px) + 1
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def feather_mask(mask: Any, erode_px: int, blur_px: int, ops: CropOps) -> Any:
    """Erode (dilate when negative) then feather a (S, S) mask in crop space; (S, S) float32 in [0, 1].

    With ``blur_px > 0`` a band of ``blur_px + 1`` px along the crop's border is cleared before the Gaussian
    (kernel 2 * blur_px + 1, sigma blur_px / 2), so the feathered mask reaches 0 before the crop's edge and the
    face's region has no visible border. Values within 1/255 of 0 or 1 are snapped to it (a step below one
    8-bit level) so that the feather's tails neither touch pixels outside the face nor leave the inside mixed.
    """
    out = ops.clip01(mask)
    if erode_px:
        out = ops.erode(out, erode_element(erode_px), dilate=erode_px < 0)
    if blur_px > 0:
        band = blur_px + 1  # numpy and torch index alike
        out[:band] = 0.0
        out[-band:] = 0.0
        out[:, :band] = 0.0
        out[:, -band:] = 0.0
        out = ops.gaussian(out, 2 * blur_px + 1, blur_px / 2.0)
        out = ops.snap(out, MASK_SNAP)
    return out


def sharpen_face(face: Any, amount: float, ops: CropOps) -> Any:
    """Unsharp mask in crop space: face + amount * (face - Gaussian(face, sigma 1 px)), saturated to 8 bits."""
    return ops.unsharp(face, SHARPEN_TAPS, SHARPEN_SIGMA_PX, amount)


class _OpenCvOps:
    """:class:`CropOps` with OpenCV on numpy arrays."""

    def clip01(self, mask: np.ndarray) -> np.ndarray:
        return np.clip(mask, 0.0, 1.0).astype(np.float32)

    def erode(self, mask: np.ndarray, element: np.ndarray, dilate: bool) -> np.ndarray:
        return cv2.dilate(mask, element) if dilate else cv2.erode(mask, element)

    def gaussian(self, mask: np.ndarray, size: int, sigma: float) -> np.ndarray:
        return cv2.GaussianBlur(mask, (size, size), sigma, borderType=cv2.BORDER_CONSTANT)

    def snap(self, mask: np.ndarray, step: float) -> np.ndarray:
        mask[mask < np.float32(step)] = 0.0
        mask[mask > 1.0 - np.float32(step)] = 1.0
        return mask

    def unsharp(self, face: np.ndarray, size: int, sigma: float, amount: float) -> np.ndarray:
        blurred = cv2.GaussianBlur(face, (size, size), sigma)
        return cv2.addWeighted(face, 1.0 + amount, blurred, -amount, 0.0)


OPENCV_OPS = _OpenCvOps()


def process_mask(mask: np.ndarray, erode_px: int = 0, blur_px: int = 0) -> np.ndarray:
    """:func:`feather_mask` of a (S, S) float [0, 1] numpy mask with OpenCV; (S, S) float32 in [0, 1]."""
    return feather_mask(mask, erode_px, blur_px, OPENCV_OPS)


def face_region(mask: np.ndarray, matrix: np.ndarray, frame_shape: tuple[int, ...]) -> Region | None:
    """The frame pixels a crop's non-zero mask can reach, or None when it reaches none.

    The corners of the mask's bounding box in the crop (the whole crop for a full mask) are mapped to the frame
    with the inverse of ``matrix`` (frame px -> crop px); their bounding box grows by 1 px for bilinear
    interpolation and is clipped to the frame.
    """
    x, y, w, h = cv2.boundingRect((mask > 0.0).astype(np.uint8))
    if w == 0 or h == 0:
        return None
    corners = np.array([[x - 0.5, y - 0.5], [x + w - 0.5, y - 0.5], [x - 0.5, y + h - 0.5], [x + w - 0.5, y + h - 0.5]])
    inverse = cv2.invertAffineTransform(matrix)
    frame_pts = corners @ inverse[:, :2].T + inverse[:, 2]
    x0 = max(int(np.floor(frame_pts[:, 0].min())) - 1, 0)
    y0 = max(int(np.floor(frame_pts[:, 1].min())) - 1, 0)
    x1 = min(int(np.ceil(frame_pts[:, 0].max())) + 2, int(frame_shape[1]))
    y1 = min(int(np.ceil(frame_pts[:, 1].max())) + 2, int(frame_shape[0]))
    if x1 <= x0 or y1 <= y0:
        return None
    return Region(x0, y0, x1, y1)


@kernel(contract=True)
def _composite_row(dst: np.ndarray, face: np.ndarray, alpha: np.ndarray, opacity: np.float32) -> None:
    for x in range(alpha.shape[0]):
        a = alpha[x] * opacity
        for c in range(3):
            d = np.float32(dst[3 * x + c])
            dst[3 * x + c] = np.uint8(d + a * (np.float32(face[3 * x + c]) - d) + np.float32(0.5))


@kernel()
def _composite(frame: np.ndarray, x0: int, y0: int, face: np.ndarray, alpha: np.ndarray, opacity: float) -> None:
    """frame[y0 + y, x0 + x] = round(frame + a (face - frame)) with a = opacity * alpha[y, x], in place.

    frame: (H, W, 3) uint8 C-contiguous; face: (h, w, 3) uint8 and alpha: (h, w) float32 [0, 1], C-contiguous,
    the region's content. a == 0 leaves a pixel bit-exact. Serial on purpose: one row-vectorised pass over a
    face's region takes ~0.1 ms at 1080p, less than waking a second thread costs when the cores are busy.
    """
    h, w = alpha.shape
    width = frame.shape[1]
    flat = frame.reshape(frame.size)
    face_flat = face.reshape(face.size)
    op = np.float32(opacity)
    for y in range(h):
        base = ((y0 + y) * width + x0) * 3
        _composite_row(flat[base : base + 3 * w], face_flat[3 * w * y : 3 * w * (y + 1)], alpha[y], op)


def _to_u8(crop: np.ndarray) -> np.ndarray:
    if crop.dtype == np.uint8:
        return crop
    return (np.clip(crop, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _check(frame: np.ndarray, crop: np.ndarray, mask: np.ndarray, matrix: np.ndarray, opacity: float) -> None:
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or not frame.flags.c_contiguous:
        raise ValueError(f"paste back: frame must be C-contiguous (H, W, 3) uint8 BGR, got {frame.shape} {frame.dtype}")
    if crop.ndim != 3 or crop.shape[2] != 3 or crop.shape[0] != crop.shape[1]:
        raise ValueError(f"paste back: crop must be (S, S, 3) BGR uint8 or float [0, 1], got {crop.shape}")
    if mask.shape != crop.shape[:2]:
        raise ValueError(f"paste back: mask must be {crop.shape[:2]} float [0, 1] like the crop, got {mask.shape}")
    if matrix.shape != (2, 3):
        raise ValueError(f"paste back: matrix must be (2, 3) frame px -> crop px, got {matrix.shape}")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"paste back: opacity must be in [0, 1], got {opacity}")


def _prepare(
    frame: np.ndarray,
    crop: np.ndarray,
    mask: np.ndarray,
    matrix: np.ndarray,
    erode_px: int,
    blur_px: int,
    sharpen: float,
    mode: BlendMode,
) -> tuple[np.ndarray, np.ndarray]:
    """The crop-space work: the uint8 face (sharpened, seamless-cloned) and the feathered mask."""
    face = _to_u8(crop)
    if sharpen > 0.0:
        face = sharpen_face(face, sharpen, OPENCV_OPS)
    alpha = process_mask(mask, erode_px, blur_px)
    if mode is BlendMode.SEAMLESS:
        face = _seamless(face, alpha, frame, matrix)
    return face, alpha


def _seamless(face: np.ndarray, alpha: np.ndarray, frame: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Poisson-clone ``face`` into the frame's own face over ``alpha > 0.5``, in crop space.

    Done on the (S, S) crop rather than on the frame's region so that its cost (the slowest step of the blend)
    does not grow with the frame's resolution; the result is then pasted like any face.
    """
    inside = (alpha > 0.5).astype(np.uint8) * 255
    x, y, w, h = cv2.boundingRect(inside)
    if w < 3 or h < 3:
        return face
    size = face.shape[0]
    original = cv2.warpAffine(frame, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # seamlessClone centres the mask's bounding box at `center`: this puts it back where it is.
    center = (x + w // 2, y + h // 2)
    return cv2.seamlessClone(face, original, inside, center, cv2.NORMAL_CLONE)


def _warp_region(
    face: np.ndarray, alpha: np.ndarray, matrix: np.ndarray, region: Region
) -> tuple[np.ndarray, np.ndarray]:
    # The same frame->crop matrix, with the region's origin as (0, 0): region px (u, v) is frame px
    # (u + x0, v + y0). WARP_INVERSE_MAP: OpenCV samples the crop at matrix @ (u, v, 1).
    shifted = matrix.astype(np.float64).copy()
    shifted[:, 2] += shifted[:, :2] @ np.array([region.x0, region.y0], dtype=np.float64)
    size = (region.width, region.height)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    face_w = cv2.warpAffine(face, shifted, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    alpha_w = cv2.warpAffine(alpha, shifted, size, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return face_w, alpha_w


def _blend_region(
    frame: np.ndarray,
    face: np.ndarray,
    alpha: np.ndarray,
    matrix: np.ndarray,
    region: Region,
    opacity: float,
) -> None:
    face_w, alpha_w = _warp_region(face, alpha, matrix, region)
    _composite(frame, region.x0, region.y0, face_w, alpha_w, opacity)


def paste_back_roi(
    frame: np.ndarray,
    crop: np.ndarray,
    mask: np.ndarray,
    matrix: np.ndarray,
    *,
    erode_px: int = 0,
    blur_px: int = 8,
    opacity: float = 1.0,
    mode: BlendMode = BlendMode.ALPHA,
    sharpen: float = 0.0,
) -> np.ndarray:
    """Paste a swapped crop back into ``frame`` **in place**, touching only the face's region; returns ``frame``.

    frame:    (H, W, 3) uint8 BGR, C-contiguous; modified in place (copy first if someone else holds it).
    crop:     (S, S, 3) BGR, uint8 or float [0, 1] (the swapped, recoloured face).
    mask:     (S, S) float [0, 1] in crop space (see :func:`combine_masks`).
    matrix:   (2, 3) float64 frame px -> crop px (``AlignedFace.matrix``).
    erode_px: crop px to erode the mask by (negative dilates); blur_px: crop px of feathering (see
              :func:`process_mask`); opacity: [0, 1] scales the mask; mode: :class:`BlendMode`;
    sharpen:  >= 0, unsharp-mask amount applied to the crop before warping (0 = off).
    Pixels outside :func:`face_region` are never read or written; inside it, pixels whose warped mask is 0 keep
    their exact value.
    """
    _check(frame, crop, mask, matrix, opacity)
    if opacity == 0.0:
        return frame
    face, alpha = _prepare(frame, crop, mask, matrix, erode_px, blur_px, sharpen, BlendMode(mode))
    region = face_region(alpha, matrix, frame.shape)
    if region is not None:
        _blend_region(frame, face, alpha, matrix, region, opacity)
    return frame


def paste_back_full_frame(
    frame: np.ndarray,
    crop: np.ndarray,
    mask: np.ndarray,
    matrix: np.ndarray,
    *,
    erode_px: int = 0,
    blur_px: int = 8,
    opacity: float = 1.0,
    mode: BlendMode = BlendMode.ALPHA,
    sharpen: float = 0.0,
) -> np.ndarray:
    """The whole-frame way (warp crop and mask to the frame's size, composite everywhere), in place.

    Same contract and same pixels as :func:`paste_back_roi`; the benchmark's baseline, not for the live loop.
    """
    _check(frame, crop, mask, matrix, opacity)
    face, alpha = _prepare(frame, crop, mask, matrix, erode_px, blur_px, sharpen, BlendMode(mode))
    whole = Region(0, 0, frame.shape[1], frame.shape[0])
    _blend_region(frame, face, alpha, matrix, whole, opacity)
    return frame


def warmup() -> None:
    """Compile (or load from numba's disk cache) the composite kernel."""
    frame = np.zeros((8, 8, 3), dtype=np.uint8)
    _composite(frame, 2, 2, np.zeros((4, 4, 3), dtype=np.uint8), np.zeros((4, 4), dtype=np.float32), 1.0)
