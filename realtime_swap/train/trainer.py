"""The training loop of the swap autoencoders.

``Trainer`` owns a model, its optimiser(s) and an output folder that holds the checkpoint
(``realtime_swap.train.checkpoint``), ``loss.csv``, ``loss.png`` and ``previews/preview_<iteration>.png``.
It trains until the iteration counter reaches ``TrainConfig.iterations``; resuming continues the counter, the
optimiser moments and the batch sequence exactly. The first Ctrl-C (SIGINT, main thread) stops after the current
iteration; a KeyboardInterrupt raised anywhere in the loop also ends it; both save a checkpoint and return a
result marked ``interrupted``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from realtime_swap.errors import ConfigError
from realtime_swap.train.archs import SwapAutoencoder, build_model
from realtime_swap.train.augment_torch import DeviceAugmenter, DeviceBatch, device_set_bytes
from realtime_swap.train.checkpoint import has_checkpoint, init_weights, restore_training, save_checkpoint
from realtime_swap.train.config import AugmentOn, ModelConfig, OptimizerKind, TrainConfig
from realtime_swap.train.data import AugmentSettings, Batch, BatchPrefetcher, TrainingSet, fixed_batch
from realtime_swap.train.faceset import Faceset
from realtime_swap.train.losses import (
    LossWeights,
    PatchDiscriminator,
    blur_mask,
    gan_discriminator_loss,
    gan_generator_loss,
    reconstruction_loss,
)
from realtime_swap.train.preview import LossLog, plot_losses, preview_grid

log = logging.getLogger(__name__)

PREVIEW_SAMPLES = 4
DEVICE_SET_SHARE = 0.25
"""Device augmentation uploads the facesets only when they take at most this share of the free GPU memory."""


def amp_dtype_for(capability: tuple[int, int] | None) -> torch.dtype:
    """The autocast dtype on a CUDA GPU of compute ``capability`` (major, minor): bf16 from Ampere (8.x) on, whose
    range needs no loss scaling; fp16 (with a GradScaler) before. None (no GPU): fp16, unused."""
    return torch.bfloat16 if capability is not None and capability[0] >= 8 else torch.float16


def resolve_device(spec: str) -> torch.device:
    """The torch device for "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N". Raises ConfigError."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device '{spec}' (use auto, cpu, cuda or cuda:N)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{spec}' requested but this torch build sees no CUDA GPU")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device '{spec}': only {torch.cuda.device_count()} CUDA GPU(s) present")
    elif device.type != "cpu":
        raise ConfigError(f"unsupported device '{spec}' (use auto, cpu, cuda or cuda:N)")
    return device


def free_device_memory(device: torch.device) -> int | None:
    """Free bytes on a CUDA ``device`` (``torch.cuda.mem_get_info``); None elsewhere (no budget to keep)."""
    if device.type != "cuda":
        return None
    return int(torch.cuda.mem_get_info(device)[0])


def choose_augment_on(
    requested: AugmentOn, device: torch.device, workers: int, needed_bytes: int
) -> tuple[AugmentOn, str]:
    """Where to augment (CPU or DEVICE) and why, for ``requested`` on ``device``: AUTO picks the device on CUDA
    with ``workers`` 0; the device is refused when the facesets (``needed_bytes``) would take more than
    ``DEVICE_SET_SHARE`` of its free memory."""
    if requested is AugmentOn.CPU:
        return AugmentOn.CPU, "asked for (--augment-on cpu)"
    if requested is AugmentOn.AUTO and device.type != "cuda":
        return AugmentOn.CPU, f"auto: training on {device.type}"
    if requested is AugmentOn.AUTO and workers:
        return AugmentOn.CPU, f"auto: {workers} worker process(es) augment on the CPU"
    free = free_device_memory(device)
    mib = 2**20
    if free is not None and needed_bytes > DEVICE_SET_SHARE * free:
        return AugmentOn.CPU, (
            f"the facesets would take {needed_bytes / mib:.0f} MiB on {device}, more than "
            f"{DEVICE_SET_SHARE:.0%} of its {free / mib:.0f} MiB free"
        )
    why = "asked for (--augment-on device)" if requested is AugmentOn.DEVICE else "auto: CUDA with --workers 0"
    return AugmentOn.DEVICE, f"{why}; facesets uploaded once ({needed_bytes / mib:.1f} MiB)"


@dataclass(frozen=True, slots=True)
class StepLosses:
    src: float
    dst: float
    gan_g: float = float("nan")
    gan_d: float = float("nan")


@dataclass(frozen=True, slots=True)
class TrainResult:
    """start_iteration -> iteration: the counter before and after this run. losses: (iteration, src, dst) per
    step of this run. its_per_s: training steps per second of wall time (batch preparation included)."""

    start_iteration: int
    iteration: int
    interrupted: bool
    checkpoint: Path
    preview: Path | None
    losses: list[tuple[int, float, float]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def its_per_s(self) -> float:
        steps = self.iteration - self.start_iteration
        return steps / self.seconds if self.seconds > 0 else 0.0


class Trainer:
    """Trains a swap model of ``model_config`` on src (the identity to produce) and dst facesets.

    out_dir: checkpoint + logs folder. resume: continue the checkpoint in out_dir (ConfigError when there is
    none); without it, an out_dir that already holds a checkpoint is refused. progress: show a tqdm bar (its
    rate is it/s). init_from: a checkpoint folder of the same architecture (a model pretrained on other faces,
    as DeepFaceLab's pretraining gives) whose weights the new model starts from; the optimiser and the
    iteration counter start afresh. Not with resume.
    """

    def __init__(
        self,
        src: Faceset,
        dst: Faceset,
        out_dir: str | Path,
        model_config: ModelConfig,
        train_config: TrainConfig,
        resume: bool = False,
        progress: bool = True,
        init_from: str | Path | None = None,
    ) -> None:
        if src.face_type != dst.face_type:
            raise ConfigError(
                f"src faceset {src.path} is {src.face_type.value} but dst faceset {dst.path} is "
                f"{dst.face_type.value}; both must use one face type"
            )
        if model_config.face_type != src.face_type:
            raise ConfigError(
                f"model face_type {model_config.face_type.value} differs from the facesets' {src.face_type.value}"
            )
        self.out_dir = Path(out_dir)
        self.model_config = model_config
        self.config = train_config
        self.progress = progress
        self.device = resolve_device(train_config.device)
        self.amp = train_config.amp and self.device.type == "cuda"
        capability = torch.cuda.get_device_capability(self.device) if self.device.type == "cuda" else None
        self.amp_dtype = amp_dtype_for(capability)
        cl = train_config.channels_last
        self.channels_last = self.device.type == "cuda" if cl is None else cl
        if resume and init_from is not None:
            raise ConfigError("--init-from starts a new training; it cannot be combined with --resume")
        self.src_faceset, self.dst_faceset = src, dst

        if resume and not has_checkpoint(self.out_dir):
            raise ConfigError(f"cannot resume: no checkpoint in {self.out_dir}")
        if not resume and has_checkpoint(self.out_dir):
            raise ConfigError(f"{self.out_dir} already holds a checkpoint; resume it or choose another folder")

        torch.manual_seed(train_config.seed)
        self.model: SwapAutoencoder = build_model(model_config)
        if init_from is not None:
            init_weights(self.model, init_from)
        self.model = self.model.to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.optimizer = self._make_optimizer(self.model.parameters())
        self.discriminator: nn.Module | None = None
        self.disc_optimizer: torch.optim.Optimizer | None = None
        if train_config.gan_power > 0:
            self.discriminator = PatchDiscriminator(max(16, model_config.d_dims)).to(self.device)
            self.disc_optimizer = self._make_optimizer(self.discriminator.parameters())
        # bf16 has fp32's range: no loss scaling; a checkpoint's scaler state is kept for an fp16 GPU
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        self.iteration = 0
        if resume:
            state = restore_training(self.out_dir, self.model, self._optimizers(), self.discriminator)
            self.iteration = state.iteration
            if state.grad_scaler and self.scaler.is_enabled():
                self.scaler.load_state_dict(state.grad_scaler)
            for opt in self._optimizers().values():
                for group in opt.param_groups:
                    group["lr"] = train_config.lr
                    group["weight_decay"] = train_config.weight_decay
            log.info("resumed %s at iteration %d", self.out_dir, self.iteration)

        s = model_config.resolution
        self.src_data = TrainingSet.from_faceset(src, s)
        self.dst_data = TrainingSet.from_faceset(dst, s)
        self.augment = AugmentSettings(train_config.random_warp, train_config.flip, train_config.color_transfer)
        needed = device_set_bytes(self.src_data, self.dst_data)
        self.augment_on, self.augment_reason = choose_augment_on(
            train_config.augment_on, self.device, train_config.workers, needed
        )
        where = f"the device ({self.device})" if self.augment_on is AugmentOn.DEVICE else "cpu"
        log.info("augmenting batches on %s: %s", where, self.augment_reason)
        self.device_augmenter: DeviceAugmenter | None = None
        if self.augment_on is AugmentOn.DEVICE:
            self.device_augmenter = DeviceAugmenter(
                self.src_data, self.dst_data, train_config.batch_size, self.augment, train_config.seed, self.device
            )
        self.weights = LossWeights(
            train_config.dssim_weight, train_config.mse_weight, train_config.eyes_mouth_weight, train_config.mask_weight
        )
        self.src_fixed = fixed_batch(self.src_data, PREVIEW_SAMPLES)
        self.dst_fixed = fixed_batch(self.dst_data, PREVIEW_SAMPLES)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.loss_log = LossLog(self.out_dir / "loss.csv")
        if resume:
            self.loss_log.truncate_after(self.iteration)
        self._stop_requested = False

    def _make_optimizer(self, params: Any) -> torch.optim.Optimizer:
        cfg = self.config
        if cfg.optimizer is OptimizerKind.ADAMW:
            return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts = {"gen": self.optimizer}
        if self.disc_optimizer is not None:
            opts["disc"] = self.disc_optimizer
        return opts

    def _tensors(self, batch: Batch | DeviceBatch) -> tuple[torch.Tensor, ...]:
        cuda = self.device.type == "cuda"
        layout = torch.channels_last if self.channels_last else torch.contiguous_format
        if isinstance(batch, DeviceBatch):  # built on self.device by the device augmenter
            return tuple(
                t.contiguous(memory_format=layout) for t in (batch.warped, batch.target, batch.mask, batch.eyes_mouth)
            )
        out = []
        for a in (batch.warped, batch.target, batch.mask, batch.eyes_mouth):
            host = torch.from_numpy(a)
            if cuda:  # page-locked: the copy runs asynchronously, overlapping the previous step's kernels
                host = host.pin_memory()
            out.append(host.to(self.device, non_blocking=cuda).contiguous(memory_format=layout))
        return tuple(out)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp)

    def step(self, iteration: int, src: Batch | DeviceBatch, dst: Batch | DeviceBatch) -> StepLosses:
        """One optimisation step on a (src, dst) batch pair; returns the mean losses."""
        cfg = self.config
        self.model.train()
        src_w, src_t, src_m, src_em = self._tensors(src)
        dst_w, dst_t, dst_m, dst_em = self._tensors(dst)
        with self._autocast():
            rec = self.model.reconstruct(src_w, dst_w)
        masked = cfg.masked_training
        src_parts = reconstruction_loss(rec.src_face, rec.src_mask, src_t, src_m, src_em, self.weights, masked)
        dst_parts = reconstruction_loss(rec.dst_face, rec.dst_mask, dst_t, dst_m, dst_em, self.weights, masked)
        loss = src_parts.total.mean() + dst_parts.total.mean()
        gan_on = self.discriminator is not None and iteration >= cfg.gan_start
        gan_g = gan_d = float("nan")
        if gan_on:
            assert self.discriminator is not None
            m = blur_mask(src_m) if masked else torch.ones_like(src_m)
            with self._autocast():
                g_loss = gan_generator_loss(self.discriminator(rec.src_face * m))
            loss = loss + cfg.gan_power * g_loss
            gan_g = float(g_loss.detach())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        if gan_on:
            assert self.discriminator is not None and self.disc_optimizer is not None
            self.disc_optimizer.zero_grad(set_to_none=True)
            with self._autocast():
                d_loss = gan_discriminator_loss(
                    self.discriminator(src_t * m), self.discriminator(rec.src_face.detach() * m)
                )
            self.scaler.scale(d_loss).backward()
            self.scaler.step(self.disc_optimizer)
            gan_d = float(d_loss.detach())
        self.scaler.update()
        return StepLosses(float(src_parts.total.detach().mean()), float(dst_parts.total.detach().mean()), gan_g, gan_d)

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """(src, dst) mean loss on the fixed, un-augmented preview faces, in eval mode."""
        self.model.eval()
        src_w, src_t, src_m, src_em = self._tensors(self.src_fixed)
        dst_w, dst_t, dst_m, dst_em = self._tensors(self.dst_fixed)
        rec = self.model.reconstruct(src_w, dst_w)
        masked = self.config.masked_training
        src = reconstruction_loss(rec.src_face, rec.src_mask, src_t, src_m, src_em, self.weights, masked)
        dst = reconstruction_loss(rec.dst_face, rec.dst_mask, dst_t, dst_m, dst_em, self.weights, masked)
        return float(src.total.mean()), float(dst.total.mean())

    @torch.no_grad()
    def write_preview(self) -> Path:
        """Write previews/preview_<iteration>.png (columns: preview.PREVIEW_COLUMNS); returns its path."""
        self.model.eval()
        n = min(len(self.src_fixed.target), len(self.dst_fixed.target))
        src = torch.from_numpy(self.src_fixed.target[:n]).to(self.device)
        dst = torch.from_numpy(self.dst_fixed.target[:n]).to(self.device)
        rec = self.model.reconstruct(src, dst)
        swap = self.model.swap(dst)
        columns = [src, rec.src_face, dst, rec.dst_face, swap.celeb_face, swap.celeb_mask]
        grid = preview_grid([c.float().cpu().numpy() for c in columns])
        folder = self.out_dir / "previews"
        folder.mkdir(exist_ok=True)
        path = folder / f"preview_{self.iteration:07d}.png"
        cv2.imwrite(str(path), grid)
        return path

    def save(self) -> Path:
        """Write the checkpoint of the current iteration into out_dir."""
        extra = {
            "src_faceset": str(self.src_faceset.path),
            "dst_faceset": str(self.dst_faceset.path),
            "src_faces": len(self.src_faceset),
            "dst_faces": len(self.dst_faceset),
        }
        return save_checkpoint(
            self.out_dir,
            self.model,
            self._optimizers(),
            self.iteration,
            self.config,
            discriminator=self.discriminator,
            grad_scaler=self.scaler.state_dict() if self.scaler.is_enabled() else None,
            extra=extra,
        )

    def request_stop(self) -> None:
        """Ask the loop to stop after the current iteration (thread-safe; what the first Ctrl-C does)."""
        self._stop_requested = True

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        self.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        log.warning("Ctrl-C: stopping after this iteration and saving (press again to abort at once)")

    def run(self) -> TrainResult:
        """Train until ``iterations``; returns what happened. The checkpoint is saved at the end in any case."""
        from realtime_swap.progress import progress_bar

        cfg = self.config
        start = self.iteration
        self._stop_requested = False
        in_main = threading.current_thread() is threading.main_thread()
        previous_handler = signal.signal(signal.SIGINT, self._on_sigint) if in_main else None
        prefetch: BatchPrefetcher | DeviceAugmenter = self.device_augmenter or BatchPrefetcher(
            self.src_data, self.dst_data, cfg.batch_size, self.augment, cfg.seed, start, max(start, cfg.iterations),
            workers=cfg.workers,
        )  # fmt: skip
        bar = progress_bar(total=cfg.iterations, initial=start, unit="it", disable=not self.progress, desc="train")
        history: list[tuple[int, float, float]] = []
        pending: list[StepLosses] = []
        interrupted = False
        preview: Path | None = None
        t0 = time.perf_counter()
        try:
            while self.iteration < cfg.iterations:
                src_batch, dst_batch = prefetch.get(self.iteration)
                losses = self.step(self.iteration, src_batch, dst_batch)
                self.iteration += 1
                history.append((self.iteration, losses.src, losses.dst))
                pending.append(losses)
                if self.iteration % cfg.log_every == 0:
                    self._log_row(pending, time.perf_counter() - t0)
                    pending = []
                if self.iteration % cfg.preview_every == 0:
                    preview = self.write_preview()
                    plot_losses(self.loss_log.read(), self.out_dir / "loss.png")
                if self.iteration % cfg.save_every == 0:
                    self.save()
                bar.update(1)
                rate = (self.iteration - start) / max(time.perf_counter() - t0, 1e-9)  # tqdm flips to s/it below 1
                bar.set_postfix({"src": f"{losses.src:.4f}", "dst": f"{losses.dst:.4f}", "it/s": f"{rate:.2f}"},
                                refresh=False)  # fmt: skip
                if self._stop_requested:
                    interrupted = True
                    break
        except KeyboardInterrupt:
            interrupted = True
        finally:
            prefetch.close()
            bar.close()
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
        seconds = time.perf_counter() - t0
        if pending:
            self._log_row(pending, seconds)
        self.save()
        if preview is None or not preview.name.endswith(f"{self.iteration:07d}.png"):
            preview = self.write_preview()
        rows = self.loss_log.read()
        if rows:
            plot_losses(rows, self.out_dir / "loss.png")
        return TrainResult(start, self.iteration, interrupted, self.out_dir, preview, history, seconds)

    def _log_row(self, pending: list[StepLosses], elapsed: float) -> None:
        self.loss_log.append(
            {
                "iteration": self.iteration,
                "src_loss": float(np.mean([p.src for p in pending])),
                "dst_loss": float(np.mean([p.dst for p in pending])),
                "gan_g": _mean_of_finite([p.gan_g for p in pending]),
                "gan_d": _mean_of_finite([p.gan_d for p in pending]),
                "elapsed_s": round(elapsed, 3),
            }
        )


def _mean_of_finite(values: list[float]) -> float:
    """Mean over the iterations where a term was computed (the GAN terms are NaN before gan_start)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")
