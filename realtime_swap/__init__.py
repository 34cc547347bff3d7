"""realtime_swap: a real-time streaming face-swap engine."""

__version__ = "0.1.0"
