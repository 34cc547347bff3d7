"""The run configuration: closed option sets are the enums the modules dispatch on, checked once when built."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

from realtime_swap.blend import BlendMode
from realtime_swap.cli import build_parser
from realtime_swap.color import ColorMode
from realtime_swap.config import FaceSpec, OutputSpec
from realtime_swap.detect.blazeface import BlazeFaceModel
from realtime_swap.detect.tracker import FaceSelection
from realtime_swap.errors import ConfigError
from realtime_swap.gpu import GpuPath
from realtime_swap.sinks.stream_url import StreamEncoder
from realtime_swap.stages import Controls


def test_face_options_become_their_enums_at_construction() -> None:
    spec = FaceSpec(detector="full", selection="all", color="lct", blend="seamless", gpu_path="cpu")  # type: ignore[arg-type]
    assert spec.detector is BlazeFaceModel.FULL_RANGE and spec.selection is FaceSelection.ALL
    assert spec.color is ColorMode.LCT and spec.blend is BlendMode.SEAMLESS and spec.gpu_path is GpuPath.CPU
    assert OutputSpec(stream_encoder="libx264").stream_encoder is StreamEncoder.LIBX264  # type: ignore[arg-type]
    assert Controls(color_mode="mkl").color_mode is ColorMode.MKL  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "option"),
    [("detector", "--detector"), ("selection", "--select"), ("color", "--color"), ("blend", "--blend"),
     ("gpu_path", "--gpu-path")],
)  # fmt: skip
def test_an_unknown_choice_is_a_config_error_naming_the_option(field: str, option: str) -> None:
    with pytest.raises(ConfigError, match=f"{option} must be one of .*got 'nope'"):
        FaceSpec(**{field: "nope"})  # type: ignore[arg-type]


def test_cli_choices_are_the_enum_values() -> None:
    parser, _ = build_parser()
    live = parser._subparsers._group_actions[0].choices["live"]  # type: ignore[union-attr]
    choices = {a.dest: list(a.choices) for a in live._actions if a.choices}
    for dest, kind in (("detector", BlazeFaceModel), ("select", FaceSelection), ("color", ColorMode),
                       ("blend", BlendMode), ("gpu_path", GpuPath), ("stream_encoder", StreamEncoder)):  # fmt: skip
        assert choices[dest] == [m.value for m in kind]


def test_config_does_not_import_the_network_sink() -> None:
    probe = "import sys, realtime_swap.config; print('realtime_swap.sinks.network' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "False"
