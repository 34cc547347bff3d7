"""A browser session's camera as a Source: newest frame wins, other sizes are scaled to the first, and a closed
or silent track ends the stream; the control messages a page sends are checked."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

pytest.importorskip("aiortc", reason="serve needs the [serve] extra (aiortc)")

import av

from realtime_swap.color.modes import ColorMode
from realtime_swap.config import EngineConfig
from realtime_swap.serve.session import Session
from realtime_swap.serve.tracks import TrackSource


def video_frame(value: int, width: int = 64, height: int = 48) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(np.full((height, width, 3), value, np.uint8), format="bgr24")


def test_the_newest_frame_wins_and_other_sizes_are_scaled_to_the_first() -> None:
    source = TrackSource(video_frame(10), "test", idle_timeout_s=0.3)
    assert (source.info.width, source.info.height, source.info.live) == (64, 48, True)
    source.push(video_frame(20))
    source.push(video_frame(30, width=32, height=24))  # replaces 20 unread; a smaller picture
    got = source.read()
    assert got is not None
    image, pts = got
    assert image.shape == (48, 64, 3) and abs(int(image.mean()) - 30) <= 1 and pts == 0.0
    assert source.stats() == {"frames_received": 2, "frames_replaced_before_capture": 2}
    assert source.read() is None  # nothing more within the idle timeout: the client is gone
    source.push(video_frame(40))
    source.close()
    assert source.read() is not None and source.read() is None  # the pending frame, then the end


def test_control_messages_change_the_controls_and_bad_ones_change_nothing() -> None:
    async def main() -> None:
        session = Session("1", EngineConfig(), None, lambda _s: None)
        c = session.controls
        session._on_message('{"swap": false, "mask": true, "color": "lct"}')
        assert (c.swap_enabled, c.show_mask, c.color_mode) == (False, True, ColorMode.LCT)
        for bad in ('{"color": "nope"}', "[1]", "not json", '{"model": "x"}'):
            session._on_message(bad)
        assert (c.swap_enabled, c.show_mask, c.color_mode) == (False, True, ColorMode.LCT)
        await session.pc.close()

    asyncio.run(main())
