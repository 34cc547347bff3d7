"""The shared swap executor on Ray Serve: the swap model as a deployment (replicas, GPU fractions, autoscaling on
queue length), called from the per-stream engines through a deployment handle, batched with ``@serve.batch``.

Needs the ``[ray]`` extra. ``RaySwapExecutor.start(faces, address)`` joins a running cluster (``"auto"``,
``"ray://head:10001"``, ``"head:6379"``) or, with ``"local"``, starts a one-machine cluster on loopback. Every
replica loads the models ``faces`` names on its own machine (the package and its models must be installed
there, as on the head); the calling engine loads them on its CPU only to read their specs (resolution, face
type, morph input). A call carries one stream's crops; ``@serve.batch`` gathers up to ``max_batch`` calls for
at most ``window_ms`` into one model call per (model, morph), as the in-process executor does.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from realtime_swap.config import FaceSpec
from realtime_swap.errors import ConfigError
from realtime_swap.infer.session import Backend
from realtime_swap.swap.executor import SwapExecutor, SwapOutput
from realtime_swap.swap.model import FaceMask

log = logging.getLogger(__name__)

APP_NAME = "realtime_swap"

_Reply = tuple[np.ndarray, np.ndarray, int, int]
"""A replica's answer to one call: faces, masks, calls in its batch, the replica's process id."""


@dataclass(frozen=True)
class RayDeploymentOptions:
    """replicas: at start (the minimum when autoscaling); max_replicas: autoscale up to this many on queue
    length (None: fixed); num_gpus / num_cpus: per replica (fractions share a GPU); window_ms / max_batch:
    ``@serve.batch``'s wait and size (calls, each one stream's faces); target_ongoing: calls in flight per
    replica the autoscaler aims for."""

    replicas: int = 1
    max_replicas: int | None = None
    num_gpus: float = 0.0
    num_cpus: float = 1.0
    window_ms: float = 3.0
    max_batch: int = 8
    target_ongoing: float = 4.0

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ConfigError(f"--ray-replicas must be >= 1, got {self.replicas}")
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ConfigError(f"--ray-max-replicas ({self.max_replicas}) is below --ray-replicas ({self.replicas})")
        if self.num_gpus < 0:
            raise ConfigError(f"--ray-gpus must be >= 0, got {self.num_gpus:g}")


def swap_requests(models: list[Any], requests: list[tuple[int, np.ndarray, float | None, str]]) -> list[SwapOutput]:
    """Run a batch of calls (model index, crops (N,S,S,3) float32 BGR [0,1], morph, ``FaceMask`` value): one
    model call per (model, morph, mask), every call's own rows back, in call order."""
    out: list[SwapOutput | None] = [None] * len(requests)
    groups: dict[tuple[int, float | None, str], list[int]] = {}
    for i, (index, _, morph, mask) in enumerate(requests):
        groups.setdefault((index, morph, mask), []).append(i)
    for (index, morph, mask), members in groups.items():
        crops = np.concatenate([requests[i][1] for i in members])
        faces, masks = models[index].swap(crops, morph=morph, mask=FaceMask(mask))
        start = 0
        for i in members:
            stop = start + len(requests[i][1])
            out[i] = (faces[start:stop], masks[start:stop])
            start = stop
    return [o for o in out if o is not None]


def _deployment(options: RayDeploymentOptions) -> Any:
    from ray import serve

    settings: dict[str, Any] = {
        "name": "swap",
        "ray_actor_options": {"num_gpus": options.num_gpus, "num_cpus": options.num_cpus},
        "max_ongoing_requests": max(2 * options.max_batch, 16),
    }
    if options.max_replicas is not None:
        settings["autoscaling_config"] = {
            "min_replicas": options.replicas,
            "initial_replicas": options.replicas,
            "max_replicas": options.max_replicas,
            "target_ongoing_requests": options.target_ongoing,
        }
    else:
        settings["num_replicas"] = options.replicas

    @serve.deployment(**settings)
    class SwapReplica:
        """One replica: the models, and batched swap calls."""

        def __init__(self, faces: FaceSpec) -> None:
            from realtime_swap.pipeline import load_swap_models

            self.models = load_swap_models(faces)

        @serve.batch(max_batch_size=options.max_batch, batch_wait_timeout_s=options.window_ms / 1000.0)
        async def swap(self, requests: list[tuple[int, np.ndarray, float | None, str]]) -> list[_Reply]:
            outputs = swap_requests(self.models, requests)
            return [(faces, masks, len(requests), os.getpid()) for faces, masks in outputs]

        async def call(self, model_index: int, crops: np.ndarray, morph: float | None, mask: str) -> _Reply:
            return await self.swap((model_index, crops, morph, mask))

    return SwapReplica


class RaySwapExecutor(SwapExecutor):
    """A ``SwapExecutor`` whose calls go to a Ray Serve deployment (blocking calls from the stage threads)."""

    def __init__(self, handle: Any, models: list[Any], started_cluster: bool) -> None:
        self.handle = handle
        self.models = models
        self._started_cluster = started_cluster
        self.calls = 0
        self.batch_sizes: dict[int, int] = {}  # calls per @serve.batch batch -> how many calls saw that size
        self.replicas_seen: set[int] = set()  # process ids of the replicas that answered

    @classmethod
    def start(cls, faces: FaceSpec, address: str, options: RayDeploymentOptions | None = None) -> RaySwapExecutor:
        """Join the cluster at ``address`` ("local": start one on loopback), deploy the swap model, return the
        executor. ConfigError when Ray is not installed or the cluster cannot be reached."""
        try:
            import ray
            from ray import serve
        except ImportError:
            raise ConfigError('--ray needs the [ray] extra: pip install -e ".[ray]"') from None
        from realtime_swap.pipeline import load_swap_models

        options = options or RayDeploymentOptions()
        local_models = load_swap_models(replace(faces, backend=Backend.ORT_CPU))  # specs for the stages
        if not local_models:
            raise ConfigError("--ray: no swap model found (--model)")
        started = False
        try:
            if not ray.is_initialized():
                if address == "local":
                    cpus = max(os.cpu_count() or 1, math.ceil(options.replicas * options.num_cpus))
                    ray.init(
                        address="local",
                        num_cpus=cpus,
                        include_dashboard=False,
                        _node_ip_address="127.0.0.1",  # a one-machine cluster: loopback only
                        log_to_driver=False,
                    )
                    started = True
                else:
                    ray.init(address=address, log_to_driver=False)
            serve.start(http_options={"host": "127.0.0.1"}, proxy_location="Disabled")
            handle = serve.run(_deployment(options).bind(faces), name=APP_NAME, route_prefix=None)
        except ConfigError:
            raise
        except Exception as exc:
            for model in local_models:
                model.close()
            if started:
                ray.shutdown()
            raise ConfigError(f"--ray {address}: {exc}") from exc
        log.info("swap model deployed on Ray Serve (%s): %s", address, options)
        return cls(handle, local_models, started)

    def swap(
        self, model_index: int, crops: np.ndarray, morph: float | None, mask: FaceMask = FaceMask.CELEB
    ) -> SwapOutput:
        faces, masks, batch, replica = self.handle.call.remote(model_index, crops, morph, mask.value).result()
        self.calls += 1
        self.batch_sizes[batch] = self.batch_sizes.get(batch, 0) + 1
        self.replicas_seen.add(replica)
        return faces, masks

    def stats(self) -> dict[str, float | int]:
        return {"calls": self.calls, "replicas_seen": len(self.replicas_seen)}

    def close(self) -> None:
        from ray import serve

        try:
            serve.delete(APP_NAME)
        finally:
            for model in self.models:
                model.close()
            if self._started_cluster:
                import ray

                serve.shutdown()
                ray.shutdown()
