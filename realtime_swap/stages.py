"""The stage interface every pipeline worker runs, and the live controls the user changes while it runs.

A stage takes a ``Frame`` and returns it (annotated or with a new image). It does not know who feeds it or who
reads it: ``realtime_swap.pipeline`` wires stages together and runs each in its own thread.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

from realtime_swap.color.modes import ColorMode
from realtime_swap.errors import ConfigError
from realtime_swap.types import Frame, StreamInfo


@dataclass
class Controls:
    """Settings the user toggles while the engine runs (window keys); read by stages on every frame.

    Single attribute writes are atomic in CPython, so stages read these without a lock. ``color_mode`` is
    validated here, once: a string is taken as its :class:`ColorMode` value.
    """

    swap_enabled: bool = True
    color_mode: ColorMode = ColorMode.RCT
    show_landmarks: bool = False
    show_mask: bool = False
    show_stats: bool = True
    model_index: int = 0  # which of the loaded swap models/faces is used (the window's Tab and 1-9 keys)
    model_names: tuple[str, ...] = ()  # the loaded swap models, in model_index order (set when they load)

    def __post_init__(self) -> None:
        try:
            self.color_mode = ColorMode(self.color_mode)
        except ValueError:
            choices = ", ".join(m.value for m in ColorMode)
            raise ConfigError(f"unknown colour mode '{self.color_mode}'; expected one of {choices}") from None


class Stage(abc.ABC):
    """One step of the frame's journey. Subclasses set ``name`` (used in metrics and error messages)."""

    name: str = "stage"

    def warmup(self, info: StreamInfo) -> None:  # noqa: B027 - optional hook, empty by default
        """Prepare for frames of this stream (create sessions, compile kernels) before capture starts."""

    @abc.abstractmethod
    def process(self, frame: Frame, controls: Controls) -> Frame:
        """Handle one frame; return it (the same object, annotated, or with ``frame.image`` replaced)."""

    def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Release resources; called once after the last frame, also after an error."""
