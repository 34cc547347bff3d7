"""Colour transfer: recolour a swapped face towards the light and colour of the frame it lands in.

``color_transfer(mode, source, target, mask, amount, stats)`` dispatches on :class:`ColorMode` to numba kernels
(each with a numpy reference, ``reference=True``); :func:`measure_color_stats` gives the statistics a transfer
uses and :class:`ColorStatsSmoother` averages them over time per face so that colour does not flicker;
:func:`warmup` compiles the kernels before the live loop.
"""

from realtime_swap.color.modes import ColorMode, ColorStats
from realtime_swap.color.smoothing import ColorStatsSmoother
from realtime_swap.color.transfer import color_transfer, measure_color_stats, warmup

__all__ = [
    "ColorMode",
    "ColorStats",
    "ColorStatsSmoother",
    "color_transfer",
    "measure_color_stats",
    "warmup",
]
