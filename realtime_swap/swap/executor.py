"""One swap executor for many streams: the faces of several streams batched into one model call.

Each stream's swap stage keeps its own thread and calls ``SharedSwapModel.swap`` as it would call a
``SwapModel``; the call blocks until its faces are swapped. Behind it one worker thread collects the requests
that arrive within ``window_ms`` of the first one (or until ``max_batch`` faces are waiting, or every stream
that called in the last second is waiting), concatenates the crops of each (model, morph) group, runs the model
once per group and hands every caller its own rows back.

* order per stream: a stream's stage thread has at most one request in flight, so its frames leave in order;
* bounded latency: a request waits at most ``window_ms`` before its batch starts, never for a full batch, and
  not at all when no other stream is active;
* the same pixels as the per-stream call: rows are only concatenated and split (the model is batch-invariant).

``RaySwapExecutor`` (:mod:`realtime_swap.serve.ray_executor`) serves the same interface from Ray Serve replicas.
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from realtime_swap.errors import ConfigError
from realtime_swap.swap.model import FaceMask, SwapModel

log = logging.getLogger(__name__)

SwapOutput = tuple[np.ndarray, np.ndarray]
"""(faces (N,S,S,3) float32 BGR [0,1], masks (N,S,S) float32 [0,1]), as ``SwapModel.swap`` returns them."""


class SwapExecutor(abc.ABC):
    """Runs swap-model calls for any number of streams. ``models``: the loaded models in model_index order
    (their spec: resolution, face type, morph input), which the executor owns and closes."""

    models: list[SwapModel]

    @abc.abstractmethod
    def swap(
        self, model_index: int, crops: np.ndarray, morph: float | None, mask: FaceMask = FaceMask.CELEB
    ) -> SwapOutput:
        """Swap ``crops`` (N,S,S,3) float32 BGR [0,1] with model ``model_index``; blocks until done.
        Thread-safe; raises what the model call raised."""

    def stage_models(self) -> list[SwapModel]:
        """Stand-ins for ``models`` that a per-stream SwapStage runs: their calls go through this executor and
        closing them leaves the shared models open."""
        return [SharedSwapModel(m, self, i) for i, m in enumerate(self.models)]

    def stats(self) -> dict[str, float | int]:
        """Counters: calls (model calls), requests, faces."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop serving and release the models."""


class SharedSwapModel(SwapModel):
    """A ``SwapModel`` whose ``swap`` is served by a shared executor (host numpy crops only)."""

    def __init__(self, model: SwapModel, executor: SwapExecutor, index: int) -> None:
        super().__init__(model.spec, model.runner, model.notes)
        self.morph = model.morph
        self._executor = executor
        self._index = index

    def swap(self, crops: Any, morph: float | None = None, mask: FaceMask = FaceMask.CELEB) -> tuple[Any, Any]:
        if not isinstance(crops, np.ndarray):
            raise ConfigError("a shared swap executor takes host (numpy) crops; --gpu-path is not served")
        self._check_crops(crops.shape, str(crops.dtype))
        self._morph_feed(morph)  # validate here, in the caller's thread
        return self._executor.swap(self._index, crops, morph, FaceMask(mask))

    def close(self) -> None:
        """The executor owns the model: nothing to release per stream."""


@dataclass
class _Request:
    model_index: int
    crops: np.ndarray
    morph: float | None
    mask: FaceMask
    t_submit: float
    caller: int  # the calling thread: one per stream's swap stage
    future: Future[SwapOutput] = field(default_factory=Future)


class BatchingSwapExecutor(SwapExecutor):
    """The in-process executor: one worker thread, batches of up to ``max_batch`` faces gathered for at most
    ``window_ms`` after the first request — less when every stream that called in the last ``active_s`` seconds
    is already in the batch (window_ms 0 and max_batch 1: one model call per request)."""

    def __init__(
        self, models: Sequence[SwapModel], window_ms: float = 3.0, max_batch: int = 8, active_s: float = 1.0
    ) -> None:
        if not models:
            raise ConfigError("swap executor: no model")
        if window_ms < 0:
            raise ConfigError(f"batch window must be >= 0 ms, got {window_ms:g}")
        if max_batch < 1:
            raise ConfigError(f"max batch must be >= 1, got {max_batch}")
        self.models = list(models)
        self.window_s = window_ms / 1000.0
        self.max_batch = max_batch
        self.active_s = active_s
        self._cond = threading.Condition()
        self._pending: list[_Request] = []
        self._active: dict[int, float] = {}  # caller thread -> when it last called
        self._closed = False
        self.calls = 0
        self.requests = 0
        self.faces = 0
        self.batch_sizes: dict[int, int] = {}  # faces per model call -> how many calls had that many
        self._worker = threading.Thread(target=self._serve, name="swap-executor", daemon=True)
        self._worker.start()

    def swap(
        self, model_index: int, crops: np.ndarray, morph: float | None, mask: FaceMask = FaceMask.CELEB
    ) -> SwapOutput:
        if not 0 <= model_index < len(self.models):
            raise ConfigError(f"swap executor: no model {model_index} (have {len(self.models)})")
        request = _Request(model_index, crops, morph, mask, time.perf_counter(), threading.get_ident())
        with self._cond:
            if self._closed:
                raise RuntimeError("swap executor is closed")
            self._active[request.caller] = request.t_submit
            self._pending.append(request)
            self._cond.notify()
        return request.future.result()

    def _take_batch(self) -> list[_Request] | None:
        """Wait for a first request, then for the window or a full batch; None once closed and drained."""
        with self._cond:
            while not self._pending:
                if self._closed:
                    return None
                self._cond.wait()
            deadline = self._pending[0].t_submit + self.window_s
            while sum(len(r.crops) for r in self._pending) < self.max_batch and not self._closed:
                now = time.perf_counter()
                if deadline - now <= 0 or self._all_active_waiting(now):
                    break
                self._cond.wait(deadline - now)
            batch: list[_Request] = []
            faces = 0
            while self._pending and (not batch or faces + len(self._pending[0].crops) <= self.max_batch):
                request = self._pending.pop(0)
                batch.append(request)
                faces += len(request.crops)
            return batch

    def _all_active_waiting(self, now: float) -> bool:
        """True when every stream that called within ``active_s`` has a request pending: nobody else is coming,
        so waiting out the window would only add latency (a lone stream never waits)."""
        for caller, seen in list(self._active.items()):
            if now - seen > self.active_s:
                del self._active[caller]
        return set(self._active) <= {r.caller for r in self._pending}

    def _serve(self) -> None:
        while (batch := self._take_batch()) is not None:
            groups: dict[tuple[int, float | None, FaceMask], list[_Request]] = {}
            for request in batch:
                groups.setdefault((request.model_index, request.morph, request.mask), []).append(request)
            for (index, morph, mask), requests in groups.items():
                self._run_group(self.models[index], morph, mask, requests)

    def _run_group(self, model: SwapModel, morph: float | None, mask: FaceMask, requests: list[_Request]) -> None:
        crops = requests[0].crops if len(requests) == 1 else np.concatenate([r.crops for r in requests])
        try:
            faces, masks = model.swap(crops, morph=morph, mask=mask)
        except BaseException as exc:
            for r in requests:
                r.future.set_exception(exc)
            return
        self.calls += 1
        self.requests += len(requests)
        self.faces += len(crops)
        self.batch_sizes[len(crops)] = self.batch_sizes.get(len(crops), 0) + 1
        start = 0
        for r in requests:
            stop = start + len(r.crops)
            r.future.set_result((faces[start:stop], masks[start:stop]))
            start = stop

    def stats(self) -> dict[str, float | int]:
        return {"calls": self.calls, "requests": self.requests, "faces": self.faces}

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._worker.join(timeout=10.0)
        for model in self.models:
            model.close()
