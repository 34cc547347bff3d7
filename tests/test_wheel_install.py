"""The package as a new user installs it: a wheel (not editable) in a fresh venv, run from another folder.

The wheel is built offline from a copy of the source tree (``pip wheel --no-build-isolation``); the venv sees
the test environment's packages (``--system-site-packages``) for the dependencies, so nothing is downloaded,
but ``realtime_swap`` itself, its console script and the models it finds are the wheel's.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import ROOT

from realtime_swap.model_files import MODELS_ENV
from realtime_swap.sources.demo import DemoSource

pytestmark = pytest.mark.slow

SOURCE_TREE = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "realtime_swap", "export", "trained_models")
# A swapped face changes thousands of px by more than this (measured ~5,000 at 640x480); H.264 at the default
# quality changes a few dozen.
CHANGED_LEVEL = 40
MIN_CHANGED_PX = 1500


def _can_build_offline() -> bool:
    """Whether this environment's setuptools can build the wheel itself (bdist_wheel is built in from 70.1)."""
    try:
        version = tuple(int(p) for p in metadata.version("setuptools").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return False
    return version >= (70, 1) or importlib.util.find_spec("wheel") is not None


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCE_TREE:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    dist = tmp / "dist"
    isolation = ["--no-build-isolation"] if _can_build_offline() else []  # else pip fetches setuptools itself
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", str(dist), str(src)],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = dist.glob("realtime_swap-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        text=True,
    )
    return venv


def _best_match(image: np.ndarray, renders: list[np.ndarray]) -> np.ndarray:
    """The demo picture ``image`` was made from (median difference: robust to the swapped face's px)."""
    return min(renders, key=lambda r: float(np.median(np.abs(image.astype(np.int16) - r.astype(np.int16)))))


def test_installed_wheel_swaps_the_demo_face_from_another_folder(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    venv = _fresh_venv(tmp_path, wheel)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", MODELS_ENV)}

    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import realtime_swap; print(realtime_swap.__file__)"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout

    command = ["live", "--frames", "5", "--null", "--quiet", "--record", "swapped.mp4", "--metrics-json", "m.json"]
    result = subprocess.run(
        [str(venv / "bin" / "realtime-swap"), *command],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "no swap model" not in result.stderr
    assert "detect → swap → blend" in result.stderr
    metrics = json.loads((workdir / "m.json").read_text())
    assert metrics["frames_processed"] >= 1
    assert metrics["stages"]["swap"]["count"] == metrics["frames_processed"]

    demo = DemoSource(640, 480, realtime=False)
    renders = [demo.render(i) for i in range(10)]
    with av.open(str(workdir / "swapped.mp4")) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(frames) == metrics["frames_processed"]
    for image in frames:
        changed = np.abs(image.astype(np.int16) - _best_match(image, renders).astype(np.int16)).max(axis=2)
        assert int((changed > CHANGED_LEVEL).sum()) >= MIN_CHANGED_PX
