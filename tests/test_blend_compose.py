"""The blend stage: colour transfer + paste-back for every swapped face of a frame."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
from numba import types
from skimage import data

from realtime_swap import blend
from realtime_swap.blend import BlendMode
from realtime_swap.color import ColorMode, transfer
from realtime_swap.color import kernels as nb
from realtime_swap.compose import ComposeStage
from realtime_swap.errors import ConfigError
from realtime_swap.stages import Controls
from realtime_swap.types import AlignedFace, Face, FaceType, Frame, StreamInfo, SwapResult

S = 224


def _tom_hanks() -> np.ndarray:
    spec = importlib.util.find_spec("insightface")
    assert spec is not None and spec.submodule_search_locations
    path = Path(spec.submodule_search_locations[0]) / "data" / "images" / "Tom_Hanks_54745.png"
    image = cv2.imread(str(path))
    assert image is not None
    return image


def _ellipse(size: int, scale: float = 1.0) -> np.ndarray:
    mask = np.zeros((size, size), np.float32)
    c = size // 2
    cv2.ellipse(mask, (c, int(c * 1.08)), (int(c * 0.6 * scale), int(c * 0.8 * scale)), 0, 0, 360, 1.0, -1)
    return mask


def _face(frame_image: np.ndarray, face_id: int, cx: float, cy: float, side: float, swap_size: int = S) -> Face:
    m = cv2.getRotationMatrix2D((cx, cy), 8.0, S / side)
    m[:, 2] += np.array([S / 2, S / 2]) - np.array([cx, cy])
    aligned = AlignedFace(
        image=cv2.warpAffine(frame_image, m, (S, S), flags=cv2.INTER_LINEAR),
        matrix=m,
        face_type=FaceType.WHOLE_FACE,
        mask=_ellipse(S),
    )
    swapped = SwapResult(
        face=cv2.resize(_tom_hanks(), (swap_size, swap_size)).astype(np.float32) / 255.0,
        mask=_ellipse(swap_size, 1.1),
    )
    box = np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], np.float32)
    return Face(id=face_id, box=box, score=0.9, aligned=aligned, swapped=swapped)


@pytest.fixture()
def frame() -> Frame:
    image = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (1024, 1024))
    image.flags.writeable = False  # the stage must never write into the image it was given
    return Frame(index=0, image=image, t_capture=0.0, pts=0.0, faces=[_face(image, 1, 452, 236, 340)])


def _changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.any(before != after, axis=2)


def test_pastes_the_swapped_face_copy_on_write(frame: Frame) -> None:
    original = frame.image
    snapshot = original.copy()
    stage = ComposeStage(blur_px=6)
    out = stage.process(frame, Controls(color_mode="rct"))
    assert out is frame and out.swapped
    assert out.image is not original and np.array_equal(original, snapshot)
    changed = _changed(snapshot, out.image)
    assert 10_000 < changed.sum() < 0.2 * changed.size
    ys, xs = np.nonzero(changed)
    assert 452 - 200 < xs.mean() < 452 + 200 and 236 - 200 < ys.mean() < 236 + 200


def test_colour_mode_pulls_the_face_towards_the_frame(frame: Frame) -> None:
    snapshot = frame.image.copy()
    results = {}
    for mode in ("none", "rct", "hist"):
        f = Frame(index=0, image=snapshot.copy(), t_capture=0.0, pts=0.0, faces=frame.faces)
        results[mode] = ComposeStage().process(f, Controls(color_mode=mode)).image
    inside = _changed(snapshot, results["none"])
    target = snapshot[inside].reshape(-1, 3).mean(axis=0)
    error = {m: np.abs(img[inside].reshape(-1, 3).mean(axis=0) - target).max() for m, img in results.items()}
    # Tom Hanks' grey face on the astronaut's warm one: every transfer gets the mean colour far closer.
    assert error["none"] > 20.0
    assert error["rct"] < 0.3 * error["none"] and error["hist"] < 0.3 * error["none"]


def test_swap_disabled_or_nothing_to_paste_leaves_the_frame_alone(frame: Frame) -> None:
    stage = ComposeStage()
    image = frame.image
    assert stage.process(frame, Controls(swap_enabled=False)).image is image
    assert not frame.swapped
    frame.faces[0].swapped = None
    assert stage.process(frame, Controls()).image is image
    empty = Frame(index=1, image=image, t_capture=0.0, pts=0.1)
    assert stage.process(empty, Controls()).image is image


@pytest.mark.parametrize("mode", list(BlendMode), ids=lambda m: m.value)
def test_several_faces_and_a_model_at_another_resolution(frame: Frame, mode: BlendMode) -> None:
    base = frame.image.copy()
    frame.faces.append(_face(frame.image, 7, 800, 700, 200, swap_size=128))  # a 128 px model output
    out = ComposeStage(mode=mode, sharpen=0.3).process(frame, Controls(color_mode="lct")).image
    diff = _changed(base, out)
    first, second = diff[66:406, 282:622].sum(), diff[600:800, 700:900].sum()
    assert first > 20_000 and second > 8_000
    assert first + second == diff.sum()  # nothing outside the two faces' regions


def test_per_face_smoothing_follows_ids_and_time(frame: Frame) -> None:
    stage = ComposeStage(color_time_constant_s=0.5)
    second = _face(frame.image, 7, 800, 700, 200)
    for i in range(3):
        f = Frame(index=i, image=frame.image, t_capture=0.0, pts=i / 30, faces=[frame.faces[0], second])
        stage.process(f, Controls(color_mode="rct"))
    assert len(stage.smoother) == 2
    later = Frame(index=90, image=frame.image, t_capture=0.0, pts=3.0, faces=[frame.faces[0]])
    stage.process(later, Controls(color_mode="rct"))
    assert len(stage.smoother) == 1  # face 7 left more than max_gap_s ago


def test_unknown_colour_mode_and_bad_options_raise_config_errors(frame: Frame) -> None:
    with pytest.raises(ConfigError, match="unknown colour mode 'sepia'"):
        ComposeStage().process(frame, Controls(color_mode="sepia"))
    for kwargs in (
        {"opacity": 1.5},
        {"blur_px": -1},
        {"sharpen": -0.1},
        {"color_amount": 2.0},
        {"color_time_constant_s": -1.0},
        {"mode": "poisson"},
        {"kernel_threads": 0},
    ):
        with pytest.raises(ConfigError):
            ComposeStage(**kwargs)


def test_warmup_compiles_everything_the_live_loop_runs(frame: Frame) -> None:
    stage = ComposeStage(mode=BlendMode.SEAMLESS, sharpen=0.2)
    stage.warmup(StreamInfo(width=1024, height=1024, fps=30.0, live=True, name="test"))
    dispatchers = [*transfer.kernels(), blend._composite]
    before = [len(d.signatures) for d in dispatchers]  # type: ignore[attr-defined]
    assert all(before)
    assert types.Array(types.float32, 1, "C") in nb.rct_apply.signatures[0]  # type: ignore[attr-defined]
    for i, mode in enumerate(ColorMode):
        f = Frame(index=i, image=frame.image, t_capture=0.0, pts=i / 30, faces=frame.faces)
        stage.process(f, Controls(color_mode=mode.value))
    assert [len(d.signatures) for d in dispatchers] == before  # type: ignore[attr-defined]
