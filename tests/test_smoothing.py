"""Landmark smoothing: the One-Euro filter against the paper's algorithm, and its jitter/lag behaviour on a
synthetic 468-point face track against a moving average of equal smoothing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from realtime_swap.detect.mesh import canonical_landmarks_2d
from realtime_swap.detect.smoothing import MovingAverage, OneEuroFilter

FPS = 30.0
SIGMA = 1.0  # px of sensor noise per coordinate
FRAMES = 150
SETTLE = 30


class ScalarOneEuro:
    """Casiez et al. (CHI 2012), the paper's pseudo-code, one scalar at a time: the reference."""

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x_prev: float | None = None
        self.dx_prev = 0.0
        self.t_prev = 0.0

    @staticmethod
    def smoothing_factor(dt: float, cutoff: float) -> float:
        r = 2.0 * math.pi * cutoff * dt
        return r / (r + 1.0)

    def __call__(self, x: float, t: float) -> float:
        if self.x_prev is None:
            self.x_prev, self.t_prev = x, t
            return x
        dt = t - self.t_prev
        a_d = self.smoothing_factor(dt, self.d_cutoff)
        dx = a_d * (x - self.x_prev) / dt + (1.0 - a_d) * self.dx_prev
        cutoff = self.min_cutoff + self.beta * abs(dx)
        a = self.smoothing_factor(dt, cutoff)
        x_hat = a * x + (1.0 - a) * self.x_prev
        self.x_prev, self.dx_prev, self.t_prev = x_hat, dx, t
        return x_hat


def face_track_errors(filt: OneEuroFilter | MovingAverage, speed: float, seed: int) -> np.ndarray:
    """Filtered minus true landmarks of a 200 px canonical face moving sideways at ``speed`` px/s with
    Gaussian noise, (FRAMES - SETTLE, 468, 2) px."""
    face = canonical_landmarks_2d(200.0, (320.0, 240.0)).astype(np.float64)
    rng = np.random.default_rng(seed)
    errors = []
    for i in range(FRAMES):
        t = i / FPS
        truth = face + np.array([speed * t, 0.0])
        errors.append(filt(truth + rng.normal(0.0, SIGMA, face.shape), t) - truth)
    return np.array(errors[SETTLE:])


def jitter(errors: np.ndarray) -> float:
    return float(np.sqrt((errors**2).sum(axis=-1).mean()))


def lag_frames(errors: np.ndarray, speed: float) -> float:
    return float(-errors[..., 0].mean() / (speed / FPS))


def test_matches_the_papers_algorithm_elementwise_with_irregular_frames() -> None:
    rng = np.random.default_rng(1)
    times = np.cumsum(rng.uniform(0.01, 0.06, 80))
    signal = np.cumsum(rng.normal(0.0, 2.0, (80, 3, 2)), axis=0)
    filt = OneEuroFilter(0.7, 0.02, 1.3)
    out = np.array([filt(x, t) for x, t in zip(signal, times, strict=True)])
    for idx in np.ndindex(3, 2):
        ref = ScalarOneEuro(0.7, 0.02, 1.3)
        expected = [ref(float(x[idx]), float(t)) for x, t in zip(signal, times, strict=True)]
        np.testing.assert_allclose(out[(slice(None), *idx)], expected, rtol=0, atol=1e-10)


def test_first_call_constant_input_and_time_rules() -> None:
    filt = OneEuroFilter()
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    first = filt(x, 10.0)
    np.testing.assert_array_equal(first, x)
    first[0, 0] = 99.0  # the caller owns what it gets back
    np.testing.assert_array_equal(filt(x, 10.1), x)
    moved = filt(x + 5.0, 10.2)
    assert (moved > x).all() and (moved < x + 5.0).all()
    np.testing.assert_array_equal(filt(x + 50.0, 10.2), moved)  # same time: a repeat, nothing new learnt
    np.testing.assert_array_equal(filt(x - 7.0, 3.0), x - 7.0)  # back in time: restarted
    np.testing.assert_array_equal(filt(x - 7.0, 3.1), x - 7.0)
    with pytest.raises(ValueError, match="shape"):
        filt(np.zeros(3), 3.2)
    filt.reset()
    np.testing.assert_array_equal(filt(np.zeros(3), 3.3), np.zeros(3))
    scalar = OneEuroFilter()
    assert float(scalar(np.array(4.0), 0.0)) == 4.0
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroFilter(0.0, 0.1)
    with pytest.raises(ValueError, match="finite"):
        OneEuroFilter()(x, float("nan"))


def test_moving_average_is_the_mean_of_the_last_window() -> None:
    avg = MovingAverage(3)
    outs = [avg(np.array([v]), t) for t, v in enumerate([3.0, 6.0, 9.0, 12.0, 0.0])]
    np.testing.assert_allclose(np.concatenate(outs), [3.0, 4.5, 6.0, 9.0, 7.0])
    np.testing.assert_allclose(avg(np.array([100.0]), 4), [7.0])  # repeat
    np.testing.assert_allclose(avg(np.array([1.0]), 0), [1.0])  # restart
    ramp = MovingAverage(5)
    out = [ramp(np.array([float(i)]), i) for i in range(20)]
    assert float(out[-1][0]) == pytest.approx(19 - 2.0)  # lags (window - 1) / 2 frames
    with pytest.raises(ValueError, match="window"):
        MovingAverage(0)


def test_still_face_does_not_shake() -> None:
    raw = SIGMA * math.sqrt(2.0)
    errors = face_track_errors(OneEuroFilter(), 0.0, seed=0)
    # measured 0.455 px RMS from 1.414 (3.1x); the lower bound leaves room for the noise of a short run
    assert jitter(errors) < raw / 2.5
    assert np.abs(errors.mean(axis=(0, 1))).max() < 0.1  # no drift


def test_moving_face_lags_far_less_than_an_equally_smooth_moving_average() -> None:
    speed = 300.0  # px/s, 10 px per frame
    one_euro_jitter = jitter(face_track_errors(OneEuroFilter(), 0.0, seed=0))
    one_euro_lag = lag_frames(face_track_errors(OneEuroFilter(), speed, seed=1), speed)
    # The moving average whose still-face jitter is closest to the One-Euro's.
    candidates = {w: jitter(face_track_errors(MovingAverage(w), 0.0, seed=0)) for w in range(2, 16)}
    window = min(candidates, key=lambda w: abs(candidates[w] - one_euro_jitter))
    assert abs(candidates[window] - one_euro_jitter) < 0.05
    ma_lag = lag_frames(face_track_errors(MovingAverage(window), speed, seed=1), speed)
    assert ma_lag == pytest.approx((window - 1) / 2.0, abs=0.05)
    assert one_euro_lag < 0.5  # measured 0.25 frame
    assert one_euro_lag < ma_lag / 5.0  # measured 4.5 frames for MovingAverage(10)
