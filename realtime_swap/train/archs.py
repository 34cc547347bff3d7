"""DF and LIAE swap autoencoders (PyTorch), built from ``realtime_swap.train.blocks``.

Tensors are NCHW float32, colour BGR in [0, 1] (the DFM convention, channels first inside the model).
"src" is the identity the model learns to produce (the celebrity); "dst" is the person in the live video.

* DF:   code = inter(encoder(x)); src faces come from decoder_src(code), dst faces from decoder_dst(code).
        Swap: decoder_src(code(dst)).
* LIAE: z = encoder(x); src code = [inter_AB(z), inter_AB(z)], dst code = [inter_B(z), inter_AB(z)]
        (channel concatenation); one shared decoder. Swap: decoder([inter_AB(z_dst), inter_AB(z_dst)]).

``swap`` returns what a DeepFaceLive DFM exports: the swapped (celebrity) face, its mask, and the mask of the
destination face as the dst path predicts it.
"""

from __future__ import annotations

import abc
from typing import NamedTuple

import torch
from torch import nn

from realtime_swap.train.blocks import Decoder, Encoder, Inter
from realtime_swap.train.config import Arch, ModelConfig


class Reconstruction(NamedTuple):
    """Training outputs, NCHW: faces (N, 3, S, S) BGR [0, 1], masks (N, 1, S, S) [0, 1]."""

    src_face: torch.Tensor
    src_mask: torch.Tensor
    dst_face: torch.Tensor
    dst_mask: torch.Tensor


class SwapOutput(NamedTuple):
    """Swap outputs, NCHW: celeb_face (N, 3, S, S) BGR [0, 1]; celeb_mask, dst_mask (N, 1, S, S) [0, 1]."""

    celeb_face: torch.Tensor
    celeb_mask: torch.Tensor
    dst_mask: torch.Tensor


class SwapAutoencoder(nn.Module, abc.ABC):
    """Common interface of the architectures; ``config`` is the ModelConfig it was built from."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config

    @abc.abstractmethod
    def reconstruct(self, src: torch.Tensor, dst: torch.Tensor) -> Reconstruction:
        """Auto-encode each identity with its own path (the training objective)."""

    @abc.abstractmethod
    def swap(self, dst: torch.Tensor) -> SwapOutput:
        """Turn destination faces (N, 3, S, S) into the source identity."""

    def forward(self, dst: torch.Tensor) -> SwapOutput:
        return self.swap(dst)


class DFModel(SwapAutoencoder):
    """DF: shared encoder and inter, one decoder per identity."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c = config
        self.encoder = Encoder(c.e_dims)
        self.inter = Inter(Encoder.out_features(c.e_dims, c.resolution), c.ae_dims, c.ae_dims, c.resolution)
        self.decoder_src = Decoder(c.ae_dims, c.d_dims, c.d_mask_dims)
        self.decoder_dst = Decoder(c.ae_dims, c.d_dims, c.d_mask_dims)

    def reconstruct(self, src: torch.Tensor, dst: torch.Tensor) -> Reconstruction:
        src_face, src_mask = self.decoder_src(self.inter(self.encoder(src)))
        dst_face, dst_mask = self.decoder_dst(self.inter(self.encoder(dst)))
        return Reconstruction(src_face, src_mask, dst_face, dst_mask)

    def swap(self, dst: torch.Tensor) -> SwapOutput:
        code = self.inter(self.encoder(dst))
        celeb_face, celeb_mask = self.decoder_src(code)
        return SwapOutput(celeb_face, celeb_mask, self.decoder_dst.forward_mask(code))


class LIAEModel(SwapAutoencoder):
    """LIAE: shared encoder, inter_AB (both identities) and inter_B (dst only), one shared decoder."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c = config
        features = Encoder.out_features(c.e_dims, c.resolution)
        inter_ch = c.ae_dims * 2
        self.encoder = Encoder(c.e_dims)
        self.inter_ab = Inter(features, c.ae_dims, inter_ch, c.resolution)
        self.inter_b = Inter(features, c.ae_dims, inter_ch, c.resolution)
        self.decoder = Decoder(inter_ch * 2, c.d_dims, c.d_mask_dims)

    def reconstruct(self, src: torch.Tensor, dst: torch.Tensor) -> Reconstruction:
        ab_src = self.inter_ab(self.encoder(src))
        z_dst = self.encoder(dst)
        src_face, src_mask = self.decoder(torch.cat([ab_src, ab_src], 1))
        dst_face, dst_mask = self.decoder(torch.cat([self.inter_b(z_dst), self.inter_ab(z_dst)], 1))
        return Reconstruction(src_face, src_mask, dst_face, dst_mask)

    def swap(self, dst: torch.Tensor) -> SwapOutput:
        z = self.encoder(dst)
        ab = self.inter_ab(z)
        celeb_face, celeb_mask = self.decoder(torch.cat([ab, ab], 1))
        dst_mask = self.decoder.forward_mask(torch.cat([self.inter_b(z), ab], 1))
        return SwapOutput(celeb_face, celeb_mask, dst_mask)


_ARCHS: dict[Arch, type[SwapAutoencoder]] = {Arch.DF: DFModel, Arch.LIAE: LIAEModel}


def build_model(config: ModelConfig) -> SwapAutoencoder:
    """A freshly initialised model of the config's architecture (initialisation follows torch's RNG)."""
    return _ARCHS[config.arch](config)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
