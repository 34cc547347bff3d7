"""Build hook: an installed wheel carries the models the product needs at run time.

The MediaPipe detectors and the demo swap model live in the checkout's ``trained_models/`` (each folder with
its README and licence notice). A wheel build copies their ``*.onnx`` and ``*.md`` files into
``realtime_swap/trained_models/``, where ``realtime_swap.model_files`` looks for them; an editable install
reads the checkout's folder instead. Everything else is declared in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED_MODELS = Path("trained_models")
SHIPPED_PATTERNS = ("mediapipe/*.onnx", "mediapipe/*.md", "demo_swap/*.onnx", "demo_swap/*.md")
PACKAGE_MODELS = Path("realtime_swap") / "trained_models"


class BuildPyWithModels(build_py):
    """build_py, plus the shipped models copied into the package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        files = sorted(f for pattern in SHIPPED_PATTERNS for f in SHIPPED_MODELS.glob(pattern))
        if not any(f.suffix == ".onnx" for f in files):
            raise SystemExit(f"setup.py: no shipped models under {SHIPPED_MODELS.resolve()}")
        for source in files:
            target = Path(self.build_lib) / PACKAGE_MODELS / source.relative_to(SHIPPED_MODELS)
            self.mkpath(str(target.parent))
            self.copy_file(str(source), str(target))


setup(cmdclass={"build_py": BuildPyWithModels})
