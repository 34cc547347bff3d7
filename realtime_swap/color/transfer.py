"""Colour transfer: recolour a swapped face towards the colour statistics of the frame's face, over a mask.

Every mode has two implementations behind one dispatcher: the numba kernels (:mod:`.kernels`, used live) and
the numpy reference (:mod:`.reference`, ``reference=True``, used by tests and the benchmark). Both share the
sampling of the mask and the O(1) maths between statistics and per-pixel maps (:mod:`.common`).

A transfer is split in two so that its statistics can be smoothed over time between the halves:
:func:`measure_color_stats` (target, and for most modes source, statistics over the mask) and
:func:`color_transfer` (which measures them itself when not given).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from realtime_swap.color import kernels as nb
from realtime_swap.color import reference as ref
from realtime_swap.color.common import (
    DISTRIBUTION_SAMPLES,
    HIST_BINS,
    IDT_BASES,
    IDT_ITERATIONS,
    MOMENT_SAMPLES,
    SLICED_BINS,
    SLICED_HI,
    SLICED_LO,
    SOT_DIRECTIONS,
    SOT_DIRECTIONS_TABLE,
    SOT_STEPS,
    grid_index,
    linear_map,
    rct_coefficients,
    sample_stride,
    samples,
    to_unit_float,
)
from realtime_swap.color.modes import ColorMode, ColorStats

_HIST_DIRS = np.eye(3) * 255.0
_HIST_LO = -0.5
_SLICED_WIDTH = (SLICED_HI - SLICED_LO) / SLICED_BINS

Stats = Callable[[np.ndarray], np.ndarray]
"""(n, 3) float32 BGR samples in [0, 1] -> statistics (the layouts of :class:`ColorStats`)."""
Apply = Callable[[np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None", float], np.ndarray]
"""(source rows (N, 3) float32, (n,) flat indices of its sample pixels (n > 0), target statistics, source
statistics or None (then measured from the samples), amount) -> (N, 3) float32 result."""


def _floats(a: np.ndarray) -> tuple[float, ...]:
    """A small array as a tuple of Python floats: kernels take constants as tuples so that LLVM keeps them in
    registers (an array argument could alias the output and would be re-read every iteration)."""
    return tuple(float(v) for v in np.ravel(a))


@dataclass(frozen=True)
class _Impl:
    """One implementation of one mode.

    stats:  statistics of samples (the target's; and the source's unless ``stateful``).
    apply:  the transfer itself.
    shape:  shape of the statistics, checked before any kernel indexes into caller-supplied ones.
    budget: how many grid pixels the statistics may read (see :func:`common.sample_stride`).
    stateful: for idt and sot, which measure their moving point cloud again at every step, so that the source's
            statistics exist only inside the transfer: the transfer with those carried by the caller.
    """

    stats: Stats
    apply: Apply
    shape: tuple[int, ...]
    budget: int
    stateful: Stateful | None = None


# --- rct -------------------------------------------------------------------------------------------------------


def _rct_stats_numba(s: np.ndarray) -> np.ndarray:
    return nb.rct_lab_moments(s.ravel())


def _rct_apply_numba(
    src: np.ndarray, index: np.ndarray, t: np.ndarray, s: np.ndarray | None, amount: float
) -> np.ndarray:
    coef = rct_coefficients(_rct_stats_numba(src[index]) if s is None else s, t)
    out = np.empty_like(src)
    nb.rct_apply(src.ravel(), out.ravel(), _floats(coef), amount)
    return out


def _rct_apply_numpy(
    src: np.ndarray, index: np.ndarray, t: np.ndarray, s: np.ndarray | None, amount: float
) -> np.ndarray:
    return ref.rct_apply(src, rct_coefficients(ref.rct_lab_moments(src[index]) if s is None else s, t), amount)


# --- lct / mkl -------------------------------------------------------------------------------------------------


def _linear_stats_numba(s: np.ndarray) -> np.ndarray:
    return nb.bgr_moments(s.ravel())


def _linear_apply(mkl: bool, numba: bool) -> Apply:
    def apply(src: np.ndarray, index: np.ndarray, t: np.ndarray, s: np.ndarray | None, amount: float) -> np.ndarray:
        if not numba:
            a, b = linear_map(mkl, ref.bgr_moments(src[index]) if s is None else s, t)
            return ref.affine_apply(src, a, b, amount)
        a, b = linear_map(mkl, _linear_stats_numba(src[index]) if s is None else s, t)
        out = np.empty_like(src)
        nb.affine_apply(src.ravel(), out.ravel(), _floats(a), _floats(b), amount)
        return out

    return apply


# --- hist ------------------------------------------------------------------------------------------------------


def _hist_stats(numba: bool) -> Stats:
    def stats(s: np.ndarray) -> np.ndarray:
        index = np.arange(s.shape[0])
        if numba:
            counts = nb.projection_histograms(s.ravel(), index, _HIST_DIRS, _HIST_LO, 1.0, HIST_BINS)
        else:
            counts = ref.projection_histograms(s, index, _HIST_DIRS, _HIST_LO, 1.0, HIST_BINS)
        return counts / max(s.shape[0], 1)

    return stats


def _hist_apply(numba: bool) -> Apply:
    measure = _hist_stats(numba)

    def apply(src: np.ndarray, index: np.ndarray, t: np.ndarray, s: np.ndarray | None, amount: float) -> np.ndarray:
        source = measure(src[index]) if s is None else s
        if not numba:
            maps = ref.edge_mappings(source, t, _HIST_LO, 1.0)
            return ref.hist_apply(src, maps, _HIST_LO, 1.0, HIST_BINS, amount)
        maps = nb.edge_mappings(source, t, _HIST_LO, 1.0)
        out = np.empty_like(src)
        nb.hist_apply(src.ravel(), out.ravel(), maps, _HIST_LO, 1.0, HIST_BINS, amount)
        return out

    return apply


# --- idt / sot -------------------------------------------------------------------------------------------------


def _sliced_stats(dirs: np.ndarray, numba: bool) -> Stats:
    flat = np.ascontiguousarray(dirs.reshape(-1, 3))

    def stats(s: np.ndarray) -> np.ndarray:
        centred = s - np.float32(0.5)
        index = np.arange(s.shape[0])
        if numba:
            counts = nb.projection_histograms(centred.ravel(), index, flat, SLICED_LO, 1.0 / _SLICED_WIDTH, SLICED_BINS)
        else:
            counts = ref.projection_histograms(centred, index, flat, SLICED_LO, 1.0 / _SLICED_WIDTH, SLICED_BINS)
        return counts.reshape(dirs.shape[0], dirs.shape[1], SLICED_BINS) / max(s.shape[0], 1)

    return stats


Stateful = Callable[[np.ndarray, np.ndarray, np.ndarray, float, np.ndarray, float], np.ndarray]
"""idt / sot with their per-step source histograms carried by the caller: (source rows, sample indices, target
statistics, amount, source histograms (S, K, B) float64 updated in place, weight of this frame's measurement)."""


def _sliced_run(dirs: np.ndarray, weight: float, numba: bool) -> Stateful:
    def run(
        src: np.ndarray, index: np.ndarray, t: np.ndarray, amount: float, state: np.ndarray, state_weight: float
    ) -> np.ndarray:
        x = src - np.float32(0.5)
        if not numba:
            x = ref.sliced_transfer(x, index, dirs, t, SLICED_LO, _SLICED_WIDTH, weight, state, state_weight)
            return ref.sliced_finish(src, x, amount)
        nb.sliced_transfer(x.ravel(), index, dirs, t, SLICED_LO, _SLICED_WIDTH, weight, state, state_weight)
        out = np.empty_like(src)
        nb.sliced_finish(src.ravel(), x.ravel(), out.ravel(), amount)
        return out

    return run


def _sliced_apply(run: Stateful, shape: tuple[int, ...]) -> Apply:
    def apply(src: np.ndarray, index: np.ndarray, t: np.ndarray, s: np.ndarray | None, amount: float) -> np.ndarray:
        return run(src, index, t, amount, np.zeros(shape), 1.0)

    return apply


def _table(numba: bool) -> dict[ColorMode, _Impl]:
    idt_shape = (IDT_ITERATIONS, 3, SLICED_BINS)
    sot_shape = (SOT_STEPS, SOT_DIRECTIONS, SLICED_BINS)
    idt = _sliced_run(IDT_BASES, 1.0, numba)
    sot = _sliced_run(SOT_DIRECTIONS_TABLE, 1.0 / SOT_DIRECTIONS, numba)
    linear_stats = _linear_stats_numba if numba else ref.bgr_moments
    return {
        ColorMode.RCT: _Impl(
            _rct_stats_numba if numba else ref.rct_lab_moments,
            _rct_apply_numba if numba else _rct_apply_numpy,
            (6,),
            MOMENT_SAMPLES,
        ),
        ColorMode.LCT: _Impl(linear_stats, _linear_apply(False, numba), (12,), MOMENT_SAMPLES),
        ColorMode.MKL: _Impl(linear_stats, _linear_apply(True, numba), (12,), MOMENT_SAMPLES),
        ColorMode.HIST: _Impl(_hist_stats(numba), _hist_apply(numba), (3, HIST_BINS), DISTRIBUTION_SAMPLES),
        ColorMode.IDT: _Impl(
            _sliced_stats(IDT_BASES, numba), _sliced_apply(idt, idt_shape), idt_shape, DISTRIBUTION_SAMPLES, idt
        ),
        ColorMode.SOT: _Impl(
            _sliced_stats(SOT_DIRECTIONS_TABLE, numba),
            _sliced_apply(sot, sot_shape),
            sot_shape,
            DISTRIBUTION_SAMPLES,
            sot,
        ),
    }


_NUMBA = _table(numba=True)
_NUMPY = _table(numba=False)


# --- public ----------------------------------------------------------------------------------------------------

_IMAGE_DTYPES = (np.uint8, np.float32, np.float64)


def _check_image(image: np.ndarray, what: str) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.shape} {image.dtype}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"color transfer: {what} must be (H, W, 3) BGR uint8 or float [0, 1], got {got}")
    if image.dtype not in _IMAGE_DTYPES:
        raise ValueError(f"color transfer: {what} must be uint8, float32 or float64, got {image.dtype}")


def _check_inputs(source: np.ndarray, target: np.ndarray | None, mask: np.ndarray) -> None:
    _check_image(source, "source")
    if target is not None:
        _check_image(target, "target")
        if target.shape[:2] != source.shape[:2]:
            raise ValueError(f"color transfer: target {target.shape} and source {source.shape} differ in size")
    if not isinstance(mask, np.ndarray) or mask.shape != source.shape[:2]:
        got = mask.shape if isinstance(mask, np.ndarray) else type(mask).__name__
        raise ValueError(f"color transfer: mask must be {source.shape[:2]} float [0, 1] like the images, got {got}")


def _impl(mode: ColorMode, reference: bool) -> _Impl:
    return (_NUMPY if reference else _NUMBA)[mode]


def measure_color_stats(
    mode: ColorMode | str, source: np.ndarray, target: np.ndarray, mask: np.ndarray, *, reference: bool = False
) -> ColorStats:
    """The statistics a ``mode`` transfer of ``source`` towards ``target`` uses, over ``mask`` (weight > 0.5).

    source, target: (H, W, 3) BGR, uint8 or float in [0, 1]; mask: (H, W) float in [0, 1].
    ``reference=True`` uses the numpy reference instead of the numba kernels.
    """
    mode = ColorMode(mode)
    _check_inputs(source, target, mask)
    if mode is ColorMode.NONE:
        return ColorStats(mode, np.zeros(0), None, 0)
    impl = _impl(mode, reference)
    target_samples = samples(target, mask, impl.budget)
    if target_samples.shape[0] == 0:
        return ColorStats(mode, np.zeros(0), None, 0)
    source_stats = impl.stats(samples(source, mask, impl.budget)) if impl.stateful is None else None
    return ColorStats(mode, impl.stats(target_samples), source_stats, int(target_samples.shape[0]))


def _like(result: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if dtype == np.uint8:
        return np.clip(np.rint(result * np.float32(255.0)), 0, 255).astype(np.uint8)
    return result.astype(dtype, copy=False)


def color_transfer(
    mode: ColorMode | str,
    source: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray,
    amount: float = 1.0,
    stats: ColorStats | None = None,
    *,
    reference: bool = False,
) -> np.ndarray:
    """Recolour ``source`` towards ``target``'s colour statistics measured over ``mask``; a new array.

    source: (H, W, 3) BGR uint8 or float32/float64 in [0, 1] (the swapped face); the result has its dtype.
    target: (H, W, 3) BGR uint8 or float in [0, 1] (the frame's face, same crop); not read when ``stats`` given.
    mask:   (H, W) float in [0, 1]; statistics use the pixels with weight > 0.5, sampled on a grid (see
            :mod:`realtime_swap.color.common`); every pixel of the source is recoloured.
    amount: in [0, 1]; the result is ``source + amount * (transferred - source)``.
    stats:  statistics from :func:`measure_color_stats` (e.g. smoothed over time) instead of measuring them.
    An empty mask (no pixel above 0.5 on the grid) returns an unchanged copy of the source.
    ``reference=True`` uses the numpy reference instead of the numba kernels.
    """
    mode = ColorMode(mode)
    _check_inputs(source, None if stats is not None else target, mask)
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"color transfer: amount must be in [0, 1], got {amount}")
    if stats is None:
        stats = measure_color_stats(mode, source, target, mask, reference=reference)
    run = _prepare_run(mode, source, mask, amount, stats, reference)
    if run is None:
        return source.copy()
    impl, rows, index = run
    source_stats = stats.source if impl.stateful is None else None
    result = impl.apply(rows, index, stats.target, source_stats, float(amount))
    return _like(result.reshape(source.shape), source.dtype)


def _prepare_run(
    mode: ColorMode, source: np.ndarray, mask: np.ndarray, amount: float, stats: ColorStats, reference: bool
) -> tuple[_Impl, np.ndarray, np.ndarray] | None:
    """(implementation, source rows, sample indices), or None when the source is to be returned unchanged."""
    if stats.mode is not mode:
        raise ValueError(f"color transfer: statistics are for '{stats.mode.value}', not '{mode.value}'")
    if mode is ColorMode.NONE or amount == 0.0 or stats.count == 0:
        return None
    impl = _impl(mode, reference)
    for what, values in (("target", stats.target), ("source", stats.source)):
        if values is not None and values.shape != impl.shape:
            raise ValueError(f"color transfer: {mode.value} {what} statistics must be {impl.shape}, got {values.shape}")
    index = grid_index(mask, sample_stride(mask.shape[0], mask.shape[1], impl.budget))
    if index.size == 0:
        return None
    return impl, to_unit_float(source).reshape(-1, 3), index


def carries_source_state(mode: ColorMode) -> bool:
    """Whether ``mode`` measures the source inside the transfer (idt, sot): see :func:`transfer_with_state`."""
    return mode is not ColorMode.NONE and _NUMBA[mode].stateful is not None


def transfer_with_state(
    mode: ColorMode,
    source: np.ndarray,
    mask: np.ndarray,
    amount: float,
    stats: ColorStats,
    state: np.ndarray,
    state_weight: float,
    *,
    reference: bool = False,
) -> np.ndarray:
    """:func:`color_transfer` for idt and sot with their per-step source histograms carried across frames.

    state: (S, K, B) float64 source histograms of the previous frame, updated in place as
    ``state += state_weight * (measured - state)`` at each step (``state_weight`` 1: no memory).
    Used by :class:`~realtime_swap.color.ColorStatsSmoother` to smooth the source side of these modes.
    """
    if not carries_source_state(mode):
        raise ValueError(f"color transfer: '{mode.value}' has no per-step source state")
    _check_inputs(source, None, mask)
    run = _prepare_run(mode, source, mask, amount, stats, reference)
    if run is None:
        return source.copy()
    impl, rows, index = run
    assert impl.stateful is not None
    if state.shape != impl.shape:
        raise ValueError(f"color transfer: {mode.value} source state must be {impl.shape}, got {state.shape}")
    result = impl.stateful(rows, index, stats.target, float(amount), state, float(state_weight))
    return _like(result.reshape(source.shape), source.dtype)


def source_state_shape(mode: ColorMode) -> tuple[int, ...]:
    """Shape of the per-step source histograms :func:`transfer_with_state` carries for ``mode``."""
    return _NUMBA[ColorMode(mode)].shape


def warmup() -> None:
    """Compile (or load from the disk cache) every kernel for the live loop's types, on a tiny input.

    The live loop passes a float32 swapped face, a uint8 aligned crop and a float32 mask; kernels only ever
    see float32 pixel rows and float64 statistics whatever the input dtypes, so one call per mode covers all.
    """
    rng = np.random.default_rng(0)
    source = rng.random((16, 16, 3), dtype=np.float32)
    target = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    mask = np.ones((16, 16), dtype=np.float32)
    for mode in _NUMBA:
        color_transfer(mode, source, target, mask, 0.5, measure_color_stats(mode, source, target, mask))
        color_transfer(mode, source, target, mask, 0.5)


def kernels() -> list[object]:
    """The numba dispatchers behind the live path (for tests that check what :func:`warmup` compiled)."""
    return [
        nb.rct_lab_moments,
        nb.rct_apply,
        nb.bgr_moments,
        nb.affine_apply,
        nb.projection_histograms,
        nb.edge_mappings,
        nb.hist_apply,
        nb.sliced_transfer,
        nb.sliced_finish,
    ]
