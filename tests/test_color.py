"""Colour transfer: numba kernels against their numpy references, and what each mode promises."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import types
from skimage import data

from realtime_swap.color import ColorMode, ColorStats, color_transfer, lab, measure_color_stats, transfer, warmup
from realtime_swap.color import jit as color_jit
from realtime_swap.color import kernels as nb

S = 256
MODES = [m for m in ColorMode if m is not ColorMode.NONE]

# Kernels against references: float results differ by the polynomial L*a*b* curves of rct (< 1e-4 after the
# round trip) and summation order elsewhere; uint8 results by at most one level (a value near .5 rounding apart).
FLOAT_TOL = 1e-4
UINT8_TOL = 1


def _insightface_image(name: str) -> np.ndarray:
    spec = importlib.util.find_spec("insightface")
    assert spec is not None and spec.submodule_search_locations
    image = cv2.imread(str(Path(spec.submodule_search_locations[0]) / "data" / "images" / name))
    assert image is not None, name
    return image


def _face_crop(image: np.ndarray, cx: float, cy: float, side: float) -> np.ndarray:
    m = cv2.getRotationMatrix2D((cx, cy), 0.0, S / side)
    m[:, 2] += np.array([S / 2, S / 2]) - np.array([cx, cy])
    return cv2.warpAffine(image, m, (S, S), flags=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def faces() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source, target, mask): the astronaut's face (cool light), a face from insightface's t1.jpg (warm
    light), and an elliptical face mask, all 256 x 256 crops."""
    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    source = _face_crop(astronaut, 226, 118, 170)
    target = _face_crop(_insightface_image("t1.jpg"), 1175, 335, 170)
    mask = np.zeros((S, S), np.float32)
    cv2.ellipse(mask, (128, 140), (72, 100), 0, 0, 360, 1.0, -1)
    return source, target, mask


def _unit(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image


def _assert_close(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape
    if a.dtype == np.uint8:
        assert np.abs(a.astype(np.int16) - b.astype(np.int16)).max() <= UINT8_TOL
    else:
        assert np.all(np.isfinite(a)) and np.all(np.isfinite(b))
        assert np.abs(a - b).max() <= FLOAT_TOL


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance between two samples of values in [0, 1]."""
    grid = np.linspace(0.0, 1.0, 1025)
    ca = np.searchsorted(np.sort(a), grid, side="right") / a.size
    cb = np.searchsorted(np.sort(b), grid, side="right") / b.size
    return float(np.abs(ca - cb).max())


# --- kernels == references -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
@pytest.mark.parametrize("source_dtype", [np.uint8, np.float32], ids=["u8", "f32"])
@pytest.mark.parametrize("swapped", ["astronaut", "tom_hanks"])
def test_kernels_match_reference_on_real_faces(faces, mode: ColorMode, source_dtype: type, swapped: str) -> None:
    source, target, mask = faces
    if swapped == "tom_hanks":  # a grey-scale photo: flat a*, b* (rct divides by their tiny spread)
        source = cv2.resize(_insightface_image("Tom_Hanks_54745.png"), (S, S), interpolation=cv2.INTER_CUBIC)
    src = source if source_dtype is np.uint8 else source.astype(np.float32) / 255.0
    fast = color_transfer(mode, src, target, mask, 0.8)
    slow = color_transfer(mode, src, target, mask, 0.8, reference=True)
    _assert_close(fast, slow)
    assert not np.array_equal(fast, src)  # something happened


@st.composite
def _cases(draw: st.DrawFn) -> tuple:
    h = draw(st.integers(1, 40))
    w = draw(st.integers(1, 40))
    mode = draw(st.sampled_from(MODES))
    source_dtype = draw(st.sampled_from([np.uint8, np.float32]))
    target_dtype = draw(st.sampled_from([np.uint8, np.float32]))
    mask_kind = draw(st.sampled_from(["empty", "one pixel", "binary", "soft", "full"]))
    amount = draw(st.sampled_from([0.0, 0.3, 1.0]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)

    def image(dtype: type) -> np.ndarray:
        # Smooth-ish colour fields plus noise, so statistics are neither flat nor pure noise.
        base = rng.random(3) * 0.6 + 0.2
        img = base + 0.15 * rng.standard_normal((h, w, 3))
        img = np.clip(img, 0.0, 1.0).astype(np.float32)
        return (img * 255 + 0.5).astype(np.uint8) if dtype is np.uint8 else img

    mask = np.zeros((h, w), np.float32)
    if mask_kind == "one pixel":
        mask[rng.integers(h), rng.integers(w)] = 1.0
    elif mask_kind == "binary":
        mask = (rng.random((h, w)) > 0.5).astype(np.float32)
    elif mask_kind == "soft":
        mask = rng.random((h, w)).astype(np.float32)
    elif mask_kind == "full":
        mask[:] = 1.0
    return mode, image(source_dtype), image(target_dtype), mask, amount


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_cases())
def test_kernels_match_reference_on_generated_inputs(case: tuple) -> None:
    mode, source, target, mask, amount = case
    fast = color_transfer(mode, source, target, mask, amount)
    slow = color_transfer(mode, source, target, mask, amount, reference=True)
    _assert_close(fast, slow)
    if not np.any(mask > 0.5) or amount == 0.0:
        assert np.array_equal(fast, source)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_statistics_match_reference(faces, mode: ColorMode) -> None:
    source, target, mask = faces
    fast = measure_color_stats(mode, source, target, mask)
    slow = measure_color_stats(mode, source, target, mask, reference=True)
    assert fast.mode is mode and fast.count == slow.count > 1000
    # rct's statistics are in L*a*b* units (0..100), the others are BGR [0, 1] moments or normalised histograms.
    atol = 1e-3 if mode is ColorMode.RCT else 1e-9
    assert np.allclose(fast.target, slow.target, rtol=1e-5, atol=atol)
    if mode in (ColorMode.IDT, ColorMode.SOT):
        assert fast.source is None and slow.source is None
    else:
        assert fast.source is not None and slow.source is not None
        assert np.allclose(fast.source, slow.source, rtol=1e-5, atol=atol)
        assert not np.allclose(fast.source, fast.target, rtol=0.05)


def test_lab_kernels_match_reference_and_opencv() -> None:
    rng = np.random.default_rng(3)
    bgr = rng.random((5000, 3)).astype(np.float32)
    reference = lab.bgr_to_lab(bgr)
    kernel = np.array([nb.bgr_to_lab(*(np.float32(v) for v in px)) for px in bgr[:500]])
    assert np.abs(kernel - reference[:500]).max() < 2e-3
    # OpenCV's own float conversion is tabulated and quantised (steps of 1/64 in a* and b*).
    opencv = cv2.cvtColor(bgr[None], cv2.COLOR_BGR2Lab)[0]
    assert np.abs(opencv - reference).mean() < 0.1 and np.abs(opencv - reference).max() < 1.0
    back = lab.lab_to_bgr(reference)
    assert np.abs(back - bgr).max() < 1e-6
    kernel_back = np.array([nb.lab_to_bgr(*(np.float32(v) for v in px)) for px in reference[:500]])
    assert np.abs(kernel_back - bgr[:500]).max() < 1e-4


def test_lab_definition_matches_skimage_and_its_torch_twin() -> None:
    import torch
    from skimage.color import rgb2lab

    rng = np.random.default_rng(4)
    bgr = rng.random((5000, 3))
    reference = lab.bgr_to_lab(bgr)
    # scikit-image's sRGB matrix is the same; its D65 white differs in the 5th digit
    assert np.abs(rgb2lab(bgr[:, ::-1]) - reference).max() < 0.02
    twin = lab.bgr_to_lab_torch(torch.from_numpy(bgr))
    assert twin.dtype == torch.float32 and np.abs(twin.numpy() - reference).max() < 1e-3
    back = lab.lab_to_bgr_torch(torch.from_numpy(reference)).numpy()
    assert np.abs(back - bgr).max() < 1e-5


# --- what each mode promises ------------------------------------------------------------------------------------


@pytest.mark.parametrize("source_dtype", [np.uint8, np.float32], ids=["u8", "f32"])
def test_rct_matches_target_lab_mean_and_std(faces, source_dtype: type) -> None:
    source, target, mask = faces
    src = source if source_dtype is np.uint8 else source.astype(np.float32) / 255.0
    out = color_transfer(ColorMode.RCT, src, target, mask, 1.0)
    inside = mask > 0.5

    def stats(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values = cv2.cvtColor(_unit(image), cv2.COLOR_BGR2Lab)[inside]  # OpenCV's L*a*b*, independent of ours
        return values.mean(axis=0), values.std(axis=0)

    (mean_out, std_out), (mean_tgt, std_tgt), (mean_src, _) = stats(out), stats(target), stats(src)
    assert np.abs(mean_src - mean_tgt).max() > 5.0  # the test is not vacuous
    # Tolerances: statistics come from a 4x-strided grid of the mask and out-of-gamut colours clip.
    assert np.abs(mean_out - mean_tgt).max() < 1.0
    assert np.all(np.abs(std_out - std_tgt) < 0.1 * std_tgt + 0.5)


def test_hist_makes_masked_histograms_match(faces) -> None:
    source, target, mask = faces
    out = color_transfer(ColorMode.HIST, source, target, mask, 1.0)
    inside = mask > 0.5
    for c in range(3):
        before = _ks(_unit(source)[inside][:, c], _unit(target)[inside][:, c])
        after = _ks(_unit(out)[inside][:, c], _unit(target)[inside][:, c])
        assert after < 0.03, (c, before, after)
        counts_out = np.bincount(out[inside][:, c], minlength=256).cumsum() / inside.sum()
        counts_tgt = np.bincount(target[inside][:, c], minlength=256).cumsum() / inside.sum()
        assert np.abs(counts_out - counts_tgt).max() < 0.03


@pytest.mark.parametrize("mode", [ColorMode.LCT, ColorMode.MKL], ids=lambda m: m.value)
def test_linear_modes_match_mean_and_covariance(faces, mode: ColorMode) -> None:
    source, target, mask = faces
    out = color_transfer(mode, _unit(source), target, mask, 1.0)
    inside = mask > 0.5
    got, want = out[inside].astype(np.float64), _unit(target)[inside].astype(np.float64)
    assert np.abs(got.mean(0) - want.mean(0)).max() < 0.005
    cov_got, cov_want = np.cov(got.T), np.cov(want.T)
    assert np.abs(cov_got - cov_want).max() < 0.06 * np.abs(cov_want).max()


@pytest.mark.parametrize("mode", [ColorMode.IDT, ColorMode.SOT], ids=lambda m: m.value)
def test_sliced_modes_move_distributions_onto_target(faces, mode: ColorMode) -> None:
    source, target, mask = faces
    out = color_transfer(mode, _unit(source), target, mask, 1.0)
    inside = mask > 0.5
    got, want, before = out[inside], _unit(target)[inside], _unit(source)[inside]
    assert np.abs(got.mean(0) - want.mean(0)).max() < 0.01
    for c in range(3):
        assert _ks(got[:, c], want[:, c]) < 0.5 * _ks(before[:, c], want[:, c])


@pytest.mark.parametrize("mode", list(ColorMode), ids=lambda m: m.value)
@pytest.mark.parametrize("source_dtype", [np.uint8, np.float32], ids=["u8", "f32"])
def test_amount_zero_returns_input_unchanged(faces, mode: ColorMode, source_dtype: type) -> None:
    source, target, mask = faces
    src = source if source_dtype is np.uint8 else source.astype(np.float32) / 255.0
    out = color_transfer(mode, src, target, mask, 0.0)
    assert out is not src and out.dtype == src.dtype and np.array_equal(out, src)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_amount_interpolates_linearly(faces, mode: ColorMode) -> None:
    source, target, mask = faces
    src = _unit(source)
    full = color_transfer(mode, src, target, mask, 1.0)
    half = color_transfer(mode, src, target, mask, 0.5)
    assert np.abs(half - (src + full) / 2).max() < 1e-5


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_degenerate_masks_do_not_crash(faces, mode: ColorMode) -> None:
    source, target, _ = faces
    src = _unit(source)
    empty = np.zeros((S, S), np.float32)
    assert np.array_equal(color_transfer(mode, src, target, empty), src)
    one = empty.copy()
    one[128, 128] = 1.0  # on the sampling grid of every mode
    out = color_transfer(mode, src, target, one)
    assert np.all(np.isfinite(out)) and out.min() >= 0.0 and out.max() <= 1.0
    assert measure_color_stats(mode, src, target, one).count == 1


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_given_statistics_replace_measuring(faces, mode: ColorMode) -> None:
    source, target, mask = faces
    stats = measure_color_stats(mode, source, target, mask)
    with_stats = color_transfer(mode, source, np.zeros_like(target), mask, 1.0, stats)
    assert np.array_equal(with_stats, color_transfer(mode, source, target, mask, 1.0))
    if stats.source is not None:
        # The source's statistics are used as given, not measured again: shifting them changes the result.
        shifted = ColorStats(mode, stats.target, np.roll(stats.source, 5, axis=-1), stats.count)
        assert not np.array_equal(color_transfer(mode, source, target, mask, 1.0, shifted), with_stats)
    other = ColorMode.LCT if mode is not ColorMode.LCT else ColorMode.RCT
    with pytest.raises(ValueError, match=f"statistics are for '{mode.value}'"):
        color_transfer(other, source, target, mask, 1.0, stats)
    wrong = ColorStats(mode, np.zeros(5), None, 10)
    with pytest.raises(ValueError, match="target statistics must be"):
        color_transfer(mode, source, target, mask, 1.0, wrong)
    empty = ColorStats(mode, np.zeros(0), None, 0)
    assert np.array_equal(color_transfer(mode, source, target, mask, 1.0, empty), source)


def test_invalid_inputs_raise_value_errors(faces) -> None:
    source, target, mask = faces
    with pytest.raises(ValueError, match=r"source must be \(H, W, 3\)"):
        color_transfer("rct", source[..., 0], target, mask)
    with pytest.raises(ValueError, match="mask must be"):
        color_transfer("rct", source, target, mask[:10])
    with pytest.raises(ValueError, match="amount"):
        color_transfer("rct", source, target, mask, 1.5)
    with pytest.raises(ValueError, match="int16"):
        color_transfer("rct", source.astype(np.int16), target, mask)
    with pytest.raises(ValueError, match="differ in size"):
        color_transfer("rct", source, target[:100], mask)
    with pytest.raises(ValueError):
        color_transfer("nope", source, target, mask)


def test_mode_values_are_the_cli_choices() -> None:
    assert [m.value for m in ColorMode] == ["none", "rct", "lct", "mkl", "idt", "sot", "hist"]
    assert ColorMode("rct") is ColorMode.RCT and ColorMode.RCT == "rct"


# --- compile once, outside the live loop ------------------------------------------------------------------------


def test_warmup_compiles_every_kernel_for_the_live_types() -> None:
    warmup()
    rows = types.Array(types.float32, 1, "C")
    for dispatcher in transfer.kernels():
        signatures = dispatcher.signatures  # type: ignore[attr-defined]
        assert signatures, dispatcher
        pixel_args = [sig for sig in signatures if rows in sig]
        assert pixel_args or dispatcher is nb.edge_mappings, (dispatcher, signatures)
        # cache=True: compiled code is written to (and on the next start read from) an index file on disk.
        index = Path(dispatcher._cache._cache_file._index_path)  # type: ignore[attr-defined]
        assert index.is_file(), f"no on-disk cache index for {dispatcher} at {index}"


def test_live_call_after_warmup_compiles_nothing_new(faces) -> None:
    warmup()
    before = {id(d): len(d.signatures) for d in transfer.kernels()}  # type: ignore[attr-defined]
    source, target, mask = faces
    for mode in MODES:
        color_transfer(mode, source.astype(np.float32) / 255.0, target, mask, 0.7)
    after = {id(d): len(d.signatures) for d in transfer.kernels()}  # type: ignore[attr-defined]
    assert before == after


def test_cache_dir_choice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    assert color_jit.choose_cache_dir({"NUMBA_CACHE_DIR": "/x/y"}, tmp_path, home) == Path("/x/y")
    assert color_jit.choose_cache_dir({}, tmp_path, home) is None  # writable package: numba's default
    monkeypatch.setattr(color_jit.os, "access", lambda path, mode: False)  # a read-only install
    assert color_jit.choose_cache_dir({}, tmp_path, home) == home / ".cache" / "realtime_swap" / "numba"


def test_kernel_cache_is_pointed_at_engine_start_without_touching_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import numba

    for dispatcher in color_jit._KERNELS:  # restored afterwards: later tests keep the usual cache
        monkeypatch.setattr(dispatcher, "_cache", dispatcher._cache)
    monkeypatch.setattr(color_jit, "_cache_dir", None)
    monkeypatch.setattr(color_jit.os, "access", lambda path, mode: False)  # a read-only install
    environ_before, config_before = dict(os.environ), numba.config.CACHE_DIR
    home = tmp_path / "home"
    chosen = color_jit.configure_kernel_cache({}, tmp_path, home)
    assert chosen == home / ".cache" / "realtime_swap" / "numba" and chosen.is_dir()
    assert color_jit._KERNELS and all(Path(d._cache._cache_path).is_relative_to(chosen) for d in color_jit._KERNELS)
    assert dict(os.environ) == environ_before and config_before == numba.config.CACHE_DIR


def test_importing_the_kernels_sets_no_environment_variable() -> None:
    # cv2 is imported first: its own loader edits LD_LIBRARY_PATH, which is not this package's doing
    import subprocess
    import sys

    probe = (
        "import os, cv2; before = dict(os.environ); import realtime_swap.compose, realtime_swap.sinks.window; "
        "print(sorted(set(os.environ.items()) ^ set(before.items())))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
