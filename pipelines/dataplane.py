"""Beam's local runner without the data plane's timed flush, which can drop or split elements.

Beam 2.77's ``FnApiRunner`` moves every bundle's input and output through gRPC data streams in its
multi-threaded and multi-process modes (the default local mode hands elements over in memory:
``options.pipeline_options``). Those streams, runner side and, for threads, worker side too, flush
once a second from a timer thread (``worker_handlers.DATA_BUFFER_TIME_LIMIT_MS``). That flush is
not atomic with the writer: bytes written between its ``get()`` and its ``clear()`` are dropped,
and a flush in the middle of an element's encoding splits the element across two messages.
Measured here: of two identical 100k-row dedup runs one flagged 34 rows fewer, with no error (whole
elements dropped), and larger runs failed to decode a shuffle (``Invalid PaneInfoEncoding``,
``Unknown type tag``). A safety scan that silently loses a match is the worst failure there is, so
local runs switch the timer off for their duration: streams then flush by size, between whole
elements only — what Beam's own SDK harness does by default (``data_buffer_time_limit_ms`` 0).
Distributed runners are unaffected.
"""
from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def size_flushed_data_plane():
    """For the duration: the local runner's data streams flush by size only (module doc)."""
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    before = worker_handlers.DATA_BUFFER_TIME_LIMIT_MS
    worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = 0  # read when the run starts its servers and workers
    try:
        yield
    finally:
        worker_handlers.DATA_BUFFER_TIME_LIMIT_MS = before
