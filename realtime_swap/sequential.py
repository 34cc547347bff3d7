"""The engine's stages run one after the other in the calling thread: the baseline the pipelined engine is
measured against (``bench``), and a simple way to run the stages without threads.

Same frame contract as :class:`realtime_swap.pipeline.Pipeline`: frames are numbered from 0, stamped with their
capture time, timed per stage into ``frame.timings`` (capture, each stage's name, output) and written to every
sink in order. Stage warm-up, sink opening and closing are the caller's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from realtime_swap.errors import StageError
from realtime_swap.sinks.base import Sink
from realtime_swap.sources.base import Source, SourceOutage
from realtime_swap.stages import Controls, Stage
from realtime_swap.types import Frame


def run_sequential(
    source: Source,
    stages: Sequence[Stage],
    sinks: Sequence[Sink],
    controls: Controls,
    max_frames: int | None = None,
) -> int:
    """Read, process and write frames until the source ends or ``max_frames``; return the frames written.

    A stage's or sink's exception is re-raised as StageError with its name, as the pipeline does.
    """
    index = 0
    while max_frames is None or index < max_frames:
        t0 = time.perf_counter()
        got = source.read()
        t1 = time.perf_counter()
        if got is None:
            break
        if isinstance(got, SourceOutage):  # a reconnecting source is down: nothing to time
            continue
        image, pts = got
        frame = Frame(index=index, image=image, t_capture=t1, pts=pts)
        frame.timings["capture"] = (t1 - t0) * 1000.0 - source.paced_ms
        for stage in stages:
            t_stage = time.perf_counter()
            try:
                frame = stage.process(frame, controls)
            except Exception as exc:
                raise StageError(stage.name, exc) from exc
            frame.timings[stage.name] = (time.perf_counter() - t_stage) * 1000.0
        t_out = time.perf_counter()
        for sink in sinks:
            try:
                sink.write(frame)
            except Exception as exc:
                raise StageError(f"output:{sink.name}", exc) from exc
        frame.timings["output"] = (time.perf_counter() - t_out) * 1000.0
        index += 1
    return index
