"""numba compilation with its on-disk cache where one can be written, and without it where none can."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numba

F = TypeVar("F", bound=Callable[..., Any])


def cached_njit(signature: str | None = None, **options: Any) -> Callable[[F], F]:
    """`numba.njit(..., cache=True)`; where no cache directory is writable (a read-only package, no HOME,
    no NUMBA_CACHE_DIR), numba refuses to cache and this compiles anew at every start rather than fail."""

    def decorate(fn: F) -> F:
        jit: Any = numba.njit  # its overloads do not type **options
        try:
            compiled = jit(signature, cache=True, **options)(fn)
        except RuntimeError as exc:
            if "no locator available" not in str(exc):
                raise
            compiled = jit(signature, **options)(fn)
        return compiled  # type: ignore[no-any-return]

    return decorate
