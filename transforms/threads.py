"""Native thread pools inside Beam workers.

The runner already runs one worker thread or process per core. The batched LANCZOS/DCT matrix
products of the features stage call BLAS, whose own pool starts one thread per core inside every
worker: on 2 cores that doubled the features stage's CPU time (issue 20: 36 → 22 CPU s per 20k rows
at 256 px with ``OPENBLAS_NUM_THREADS=1``). A worker's ``DoFn.setup`` therefore limits BLAS to
``decode.blas_threads`` (default 1). The pool belongs to the process, so the limit does too: it is
set by every worker process that runs the features stage, to the same value, and results do not
depend on it (BLAS splits output blocks across threads, not the sums).
"""
from __future__ import annotations


def limit_blas(threads: int) -> None:
    """Limit BLAS's thread pool in this process to ``threads`` (0: leave BLAS's default)."""
    if threads <= 0:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")
