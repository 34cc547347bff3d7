"""The quality report's figures, each a plain function of images, masks or landmark series.

Conventions: images (H, W, 3) uint8 BGR; ``alpha`` (H, W) float in [0, 1], the blend weight of the swapped face
in frame px (1: all swapped face, 0: all frame); the face region is ``alpha >= 0.5`` and the mask edge its
boundary. Landmark series are (T, N, 2) float px over T consecutive frames of one tracked face.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

EDGE_BAND_PX = 2
"""Half-width (px) of the band along the mask edge where the seam energy is measured."""
SIDE_BANDS_PX = (4, 10)
"""Distances (px) from the mask edge of the reference bands just inside and just outside it."""
RING_PX = (3, 12)
"""Distances (px) outside the mask edge of the skin ring the swapped face's colour is compared with."""
JITTER_SIGMA_FRAMES = 2.0
"""Gaussian (frames) whose residual is the landmarks' high-frequency part: motion slower than ~1/(2 pi sigma)
cycles per frame (~2.4 Hz at 30 fps) is kept as motion, faster is jitter."""


def face_region(alpha: np.ndarray) -> np.ndarray:
    """(H, W) bool: where the swapped face outweighs the frame (``alpha >= 0.5``)."""
    return np.asarray(alpha) >= 0.5


def _signed_distance(region: np.ndarray) -> np.ndarray:
    """(H, W) float32 px from the region's boundary: > 0 inside, < 0 outside (pixel centres)."""
    inside = region.astype(np.uint8)
    d_in = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
    d_out = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3)
    return np.where(region, d_in - 0.5, 0.5 - d_out).astype(np.float32)


def _gradient_magnitude(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 Sobel gradient magnitude of the grey image, 0..255 units per px."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    return np.sqrt(gx * gx + gy * gy)


def seam_energy(image: np.ndarray, alpha: np.ndarray) -> float | None:
    """Mean gradient magnitude along the mask edge (within ``EDGE_BAND_PX``) over the mean of the bands just
    inside and just outside it (``SIDE_BANDS_PX``). ~1: the edge is as busy as its surroundings (no visible
    seam); > 1: a seam. None when the region has no edge in the frame or a band is empty."""
    region = face_region(alpha)
    if not region.any() or region.all():
        return None
    distance = _signed_distance(region)
    grad = _gradient_magnitude(image)
    lo, hi = SIDE_BANDS_PX
    edge = np.abs(distance) <= EDGE_BAND_PX
    inner = (distance >= lo) & (distance <= hi)
    outer = (distance <= -lo) & (distance >= -hi)
    if not (edge.any() and inner.any() and outer.any()):
        return None
    reference = 0.5 * (float(grad[inner].mean()) + float(grad[outer].mean()))
    return float(grad[edge].mean()) / max(reference, 1e-3)


def _mean_lab(image: np.ndarray, where: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    pixels = image[where][:, ::-1].astype(np.float64) / 255.0  # BGR -> RGB
    return np.asarray(rgb2lab(pixels.reshape(-1, 1, 3)).reshape(-1, 3).mean(axis=0))


MIN_RING_PIXELS = 50
"""Fewer skin pixels than this in the ring: no colour figure for the frame."""


def skin_pixels(image: np.ndarray) -> np.ndarray:
    """(H, W) bool: skin-coloured pixels by the classic YCrCb box (Cr 133-173, Cb 77-127; Chai & Ngan 1999)."""
    ycrcb = cv2.cvtColor(image, cv2.COLOR_BGR2YCrCb)
    cr, cb = ycrcb[..., 1], ycrcb[..., 2]
    return (cr >= 133) & (cr <= 173) & (cb >= 77) & (cb <= 127)


def delta_e_to_ring(image: np.ndarray, alpha: np.ndarray, skin: np.ndarray | None = None) -> float | None:
    """CIEDE2000 ΔE between the mean colour (CIELAB, D65) of the face region and that of the ring of frame
    pixels ``RING_PX`` outside the mask edge — only its ``skin`` pixels when given (``skin_pixels`` of the
    original frame: the ring then holds the neck, ears and forehead, not hair or background). None when the
    region is empty or the ring has fewer than ``MIN_RING_PIXELS`` pixels."""
    from skimage.color import deltaE_ciede2000

    region = face_region(alpha)
    if not region.any() or region.all():
        return None
    distance = _signed_distance(region)
    lo, hi = RING_PX
    ring = (distance <= -lo) & (distance >= -hi)
    if skin is not None:
        ring &= skin
    face = distance >= EDGE_BAND_PX  # off the feathered edge
    if int(ring.sum()) < MIN_RING_PIXELS or not face.any():
        return None
    return float(deltaE_ciede2000(_mean_lab(image, face), _mean_lab(image, ring)))


def delta_e_between(a: np.ndarray, b: np.ndarray, alpha: np.ndarray) -> float | None:
    """CIEDE2000 ΔE between the mean colours (CIELAB, D65) of two images over the same face region (off its
    feathered edge): how far the swapped face's overall colour is from the original face's. None without a
    region."""
    from skimage.color import deltaE_ciede2000

    region = face_region(alpha)
    if not region.any():
        return None
    face = _signed_distance(region) >= EDGE_BAND_PX
    if not face.any():
        return None
    return float(deltaE_ciede2000(_mean_lab(a, face), _mean_lab(b, face)))


@dataclass
class FlickerAccumulator:
    """Temporal flicker inside the face region, relative to the source clip's own over the same region.

    ``add(original, swapped, alpha)`` per frame in order (alpha: that frame's blend weight; a frame without a
    face: alpha None, which also breaks the pair). For each pair of consecutive frames with faces, the mean
    |Δ| between the swapped frames and between the original frames is summed over the union of both frames'
    face regions; ``ratio`` is swapped / original: 1.0 = the swap adds no flicker, < 1 it steadies, > 1 it
    flickers more than the scene does.
    """

    swapped_sum: float = 0.0
    original_sum: float = 0.0
    pairs: int = 0
    _previous: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def add(self, original: np.ndarray, swapped: np.ndarray, alpha: np.ndarray | None) -> float | None:
        """Account for one frame; return this pair's own ratio (None for the first frame of a run)."""
        if alpha is None:
            self._previous = None
            return None
        region = face_region(alpha)
        previous, self._previous = self._previous, (original, swapped, region)
        if previous is None:
            return None
        p_original, p_swapped, p_region = previous
        union = region | p_region
        if not union.any():
            return None
        d_swapped = float(np.abs(swapped[union].astype(np.int16) - p_swapped[union].astype(np.int16)).mean())
        d_original = float(np.abs(original[union].astype(np.int16) - p_original[union].astype(np.int16)).mean())
        self.swapped_sum += d_swapped
        self.original_sum += d_original
        self.pairs += 1
        return d_swapped / d_original if d_original > 0 else None

    @property
    def ratio(self) -> float | None:
        """Σ mean|Δ swapped| / Σ mean|Δ original| over all pairs, or None without a pair (or a still source)."""
        if self.pairs == 0 or self.original_sum <= 0:
            return None
        return self.swapped_sum / self.original_sum


def _series(landmarks: np.ndarray) -> np.ndarray:
    pts = np.asarray(landmarks, np.float64)
    if pts.ndim != 3 or pts.shape[2] != 2:
        raise ValueError(f"landmark series: expected (T, N, 2) px, got {pts.shape}")
    return pts


def landmark_jitter(landmarks: np.ndarray, sigma: float = JITTER_SIGMA_FRAMES) -> float | None:
    """px RMS of the landmarks' high-frequency residual: each point's track minus its Gaussian-smoothed self
    (``sigma`` frames), over the frames at least 3 sigma from either end (where the smoothing is unbiased for
    linear motion). None when the series is too short for that."""
    from scipy.ndimage import gaussian_filter1d

    pts = _series(landmarks)
    trim = int(np.ceil(3 * sigma))
    if pts.shape[0] < 2 * trim + 1:
        return None
    smooth = gaussian_filter1d(pts, sigma, axis=0, mode="nearest", truncate=3.0)
    residual = (pts - smooth)[trim : pts.shape[0] - trim]
    return float(np.sqrt((residual**2).sum(axis=2).mean()))


def landmark_static_rms(landmarks: np.ndarray) -> float | None:
    """px RMS of the landmarks around their mean position (for a static clip, where any motion is error)."""
    pts = _series(landmarks)
    if pts.shape[0] < 2:
        return None
    return float(np.sqrt(((pts - pts.mean(axis=0)) ** 2).sum(axis=2).mean()))


def masked_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM (7 x 7 px uniform windows, averaged over the three channels) of two (S, S, 3) uint8 images over
    ``mask >= 0.5``; raises ValueError for an empty mask or mismatched shapes."""
    from skimage.metrics import structural_similarity

    if a.shape != b.shape or a.shape[:2] != mask.shape:
        raise ValueError(f"masked_ssim: images {a.shape}, {b.shape} and mask {mask.shape} must agree")
    where = np.asarray(mask) >= 0.5
    if not where.any():
        raise ValueError("masked_ssim: the mask is empty")
    _, full = structural_similarity(a, b, channel_axis=2, data_range=255, full=True)
    return float(full.mean(axis=2)[where].mean())
