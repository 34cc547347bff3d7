"""The composition root: the CLI's options reach the stages and sinks they configure."""

from __future__ import annotations

from pathlib import Path

import pytest

from realtime_swap.cli import _config_from_args, build_parser
from realtime_swap.compose import ComposeStage
from realtime_swap.detect.stage import DetectStage
from realtime_swap.pipeline import build_pipeline
from realtime_swap.sinks.null import NullSink
from realtime_swap.swap.stage import SwapStage
from realtime_swap.swap.synthetic import build_dfm_model


def _config(*argv: str):  # type: ignore[no-untyped-def]
    parser, _ = build_parser()
    return _config_from_args(parser.parse_args(["live", *argv]))


def test_face_options_reach_the_stages(tmp_path: Path) -> None:
    model = tmp_path / "m.dfm"
    model.write_bytes(build_dfm_model(64))
    cfg = _config(
        "--model", str(model), "--null", "--color", "lct", "--color-amount", "0.5", "--blend", "seamless",
        "--erode", "3", "--blur", "5", "--opacity", "0.8", "--sharpen", "0.2", "--keep-mouth",
        "--color-smoothing", "0.5", "--detector", "full", "--select", "all", "--max-faces", "3",
        "--detect-every", "2", "--morph", "0.3",
    )  # fmt: skip
    pipeline, _ = build_pipeline(cfg)
    detect, swap, compose = pipeline.stages
    assert isinstance(detect, DetectStage) and isinstance(swap, SwapStage) and isinstance(compose, ComposeStage)
    assert pipeline.controls.color_mode == "lct"
    assert detect.mouth and detect.size == 64
    options = detect.tracker.options
    assert (options.detector.value, options.selection.value, options.max_faces, options.detect_every) == (
        "full", "all", 3, 2,
    )  # fmt: skip
    assert (compose.mode.value, compose.erode_px, compose.blur_px, compose.opacity, compose.sharpen) == (
        "seamless", 3, 5, 0.8, 0.2,
    )  # fmt: skip
    assert compose.keep_mouth and compose.color_amount == 0.5 and compose.smoother.time_constant_s == 0.5
    assert isinstance(pipeline.sinks[0], NullSink)
    pipeline.source.close()


def test_no_swap_is_pass_through() -> None:
    pipeline, notices = build_pipeline(_config("--no-swap", "--null"))
    assert pipeline.stages == [] and notices == []
    pipeline.source.close()


@pytest.mark.parametrize(("flag", "value"), [("--opacity", "1.5"), ("--color-amount", "-1"), ("--morph", "2")])
def test_out_of_range_options_are_config_errors(flag: str, value: str) -> None:
    from realtime_swap.errors import ConfigError

    with pytest.raises(ConfigError, match=flag):
        _config(flag, value)


def test_gpu_path_replaces_swap_and_blend(tmp_path: Path) -> None:
    from realtime_swap.gpu import GpuSwapComposeStage

    model = tmp_path / "m.dfm"
    model.write_bytes(build_dfm_model(64))
    pipeline, _ = build_pipeline(_config("--model", str(model), "--null", "--gpu-path", "cpu"))
    assert [type(s) for s in pipeline.stages] == [DetectStage, GpuSwapComposeStage]
    pipeline.source.close()


def test_gpu_path_auto_without_cuda_runs_the_cpu_stages_with_a_notice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this machine may have a GPU: hide it
    model = tmp_path / "m.dfm"
    model.write_bytes(build_dfm_model(64))
    pipeline, notices = build_pipeline(_config("--model", str(model), "--null", "--gpu-path", "auto"))
    assert [type(s) for s in pipeline.stages] == [DetectStage, SwapStage, ComposeStage]
    assert any(n.startswith("--gpu-path auto: torch") and "sees no CUDA device; running the CPU stages" in n
               for n in notices)  # fmt: skip
    pipeline.source.close()


def test_gpu_path_auto_with_a_swap_model_on_the_cpu_says_so(tmp_path: Path) -> None:
    from realtime_swap.gpu import auto_unavailable_reason

    assert auto_unavailable_reason("cpu") is not None  # no CUDA, or a model on the CPU: either way, not CUDA
    model = tmp_path / "m.dfm"
    model.write_bytes(build_dfm_model(64))
    pipeline, notices = build_pipeline(
        _config("--model", str(model), "--null", "--backend", "ort-cpu", "--gpu-path", "auto")
    )
    assert [type(s) for s in pipeline.stages] == [DetectStage, SwapStage, ComposeStage]
    assert any(n.startswith("--gpu-path auto: ") for n in notices)
    pipeline.source.close()


def test_a_source_that_fails_to_open_releases_the_loaded_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from realtime_swap.errors import RealtimeSwapError

    closed: list[str] = []
    monkeypatch.setattr(SwapStage, "close", lambda self: closed.append(self.name))
    model = tmp_path / "m.dfm"
    model.write_bytes(build_dfm_model(32, width=8, ae_dims=32))
    with pytest.raises(RealtimeSwapError, match=r"nope\.mp4"):
        build_pipeline(_config("--model", str(model), "--source", str(tmp_path / "nope.mp4"), "--null"))
    assert closed == ["swap"]


def test_gpu_path_by_default_is_auto_without_the_notice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import realtime_swap.gpu as gpu
    import realtime_swap.gpu.stage as gpu_stage

    model = tmp_path / "m.dfm"
    model.write_bytes(build_dfm_model(64))
    cfg = _config("--model", str(model), "--null")
    assert cfg.faces.gpu_path is None
    pipeline, notices = build_pipeline(cfg)  # the swap model runs on the CPU here: the CPU stages, quietly
    assert [type(s) for s in pipeline.stages] == [DetectStage, SwapStage, ComposeStage]
    assert not any("--gpu-path" in n for n in notices)
    pipeline.source.close()
    # where the swap model runs on torch on CUDA, the default takes the GPU-resident path as --gpu-path auto would;
    # on ONNX Runtime's providers it is taken when asked for only
    asked: list[object] = []
    monkeypatch.setattr(gpu, "auto_unavailable_reason", lambda device: None)  # "the swap model is on CUDA"
    monkeypatch.setattr(gpu_stage, "gpu_resident_stages", lambda stages, path: asked.append(path) or list(stages))
    pipeline, _ = build_pipeline(cfg)
    pipeline.source.close()
    assert asked == []
    pipeline, _ = build_pipeline(_config("--model", str(model), "--null", "--backend", "torch"))
    pipeline.source.close()
    assert asked == [gpu.GpuPath.AUTO]
