"""How many BLAS threads a round's fit, predictions and pool scoring may use (`compute.blas_threads`).

On a shared or loaded machine, OpenBLAS threads that spin-wait for each other make small fits many times slower
than one thread (docs/performance.md, "BLAS threads"); the limit is applied with threadpoolctl around each
round's model work and lifted afterwards. It changes no result: the picks and metrics are the same for any
setting (tests/test_threads.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import threadpool_limits

DEFAULT_BLAS_THREADS = 1  # `auto`: one thread is never slower for al-loop's models here (docs/performance.md)


def resolved_threads(setting: int | None) -> int:
    """The BLAS thread count of a `compute.blas_threads` setting (None = `auto`)."""
    return DEFAULT_BLAS_THREADS if setting is None else setting


@contextmanager
def blas_limit(setting: int | None) -> Iterator[None]:
    """Limit the BLAS libraries loaded in this process to the setting's thread count, then restore them."""
    with threadpool_limits(limits=resolved_threads(setting), user_api="blas"):
        yield
