"""The swap executor on Ray Serve: a local cluster on loopback (CPU), two replicas, calls batched by
``@serve.batch``; the same pixels out as the in-process executor, through the swap stage as well."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest

pytest.importorskip("ray.serve", reason="Ray Serve is the [ray] extra")

from test_swap_stage import aligned_face, make_frame

from realtime_swap.config import FaceSpec
from realtime_swap.infer.session import Backend
from realtime_swap.pipeline import load_swap_models
from realtime_swap.serve.ray_executor import RayDeploymentOptions, RaySwapExecutor
from realtime_swap.stages import Controls
from realtime_swap.swap import SwapStage
from realtime_swap.swap.executor import BatchingSwapExecutor

FACES = FaceSpec(backend=Backend.ORT_CPU)
RES = 96  # the shipped model


@pytest.fixture(scope="module")
def ray_executor() -> Iterator[RaySwapExecutor]:
    options = RayDeploymentOptions(replicas=2, num_cpus=0.5, window_ms=50.0, max_batch=4)
    executor = RaySwapExecutor.start(FACES, "local", options)
    yield executor
    executor.close()


@pytest.mark.slow
def test_two_replicas_batch_calls_and_give_the_in_process_pixels(ray_executor: RaySwapExecutor) -> None:
    local = BatchingSwapExecutor(load_swap_models(FACES), window_ms=0.0, max_batch=1)
    rng = np.random.default_rng(3)
    inputs = [rng.random((1 + i % 2, RES, RES, 3), dtype=np.float32) for i in range(8)]
    got: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def stream(i: int) -> None:
        for k in range(4):
            got[(i, k)] = ray_executor.swap(0, inputs[i], None)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(got) == 32
    for (i, _), (faces, masks) in got.items():
        want_faces, want_masks = local.swap(0, inputs[i], None)
        np.testing.assert_allclose(faces, want_faces, atol=1e-5)
        np.testing.assert_allclose(masks, want_masks, atol=1e-5)
    local.close()
    assert max(ray_executor.batch_sizes) > 1, ray_executor.batch_sizes  # calls of several streams in one batch
    assert len(ray_executor.replicas_seen) == 2


@pytest.mark.slow
def test_a_swap_stage_on_ray_matches_one_on_its_own_model(ray_executor: RaySwapExecutor) -> None:
    own = SwapStage(load_swap_models(FACES))
    served = SwapStage(ray_executor.stage_models())
    frames = [
        stage.process(make_frame([aligned_face(0, RES), aligned_face(1, RES)]), Controls()) for stage in (own, served)
    ]
    for a, b in zip(frames[0].faces, frames[1].faces, strict=True):
        assert a.swapped is not None and b.swapped is not None
        np.testing.assert_allclose(b.swapped.face, a.swapped.face, atol=1e-5)
        np.testing.assert_allclose(b.swapped.mask, a.swapped.mask, atol=1e-5)
    own.close()
    served.close()
