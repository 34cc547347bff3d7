"""Where the models the product ships are found at run time (the MediaPipe detectors, the demo swap model).

A models folder has the layout of the checkout's ``trained_models/``: ``mediapipe/*.onnx`` and
``demo_swap/demo_swap.onnx``. A file is taken from the first of these folders that holds it:

1. ``--models-dir DIR`` (the ``models_dir`` argument),
2. ``$REALTIME_SWAP_MODELS``,
3. the package's own data, ``realtime_swap/trained_models/`` (an installed wheel carries the shipped models
   there; ``setup.py`` copies them at build time),
4. the checkout's ``trained_models/`` (a source tree or an editable install).
"""

from __future__ import annotations

import os
from pathlib import Path

from realtime_swap.errors import ModelError

MODELS_ENV = "REALTIME_SWAP_MODELS"
PACKAGE_MODELS = Path(__file__).resolve().parent / "trained_models"
CHECKOUT_MODELS = Path(__file__).resolve().parents[1] / "trained_models"

MEDIAPIPE = "mediapipe"
DEMO_SWAP_MODEL = "demo_swap/demo_swap.onnx"


def search_path(models_dir: Path | None = None) -> list[Path]:
    """The models folders in lookup order (see the module docstring); ones not given are left out."""
    folders: list[Path] = []
    if models_dir is not None:
        folders.append(Path(models_dir).expanduser())
    if os.environ.get(MODELS_ENV):
        folders.append(Path(os.environ[MODELS_ENV]).expanduser())
    folders.extend((PACKAGE_MODELS, CHECKOUT_MODELS))
    return folders


def find_model_file(relative: str, models_dir: Path | None = None) -> Path | None:
    """The first ``folder / relative`` of :func:`search_path` that exists (a file or a folder), else None."""
    for folder in search_path(models_dir):
        candidate = folder / relative
        if candidate.exists():
            return candidate
    return None


def require_model_file(relative: str, models_dir: Path | None = None) -> Path:
    """:func:`find_model_file`, or ModelError naming the file and every folder looked in."""
    found = find_model_file(relative, models_dir)
    if found is None:
        looked = ", ".join(str(folder) for folder in search_path(models_dir))
        raise ModelError(
            f"model not found: {relative} (looked in {looked}; --models-dir or ${MODELS_ENV} names another folder)"
        )
    return found
