"""The colour-transfer modes and the target statistics a transfer uses."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np


class ColorMode(str, enum.Enum):
    """How the swapped face is recoloured towards the frame's face (the CLI's ``--color`` choices)."""

    NONE = "none"
    RCT = "rct"  # Reinhard: mean/std per channel in L*a*b*
    LCT = "lct"  # linear: mean and covariance in BGR (symmetric square roots)
    MKL = "mkl"  # Monge-Kantorovich linear: mean and covariance in BGR, optimal-transport closed form
    IDT = "idt"  # iterative distribution transfer: 1-D matching on random orthonormal bases in BGR
    SOT = "sot"  # sliced optimal transport: averaged 1-D transports on random directions in BGR
    HIST = "hist"  # per-channel histogram matching in BGR


@dataclass(frozen=True, slots=True)
class ColorStats:
    """The statistics one transfer uses: the target's (what the source moves towards) and the source's.

    mode:   the mode they are for.
    target: float64 array, layout per mode: rct (6,) mean then std of L*, a*, b*; lct/mkl (12,) mean B, G, R
            then the 3x3 covariance row-major (BGR in [0, 1]); hist (3, 256) normalised histograms per channel
            on the 0..255 scale; idt (10, 3, 512) and sot (10, 4, 512) normalised histograms of projections.
            Every layout is closed under convex combinations, so statistics can be averaged over time.
    source: the source's statistics in the same layout, or None: always None for idt and sot, which measure
            their moving point cloud again at every step.
    count:  number of mask pixels they were computed from; 0 means "no statistics" (empty mask).
    """

    mode: ColorMode
    target: np.ndarray
    source: np.ndarray | None
    count: int
