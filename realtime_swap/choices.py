"""Closed option sets: turning a CLI or JSON value into a member of its enum, with the choices in the error.

Kept apart from ``realtime_swap.config`` (the live run's configuration, which imports the whole live stack) so
that light modules such as the trainer's configuration can validate their enums too.
"""

from __future__ import annotations

import enum
from typing import TypeVar

from realtime_swap.errors import ConfigError

E = TypeVar("E", bound=enum.Enum)


def closed_choice(kind: type[E], value: object, option: str) -> E:
    """``value`` as a member of the closed set ``kind`` (a member, or its value); ConfigError naming ``option``
    and the choices otherwise."""
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(str(m.value) for m in kind)
        raise ConfigError(f"{option} must be one of {choices}, got '{value}'") from None
