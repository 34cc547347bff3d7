"""The GPU suite's smoke mode on the CPU: every part runs and the JSON carries every field the full mode fills,
with pygame blocked everywhere and PyAV blocked in the suite's own process (only bench and pytest, run as
subprocesses, need it): the GPU machine has neither unless the suite brings PyAV as a wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
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
        assert run["faces_swapped_per_frame"] >= 0.9 * run["faces"]  # the figure is for as many faces as it says
        assert run["inference_ms"]["backend"] == "torch"


def test_training_figures(report: dict[str, Any]) -> None:
    rows = report["parts"]["training"]["results"]
    assert {r["arch"] for r in rows} == {"df", "liae"}
    for row in rows:
        assert row["its_per_s"] > 0 and row["ms_per_it"] > 0 and row["amp"] is False  # AMP is CUDA only
        assert row["its_per_s_device_augment"] > 0 and row["cpu_augment_pairs_per_s"] > 0
        assert row["amp_dtype"] is None and row["channels_last"] is False and row["device"] == "cpu"


def _suite_module() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_suite_under_test", ROOT / "benchmarks" / "gpu_suite.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_swap_model_rows_say_fp32_ran_without_tf32(report: dict[str, Any]) -> None:
    part = report["parts"]["swap_model"]
    assert set(part["tf32_default"]) == {"cudnn_conv", "matmul"}
    assert report["suite"]["machine"]["tf32_default"] == part["tf32_default"]
    assert all(r["tf32"] == {"cudnn_conv": False, "matmul": False} for r in part["results"] if r["precision"] == "fp32")
    assert all(set(r["tf32"]) == {"cudnn_conv", "matmul"} for r in report["parts"]["training"]["results"])


def test_tf32_is_off_inside_and_restored_after() -> None:
    import torch

    suite = _suite_module()
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.allow_tf32, matmul.allow_tf32)
    matmul.allow_tf32 = True
    try:
        with suite.tf32_allowed(False) as flags:
            assert flags == {"cudnn_conv": False, "matmul": False}
            assert not cudnn.allow_tf32 and not matmul.allow_tf32
        assert cudnn.allow_tf32 == before[0] and matmul.allow_tf32
        with pytest.raises(KeyError), suite.tf32_allowed(False):
            raise KeyError("a failing configuration")
        assert cudnn.allow_tf32 == before[0] and matmul.allow_tf32
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = before


def test_a_timeout_kills_the_children_that_hold_the_pipes() -> None:
    """pytest and bench start processes of their own; subprocess.run's timeout kills the direct child only and then
    waits for the pipes, which a grandchild keeps open: the suite would sit past its budget."""
    suite = _suite_module()
    child = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])"
    child += "; print('started', flush=True); time.sleep(60)"
    t0 = time.perf_counter()
    rc, out, _, timed_out = suite.run_bounded([sys.executable, "-c", child], cwd=ROOT, env=dict(os.environ), timeout=3)
    assert timed_out and rc == -1 and time.perf_counter() - t0 < 20
    assert "started" in out


def test_the_json_is_written_when_the_wheel_install_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    suite = _suite_module()

    def broken(env: dict[str, str]) -> list[str]:
        raise subprocess.CalledProcessError(1, ["pip", "install"])

    monkeypatch.setattr(suite, "prepare_wheels", broken)
    report = suite.run_suite(tmp_path, True, ())
    saved = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert "CalledProcessError" in saved["suite"]["wheels_installed"]["error"]
    assert saved["suite"]["machine"]["python"] and report["parts"]["tests"]["status"] == "skipped"


def test_a_swap_worker_killed_at_the_budget_keeps_its_rows_and_names_the_rest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import dataclasses

    suite = _suite_module()
    plan = dataclasses.replace(suite.SMOKE, modes=("eager", "compile"), resolutions=(64,))
    row = {"kind": "result", "mode": "eager", "resolution": 64, "precision": "fp32", "batch": 1, "p50_ms": 1.0}

    def killed(cmd: list[str], **kw: Any) -> tuple[int, str, str, bool]:
        mode, rows = cmd[cmd.index("--swap-worker") + 1], Path(cmd[cmd.index("--worker-rows") + 1])
        if mode == "eager":
            rows.write_text(json.dumps(row) + "\n")
            return 0, "", "", False
        rows.write_text('{"kind": "result", "mode": "comp')  # killed while writing its first row
        return -1, "", "", True

    monkeypatch.setattr(suite, "run_bounded", killed)
    part = suite.part_swap_model(plan, tmp_path, dict(os.environ), suite.Budget(60.0), True)
    assert [r["mode"] for r in part["results"]] == ["eager"] and "kind" not in part["results"][0]
    assert part["not_run"] == [
        {"what": "compile 64px fp32", "reason": "worker killed at the time budget (a configuration ran past it)"}
    ]
    assert part["status"] == "ok"


def test_compile_probe_names_a_missing_compiler() -> None:
    import torch._inductor.config as inductor_config

    suite = _suite_module()
    with inductor_config.patch({"cpp.cxx": ("/nonexistent/g++",), "fx_graph_cache": False}):
        reason = suite._compile_unavailable_reason("cpu", "inductor")
        assert reason is not None and "C++ compiler" in reason
        assert suite._compile_unavailable_reason("cpu", "eager") is None


def test_wheels_are_unpacked_where_pip_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util
    import zipfile

    suite = _suite_module()
    (tmp_path / ".whl").mkdir()
    with zipfile.ZipFile(tmp_path / ".whl" / "fakeav-1.0-py3-none-any.whl", "w") as wheel:
        wheel.writestr("fakeav_gpu_suite/__init__.py", "VALUE = 7\n")
    monkeypatch.setattr(suite, "ROOT", tmp_path)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # "av is not installed"
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python-without-pip"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    env: dict[str, str] = {}
    assert suite.prepare_wheels(env) == ["fakeav-1.0-py3-none-any.whl"]
    site = Path(env["PYTHONPATH"].split(os.pathsep)[0])
    assert (site / "fakeav_gpu_suite" / "__init__.py").read_text() == "VALUE = 7\n" and str(site) == sys.path[0]


def test_a_wheel_for_another_interpreter_is_left_out(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    suite = _suite_module()
    here = f"cp{sys.version_info.major}{sys.version_info.minor}"
    other = "cp39" if here != "cp39" else "cp310"
    assert suite.wheel_fits("fakeav-1.0-py3-none-any.whl")
    assert suite.wheel_fits("av-19.0.2-cp312-abi3-manylinux_2_28_x86_64.whl", {"cp312-abi3-manylinux_2_28_x86_64"})
    assert not suite.wheel_fits("av-19.0.2-cp312-abi3-manylinux_2_28_x86_64.whl", {"cp311-abi3-manylinux_2_28_x86_64"})
    assert not suite.wheel_fits("av-19.0.2-cp312-abi3-macosx_11_0_arm64.whl", {"cp312-abi3-manylinux_2_28_x86_64"})
    assert not suite.wheel_fits("not-a-wheel.whl")
    (tmp_path / ".whl").mkdir()
    (tmp_path / ".whl" / f"av-19.0.2-{other}-{other}-manylinux_2_28_x86_64.whl").write_bytes(b"")
    monkeypatch.setattr(suite, "ROOT", tmp_path)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # "av is not installed"
    env: dict[str, str] = {}
    assert suite.prepare_wheels(env) == [] and "PYTHONPATH" not in env  # nothing installed, nothing on the path
