"""The command line as a user meets it: the default demo, bad input, Ctrl-C, metrics out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import ROOT, run_cli, write_test_video


def test_default_run_headless_records_instead_of_crashing(tmp_path: Path) -> None:
    result = run_cli("--frames", "20", "--metrics-json", str(tmp_path / "m.json"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no preview window" in result.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["frames_captured"] == 20
    # a live source drops frames when the engine is behind (newest wins at every hand-off): how many depends on
    # the machine's load, so only a sane minimum here; every frame output must be in the recording
    with av.open(str(tmp_path / "realtime_swap_preview.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == metrics["frames_processed"] >= 5
    for key in ("fps", "frames_captured", "frames_processed", "frames_dropped", "latency_ms", "stages"):
        assert key in metrics
    assert set(metrics["latency_ms"]) >= {"p50", "p95", "p99"}
    assert set(metrics["stages"]["capture"]) >= {"p50", "p95", "p99"}
    faces = metrics["extra"]["faces"]  # the demo's one face, found and swapped in (nearly) every frame
    assert 0 < faces["frames_swapped"] <= faces["frames_with_face"] <= metrics["frames_processed"]
    assert 0.5 < faces["swapped_per_frame"] <= faces["found_per_frame"] <= 1.0


def test_no_swap_file_to_null(tmp_path: Path) -> None:
    video = write_test_video(tmp_path / "in.mp4", frames=30)
    result = run_cli("--source", str(video), "--no-swap", "--null", "--metrics-json", str(tmp_path / "m.json"))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["frames_processed"] == 30 and metrics["frames_dropped"] == 0
    assert metrics["extra"]["faces"] == {
        "frames_with_face": 0, "frames_swapped": 0, "found_per_frame": 0.0, "swapped_per_frame": 0.0,
    }  # fmt: skip


def _bad_inputs(tmp: Path) -> list[tuple[list[str], str]]:
    corrupt = tmp / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(1).integers(0, 256, 40_000, dtype=np.uint8).tobytes())
    good = write_test_video(tmp / "good.mp4", frames=30)
    truncated = tmp / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return [
        (["--source", str(tmp / "nope.mp4")], "nope.mp4"),
        (["--source", str(corrupt)], "corrupt.mp4"),
        (["--source", str(truncated)], "truncated.mp4"),
        (["--source", "ftp://example.invalid/x.mp4"], "unsupported URL scheme 'ftp'"),
        (["--source", "9"], "camera 9"),
        (["--record", str(tmp / "no_such_dir" / "out.mp4")], "no_such_dir"),
        (["--record", str(tmp / "out.xyz")], "out.xyz"),
    ]


def test_bad_input_is_one_line_and_nonzero(tmp_path: Path) -> None:
    for args, needle in _bad_inputs(tmp_path):
        result = run_cli(*args, "--no-swap", "--null", "--frames", "5")
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1, (args, result.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
        assert needle in lines[0], (args, lines[0])
        assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run_cli("--debug", "--source", str(tmp_path / "nope.mp4"), "--null")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "input not found" in result.stderr


def test_bad_option_values_are_usage_errors() -> None:
    result = run_cli("--frames", "0")
    assert result.returncode == 2 and "must be >= 1" in result.stderr


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_cleanly_and_the_recording_plays(tmp_path: Path, sig: signal.Signals, code: int) -> None:
    out = tmp_path / "rec.mp4"
    metrics = tmp_path / "m.json"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "run_live.py"),
            "--no-swap",
            "--record",
            str(out),
            "--no-preview",
            "--width",
            "320",
            "--height",
            "240",
            "--metrics-json",
            str(metrics),
            "--quiet",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and (not out.exists() or out.stat().st_size < 20_000):
        time.sleep(0.2)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    written = json.loads(metrics.read_text())["frames_processed"]
    with av.open(str(out)) as container:
        assert sum(1 for _ in container.decode(video=0)) == written > 0


def test_inference_options_reach_the_backend(tmp_path: Path) -> None:
    from realtime_swap.cli import _config_from_args, build_parser
    from realtime_swap.infer.runner import Precision
    from realtime_swap.swap.backends import BackendOptions

    parser, _ = build_parser()
    args = parser.parse_args(
        ["live", "--backend", "ort-cpu", "--precision", "fp32", "--cpu-threads", "1", "--engine-cache", str(tmp_path)]
    )
    cfg = _config_from_args(args)
    assert cfg.faces.runtime == BackendOptions(precision=Precision.FP32, cpu_threads=1, cache_dir=tmp_path)
    defaults = _config_from_args(parser.parse_args(["live"]))
    assert defaults.faces.runtime == BackendOptions()


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        (["--precision", "fp16"], "runs the model's own precision"),
        (["--cuda-graph"], "CUDA graphs apply to backends 'ort-cuda', 'ort-trt' and 'torch'"),
        (["--torch-compile"], "torch.compile applies to backend 'torch'"),
    ],
)
def test_inference_options_that_do_not_fit_are_one_error_line(options: list[str], needle: str) -> None:
    result = run_cli("--backend", "ort-cpu", *options, "--null", "--frames", "2")
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and needle in last and "Traceback" not in result.stderr


def test_passed_over_backends_are_one_line_by_default_and_detailed_under_debug(tmp_path: Path) -> None:
    quiet = run_cli("--frames", "3", "--null", "--metrics-json", str(tmp_path / "m.json"))
    assert quiet.returncode == 0, quiet.stderr
    (swap,) = json.loads((tmp_path / "m.json").read_text())["extra"]["swap_models"]
    assert swap["model"] == "demo_swap.onnx" and swap["backend"]
    assert sum("swap model on" in line for line in quiet.stderr.splitlines()) == (1 if swap["passed_over"] else 0)
    assert "note: backend:" not in quiet.stderr and "INFO" not in quiet.stderr
    debug = run_cli("--debug", "--frames", "3", "--null")
    assert debug.returncode == 0, debug.stderr
    for backend, reason in swap["passed_over"].items():
        assert reason not in quiet.stderr
        assert f"{backend}: {reason}" in debug.stderr
