"""The numba decorator every colour and blend kernel uses, where numba's on-disk cache goes, and how many
threads a parallel kernel may use.

Kernels are compiled with ``cache=True`` so that the compile cost (seconds per kernel) is paid once per machine,
not once per engine start. numba writes its cache next to the source file when that directory is writable and
otherwise under its own user cache. :func:`configure_kernel_cache`, called once at engine start (by
``pipeline.build_pipeline``, before any kernel compiles), makes the fallback explicit: ``NUMBA_CACHE_DIR`` wins
when set, else, if the package directory is read-only (a system install), ``~/.cache/realtime_swap/numba`` is
used. Importing this module changes nothing: no environment variable, no numba setting.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import numba

F = TypeVar("F", bound=Callable[..., Any])


def _dir_writable(directory: Path) -> bool:
    pycache = directory / "__pycache__"
    if pycache.is_dir():
        return os.access(pycache, os.W_OK | os.X_OK)
    return os.access(directory, os.W_OK | os.X_OK)


def choose_cache_dir(environ: Mapping[str, str], package_dir: Path, home: Path) -> Path | None:
    """Where numba should cache this package's kernels: ``None`` means numba's default (next to the source).

    ``NUMBA_CACHE_DIR`` in ``environ`` wins; otherwise a non-writable ``package_dir`` (its ``__pycache__``)
    selects ``home/.cache/realtime_swap/numba``.
    """
    configured = environ.get("NUMBA_CACHE_DIR", "")
    if configured:
        return Path(configured)
    if _dir_writable(package_dir):
        return None
    return home / ".cache" / "realtime_swap" / "numba"


_KERNELS: list[Any] = []  # every dispatcher ``kernel`` made, so that their cache can be pointed elsewhere
_cache_dir: Path | None = None  # where configure_kernel_cache pointed them (None: numba's own choice)
_thread = threading.local()


def _point_cache(dispatcher: Any, directory: Path) -> None:
    # numba fixes a kernel's cache location when its cache object is made, from numba.config.CACHE_DIR at that
    # moment; the setting is restored right after, so numba's configuration is left as it was.
    previous = numba.config.CACHE_DIR  # type: ignore[attr-defined]
    numba.config.CACHE_DIR = str(directory)  # type: ignore[attr-defined]
    try:
        dispatcher.enable_caching()
    finally:
        numba.config.CACHE_DIR = previous  # type: ignore[attr-defined]


def configure_kernel_cache(
    environ: Mapping[str, str] | None = None, package_dir: Path | None = None, home: Path | None = None
) -> Path | None:
    """Point the on-disk cache of every kernel of this package where :func:`choose_cache_dir` says; return that
    folder (None: numba's default, next to the sources, or ``NUMBA_CACHE_DIR`` which numba reads itself).

    Call at engine start, before kernels compile; kernels decorated later follow the same choice. The arguments
    default to ``os.environ``, this package's folder and the user's home.
    """
    global _cache_dir
    environ = os.environ if environ is None else environ
    chosen = choose_cache_dir(
        environ, package_dir or Path(__file__).resolve().parent, home if home is not None else Path.home()
    )
    if chosen is None or environ.get("NUMBA_CACHE_DIR"):
        return chosen
    chosen.mkdir(parents=True, exist_ok=True)
    _cache_dir = chosen
    for dispatcher in _KERNELS:
        _point_cache(dispatcher, chosen)
    return chosen


def use_kernel_threads(count: int) -> None:
    """Let the parallel kernels called from this thread use ``count`` numba threads.

    numba's thread count is a per-thread setting, so a stage calls this from its worker thread; it is set there
    the first time and later calls only compare (nothing changes per frame).
    """
    if getattr(_thread, "kernel_threads", None) != count:
        numba.set_num_threads(count)
        _thread.kernel_threads = count


def kernel(
    *, parallel: bool = False, vector_reductions: bool = False, contract: bool = False, inline: bool = False
) -> Callable[[F], F]:
    """``numba.njit`` with the package's settings: on-disk cache, GIL released (stages run in threads), numpy's
    error model (no division checks).

    ``vector_reductions`` lets LLVM reorder floating-point sums so that reductions vectorise, ``contract`` lets
    it fuse multiply-adds (results then differ from numpy's in the last bits); no other fast-math flag is used,
    so NaN/infinity checks in the kernels stay meaningful. ``inline`` inlines a helper into its callers at
    numba's level, which LLVM needs to vectorise the callers' loops.
    """
    flags = ({"reassoc", "nsz"} if vector_reductions else set()) | ({"contract"} if contract else set())
    fastmath: set[str] | bool = flags or False

    def decorate(func: F) -> F:
        jit = numba.njit(
            cache=True,
            nogil=True,
            parallel=parallel,
            error_model="numpy",
            fastmath=fastmath,
            inline="always" if inline else "never",
        )
        dispatcher = jit(func)
        _KERNELS.append(dispatcher)
        if _cache_dir is not None:
            _point_cache(dispatcher, _cache_dir)
        return cast(F, dispatcher)

    return decorate
