"""Steady colour: the statistics a transfer uses, averaged over time per face."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from realtime_swap.color.modes import ColorMode, ColorStats
from realtime_swap.color.transfer import (
    carries_source_state,
    color_transfer,
    measure_color_stats,
    source_state_shape,
    transfer_with_state,
)


@dataclass
class _Track:
    mode: ColorMode
    target: np.ndarray
    source: np.ndarray | None
    count: int
    t: float
    weight: float = 1.0  # of the latest measurement in the average (1 when the average restarted)
    state: np.ndarray | None = None  # idt / sot: per-step source histograms carried across frames

    def stats(self) -> ColorStats:
        source = None if self.source is None else self.source.copy()
        return ColorStats(self.mode, self.target.copy(), source, self.count)


class ColorStatsSmoother:
    """Exponential moving average of the statistics of a colour transfer, per face id, on frame timestamps.

    A new measurement at time t (s) after the previous one at t0 enters the average with weight
    ``1 - exp(-(t - t0) / time_constant_s)``: the same smoothing whatever the frame rate, and a 63 % step
    response after one time constant. The average restarts from the measurement when the face is new, the
    mode changed, time went backwards (a seek or a looped file) or the face was unseen for more than
    ``max_gap_s``. An empty measurement (count 0) leaves the average as it was. ``time_constant_s == 0``
    disables smoothing. Not thread-safe: one smoother per stage.

    :meth:`smooth` averages :class:`ColorStats` (target and source); :meth:`transfer` measures, smooths and
    recolours in one call and also averages the per-step source histograms of idt and sot, which exist only
    inside their transfer.
    """

    def __init__(self, time_constant_s: float, max_gap_s: float = 1.0) -> None:
        if not (time_constant_s >= 0.0 and math.isfinite(time_constant_s)):
            raise ValueError(f"ColorStatsSmoother: time_constant_s must be >= 0 s, got {time_constant_s}")
        if not max_gap_s > 0.0:
            raise ValueError(f"ColorStatsSmoother: max_gap_s must be > 0 s, got {max_gap_s}")
        self.time_constant_s = float(time_constant_s)
        self.max_gap_s = float(max_gap_s)
        self._tracks: dict[int, _Track] = {}

    def smooth(self, face_id: int, stats: ColorStats, t: float) -> ColorStats:
        """Fold the measurement ``stats`` of face ``face_id`` taken at time ``t`` (s) in; return the average."""
        track = self._tracks.get(face_id)
        if stats.count == 0:
            if track is not None and track.mode is stats.mode:
                return track.stats()
            return stats
        if (
            self.time_constant_s == 0.0
            or track is None
            or track.mode is not stats.mode
            or track.target.shape != stats.target.shape
            or (track.source is None) != (stats.source is None)
            or t < track.t
            or t - track.t > self.max_gap_s
        ):
            source = None if stats.source is None else stats.source.copy()
            self._tracks[face_id] = _Track(stats.mode, stats.target.copy(), source, stats.count, t)
            return stats
        weight = 1.0 - math.exp(-(t - track.t) / self.time_constant_s)
        track.target += weight * (stats.target - track.target)
        if track.source is not None and stats.source is not None:
            track.source += weight * (stats.source - track.source)
        track.count = stats.count
        track.t = t
        track.weight = weight
        return track.stats()

    def transfer(
        self,
        face_id: int,
        mode: ColorMode | str,
        source: np.ndarray,
        target: np.ndarray,
        mask: np.ndarray,
        amount: float,
        t: float,
        *,
        reference: bool = False,
    ) -> np.ndarray:
        """:func:`~realtime_swap.color.color_transfer` of face ``face_id`` at time ``t`` (s), smoothed.

        Same arguments and result as ``color_transfer(mode, source, target, mask, amount)``.
        """
        mode = ColorMode(mode)
        measured = measure_color_stats(mode, source, target, mask, reference=reference)
        stats = self.smooth(face_id, measured, t)
        track = self._tracks.get(face_id)
        if not carries_source_state(mode) or track is None or stats.count == 0:
            return color_transfer(mode, source, target, mask, amount, stats, reference=reference)
        shape = source_state_shape(mode)
        weight = track.weight
        if track.state is None or track.state.shape != shape or weight == 1.0:
            track.state = np.zeros(shape)
            weight = 1.0
        return transfer_with_state(mode, source, mask, amount, stats, track.state, weight, reference=reference)

    def forget_stale(self, t: float) -> None:
        """Drop the faces not updated within ``max_gap_s`` before ``t`` (s), so ids that left do not pile up."""
        for face_id in [i for i, tr in self._tracks.items() if t - tr.t > self.max_gap_s or t < tr.t]:
            del self._tracks[face_id]

    def reset(self) -> None:
        """Forget every face."""
        self._tracks.clear()

    def __len__(self) -> int:
        return len(self._tracks)
