"""The ``bench`` subcommand: its JSON carries every figure the issue names, from real (tiny, short) runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest
import torch

from realtime_swap.bench import BenchSettings, Engine, RecordingSink, build_engine, parse_resolution, summarize
from realtime_swap.errors import ConfigError
from realtime_swap.infer.session import Backend
from realtime_swap.swap.stage import SwapStage
from realtime_swap.swap.synthetic import build_dfm_model
from realtime_swap.types import Frame

ROOT = Path(__file__).resolve().parents[1]
PERCENTILES = ("p50", "p95", "p99")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "tiny.onnx"
    path.write_bytes(build_dfm_model(64, width=8, ae_dims=32))
    return path


def _bench(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "realtime_swap", "bench", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _check_run(run: dict, frames: int, warmup: int, stages: tuple[str, ...]) -> None:
    assert run["frames_measured"] == frames
    assert run["frames_output"] == frames + warmup
    assert run["frames_captured"] == frames + warmup
    assert run["frames_dropped"] == 0
    assert run["frames_swapped"] == frames  # a face was found and swapped in every measured frame
    assert run["faces_found_per_frame"] == run["faces_swapped_per_frame"] == 1.0
    assert run["fps"] > 0 and run["duration_s"] > 0
    assert run["cpu_cores_busy"] > 0 and run["cpu_ms_per_frame"] > 0
    assert all(run["latency_ms"][p] > 0 for p in PERCENTILES)
    assert run["latency_ms"]["p50"] <= run["latency_ms"]["p95"] <= run["latency_ms"]["p99"]
    for name in stages:
        assert run["stages"][name]["count"] == frames
        assert all(run["stages"][name][p] >= 0 for p in PERCENTILES)
        assert run["stages"][name]["p50"] <= run["stages"][name]["p99"]


def test_bench_json_has_every_figure(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = _bench(
        [
            "--resolution",
            "320x240",
            "--model",
            str(tiny_model),
            "--backend",
            "ort-cpu",
            "--frames",
            "12",
            "--warmup",
            "3",
            "--inference-iters",
            "3",
            "--compare",
            "--queue-size 1",
            "--queue-size 3",
            "--json",
            str(out),
        ],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert "throughput" in doc["fps_definition"] and "capture-to-output" in doc["latency_definition"]
    assert doc["machine"]["usable_cores"] >= 1
    (result,) = doc["results"]
    assert (result["width"], result["height"], result["faces"]) == (320, 240, 1)
    assert result["model"] == {"path": str(tiny_model), "synthetic": False, "description": str(tiny_model)}
    for key in ("session_create_s", "engine_build_s", "warmup_s"):
        assert result[key] > 0
    assert result["warmup_frames"] == 3
    # the baseline is a single-threaded loop: its model gets one intra-op thread, the pipelined one every core
    assert result["sequential_cpu_threads"] == 1 and result["cpu_threads"] == len(os.sched_getaffinity(0))
    stages = ("capture", "detect", "swap", "blend")
    _check_run(result["pipelined"], 12, 3, stages)
    _check_run(result["sequential"], 12, 3, stages)
    assert result["pipelined"]["mode"] == "pipelined" and result["sequential"]["mode"] == "sequential"
    ratio = result["pipelined_vs_sequential"]
    assert ratio["median"] == pytest.approx(result["pipelined"]["fps"] / result["sequential"]["fps"])
    assert ratio["min"] <= ratio["median"] <= ratio["max"] and len(ratio["rounds"]) == 1
    inference = result["inference_ms"]
    assert inference["clock"] == "host-wall" and inference["backend"] == "ort-cpu" and inference["count"] == 3
    assert all(inference[p] > 0 for p in PERCENTILES) and inference["model_resolution"] == 64
    (entry,) = doc["compare"]["by_resolution"]
    assert doc["compare"]["a_args"] == "--queue-size 1" and doc["compare"]["b_args"] == "--queue-size 3"
    _check_run(entry["a"]["median"], 12, 3, stages)
    _check_run(entry["b"]["median"], 12, 3, stages)
    assert entry["a"]["median"]["queue_max_depth"]["capture"] <= 1 < entry["b"]["median"]["queue_max_depth"]["capture"]
    fps_ratio = entry["fps_ratio_b_over_a"]
    assert fps_ratio["median"] == pytest.approx(entry["b"]["fps_rounds"][0] / entry["a"]["fps_rounds"][0])
    assert entry["latency_p50_ratio_b_over_a"]["median"] > 0
    table = done.stderr
    assert "pipelined / sequential" in table and "fps B / A" in table and "detect" in table


def test_bench_runs_the_gpu_resident_stage(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    args = ["--resolution", "320x240", "--model", str(tiny_model), "--backend", "ort-cpu", "--frames", "4"]
    args += ["--warmup", "2", "--inference-iters", "1", "--no-sequential", "--gpu-path", "cpu"]
    done = _bench([*args, "--json", str(out)], tmp_path)
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(out.read_text())["results"]
    assert (
        result["gpu_path"] == "cpu"
        and "gpu path on cpu" in done.stderr
        and result["sequential"] is None
        and result["pipelined_vs_sequential"] is None
    )
    _check_run(result["pipelined"], 4, 2, ("capture", "detect", "swap+blend"))
    assert "swap" not in result["pipelined"]["stages"]


def test_bench_paced_like_a_camera(tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "paced.json"
    args = ["--resolution", "320x240", "--model", str(tiny_model), "--backend", "ort-cpu", "--frames", "6"]
    done = _bench([*args, "--warmup", "2", "--inference-iters", "1", "--paced-fps", "25", "--json", str(out)], tmp_path)
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(out.read_text())["results"]
    assert result["paced_fps"] == 25.0 and "paced at 25 fps" in done.stderr
    for run in (result["pipelined"], result["sequential"]):
        assert run["frames_captured"] == 8
        assert run["frames_output"] + run["frames_dropped"] == 8
        assert 0 < run["fps"] < 25 * 1.5  # a source paced at 25 fps cannot feed more


@pytest.mark.gpu
@pytest.mark.parametrize(
    "backend",
    [
        pytest.param(
            "ort-cuda",
            marks=pytest.mark.skipif(
                not (torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers()),
                reason="needs a CUDA GPU seen by torch and onnxruntime-gpu (none here)",
            ),
        ),
        pytest.param(
            "torch", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs torch with a CUDA device")
        ),
    ],
)
def test_bench_on_cuda_times_the_gpu(tiny_model: Path, tmp_path: Path, backend: str) -> None:
    out = tmp_path / "cuda.json"
    args = ["--resolution", "320x240", "--model", str(tiny_model), "--backend", backend, "--frames", "8"]
    done = _bench(
        [*args, "--warmup", "2", "--inference-iters", "5", "--gpu-path", "cuda", "--json", str(out)], tmp_path
    )
    assert done.returncode == 0, done.stderr
    (result,) = json.loads(out.read_text())["results"]
    assert result["inference_ms"]["clock"] == "cuda-event" and result["inference_ms"]["device"].startswith("cuda")
    _check_run(result["pipelined"], 8, 2, ("capture", "detect", "swap+blend"))
    _check_run(result["sequential"], 8, 2, ("capture", "detect", "swap+blend"))


def test_bench_refuses_a_bad_compare_string(tiny_model: Path, tmp_path: Path) -> None:
    args = ["--model", str(tiny_model), "--frames", "2", "--compare", "--queue-size 1", "--no-such-option 3"]
    done = _bench(args, tmp_path)
    assert done.returncode == 1
    assert "--no-such-option" in done.stderr


def test_parse_resolution() -> None:
    assert parse_resolution("480p") == ("480p", 640, 480)
    assert parse_resolution("4K") == ("4k", 3840, 2160)
    assert parse_resolution("320x240") == ("320x240", 320, 240)
    for bad in ("999p", "320x", "8x8"):
        with pytest.raises(ConfigError, match="--resolution"):
            parse_resolution(bad)


def _written(sink: RecordingSink, index: int, t_capture: float, t_out: float, swapped: bool = True) -> None:
    frame = Frame(index, image=None, t_capture=t_capture, pts=0.0)  # type: ignore[arg-type]
    frame.timings = {"detect": float(index)}
    frame.swapped = swapped
    sink.write(frame)
    sink.records[-1] = (*sink.records[-1][:2], (t_out - t_capture) * 1000.0, t_out)


def test_summary_leaves_warmup_frames_out() -> None:
    sink = RecordingSink()
    for i, t_out in enumerate((1.0, 2.0, 3.4)):  # warm-up: slow, 0.5 s latency
        _written(sink, i, t_capture=t_out - 0.5, t_out=t_out)
    for i in range(3, 7):  # measured: one output every 0.1 s, 20 ms after capture
        _written(sink, i, t_capture=3.48 + 0.1 * (i - 3), t_out=3.5 + 0.1 * (i - 3), swapped=i != 6)
    figures = summarize("pipelined", sink, warmup=3, captured=7, dropped=0)
    assert figures.frames_measured == 4 and figures.frames_output == 7 and figures.frames_swapped == 3
    # 4 frames came out between the last warm-up output (3.4 s) and the last output (3.8 s): 10 fps
    assert figures.duration_s == pytest.approx(0.4)
    assert figures.fps == pytest.approx(10.0)
    assert figures.latency_ms["p99"] == pytest.approx(20.0)
    assert figures.stages["detect"]["count"] == 4 and figures.stages["detect"]["p50"] == pytest.approx(4.5)
    no_warmup = summarize("sequential", sink, warmup=0, captured=7, dropped=0)
    assert no_warmup.frames_measured == 7 and no_warmup.fps == pytest.approx(6 / 2.8)


def _swap_threads(engine: Engine) -> int:
    (swap,) = [stage for stage in engine.pipeline.stages if isinstance(stage, SwapStage)]
    return int(swap.model.runner._session.get_session_options().intra_op_num_threads)


@pytest.mark.parametrize(("sequential_threads", "expected"), [(1, 1), (0, None), (2, 2)])
def test_sequential_baseline_threads(tiny_model: Path, sequential_threads: int, expected: int | None) -> None:
    """The sequential engine is built with the model threads asked for; the pipelined one keeps its own."""
    s = BenchSettings(
        width=320, height=240, model=tiny_model, backend=Backend.ORT_CPU, sequential_threads=sequential_threads
    )
    cores = len(os.sched_getaffinity(0))
    for runtime, want in ((s.sequential_runtime(), expected or cores), (s.runtime, cores)):
        engine = build_engine(s, tiny_model, runtime)
        try:
            assert _swap_threads(engine) == want
        finally:
            for stage in engine.pipeline.stages:
                stage.close()
            engine.pipeline.source.close()


def test_live_and_bench_run_without_torch(tmp_path: Path) -> None:
    """torch is an extra: the base install's demo and bench must not import it (the GPU stage does, when asked)."""
    block = "import sys, runpy; sys.modules['torch'] = None; sys.argv = ['run_live.py', *sys.argv[1:]]; "
    run = f"{block}runpy.run_path('run_live.py', run_name='__main__')"
    target = tmp_path / "bench.json"
    bench = ["bench", "--resolution", "320x240", "--frames", "4", "--warmup", "1", "--no-sequential"]
    for args in (["--frames", "5", "--null"], [*bench, "--json", str(target)]):
        done = subprocess.run([sys.executable, "-c", run, *args], cwd=ROOT, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-2000:]
    (result,) = json.loads(target.read_text())["results"]
    assert result["gpu_path"] == "off" and result["pipelined"]["frames_swapped"] >= 1


def test_gpu_path_without_torch_is_a_one_line_error() -> None:
    block = "import sys, runpy; sys.modules['torch'] = None; sys.argv = ['run_live.py', *sys.argv[1:]]; "
    run = f"{block}runpy.run_path('run_live.py', run_name='__main__')"
    done = subprocess.run([sys.executable, "-c", run, "--gpu-path", "cuda", "--frames", "5", "--null"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "error: --gpu-path cuda: torch is not installed (pip install 'realtime_swap[train]')"
    )
    assert "Traceback" not in done.stderr
