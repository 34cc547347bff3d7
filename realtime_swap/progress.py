"""Progress bars that suit where stderr goes: redrawn smoothly on a terminal, rarely in a log file or CI.

tqdm redraws at most every ``mininterval`` seconds (0.1 by default). On a terminal a redraw overwrites the line;
in a file every redraw stays, so a slow loop (a training iteration takes longer than 0.1 s) wrote one line per
step. Off a terminal the bar is redrawn at most every ``LOG_INTERVAL_S`` seconds instead.
"""

from __future__ import annotations

import sys
from typing import IO, Any

from tqdm import tqdm

TERMINAL_INTERVAL_S = 0.1
LOG_INTERVAL_S = 10.0


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def progress_bar(*, file: IO[str] | None = None, **options: Any) -> tqdm:
    """A tqdm bar on ``file`` (default stderr) redrawn every 0.1 s on a terminal, every 10 s elsewhere;
    ``options`` are tqdm's (total, desc, unit, disable, ...)."""
    stream = sys.stderr if file is None else file
    terminal = _is_terminal(stream)
    return tqdm(
        file=stream,
        mininterval=TERMINAL_INTERVAL_S if terminal else LOG_INTERVAL_S,
        dynamic_ncols=terminal,
        **options,
    )
