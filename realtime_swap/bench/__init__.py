"""The ``bench`` subcommand: FPS and latency of the live engine on a deterministic stream, measured honestly.

What one configuration's measurement does (per ``--resolution``):

1. **Warm-up, kept apart**: the swap model's session is created alone and timed (``session_create_s``; on
   TensorRT backends this includes the engine build), the engine is built exactly as ``live`` builds it
   (:func:`realtime_swap.pipeline.build_pipeline`: demo source unpaced, detect → swap → blend, null output) and
   timed (``engine_build_s``), each stage's ``warmup`` is timed (``warmup_s``), and the first ``--warmup``
   frames of every run go through the engine but are left out of every figure.
2. **Pipelined**: the threaded engine. The demo source renders as fast as it can and capture blocks when the
   engine is behind (``DropPolicy.BLOCK``), so no frame is dropped (``frames_dropped`` says so) and **fps is the
   engine's sustained throughput**: measured frames / (output time of the last frame − output time of the last
   warm-up frame). The source's render time is the ``capture`` stage; it runs in its own thread here.
3. **Sequential**: the same stages, built the same way, on the same frames (the demo is deterministic), in one
   thread (:func:`realtime_swap.sequential.run_sequential`); ``pipelined_vs_sequential`` is the ratio of the two
   fps, per round and as median with min–max spread (rounds alternate sequential, pipelined). By default the
   loop is single-threaded through and through: its swap model gets one ONNX Runtime intra-op thread (the
   detector and the colour kernels have one in both runs) — what threading the engine buys. ``--sequential-threads
   N`` gives the loop's model N threads instead (0: as many as the pipelined run's), the stronger baseline of a
   sequential loop whose inference library alone uses the cores.
4. **Inference alone**: the swap model on a batch of ``--faces`` crops, ``--inference-iters`` times: on CUDA
   timed with CUDA events around device-resident I/O after a synchronize (GPU time), on the CPU with the
   wall clock (``clock`` says which).

Latency is capture-to-output: from the source handing over a frame to the sinks having written it. In the
pipelined run it includes the time a frame waits in the bounded queues, which an unpaced source keeps full: the
latency of a saturated engine (an upper bound for a camera slower than the engine). ``--paced-fps F`` paces the
demo at F fps like a camera, with the live drop policy (newest frame wins, drops counted): fps is then at most
F and the latency is that of a live run.

``--compare "ARGS_A" "ARGS_B"`` measures two configurations (each: the command's options with these on top)
alternately, A B A B ... for ``--rounds`` rounds in one invocation, and prints their fps and latency ratios (B / A)
with their spread: on a shared, noisy machine ratios from one run are what count.

The package, by job: ``settings`` (what to measure), ``recording`` (the per-frame sink and its statistics),
``inference`` (the model alone, CUDA-event timing), ``run`` (pipelined / sequential / compare), ``report``
(machine info and tables), ``command`` (the options and the subcommand).
"""

from __future__ import annotations

from realtime_swap.bench.command import add_arguments, register, run, settings_from_args
from realtime_swap.bench.inference import measure_session
from realtime_swap.bench.recording import RecordingSink, RunFigures, summarize
from realtime_swap.bench.report import format_compare, format_result, machine
from realtime_swap.bench.run import Engine, build_engine, compare, measure
from realtime_swap.bench.settings import BenchSettings, ModelChoice, ModelResolver, parse_resolution

__all__ = [
    "BenchSettings",
    "Engine",
    "ModelChoice",
    "ModelResolver",
    "RecordingSink",
    "RunFigures",
    "add_arguments",
    "build_engine",
    "compare",
    "format_compare",
    "format_result",
    "machine",
    "measure",
    "measure_session",
    "parse_resolution",
    "register",
    "run",
    "settings_from_args",
    "summarize",
]
