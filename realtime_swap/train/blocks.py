"""Building blocks of the DeepFaceLab-family autoencoders (PyTorch, NCHW).

Every block keeps the seed models' shapes: a 5x5 stride-2 convolution + LeakyReLU(0.1) halves the size, a 3x3
convolution to 4x the channels + LeakyReLU(0.1) + pixel shuffle doubles it, residual blocks use
LeakyReLU(0.2), and the bottleneck is a pair of dense layers.
"""

from __future__ import annotations

import torch
from torch import nn


class Downscale(nn.Module):
    """(N, C_in, H, W) -> (N, C_out, H/2, W/2): 5x5 conv, stride 2, LeakyReLU(0.1)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size, stride=2, padding=kernel_size // 2)
        self.act = nn.LeakyReLU(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class Upscale(nn.Module):
    """(N, C_in, H, W) -> (N, C_out, 2H, 2W): 3x3 conv to 4*C_out, LeakyReLU(0.1), pixel shuffle."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch * 4, 3, padding=1)
        self.act = nn.LeakyReLU(0.1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.act(self.conv(x)))


class ResidualBlock(nn.Module):
    """(N, C, H, W) -> same: two 3x3 convs with a skip connection, LeakyReLU(0.2)."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.act(self.conv1(x)))
        return self.act(x + y)


class Encoder(nn.Module):
    """(N, 3, S, S) BGR [0, 1] -> (N, 8*e_dims * (S/16)^2) flat code: four downscales (e, 2e, 4e, 8e)."""

    def __init__(self, e_dims: int, in_ch: int = 3) -> None:
        super().__init__()
        chans = [in_ch] + [e_dims * m for m in (1, 2, 4, 8)]
        self.down = nn.Sequential(*(Downscale(chans[i], chans[i + 1]) for i in range(4)))
        self.out_ch = chans[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.down(x), 1)

    @staticmethod
    def out_features(e_dims: int, resolution: int) -> int:
        return e_dims * 8 * (resolution // 16) ** 2


class Inter(nn.Module):
    """The bottleneck: flat code -> dense(ae_dims) -> dense(out_ch * r * r) -> (N, out_ch, 2r, 2r), r = S/16."""

    def __init__(self, in_features: int, ae_dims: int, out_ch: int, resolution: int) -> None:
        super().__init__()
        self.res = resolution // 16
        self.out_ch = out_ch
        self.dense1 = nn.Linear(in_features, ae_dims)
        self.dense2 = nn.Linear(ae_dims, self.res * self.res * out_ch)
        self.up = Upscale(out_ch, out_ch)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        x = self.dense2(self.dense1(code))
        x = x.view(-1, self.out_ch, self.res, self.res)
        return self.up(x)


class Decoder(nn.Module):
    """(N, in_ch, S/8, S/8) -> face (N, 3, S, S) BGR [0, 1] and mask (N, 1, S, S) [0, 1], both sigmoid.

    Face branch: three upscales (8d, 4d, 2d channels), each followed by a residual block, then a 1x1 conv to
    colour. Mask branch: three upscales (8m, 4m, 2m), then a 1x1 conv to one channel.
    """

    def __init__(self, in_ch: int, d_dims: int, d_mask_dims: int) -> None:
        super().__init__()
        d = [in_ch, d_dims * 8, d_dims * 4, d_dims * 2]
        m = [in_ch, d_mask_dims * 8, d_mask_dims * 4, d_mask_dims * 2]
        self.face = nn.Sequential(
            *(nn.Sequential(Upscale(d[i], d[i + 1]), ResidualBlock(d[i + 1])) for i in range(3)),
            nn.Conv2d(d[3], 3, 1),
        )
        self.mask = nn.Sequential(*(Upscale(m[i], m[i + 1]) for i in range(3)), nn.Conv2d(m[3], 1, 1))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.sigmoid(self.face(z)), torch.sigmoid(self.mask(z))

    def forward_mask(self, z: torch.Tensor) -> torch.Tensor:
        """The mask branch alone (N, 1, S, S), for paths that do not need this decoder's face."""
        return torch.sigmoid(self.mask(z))
