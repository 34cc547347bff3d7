"""``serve``: live swaps for browsers over WebRTC, many streams on one shared, batched swap executor.

Needs the ``[serve]`` extra (aiohttp, aiortc); Ray Serve scale-out needs ``[ray]``.
"""
