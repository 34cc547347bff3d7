"""Training checkpoints: safetensors for tensors, JSON for everything else (never pickle).

A checkpoint is a folder::

    model.safetensors      the autoencoder's weights (state_dict keys)
    optimizer.safetensors  optimiser moments ("gen.<param>.<name>"), and with the GAN on, the discriminator
                           ("disc_model.<key>") and its optimiser ("disc.<param>.<name>")
    state.json             format/version, model config, train config, iteration, optimiser hyper-parameters
                           and scalar state, grad-scaler state, sha256 of both tensor files

Files are replaced atomically, ``state.json`` last, so a crash mid-save leaves either the old checkpoint or
one whose checksums disagree (reported as corrupt). Loading checks the architecture against the one asked for
and every tensor name and shape, raising ModelError that names the file and the mismatch.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from realtime_swap.errors import ConfigError, ModelError
from realtime_swap.train.archs import SwapAutoencoder, build_model
from realtime_swap.train.config import ModelConfig, TrainConfig

CHECKPOINT_FORMAT = "realtime_swap.checkpoint"
CHECKPOINT_VERSION = 1
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"


@dataclass(frozen=True, slots=True)
class CheckpointState:
    """What ``state.json`` holds, validated. extra: free-form JSON (faceset provenance, timings)."""

    model_config: ModelConfig
    train_config: TrainConfig
    iteration: int
    optimizers: dict[str, Any] = field(default_factory=dict)
    grad_scaler: dict[str, Any] | None = None
    checksums: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def has_checkpoint(folder: str | Path) -> bool:
    return (Path(folder) / STATE_FILE).is_file()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _optimizer_to_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, entries in sd["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{prefix}.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _optimizer_from_tensors(
    opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict, prefix: str, file: Path
) -> None:
    state: dict[int, dict[str, Any]] = {}
    try:
        for key, value in tensors.items():
            head, pid, name = key.split(".", 2)
            if head == prefix:
                state.setdefault(int(pid), {})[name] = value
        for key, value in meta["scalars"].items():
            pid, name = key.split(".", 1)
            state.setdefault(int(pid), {})[name] = value
        groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise ModelError(f"optimizer state in {file} does not fit this model ({prefix}): {exc}") from exc


def save_checkpoint(
    folder: str | Path,
    model: SwapAutoencoder,
    optimizers: dict[str, torch.optim.Optimizer],
    iteration: int,
    train_config: TrainConfig,
    discriminator: nn.Module | None = None,
    grad_scaler: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write (or replace) the checkpoint in ``folder``; returns the folder. optimizers: name -> optimiser
    ("gen" for the autoencoder, "disc" for the discriminator)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model_tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_tensors: dict[str, torch.Tensor] = {}
    opt_meta: dict[str, Any] = {}
    for name, opt in optimizers.items():
        tensors, meta = _optimizer_to_tensors(opt, name)
        opt_tensors.update(tensors)
        opt_meta[name] = meta
    if discriminator is not None:
        for k, v in discriminator.state_dict().items():
            opt_tensors[f"disc_model.{k}"] = v.detach().cpu().contiguous()
    files = {MODEL_FILE: model_tensors, OPTIMIZER_FILE: opt_tensors}
    checksums = {}
    for file_name, tensors in files.items():
        tmp = folder / (file_name + ".tmp")
        save_file(tensors, str(tmp), metadata={"format": CHECKPOINT_FORMAT})
        checksums[file_name] = _sha256(tmp)
        os.replace(tmp, folder / file_name)
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "iteration": int(iteration),
        "model": model.config.to_dict(),
        "train": train_config.to_dict(),
        "optimizers": opt_meta,
        "grad_scaler": grad_scaler,
        "checksums": checksums,
        "extra": extra or {},
    }
    tmp = folder / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
    os.replace(tmp, folder / STATE_FILE)
    return folder


def read_state(folder: str | Path) -> CheckpointState:
    """Read and validate ``state.json``; checks that both tensor files exist and match their checksums.

    Raises ModelError naming the file for a missing, corrupt or foreign checkpoint.
    """
    folder = Path(folder)
    state_file = folder / STATE_FILE
    if not folder.is_dir():
        raise ModelError(f"checkpoint not found: {folder} is not a folder")
    if not state_file.is_file():
        raise ModelError(f"checkpoint not found: {state_file} is missing")
    try:
        raw = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"corrupt checkpoint: {state_file} is not valid JSON ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{state_file} is not a realtime_swap checkpoint (format != '{CHECKPOINT_FORMAT}')")
    if raw.get("version") != CHECKPOINT_VERSION:
        raise ModelError(f"{state_file}: checkpoint version {raw.get('version')!r} is not supported")
    try:
        model_config = ModelConfig.from_dict(raw["model"])
        train_config = TrainConfig.from_dict(raw["train"])
        iteration = int(raw["iteration"])
        checksums = dict(raw["checksums"])
        optimizers = dict(raw.get("optimizers") or {})
    except (KeyError, TypeError, ValueError, ConfigError) as exc:
        raise ModelError(f"corrupt checkpoint: {state_file} is malformed ({exc})") from exc
    for file_name in (MODEL_FILE, OPTIMIZER_FILE):
        path = folder / file_name
        if not path.is_file():
            raise ModelError(f"corrupt checkpoint: {path} is missing")
        if checksums.get(file_name) != _sha256(path):
            raise ModelError(f"corrupt checkpoint: {path} does not match its checksum in {state_file}")
    return CheckpointState(
        model_config=model_config,
        train_config=train_config,
        iteration=iteration,
        optimizers=optimizers,
        grad_scaler=raw.get("grad_scaler"),
        checksums=checksums,
        extra=dict(raw.get("extra") or {}),
    )


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"corrupt checkpoint: cannot read {path} ({exc})") from exc


def _load_module(module: nn.Module, tensors: dict[str, torch.Tensor], file: Path) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise ModelError(f"{file} does not fit the {type(module).__name__} architecture: {detail}")
    for key, value in expected.items():
        if tuple(tensors[key].shape) != tuple(value.shape):
            raise ModelError(
                f"{file}: tensor '{key}' is {tuple(tensors[key].shape)}, the model expects {tuple(value.shape)}"
            )
    module.load_state_dict(tensors)


def check_compatible(state: CheckpointState, expected: ModelConfig, folder: str | Path) -> None:
    """Raise ModelError when the checkpoint's architecture differs from ``expected`` (naming each field)."""
    diffs = expected.differences(state.model_config)
    if diffs:
        raise ModelError(
            f"checkpoint {Path(folder) / STATE_FILE} is of another architecture: "
            f"{'; '.join(diffs)} (checkpoint != requested)"
        )


def init_weights(model: SwapAutoencoder, folder: str | Path) -> CheckpointState:
    """Load a checkpoint's model weights into ``model`` (a fresh one of the same architecture: pretraining on
    other faces, then training on a user's pair). Raises ModelError for a missing, corrupt or other-architecture
    checkpoint, naming each field that differs."""
    folder = Path(folder)
    state = read_state(folder)
    check_compatible(state, model.config, folder)
    _load_module(model, _load_tensors(folder / MODEL_FILE), folder / MODEL_FILE)
    return state


def load_model(folder: str | Path, device: str | torch.device = "cpu") -> tuple[SwapAutoencoder, CheckpointState]:
    """Rebuild a checkpoint's model with its weights (eval mode) for inference or export."""
    folder = Path(folder)
    state = read_state(folder)
    model = build_model(state.model_config)
    _load_module(model, _load_tensors(folder / MODEL_FILE), folder / MODEL_FILE)
    return model.to(device).eval(), state


def restore_training(
    folder: str | Path,
    model: SwapAutoencoder,
    optimizers: dict[str, torch.optim.Optimizer],
    discriminator: nn.Module | None = None,
) -> CheckpointState:
    """Load weights and optimiser state into freshly built objects of the same architecture.

    The model must already be on its training device (optimiser moments follow the parameters).
    """
    folder = Path(folder)
    state = read_state(folder)
    check_compatible(state, model.config, folder)
    device = next(model.parameters()).device
    model_tensors = _load_tensors(folder / MODEL_FILE)
    _load_module(model, {k: v.to(device) for k, v in model_tensors.items()}, folder / MODEL_FILE)
    opt_tensors = _load_tensors(folder / OPTIMIZER_FILE)
    if discriminator is not None:
        disc = {k.split(".", 1)[1]: v for k, v in opt_tensors.items() if k.startswith("disc_model.")}
        if disc:
            _load_module(discriminator, {k: v.to(device) for k, v in disc.items()}, folder / OPTIMIZER_FILE)
    for name, opt in optimizers.items():
        if name not in state.optimizers:
            if name == "gen":
                raise ModelError(f"{folder / STATE_FILE} has no optimizer state for '{name}'")
            continue
        _optimizer_from_tensors(opt, opt_tensors, state.optimizers[name], name, folder / OPTIMIZER_FILE)
    return state
