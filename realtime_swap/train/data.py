"""Training samples: facesets resized to the model, augmented batches, and a background batch prefetcher.

Each batch depends only on (seed, iteration, identity), so a resumed run sees exactly the batches an
uninterrupted run would have seen.
"""

from __future__ import annotations

import collections
import multiprocessing
import queue
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from realtime_swap.errors import ConfigError
from realtime_swap.train.augment import apply_warp, reinhard_transfer, sample_warp_params
from realtime_swap.train.faceset import Faceset
from realtime_swap.train.masks import eyes_mouth_mask, face_hull_mask

SRC_STREAM = 0
DST_STREAM = 1


@dataclass(frozen=True, slots=True)
class TrainingSet:
    """One identity's faces at the model resolution S.

    images: (N, S, S, 3) uint8 BGR. masks: (N, S, S) uint8 (255 = face): the faceset's mask, else the
    landmark hull, else all 255. eyes_mouth: (N, S, S) uint8, zeros where landmarks are unknown.
    """

    images: np.ndarray
    masks: np.ndarray
    eyes_mouth: np.ndarray

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @classmethod
    def from_faceset(cls, faceset: Faceset, resolution: int) -> TrainingSet:
        n, s = len(faceset), resolution
        factor = s / faceset.resolution
        interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC
        images = np.empty((n, s, s, 3), np.uint8)
        masks = np.full((n, s, s), 255, np.uint8)
        eyes_mouth = np.zeros((n, s, s), np.uint8)
        for i, item in enumerate(faceset.items):
            image = faceset.images[i]
            images[i] = image if factor == 1 else cv2.resize(image, (s, s), interpolation=interp)
            landmarks = None if item.landmarks is None else item.landmarks * factor
            mask = faceset.masks[i]
            if mask is not None:
                masks[i] = mask if factor == 1 else cv2.resize(mask, (s, s), interpolation=cv2.INTER_LINEAR)
            elif landmarks is not None:
                masks[i] = (face_hull_mask(landmarks, s) * 255).astype(np.uint8)
            if landmarks is not None:
                eyes_mouth[i] = (eyes_mouth_mask(landmarks, s) * 255).astype(np.uint8)
        return cls(images, masks, eyes_mouth)


@dataclass(frozen=True, slots=True)
class AugmentSettings:
    """random_warp: local warp on the network input. flip: left-right flip probability 0.5 when True.
    color_transfer: probability of recolouring a sample towards a random reference face (Reinhard LAB)."""

    random_warp: bool = True
    flip: bool = False
    color_transfer: float = 0.0


@dataclass(frozen=True, slots=True)
class Batch:
    """NCHW float32: warped (network input) and target (B, 3, S, S) BGR [0, 1]; mask, eyes_mouth (B, 1, S, S)."""

    warped: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    eyes_mouth: np.ndarray


def iteration_rng(seed: int, iteration: int, stream: int) -> np.random.Generator:
    """The generator for one identity's batch at one iteration (independent of every other draw)."""
    return np.random.default_rng([seed, iteration, stream])


def make_batch(
    rng: np.random.Generator,
    data: TrainingSet,
    batch_size: int,
    settings: AugmentSettings,
    color_refs: TrainingSet | None = None,
) -> Batch:
    """Draw ``batch_size`` faces (with replacement) and augment them; see ``Batch`` for shapes."""
    s = data.images.shape[1]
    warped = np.empty((batch_size, s, s, 3), np.float32)
    target = np.empty_like(warped)
    mask = np.empty((batch_size, s, s), np.float32)
    eyes_mouth = np.empty_like(mask)
    for b, i in enumerate(rng.integers(0, len(data), batch_size)):
        image = data.images[i].astype(np.float32) / 255.0
        if color_refs is not None and settings.color_transfer > 0 and rng.random() < settings.color_transfer:
            ref = color_refs.images[rng.integers(0, len(color_refs))].astype(np.float32) / 255.0
            image = reinhard_transfer(image, ref)
        params = sample_warp_params(rng, s, flip_prob=0.5 if settings.flip else 0.0)
        warped[b] = apply_warp(image, params, warp=settings.random_warp)
        target[b] = apply_warp(image, params, warp=False)
        mask[b] = apply_warp(data.masks[i].astype(np.float32) / 255.0, params, warp=False)
        eyes_mouth[b] = apply_warp(data.eyes_mouth[i].astype(np.float32) / 255.0, params, warp=False)
    return Batch(
        warped=np.ascontiguousarray(warped.transpose(0, 3, 1, 2)),
        target=np.ascontiguousarray(target.transpose(0, 3, 1, 2)),
        mask=mask[:, None],
        eyes_mouth=eyes_mouth[:, None],
    )


def fixed_batch(data: TrainingSet, count: int) -> Batch:
    """The first ``count`` faces un-augmented (warped == target): for previews and evaluation."""
    n = min(count, len(data))
    images = data.images[:n].astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    return Batch(
        warped=np.ascontiguousarray(images),
        target=np.ascontiguousarray(images),
        mask=data.masks[:n, None].astype(np.float32) / 255.0,
        eyes_mouth=data.eyes_mouth[:n, None].astype(np.float32) / 255.0,
    )


_WORKER_SETS: tuple[TrainingSet, TrainingSet] | None = None


def _init_worker(src: TrainingSet, dst: TrainingSet) -> None:
    global _WORKER_SETS
    _WORKER_SETS = (src, dst)


def _worker_pair(seed: int, it: int, batch_size: int, settings: AugmentSettings) -> tuple[int, Batch, Batch]:
    assert _WORKER_SETS is not None, "worker started without its training sets"
    src, dst = _WORKER_SETS
    return _pair(src, dst, seed, it, batch_size, settings)


def _pair(
    src: TrainingSet, dst: TrainingSet, seed: int, it: int, batch_size: int, settings: AugmentSettings
) -> tuple[int, Batch, Batch]:
    src_batch = make_batch(iteration_rng(seed, it, SRC_STREAM), src, batch_size, settings, dst)
    dst_batch = make_batch(iteration_rng(seed, it, DST_STREAM), dst, batch_size, settings, None)
    return it, src_batch, dst_batch


class BatchPrefetcher:
    """Builds the (src, dst) batches of iterations start..stop-1 in the background, in order.

    workers: 0 builds them on one background thread; N > 0 in N worker processes (each gets the training sets
    once), ``depth`` iterations in flight, for a GPU that trains faster than one core augments. Each iteration's
    batches come from its own random stream (``iteration_rng``), so the batches do not depend on ``workers``.
    ``get(iteration)`` returns that iteration's batches; an error in a worker is re-raised there.
    ``close()`` stops the workers. The queue holds at most ``depth`` iterations ahead.
    """

    def __init__(
        self,
        src: TrainingSet,
        dst: TrainingSet,
        batch_size: int,
        settings: AugmentSettings,
        seed: int,
        start: int,
        stop: int,
        depth: int = 3,
        workers: int = 0,
    ) -> None:
        if workers < 0:
            raise ConfigError(f"workers must be >= 0, got {workers}")
        self._queue: queue.Queue[tuple[int, Batch, Batch] | BaseException] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._args = (src, dst, batch_size, settings, seed, start, stop)
        self._pool: ProcessPoolExecutor | None = None
        if workers:
            # spawn, not fork: the trainer's process holds threads (and perhaps CUDA), which fork does not copy
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(workers, context, initializer=_init_worker, initargs=(src, dst))
        self._depth = max(depth, workers)
        self._thread = threading.Thread(target=self._run, name="batch-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        src, dst, batch_size, settings, seed, start, stop = self._args
        try:
            if self._pool is None:
                for it in range(start, stop):
                    if not self._put(_pair(src, dst, seed, it, batch_size, settings)):
                        return
                return
            pending: collections.deque[Future[tuple[int, Batch, Batch]]] = collections.deque()
            for it in range(start, stop):
                pending.append(self._pool.submit(_worker_pair, seed, it, batch_size, settings))
                if len(pending) >= self._depth and not self._put(pending.popleft().result()):
                    return
            while pending:
                if not self._put(pending.popleft().result()):
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)

    def _put(self, item: tuple[int, Batch, Batch] | BaseException) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self, iteration: int) -> tuple[Batch, Batch]:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise RuntimeError(f"batch preparation failed: {item}") from item
        it, src_batch, dst_batch = item
        if it != iteration:
            raise RuntimeError(f"batch prefetcher out of step: expected iteration {iteration}, got {it}")
        return src_batch, dst_batch

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
