"""The numba decorator every colour kernel uses, and where numba's on-disk cache goes.

Kernels are compiled with ``cache=True`` so that the compile cost (seconds per kernel) is paid once per machine,
not once per engine start. numba writes its cache next to the source file when that directory is writable and
otherwise under its own user cache; this module makes the fallback explicit: ``NUMBA_CACHE_DIR`` wins when set,
else, if the package directory is read-only (a system install), ``~/.cache/realtime_swap/numba`` is used.
The choice is made before the first kernel in this package is decorated (numba resolves a kernel's cache
location when the decorator runs).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import numba

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_CACHE_DIR = Path("~/.cache/realtime_swap/numba")


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


def _configure_cache() -> Path | None:
    chosen = choose_cache_dir(os.environ, Path(__file__).resolve().parent, Path.home())
    if chosen is not None and not os.environ.get("NUMBA_CACHE_DIR"):
        chosen.mkdir(parents=True, exist_ok=True)
        # Through the environment, not numba.config alone: numba re-reads NUMBA_* variables before compiling
        # and would reset a value set only on its config module.
        os.environ["NUMBA_CACHE_DIR"] = str(chosen)
        numba.config.reload_config()
    return chosen


CACHE_DIR: Path | None = _configure_cache()


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
        return cast(F, jit(func))

    return decorate
