"""The blend path's image maths in torch, so it runs where the tensors are (CUDA, or the CPU for tests).

Each function mirrors a host function of the CPU path and documents the difference:

* :func:`warp_crop` ↔ ``cv2.warpAffine`` in :func:`realtime_swap.align.align_face` (bilinear, replicated border);
* :func:`letterbox` / :func:`rgb_crops` ↔ the detector's letterbox and the landmarker's crops
  (:mod:`realtime_swap.detect`), so the detector reads the uploaded frame;
* :func:`rct_moments` / :func:`rct_apply` ↔ the ``rct`` colour transfer (:mod:`realtime_swap.color`);
* :func:`process_mask` ↔ :func:`realtime_swap.blend.process_mask`;
* :func:`sharpen` ↔ the unsharp mask of :func:`realtime_swap.blend.paste_back_roi`;
* :func:`composite_region` ↔ the ROI warp and composite of :func:`realtime_swap.blend.paste_back_roi`;
* :class:`HostStaging`: the frame's one upload and one download through page-locked host buffers.

OpenCV warps in fixed point (coordinates in 1/32 px, weights in 1/1024) while these warp in float32, so warped
pixels differ by up to about one 8-bit level; the Lab conversion is :mod:`realtime_swap.color.lab`'s torch twin
(exact curves, where the numba kernels use polynomial fits, < 1e-6). Images are float32 holding 8-bit levels
(0..255, rounded where the CPU path has uint8) or [0, 1] where the CPU path has float crops; shapes are written
on each function.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from realtime_swap.blend import feather_mask, sharpen_face
from realtime_swap.color.common import MASK_CUTOFF, MOMENT_SAMPLES, RCT_STD_FLOOR, sample_stride
from realtime_swap.color.lab import bgr_to_lab_torch as bgr_to_lab
from realtime_swap.color.lab import lab_to_bgr_torch as lab_to_bgr


class HostStaging:
    """The frame's way onto the device and back: page-locked (pinned) host buffers, reused, so the copies are
    DMA transfers that need no driver-side staging and the upload is asynchronous.

    Uploads go through a ring of ``depth`` buffers per frame shape; on CUDA each buffer's copy records an
    event, and a buffer is written again only once its event has passed, so a frame uploaded while the previous
    one's copy is still in flight (the detect stage of frame n + 1 while the swap of frame n runs) never
    overwrites it. Thread-safe for one uploading and one downloading thread.

    device: where frames go. pin: page-lock the host buffers (default: on CUDA; torch pins only with a GPU).
    alloc: (shape, dtype, pin) -> host tensor; tests pass a plain allocator to exercise the reuse on the CPU.
    event: () -> an object with ``record()`` and ``synchronize()`` (default: ``torch.cuda.Event`` on CUDA, none
    elsewhere, where copies are synchronous). uploads: how many frames went up (for tests and metrics).
    """

    def __init__(
        self,
        device: torch.device,
        pin: bool | None = None,
        alloc: Callable[[tuple[int, ...], torch.dtype, bool], torch.Tensor] | None = None,
        depth: int = 2,
        event: Callable[[], Any] | None = None,
    ) -> None:
        self.device = device
        self.pin = device.type == "cuda" if pin is None else pin
        self._alloc = alloc or (lambda shape, dtype, pin: torch.empty(shape, dtype=dtype, pin_memory=pin))
        if event is None and device.type == "cuda":
            event = torch.cuda.Event
        self._event = event
        self._depth = max(1, int(depth))
        self._up: dict[tuple[int, ...], list[tuple[torch.Tensor, Any]]] = {}
        self._next: dict[tuple[int, ...], int] = {}
        self._down: dict[tuple[int, ...], torch.Tensor] = {}
        self.uploads = 0

    def _upload_buffer(self, shape: tuple[int, ...]) -> tuple[torch.Tensor, Any]:
        ring = self._up.setdefault(shape, [])
        i = self._next.get(shape, 0)
        self._next[shape] = (i + 1) % self._depth
        if i >= len(ring):
            ring.append((self._alloc(shape, torch.uint8, self.pin), self._event() if self._event else None))
        buffer, done = ring[i]
        if done is not None:
            done.synchronize()  # that buffer's last copy has left it (returns at once when it has)
        return buffer, done

    def upload(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 host frame -> a new device tensor (the caller's array is never written)."""
        self.uploads += 1
        if self.device.type == "cpu" and not self.pin:
            return torch.from_numpy(image).clone()
        staged, done = self._upload_buffer(tuple(image.shape))
        staged.numpy()[...] = image  # one host copy into page-locked memory
        # to() of a host tensor to the CPU is the tensor itself: copy, so the buffer is free for the next frame
        out = staged.clone() if self.device.type == "cpu" else staged.to(self.device, non_blocking=True)
        if done is not None:
            done.record()
        return out

    def download(self, frame: torch.Tensor) -> np.ndarray:
        """Device (H, W, 3) uint8 tensor -> a new host array (waits for the device)."""
        if self.device.type == "cpu" and not self.pin:
            return frame.numpy().copy()
        shape = tuple(frame.shape)
        if shape not in self._down:
            self._down[shape] = self._alloc(shape, torch.uint8, self.pin)
        staged = self._down[shape]
        staged.copy_(frame, non_blocking=True)
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()
        return staged.numpy().copy()


@dataclass(frozen=True, slots=True)
class Box:
    """Frame pixels columns [x0, x1), rows [y0, y1)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def empty(self) -> bool:
        return self.x1 <= self.x0 or self.y1 <= self.y0


def crop_box(matrix: np.ndarray, size: int, width: int, height: int) -> Box:
    """The frame pixels a (size, size) crop made with ``matrix`` (frame px -> crop px) can read or write.

    The crop square's corners (pixel edges) are mapped to the frame; their bounding box grows by 1 px for bilinear
    interpolation (2 on the far side, as :func:`realtime_swap.blend.face_region`) and is clipped to the frame.
    Computed on the host from the matrix alone, so no device value has to be read back.
    """
    inverse = cv2.invertAffineTransform(np.asarray(matrix, np.float64))
    e = -0.5, size - 0.5
    corners = np.array([[e[0], e[0]], [e[1], e[0]], [e[0], e[1]], [e[1], e[1]]])
    pts = corners @ inverse[:, :2].T + inverse[:, 2]
    x0 = max(int(np.floor(pts[:, 0].min())) - 1, 0)
    y0 = max(int(np.floor(pts[:, 1].min())) - 1, 0)
    x1 = min(int(np.ceil(pts[:, 0].max())) + 2, width)
    y1 = min(int(np.ceil(pts[:, 1].max())) + 2, height)
    return Box(x0, y0, x1, y1)


def _theta(to_input: np.ndarray, out_w: int, out_h: int, in_w: int, in_h: int) -> np.ndarray:
    """affine_grid's theta (align_corners=True) for ``to_input``: (2, 3) output px -> input px."""
    # normalised -> px on the output side, then px -> normalised on the input side (pixel centres at +-1)
    out_from_norm = np.array([[(out_w - 1) / 2.0, 0.0, (out_w - 1) / 2.0], [0.0, (out_h - 1) / 2.0, (out_h - 1) / 2.0]])
    out3 = np.vstack([out_from_norm, [0.0, 0.0, 1.0]])
    px = np.vstack([to_input, [0.0, 0.0, 1.0]]) @ out3
    sx = 2.0 / max(in_w - 1, 1)
    sy = 2.0 / max(in_h - 1, 1)
    return np.array([px[0] * sx - np.array([0.0, 0.0, 1.0]), px[1] * sy - np.array([0.0, 0.0, 1.0])])


def _sample(image: torch.Tensor, to_input: np.ndarray, out_w: int, out_h: int, padding: str) -> torch.Tensor:
    """Bilinear sample of ``image`` (C, h, w) float32 at ``to_input`` @ (u, v, 1) for every output px (u, v)."""
    c, h, w = image.shape
    theta = torch.as_tensor(_theta(to_input, out_w, out_h, w, h), dtype=torch.float32, device=image.device)
    grid = F.affine_grid(theta[None], [1, c, out_h, out_w], align_corners=True)
    return F.grid_sample(image[None], grid, mode="bilinear", padding_mode=padding, align_corners=True)[0]


def warp_crop(frame: torch.Tensor, matrix: np.ndarray, size: int) -> torch.Tensor:
    """The aligned (size, size, 3) crop of ``frame`` as ``cv2.warpAffine(frame, matrix, (size, size))``
    (bilinear, border replicated), as float32 8-bit levels rounded to integers.

    frame: (H, W, 3) uint8 BGR on any device; matrix: (2, 3) float64 frame px -> crop px. Only the frame's
    pixels under the crop are converted to float.
    """
    height, width = int(frame.shape[0]), int(frame.shape[1])
    box = crop_box(matrix, size, width, height)
    if box.empty:  # the crop lies wholly outside the frame: it replicates border pixels, read them all
        box = Box(0, 0, width, height)
    region = frame[box.y0 : box.y1, box.x0 : box.x1].permute(2, 0, 1).float()
    to_frame = cv2.invertAffineTransform(np.asarray(matrix, np.float64))
    to_frame[:, 2] -= (box.x0, box.y0)
    out = _sample(region, to_frame, size, size, "border")
    return out.permute(1, 2, 0).round_()


_AREA_WEIGHTS: dict[tuple[int, int, torch.device], torch.Tensor] = {}


def area_weights(n_in: int, n_out: int, device: torch.device) -> torch.Tensor:
    """(n_out, n_in) float32: the share of each input pixel in each output pixel when ``n_in`` pixels shrink to
    ``n_out`` by area (``cv2.INTER_AREA``): output i averages the input span [i s, (i + 1) s), s = n_in / n_out,
    each input pixel weighted by its overlap with that span. Cached per size and device."""
    key = (n_in, n_out, device)
    if key not in _AREA_WEIGHTS:
        scale = n_in / n_out
        lo = np.arange(n_out)[:, None] * scale
        edges = np.arange(n_in)[None, :]
        overlap = np.clip(np.minimum(edges + 1, lo + scale) - np.maximum(edges, lo), 0.0, None) / scale
        if len(_AREA_WEIGHTS) > 16:  # frame sizes change rarely; keep the table small
            _AREA_WEIGHTS.clear()
        _AREA_WEIGHTS[key] = torch.as_tensor(overlap, dtype=torch.float32, device=device)
    return _AREA_WEIGHTS[key]


def resize_area(image: torch.Tensor, new_w: int, new_h: int) -> torch.Tensor:
    """(H, W, C) float -> (new_h, new_w, C), shrinking by area as ``cv2.resize(..., INTER_AREA)``: two matrix
    products (rows, then columns) with :func:`area_weights`, exact for any scale, not only whole ones."""
    h, w, c = (int(d) for d in image.shape)
    rows = area_weights(h, new_h, image.device) @ image.reshape(h, w * c)
    cols = area_weights(w, new_w, image.device) @ rows.reshape(new_h, w, c).transpose(0, 1).reshape(w, new_h * c)
    return cols.reshape(new_w, new_h, c).transpose(0, 1)


def letterbox(frame: torch.Tensor, size: int, new_w: int, new_h: int, ox: int, oy: int) -> torch.Tensor:
    """BlazeFace's input from a device frame, as :meth:`realtime_swap.detect.blazeface.BlazeFaceDetector.letterbox`:
    (1, size, size, 3) float32 RGB in [-1, 1], the frame resized to (new_w, new_h) at offset (ox, oy) on black.

    frame: (H, W, 3) uint8 BGR. Shrinking averages by area (:func:`resize_area`, as the host's ``INTER_AREA``),
    growing is bilinear with half-pixel centres (``INTER_LINEAR``); levels are rounded as the host's uint8.
    """
    h, w = int(frame.shape[0]), int(frame.shape[1])
    if new_w <= w and new_h <= h:
        resized = resize_area(frame.float(), new_w, new_h)
    else:
        x = frame.permute(2, 0, 1)[None].float()
        resized = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    canvas = torch.zeros((size, size, 3), dtype=torch.float32, device=frame.device)
    canvas[oy : oy + new_h, ox : ox + new_w] = resized.round().clamp_(0.0, 255.0)
    return canvas.flip(-1)[None] * (1.0 / 127.5) - 1.0


def rgb_crops(frame: torch.Tensor, matrices: list[np.ndarray], size: int) -> torch.Tensor:
    """FaceMesh's input from a device frame: (N, size, size, 3) float32 RGB in [0, 1], one :func:`warp_crop`
    (bilinear, replicated border) per matrix (frame px -> crop px), as the host's ``cv2.warpAffine`` crops."""
    crops = torch.stack([warp_crop(frame, m, size) for m in matrices])
    return crops.flip(-1) * (1.0 / 255.0)


# --- colour: rct in L*a*b* -------------------------------------------------------------------------------------


def rct_moments(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(6,) float32 [mean L, a, b, std L, a, b] over the mask's pixels above 0.5 on the colour module's
    sampling grid, and the sample count as a 0-d tensor (0: no statistics; the moments are then zeros).

    image: (S, S, 3) BGR float in [0, 1]; mask: (S, S) float [0, 1]. No device value is read back: the
    selection is a weight, not an index.
    """
    stride = sample_stride(int(mask.shape[0]), int(mask.shape[1]), MOMENT_SAMPLES)
    weight = (mask[::stride, ::stride] > MASK_CUTOFF).float()[..., None]
    lab = bgr_to_lab(image[::stride, ::stride])
    count = weight.sum()
    n = count.clamp(min=1.0)
    mean = (lab * weight).sum(dim=(0, 1)) / n
    var = (((lab - mean) ** 2) * weight).sum(dim=(0, 1)) / n
    return torch.cat([mean, var.sqrt()]), count


def rct_apply(
    source: torch.Tensor, source_stats: torch.Tensor, target_stats: torch.Tensor, amount: float
) -> torch.Tensor:
    """``source + amount * (Lab^-1(scale * Lab(source) + shift) - source)`` with scale/shift from the two (6,)
    moment vectors (:func:`realtime_swap.color.common.rct_coefficients`); (S, S, 3) float32 in [0, 1]."""
    scale = target_stats[3:] / source_stats[3:].clamp(min=RCT_STD_FLOOR)
    shift = target_stats[:3] - source_stats[:3] * scale
    moved = lab_to_bgr(bgr_to_lab(source) * scale + shift)
    return source + amount * (moved - source)


@dataclass
class _Track:
    target: torch.Tensor  # (6,)
    source: torch.Tensor  # (6,)
    valid: torch.Tensor  # 0-d bool: the track holds a measurement
    t: torch.Tensor  # 0-d float64: time of that measurement, s
    seen: float  # host time the face was last processed, s (for forgetting)


class DeviceRctSmoother:
    """:class:`realtime_swap.color.ColorStatsSmoother` for ``rct``, with every statistic kept on the device.

    Same average: a new measurement at t enters with weight ``1 - exp(-(t - t0) / time_constant_s)``; it
    restarts from the measurement for a new face, when time went backwards or after more than ``max_gap_s``;
    an empty measurement (no mask pixel above 0.5) leaves the average unchanged and the face unrecoloured.
    The branches are ``torch.where`` on device values, so nothing is read back to the host. One difference:
    faces are forgotten ``max_gap_s`` after they were last *processed* (the host cannot see whether a
    measurement was empty).
    """

    def __init__(self, time_constant_s: float, max_gap_s: float = 1.0) -> None:
        if not (time_constant_s >= 0.0 and math.isfinite(time_constant_s)):
            raise ValueError(f"DeviceRctSmoother: time_constant_s must be >= 0 s, got {time_constant_s}")
        self.time_constant_s = float(time_constant_s)
        self.max_gap_s = float(max_gap_s)
        self._tracks: dict[int, _Track] = {}

    def transfer(
        self, face_id: int, source: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, amount: float, t: float
    ) -> torch.Tensor:
        """Recolour ``source`` (S, S, 3) float [0, 1] towards ``target`` (S, S, 3) float [0, 1] over ``mask``
        (S, S) float [0, 1] at time ``t`` s, with smoothed statistics; (S, S, 3) float32."""
        new_target, count = rct_moments(target, mask)
        new_source, _ = rct_moments(source, mask)
        has = count > 0
        device = source.device
        track = self._tracks.get(face_id)
        if track is None:
            zeros = torch.zeros(6, dtype=torch.float32, device=device)
            track = _Track(
                zeros,
                zeros,
                torch.zeros((), dtype=torch.bool, device=device),
                torch.zeros((), dtype=torch.float64, device=device),
                t,
            )
            self._tracks[face_id] = track
        now = torch.tensor(t, dtype=torch.float64, device=device)
        dt = now - track.t
        restart = ~track.valid | (dt < 0) | (dt > self.max_gap_s)
        if self.time_constant_s == 0.0:
            weight = torch.ones((), dtype=torch.float32, device=device)
        else:
            weight = torch.where(restart, 1.0, 1.0 - torch.exp(-dt.clamp(min=0.0) / self.time_constant_s)).float()
        track.target = torch.where(has, track.target + weight * (new_target - track.target), track.target)
        track.source = torch.where(has, track.source + weight * (new_source - track.source), track.source)
        track.t = torch.where(has, now, track.t)
        track.valid = track.valid | has
        track.seen = t
        moved = rct_apply(source, track.source, track.target, amount)
        return torch.where(has, moved, source)

    def forget_stale(self, t: float) -> None:
        """Drop the faces not processed within ``max_gap_s`` before ``t`` (s)."""
        for face_id in [i for i, tr in self._tracks.items() if t - tr.seen > self.max_gap_s or t < tr.seen]:
            del self._tracks[face_id]

    def __len__(self) -> int:
        return len(self._tracks)


# --- mask, sharpen, composite ----------------------------------------------------------------------------------


def _separable(image: torch.Tensor, kernel: torch.Tensor, padding_mode: str) -> torch.Tensor:
    """Separable convolution of (C, h, w) float32 with a 1-D kernel; ``constant`` (zeros) or ``reflect`` border
    (``reflect`` is OpenCV's BORDER_REFLECT_101)."""
    c = image.shape[0]
    r = kernel.numel() // 2
    x = F.pad(image[None], (r, r, r, r), mode="constant" if padding_mode == "constant" else "reflect")
    kx = kernel.reshape(1, 1, 1, -1).expand(c, 1, 1, -1)
    ky = kernel.reshape(1, 1, -1, 1).expand(c, 1, -1, 1)
    x = F.conv2d(x, kx, groups=c)
    return F.conv2d(x, ky, groups=c)[0]


def _gaussian(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(cv2.getGaussianKernel(size, sigma, cv2.CV_32F).ravel(), device=device)


class _TorchOps:
    """:class:`realtime_swap.blend.CropOps` in torch, on the tensors' device (faces are float32 8-bit levels)."""

    def clip01(self, mask: torch.Tensor) -> torch.Tensor:
        return mask.float().clamp(0.0, 1.0)

    def erode(self, mask: torch.Tensor, element: np.ndarray, dilate: bool) -> torch.Tensor:
        r = element.shape[0] // 2
        padded = F.pad(mask[None, None], (r, r, r, r), value=-1.0 if dilate else 2.0)[0, 0]
        h, w = mask.shape
        pick = torch.maximum if dilate else torch.minimum
        out: torch.Tensor | None = None
        for dy, dx in zip(*np.nonzero(element), strict=True):
            shifted = padded[dy : dy + h, dx : dx + w]
            out = shifted.clone() if out is None else pick(out, shifted)
        assert out is not None
        return out

    def gaussian(self, mask: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
        return _separable(mask[None], _gaussian(size, sigma, mask.device), "constant")[0]

    def snap(self, mask: torch.Tensor, step: float) -> torch.Tensor:
        return torch.where(mask < step, 0.0, torch.where(mask > 1.0 - step, 1.0, mask))

    def unsharp(self, face: torch.Tensor, size: int, sigma: float, amount: float) -> torch.Tensor:
        blurred = _separable(face.permute(2, 0, 1), _gaussian(size, sigma, face.device), "reflect").permute(1, 2, 0)
        blurred = blurred.round()  # OpenCV blurs uint8 into uint8
        return ((1.0 + amount) * face - amount * blurred).round_().clamp_(0.0, 255.0)


TORCH_OPS = _TorchOps()


def process_mask(mask: torch.Tensor, erode_px: int = 0, blur_px: int = 0) -> torch.Tensor:
    """:func:`realtime_swap.blend.feather_mask` in torch: (S, S) float [0, 1] -> (S, S) float32 [0, 1]."""
    return feather_mask(mask, erode_px, blur_px, TORCH_OPS)


def sharpen(face: torch.Tensor, amount: float) -> torch.Tensor:
    """:func:`realtime_swap.blend.sharpen_face` in torch: (S, S, 3) float32 8-bit levels in, the same out, rounded."""
    return sharpen_face(face, amount, TORCH_OPS)


def composite_region(
    frame: torch.Tensor, face: torch.Tensor, alpha: torch.Tensor, matrix: np.ndarray, opacity: float
) -> None:
    """Warp ``face`` and ``alpha`` from crop space over the frame pixels the crop covers and composite, in place.

    frame: (H, W, 3) uint8 BGR on the device, modified in place; face: (S, S, 3) float32 8-bit levels;
    alpha: (S, S) float32 [0, 1] (the processed mask); matrix: (2, 3) float64 frame px -> crop px.
    Per pixel ``round(d + opacity * a * (f - d))`` as :func:`realtime_swap.blend.paste_back_roi`, the warped face
    rounded to 8-bit levels first as OpenCV's uint8 warp does; pixels where the warped alpha is 0 keep their value.
    """
    height, width = int(frame.shape[0]), int(frame.shape[1])
    size = int(face.shape[0])
    box = crop_box(matrix, size, width, height)
    if box.empty or opacity == 0.0:
        return
    to_crop = np.asarray(matrix, np.float64).copy()
    to_crop[:, 2] += to_crop[:, :2] @ np.array([box.x0, box.y0], np.float64)
    out_w, out_h = box.x1 - box.x0, box.y1 - box.y0
    face_w = _sample(face.permute(2, 0, 1), to_crop, out_w, out_h, "border").round_().permute(1, 2, 0)
    alpha_w = _sample(alpha[None], to_crop, out_w, out_h, "zeros")[0][..., None] * opacity
    region = frame[box.y0 : box.y1, box.x0 : box.x1]
    d = region.float()
    blended = (d + alpha_w * (face_w - d) + 0.5).floor_().clamp_(0.0, 255.0)
    region.copy_(blended.to(torch.uint8))
