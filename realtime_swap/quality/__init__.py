"""The ``quality`` report: figures of a swap on a clip (flicker, jitter, colour match, seam, identity)."""
