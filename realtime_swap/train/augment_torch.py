"""Training augmentation on the training device, for a whole batch at once: ``augment.py`` + ``data.make_batch``
in torch, for a GPU that trains faster than the CPU augments.

The training sets are uploaded once (uint8, NCHW); per iteration only the random draws are made (on a CPU
``torch.Generator`` seeded from (seed, iteration, stream), so a batch depends on nothing else and is the same
on any device up to float rounding) and two ``F.grid_sample`` calls build the batch: one for the warped network
input, one for target, mask and eyes/mouth together (the same affine and flip: they stay aligned).

The geometry follows OpenCV's pixel-centre convention (pixel i's centre at coordinate i), as ``augment.py`` does:
``grid_sample(align_corners=True, padding_mode="border")`` on pixel coordinates is ``cv2.warpAffine`` /
``cv2.remap`` with ``BORDER_REPLICATE``. Two differences from the numpy path, both below the augmentation's own
randomness: the local warp and the affine are composed into one sampling grid (one interpolation where the numpy
path resamples twice), and OpenCV quantises its sampling positions to 1/32 px where torch does not. The draws are
not the numpy path's draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from realtime_swap.color.lab import bgr_to_lab_torch, lab_to_bgr_torch
from realtime_swap.train.data import DST_STREAM, SRC_STREAM, AugmentSettings, TrainingSet

CELL_DIVISORS = (2, 4, 8)
"""The local warp's grid: cell = S / divisor px, the divisor drawn uniformly per sample (as ``augment.py``)."""
MAX_INNER_NODES = max(CELL_DIVISORS) - 1
_STATS_CHUNK = 64


@dataclass(frozen=True, slots=True)
class DeviceBatch:
    """``data.Batch`` as device tensors: warped, target (B, 3, S, S) float32 BGR [0, 1]; mask, eyes_mouth
    (B, 1, S, S) float32 [0, 1]; all on the augmenter's device."""

    warped: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    eyes_mouth: torch.Tensor


@dataclass(frozen=True, slots=True)
class DeviceTrainingSet:
    """A ``TrainingSet`` on a device. planes: (N, 5, S, S) uint8, channels B, G, R, mask, eyes_mouth (255 = in).
    lab_mean, lab_std: (N, 3) float32 per-face L*a*b* mean and population std (a colour reference's statistics,
    computed once)."""

    planes: torch.Tensor
    lab_mean: torch.Tensor
    lab_std: torch.Tensor

    def __len__(self) -> int:
        return int(self.planes.shape[0])

    @staticmethod
    def device_bytes(data: TrainingSet) -> int:
        """Bytes the uploaded faces take: N * S * S * (3 + 1 + 1)."""
        n, s = len(data), data.images.shape[1]
        return n * s * s * 5

    @classmethod
    def upload(cls, data: TrainingSet, device: torch.device) -> DeviceTrainingSet:
        planes = torch.from_numpy(
            np.concatenate([data.images, data.masks[..., None], data.eyes_mouth[..., None]], axis=-1)
        )
        planes = planes.to(device).permute(0, 3, 1, 2).contiguous()
        means, stds = [], []
        for start in range(0, len(data), _STATS_CHUNK):  # bounded scratch memory for large facesets
            lab = bgr_to_lab_torch(planes[start : start + _STATS_CHUNK, :3].permute(0, 2, 3, 1).float() / 255.0)
            flat = lab.reshape(lab.shape[0], -1, 3)
            means.append(flat.mean(1))
            stds.append(flat.std(1, correction=0))
        return cls(planes, torch.cat(means), torch.cat(stds))


def batch_generator(seed: int, iteration: int, stream: int) -> torch.Generator:
    """The CPU generator of one identity's batch at one iteration (``data.iteration_rng``'s torch twin)."""
    state = np.random.SeedSequence([seed, iteration, stream]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & 0x7FFF_FFFF_FFFF_FFFF)


@dataclass(frozen=True, slots=True)
class WarpDraws:
    """One batch's random geometry (CPU tensors; what ``augment.sample_warp_params`` draws, per sample).

    divisor: (B,) int64, the local warp's cell = S / divisor px. nodes: (B, 2, 7, 7) float32 N(0, 1): the inner
    node displacements (x, y) before scaling by 0.24 * cell; a coarser grid uses its top-left part.
    angle: (B,) degrees; zoom: (B,); shift: (B, 2) px (x, y); flip: (B,) bool.
    """

    divisor: torch.Tensor
    nodes: torch.Tensor
    angle: torch.Tensor
    zoom: torch.Tensor
    shift: torch.Tensor
    flip: torch.Tensor

    @classmethod
    def draw(
        cls,
        gen: torch.Generator,
        batch: int,
        size: int,
        flip_prob: float = 0.0,
        rotation: float = 10.0,
        scale: float = 0.05,
        shift: float = 0.05,
    ) -> WarpDraws:
        divisor = torch.tensor(CELL_DIVISORS)[torch.randint(0, len(CELL_DIVISORS), (batch,), generator=gen)]
        nodes = torch.randn(batch, 2, MAX_INNER_NODES, MAX_INNER_NODES, generator=gen)
        angle = (torch.rand(batch, generator=gen) * 2 - 1) * rotation
        zoom = 1.0 + (torch.rand(batch, generator=gen) * 2 - 1) * scale
        offset = (torch.rand(batch, 2, generator=gen) * 2 - 1) * (shift * size)
        flip = torch.rand(batch, generator=gen) < flip_prob
        return cls(divisor, nodes, angle, zoom, offset, flip)


def affine_matrices(angle: torch.Tensor, zoom: torch.Tensor, shift: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 2, 3) float64 px affines: ``cv2.getRotationMatrix2D((S/2, S/2), angle, zoom)`` plus ``shift``."""
    a = torch.deg2rad(angle.double())
    alpha, beta = zoom.double() * torch.cos(a), zoom.double() * torch.sin(a)
    c = size / 2
    tx = (1 - alpha) * c - beta * c + shift[:, 0].double()
    ty = beta * c + (1 - alpha) * c + shift[:, 1].double()
    return torch.stack([torch.stack([alpha, beta, tx], 1), torch.stack([-beta, alpha, ty], 1)], 1)


def sampling_grids(draws: WarpDraws, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(warped, target) sampling positions, each (B, S, S, 2) float32 in grid_sample's align_corners=True units.

    Output pixel p: flipped (x -> S-1-x) when the sample flips, through the inverse affine to q; the target
    samples the face at q; the warped input at q + d(q), with q clamped to the image (the numpy path's remapped
    intermediate replicates its border) and d the coarse node grid interpolated as ``cv2.resize`` does.
    """
    batch = draws.angle.shape[0]
    matrices = affine_matrices(draws.angle, draws.zoom, draws.shift, size)
    linear, offset = matrices[:, :, :2], matrices[:, :, 2]
    inverse = torch.linalg.inv(linear).float().to(device)
    offset = offset.float().to(device)
    axis = torch.arange(size, dtype=torch.float32, device=device)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    xs = xs.expand(batch, size, size)
    xs = torch.where(draws.flip.to(device)[:, None, None], (size - 1) - xs, xs)
    pixels = torch.stack([xs, ys.expand(batch, size, size)], -1)  # (B, S, S, 2) x, y
    q = torch.einsum("bij,bhwj->bhwi", inverse, pixels - offset[:, None, None, :])
    warped_q = q.clamp(0, size - 1)
    disp = torch.zeros(batch, size, size, 2, device=device)
    for divisor in CELL_DIVISORS:
        rows = (draws.divisor == divisor).nonzero().flatten()
        if rows.numel() == 0:
            continue
        cell = size // divisor
        n = size // cell + 1
        coarse = torch.zeros(rows.numel(), 2, n, n)
        coarse[:, :, 1:-1, 1:-1] = draws.nodes[rows, :, : n - 2, : n - 2] * (cell * 0.24)
        rows = rows.to(device)
        # align_corners=False on the (n, n) nodes: node j sits at px (j + 0.5) * S / n - 0.5, ends clamped,
        # which is cv2.resize(INTER_LINEAR) of the nodes to S x S evaluated between pixel centres
        where = (warped_q[rows] + 0.5) * (2.0 / size) - 1.0
        field = F.grid_sample(coarse.to(device), where, mode="bilinear", padding_mode="border", align_corners=False)
        disp[rows] = field.permute(0, 2, 3, 1)
    warped = warped_q + disp
    scale = 2.0 / (size - 1)
    return warped * scale - 1.0, q * scale - 1.0


def reinhard_transfer_torch(images: torch.Tensor, ref_mean: torch.Tensor, ref_std: torch.Tensor) -> torch.Tensor:
    """``augment.reinhard_transfer`` for a batch: (B, 3, S, S) float BGR [0, 1] recoloured to the per-sample
    L*a*b* statistics ref_mean, ref_std (B, 3); returns (B, 3, S, S) float32 BGR [0, 1]."""
    lab = bgr_to_lab_torch(images.permute(0, 2, 3, 1))
    flat = lab.reshape(lab.shape[0], -1, 3)
    mean, std = flat.mean(1), flat.std(1, correction=0)
    gain = (ref_std / std.clamp_min(1e-6))[:, None, None, :]
    out = (lab - mean[:, None, None, :]) * gain + ref_mean[:, None, None, :]
    return lab_to_bgr_torch(out).permute(0, 3, 1, 2)


def make_device_batch(
    gen: torch.Generator,
    data: DeviceTrainingSet,
    batch_size: int,
    settings: AugmentSettings,
    color_refs: DeviceTrainingSet | None = None,
) -> DeviceBatch:
    """``data.make_batch`` on ``data``'s device: ``batch_size`` faces drawn with replacement, recoloured towards a
    random face of ``color_refs`` with probability ``settings.color_transfer``, warped; see ``DeviceBatch``."""
    device = data.planes.device
    size = int(data.planes.shape[-1])
    index = torch.randint(0, len(data), (batch_size,), generator=gen)
    recolour = torch.rand(batch_size, generator=gen) < settings.color_transfer
    refs = torch.randint(0, len(color_refs) if color_refs is not None else 1, (batch_size,), generator=gen)
    draws = WarpDraws.draw(gen, batch_size, size, flip_prob=0.5 if settings.flip else 0.0)
    planes = data.planes[index.to(device)].float() / 255.0
    image = planes[:, :3]
    if color_refs is not None and settings.color_transfer > 0 and bool(recolour.any()):
        rows = recolour.nonzero().flatten()
        picked = refs[rows].to(color_refs.planes.device)
        moved = reinhard_transfer_torch(
            image[rows.to(device)], color_refs.lab_mean[picked].to(device), color_refs.lab_std[picked].to(device)
        )
        image = image.index_copy(0, rows.to(device), moved)
        planes = torch.cat([image, planes[:, 3:]], 1)
    warped_grid, target_grid = sampling_grids(draws, size, device)
    rest = _sample(planes, target_grid)
    target = rest[:, :3]
    return DeviceBatch(
        warped=_sample(image, warped_grid) if settings.random_warp else target.clone(),
        target=target,
        mask=rest[:, 3:4],
        eyes_mouth=rest[:, 4:5],
    )


def _sample(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear, border replicated, OpenCV pixel centres; clipped to [0, 1] (bilinear weights sum to 1 only up to
    rounding)."""
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.clamp_(0.0, 1.0)


class DeviceAugmenter:
    """Builds the (src, dst) batches of each iteration on ``device`` from sets uploaded once; the device twin of
    ``data.BatchPrefetcher`` (``get(iteration)``, ``close()``), working on the caller's thread (on a GPU the work
    is queued kernels). The src batch is recoloured towards dst faces, as on the CPU path."""

    def __init__(
        self,
        src: TrainingSet,
        dst: TrainingSet,
        batch_size: int,
        settings: AugmentSettings,
        seed: int,
        device: torch.device,
    ) -> None:
        self.src = DeviceTrainingSet.upload(src, device)
        self.dst = DeviceTrainingSet.upload(dst, device)
        self.batch_size = batch_size
        self.settings = settings
        self.seed = seed

    @torch.no_grad()
    def get(self, iteration: int) -> tuple[DeviceBatch, DeviceBatch]:
        src_gen = batch_generator(self.seed, iteration, SRC_STREAM)
        dst_gen = batch_generator(self.seed, iteration, DST_STREAM)
        src = make_device_batch(src_gen, self.src, self.batch_size, self.settings, self.dst)
        dst = make_device_batch(dst_gen, self.dst, self.batch_size, self.settings, None)
        return src, dst

    def close(self) -> None:
        """Nothing runs in the background; kept for the batch-source interface."""


def device_set_bytes(*sets: TrainingSet) -> int:
    """Device memory the uploaded training sets take (bytes)."""
    return sum(DeviceTrainingSet.device_bytes(s) for s in sets)
