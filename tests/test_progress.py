"""Progress bars: smooth on a terminal, a handful of lines in a log file however many steps run."""

from __future__ import annotations

import io
import time

from realtime_swap.progress import LOG_INTERVAL_S, TERMINAL_INTERVAL_S, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_file_gets_a_redraw_every_few_seconds_not_one_per_step() -> None:
    log = io.StringIO()
    with progress_bar(total=400, desc="train", unit="it", file=log) as bar:
        assert bar.mininterval == LOG_INTERVAL_S
        for _ in range(400):
            time.sleep(0.0025)  # 1 s in all: ten of tqdm's default 0.1 s redraw intervals
            bar.update(1)
    redraws = log.getvalue().count("\r")
    assert 1 <= redraws <= 4  # the first, the last (at close) and not much between
    assert "400/400" in log.getvalue()


def test_a_terminal_keeps_the_smooth_default() -> None:
    with progress_bar(total=3, file=_Terminal()) as bar:
        assert bar.mininterval == TERMINAL_INTERVAL_S
