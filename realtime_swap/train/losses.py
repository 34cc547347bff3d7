"""Losses of the swap autoencoders (DeepFaceLab SAEHD recipe) and the optional patch-GAN.

Inputs are NCHW float32: faces (N, 3, S, S) BGR [0, 1], masks (N, 1, S, S) [0, 1]. Per-identity loss:

    dssim_weight * DSSIM(pred*m, target*m) + mse_weight * MSE(pred*m, target*m)
    + eyes_mouth_weight * mean(|pred - target| * em) + mask_weight * MSE(pred_mask, mask)

where m is the blurred face mask (masked training) or 1, and em the eyes-and-mouth mask (zeros without
landmarks). DSSIM = (1 - SSIM) / 2 with a Gaussian window (sigma 1.5) of S/11.6 px; from 128 px up it is
multi-scale: the mean of windows of S/11.6 and S/23.2 px.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

MULTISCALE_FROM = 128


def _gaussian_kernel1d(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def _separable_filter(x: torch.Tensor, kernel: torch.Tensor, padding: int = 0) -> torch.Tensor:
    channels = x.shape[1]
    size = kernel.numel()
    kx = kernel.view(1, 1, 1, size).expand(channels, 1, 1, size)
    ky = kernel.view(1, 1, size, 1).expand(channels, 1, size, 1)
    if padding:
        x = F.pad(x, (padding, padding, padding, padding), mode="replicate")
    return F.conv2d(F.conv2d(x, kx, groups=channels), ky, groups=channels)


def ssim(x: torch.Tensor, y: torch.Tensor, window: int, sigma: float = 1.5, max_val: float = 1.0) -> torch.Tensor:
    """Mean SSIM per sample, (N,), over valid windows of ``window`` px (Wang et al. 2004 constants)."""
    window = max(3, min(window, x.shape[-1], x.shape[-2]))
    kernel = _gaussian_kernel1d(window, sigma, x.device)
    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    mu_x, mu_y = _separable_filter(x, kernel), _separable_filter(y, kernel)
    sxx = _separable_filter(x * x, kernel) - mu_x**2
    syy = _separable_filter(y * y, kernel) - mu_y**2
    sxy = _separable_filter(x * y, kernel) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    return (num / den).mean(dim=(1, 2, 3))


def dssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Structural dissimilarity (1 - SSIM) / 2 per sample, (N,); multi-scale from 128 px up."""
    size = x.shape[-1]
    windows = [int(size / 11.6)]
    if size >= MULTISCALE_FROM:
        windows.append(int(size / 23.2))
    return torch.stack([(1.0 - ssim(x, y, w)) / 2.0 for w in windows]).mean(0)


def blur_mask(mask: torch.Tensor) -> torch.Tensor:
    """Soften a (N, 1, S, S) mask as DeepFaceLab's masked training does: Gaussian (sigma S/32), clip to
    [0, 0.5], x2, so the loss fades out across the face border instead of stopping at it."""
    size = mask.shape[-1]
    sigma = max(1.0, size / 32)
    radius = math.ceil(2 * sigma)
    kernel = _gaussian_kernel1d(2 * radius + 1, sigma, mask.device)
    return torch.clamp(_separable_filter(mask, kernel, padding=radius), 0.0, 0.5) * 2.0


class LossWeights(NamedTuple):
    dssim: float = 10.0
    mse: float = 10.0
    eyes_mouth: float = 300.0
    mask: float = 10.0


class LossParts(NamedTuple):
    """Per-sample (N,) terms of one identity's loss and their weighted sum."""

    total: torch.Tensor
    dssim: torch.Tensor
    mse: torch.Tensor
    eyes_mouth: torch.Tensor
    mask: torch.Tensor


def reconstruction_loss(
    pred_face: torch.Tensor,
    pred_mask: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    eyes_mouth: torch.Tensor,
    weights: LossWeights,
    masked: bool = True,
) -> LossParts:
    """One identity's loss (module docstring); computed in float32 whatever the autocast dtype."""
    pred_face, pred_mask = pred_face.float(), pred_mask.float()
    m = blur_mask(mask) if masked else torch.ones_like(mask)
    p, t = pred_face * m, target * m
    d = dssim(p, t)
    mse = ((p - t) ** 2).mean(dim=(1, 2, 3))
    em = (torch.abs(pred_face - target) * eyes_mouth).mean(dim=(1, 2, 3))
    mask_mse = ((pred_mask - mask) ** 2).mean(dim=(1, 2, 3))
    total = weights.dssim * d + weights.mse * mse + weights.eyes_mouth * em + weights.mask * mask_mse
    return LossParts(total, d, mse, em, mask_mse)


class PatchDiscriminator(nn.Module):
    """(N, 3, S, S) BGR [0, 1] -> (N, 1, S/8, S/8) real/fake logits, one per ~46 px patch (PatchGAN)."""

    def __init__(self, ch: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, ch, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ch, ch * 2, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ch * 2, ch * 4, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(ch * 4, 1, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def gan_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: the discriminator should call fakes real. Scalar."""
    fake_logits = fake_logits.float()
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def gan_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss: real patches -> 1, fake patches -> 0 (mean of both BCE terms). Scalar."""
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return 0.5 * (real + fake)
