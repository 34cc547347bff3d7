"""The GPU-resident path: swap, colour transfer and paste-back on a torch device (see :mod:`.stage`).

Importing this package does not import torch: ``GpuPath`` (the ``--gpu-path`` choices) is defined here, the
stage and its helpers are loaded from :mod:`.stage` on first use.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from realtime_swap.gpu.stage import DEVICE_COLOR_MODES, GpuSwapComposeStage, gpu_resident_stages, resolve_device


class GpuPath(str, enum.Enum):
    """Where swap + colour + composite run as one torch stage: OFF (the CPU stages), AUTO / CUDA (the swap
    model's CUDA device), CPU (the same torch code on the host)."""

    OFF = "off"
    AUTO = "auto"
    CUDA = "cuda"
    CPU = "cpu"


def auto_unavailable_reason(swap_device: str) -> str | None:
    """Why ``--gpu-path auto`` cannot put the GPU-resident stage on CUDA for a swap model whose runner is on
    ``swap_device`` ("cpu", "cuda:0"), as one clause, or None when it can. ``auto`` then runs the CPU stages."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device"
    if not swap_device.startswith("cuda"):
        return f"the swap model runs on the CPU ({swap_device})"
    return None


def torch_device(device: Any) -> Any:
    """``device`` ("cuda", "cuda:1", a torch.device) as the torch.device its tensors report: "cuda" becomes
    "cuda:N" of the current device, so two names of one device compare equal."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


_STAGE_EXPORTS = frozenset({"DEVICE_COLOR_MODES", "GpuSwapComposeStage", "gpu_resident_stages", "resolve_device"})


def __getattr__(name: str) -> Any:
    if name in _STAGE_EXPORTS:
        from realtime_swap.gpu import stage

        return getattr(stage, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEVICE_COLOR_MODES",
    "GpuPath",
    "GpuSwapComposeStage",
    "auto_unavailable_reason",
    "gpu_resident_stages",
    "resolve_device",
    "torch_device",
]
