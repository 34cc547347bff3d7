"""The product's exception types.

Library code raises these; only the CLI (``realtime_swap.cli``) turns them into exit codes. Every message is
one line that names what failed and where (the path, URL, device or stage).
"""

from __future__ import annotations


class RealtimeSwapError(Exception):
    """Base of every error the product raises on purpose."""


class ConfigError(RealtimeSwapError):
    """An option or a combination of options that cannot work."""


class SourceError(RealtimeSwapError):
    """A frame source that cannot be opened or read (missing file, corrupt video, dead URL, no camera)."""


class SinkError(RealtimeSwapError):
    """An output that cannot be opened or written (unwritable path, missing device, refused stream)."""


class SinkUnavailableError(SinkError):
    """An output whose device or service this machine does not have (no virtual camera driver): the engine
    reports it and goes on with its other outputs."""


class ModelError(RealtimeSwapError):
    """A model file that is missing, unreadable or of the wrong shape/names/layout."""


class StageError(RealtimeSwapError):
    """An exception raised inside a pipeline worker, re-raised in the caller with the stage's name."""

    def __init__(self, stage: str, cause: BaseException) -> None:
        self.stage = stage
        self.cause = cause
        detail = str(cause) or type(cause).__name__
        if not isinstance(cause, RealtimeSwapError):
            detail = f"{type(cause).__name__}: {detail}"
        super().__init__(f"stage '{stage}' failed: {detail}")
