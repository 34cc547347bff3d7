"""The GPU suite's smoke mode on the CPU: every part runs and the JSON carries every field the full mode fills,
with pygame blocked everywhere and PyAV blocked in the suite's own process (only bench and pytest, run as
subprocesses, need it): the GPU machine has neither unless the suite brings PyAV as a wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKED = "import sys; sys.modules['av'] = None; sys.modules['pygame'] = None"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("suite")
    blocker = tmp / "block"
    (blocker / "pygame").mkdir(parents=True)
    (blocker / "pygame" / "__init__.py").write_text("raise ImportError('pygame is blocked by test_gpu_suite')\n")
    out = tmp / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    code = f"{BLOCKED}; import runpy; sys.argv = ['gpu_suite.py', '--smoke', '--out', {str(out)!r}]; "
    code += f"runpy.run_path({str(ROOT / 'benchmarks' / 'gpu_suite.py')!r}, run_name='__main__')"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (out / "gpu_suite.log").read_text().count(" INFO == ") == 4  # one heading per part
    assert sorted(p.name for p in out.iterdir()) == ["gpu_suite.json", "gpu_suite.log"]  # what $OUT brings back
    return dict(json.loads((out / "gpu_suite.json").read_text()))


def test_suite_header_names_the_machine(report: dict[str, Any]) -> None:
    suite = report["suite"]
    assert suite["mode"] == "smoke" and suite["seconds"] > 0 and set(suite["budget_s"]) == set(report["parts"])
    assert {"python", "torch", "torch_cuda", "onnxruntime", "cpu_cores", "gpu"} <= set(suite["machine"])


def test_every_part_ran_within_its_budget(report: dict[str, Any]) -> None:
    for name, part in report["parts"].items():
        assert part["status"] == "ok", (name, part)
        assert 0 < part["seconds"] <= report["suite"]["budget_s"][name] + 30  # a budget is checked between items
        assert isinstance(part["not_run"], list)


def test_tests_part_counts_the_gpu_tests(report: dict[str, Any]) -> None:
    (run,) = report["parts"]["tests"]["runs"]
    assert run["name"] == "gpu_marked" and run["returncode"] == 0
    assert run["tests"] > 0 and run["failures"] == run["errors"] == 0
    assert "tests/test_torch_fast_path.py" in run["args"]  # every module with a gpu test is collected


def test_swap_model_figures(report: dict[str, Any]) -> None:
    part = report["parts"]["swap_model"]
    assert part["device"] == "cpu" and part["timer"] == "perf_counter"
    rows = part["results"]
    assert {(r["mode"], r["batch"]) for r in rows} == {("eager", 1), ("eager", 2), ("compile", 1), ("compile", 2)}
    for row in rows:
        assert row["resolution"] == 64 and row["precision"] == "fp32"
        assert 0 < row["p50_ms"] <= row["p95_ms"] and row["ms_per_face_p50"] == row["p50_ms"] / row["batch"]
    assert [n["what"] for n in part["not_run"]] == ["cuda_graph 64px fp32"]


def test_bench_figures_unpaced_and_paced(report: dict[str, Any]) -> None:
    runs = report["parts"]["bench"]["runs"]
    assert [r["paced_fps"] for r in runs] == [None, 60.0]
    for run in runs:
        assert run["backend"] == "torch" and run["gpu_path"] == "cpu" and run["fps"] > 0
        assert {"capture", "detect", "swap+blend"} <= set(run["stages_ms"])
        for figures in (*run["stages_ms"].values(), run["added_latency_ms"]):
            assert figures["p50"] <= figures["p95"] <= figures["p99"]
        assert run["frames_dropped"] >= 0 and run["frames_swapped"] >= 1
        assert run["inference_ms"]["backend"] == "torch"


def test_training_figures(report: dict[str, Any]) -> None:
    rows = report["parts"]["training"]["results"]
    assert {r["arch"] for r in rows} == {"df", "liae"}
    for row in rows:
        assert row["its_per_s"] > 0 and row["ms_per_it"] > 0 and row["amp"] is False  # AMP is CUDA only
        assert row["its_per_s_device_augment"] > 0 and row["cpu_augment_pairs_per_s"] > 0
        assert row["amp_dtype"] is None and row["channels_last"] is False and row["device"] == "cpu"
