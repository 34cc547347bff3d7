"""Where shipped models are found: --models-dir, then $REALTIME_SWAP_MODELS, then the package, then the checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from realtime_swap.errors import ModelError
from realtime_swap.model_files import (
    CHECKOUT_MODELS,
    DEMO_SWAP_MODEL,
    MODELS_ENV,
    PACKAGE_MODELS,
    find_model_file,
    require_model_file,
    search_path,
)


def _models_folder(root: Path) -> Path:
    (root / "demo_swap").mkdir(parents=True)
    (root / DEMO_SWAP_MODEL).write_bytes(b"onnx")
    return root


def test_lookup_order_is_option_then_environment_then_package_then_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    option, env = _models_folder(tmp_path / "option"), _models_folder(tmp_path / "env")
    monkeypatch.setenv(MODELS_ENV, str(env))
    assert search_path(option) == [option, env, PACKAGE_MODELS, CHECKOUT_MODELS]
    assert find_model_file(DEMO_SWAP_MODEL, option) == option / DEMO_SWAP_MODEL
    assert find_model_file(DEMO_SWAP_MODEL) == env / DEMO_SWAP_MODEL
    monkeypatch.delenv(MODELS_ENV)
    assert search_path() == [PACKAGE_MODELS, CHECKOUT_MODELS]
    assert find_model_file(DEMO_SWAP_MODEL, tmp_path / "empty") == CHECKOUT_MODELS / DEMO_SWAP_MODEL


def test_a_missing_model_names_every_folder_looked_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODELS_ENV, raising=False)
    with pytest.raises(ModelError, match=r"model not found: mediapipe/nope\.onnx") as info:
        require_model_file("mediapipe/nope.onnx", tmp_path)
    for folder in (tmp_path, PACKAGE_MODELS, CHECKOUT_MODELS):
        assert str(folder) in str(info.value)
