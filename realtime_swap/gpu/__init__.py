"""The GPU-resident path: swap, colour transfer and paste-back on a torch device (see :mod:`.stage`)."""

from realtime_swap.gpu.stage import DEVICE_COLOR_MODES, GpuSwapComposeStage, gpu_resident_stages, resolve_device

__all__ = ["DEVICE_COLOR_MODES", "GpuSwapComposeStage", "gpu_resident_stages", "resolve_device"]
