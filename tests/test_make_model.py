"""make-model on tiny real data: photos of the astronaut as src, a short demo-source video as dst, two
iterations of the tiny 64 px preset, then export; a second run resumes and trains on."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import cv2
import pytest
from conftest import run_cli

from export.onnx_export import read_metadata
from realtime_swap.errors import ConfigError
from realtime_swap.infer import Backend
from realtime_swap.sources.demo import DemoSource
from realtime_swap.swap.model import SwapModel
from realtime_swap.train.config import Preset
from realtime_swap.train.make_model import MakeModelPlan, live_command, make_model
from realtime_swap.train.sample_faces import load_picture

pytestmark = [pytest.mark.usefixtures("torch_one_thread"), pytest.mark.slow]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(src: a folder of two astronaut photos, dst: a 4-frame H.264 video of the demo source)."""
    root = tmp_path_factory.mktemp("make_model_inputs")
    photos = root / "celeb"
    photos.mkdir()
    astronaut = load_picture("astronaut")
    cv2.imwrite(str(photos / "a.png"), astronaut)
    cv2.imwrite(str(photos / "b.png"), cv2.flip(astronaut, 1))
    video = root / "me.mp4"
    source = DemoSource(320, 240, realtime=False)
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(4):
            frame = av.VideoFrame.from_ndarray(source.render(i * 20), format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, 30)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return photos, video


def test_make_model_extracts_trains_exports_and_resumes(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    photos, video = inputs
    out = tmp_path / "mine"
    plan = MakeModelPlan(
        src=(photos,), dst=(video,), out=out, iterations=2, preset=Preset.TINY, device="cpu", progress=False
    )
    result = make_model(plan)
    assert result.model == out / "model.onnx" and result.iteration == 2 and not result.interrupted
    assert result.src_faces == 2 and result.dst_faces >= 3
    meta = read_metadata(result.model)
    assert (meta["resolution"], meta["face_type"], meta["iterations"]) == ("64", "whole_face", "2")
    assert Path(meta["dst_faceset"]) == plan.dst_faceset
    model = SwapModel.load(result.model, Backend.ORT_CPU)
    assert model.resolution == 64
    model.close()

    again = make_model(MakeModelPlan(**{**plan.__dict__, "iterations": 3}))
    assert again.iteration == 3 and again.iterations_this_run == 1
    assert json.loads((plan.src_faceset / "faceset.json").read_text())  # the faceset was resumed, not rebuilt
    assert again.src_faces == 2


def test_the_time_box_stops_training_and_still_exports(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    photos, video = inputs
    plan = MakeModelPlan(
        src=(photos,), dst=(video,), out=tmp_path / "boxed", minutes=0.001, preset=Preset.TINY, device="cpu",
        progress=False,
    )  # fmt: skip
    result = make_model(plan)
    assert result.timed_out and not result.interrupted and result.model is not None and result.model.is_file()


def test_the_command_prints_the_live_line(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    photos, video = inputs
    out = tmp_path / "cli"
    done = run_cli(
        "make-model", "--src", str(photos), "--dst", str(video), "--out", str(out), "--iterations", "1",
        "--preset", "tiny", "--device", "cpu", "--quiet",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == live_command(out / "model.onnx")


def test_bad_plans_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--iterations"):
        MakeModelPlan(src=(tmp_path,), dst=(tmp_path,), out=tmp_path, iterations=0)
    with pytest.raises(ConfigError, match="--minutes"):
        MakeModelPlan(src=(tmp_path,), dst=(tmp_path,), out=tmp_path, minutes=-1)
    with pytest.raises(ConfigError, match="--src and --dst"):
        MakeModelPlan(src=(), dst=(tmp_path,), out=tmp_path)
