"""The one-item, newest-wins hand-over between two threads (live pipeline hops, a stream sink's sender).

A producer that is faster than its consumer replaces the unread item instead of waiting behind it, so what the
consumer takes is never older than the producer's last item: latency stays bounded whatever the load, and the
producer learns how many items it replaced (drops).
"""

from __future__ import annotations

import enum
import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Closed(enum.Enum):
    """What ``LatestSlot.get`` returns once the slot is closed and its last item was taken."""

    CLOSED = "closed"


CLOSED = Closed.CLOSED


class LatestSlot(Generic[T]):
    """Holds at most one item; ``put`` replaces an unread one. Thread-safe; any number of producers and consumers."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False

    def put(self, item: T) -> bool:
        """Store ``item``; True when it replaced an item nobody had taken (a drop). Ignored once closed."""
        with self._cond:
            if self._closed:
                return False
            dropped = self._item is not None
            self._item = item
            self._cond.notify()
            return dropped

    def get(self, timeout_s: float) -> T | Closed | None:
        """The pending item; else wait up to ``timeout_s`` for one. ``CLOSED`` once closed and empty (the item
        pending when it was closed is still handed out first), None after the timeout."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout_s)
            if self._item is not None:
                item, self._item = self._item, None
                self._cond.notify_all()  # a producer may wait for the slot to empty (wait_taken)
                return item
            return CLOSED if self._closed else None

    def wait_taken(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` until no item is pending; True when none is."""
        with self._cond:
            if self._item is not None and not self._closed:
                self._cond.wait(timeout_s)
            return self._item is None or self._closed

    def close(self) -> None:
        """No more items: wake the waiting consumers (the pending item, if any, is still handed out)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def qsize(self) -> int:
        """1 while an item is pending, else 0 (for queue-depth metrics)."""
        return int(self._item is not None)


class DropPolicy(str, enum.Enum):
    """Where a live engine that is behind lets frames go.

    LATEST: newest frame wins at every hand-off (capture → first stage → … → outputs): no frame waits behind
    another, so latency stays about the sum of the stage times (the live default). CAPTURE: newest wins at capture
    only, bounded FIFO queues after it (frames wait in full queues at capacity; kept to compare against).
    BLOCK: nothing is dropped, capture waits (files, and benchmarks of throughput).
    """

    LATEST = "latest"
    CAPTURE = "capture"
    BLOCK = "block"
