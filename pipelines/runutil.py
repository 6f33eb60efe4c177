"""What every pipeline command does around the Beam run: run it quietly, explain failures in one line.

An IO error raised inside the pipeline (disk full, permission denied) is reported as one line naming
the errno and the path, not a wall of worker tracebacks (Beam's own error logging of the same
failure is held back while the run's exception is explained); the exit code is 3.
Exit codes: 0 success, 1 some shard failed or the run's health check failed, 2 usage, config,
list, model or pin errors (nothing was run), 3 the output cannot be written.
"""
from __future__ import annotations

import logging
import re
import sys
from contextlib import contextmanager

from shardguard.pipelines.dataplane import size_flushed_data_plane
from shardguard.pipelines.options import UsageError
from shardguard.pipelines.outputdir import OutputError
from shardguard.pipelines.sampler import short_sampler_period

_ERRNO = re.compile(r"\[Errno (\d+)\] ([^\n]{0,300})")


class _HoldErrors(logging.Filter):
    """Drops Beam's ERROR records (tracebacks of the failure the run then reports itself)."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102
        return record.levelno < logging.ERROR


class _HoldInMemoryWarning(logging.Filter):
    """Drops Beam 2.77's warning that ``in_memory`` with several workers lacks parallelism: its
    runner runs the parts of each stage on threads all the same (the default local mode,
    ``options.pipeline_options``; measured in benchmarks/RESULTS.md)."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102
        return not str(record.msg).startswith("If direct_num_workers is not equal to 1")


@contextmanager
def quiet_beam():
    """For the duration: hold back Beam's error logging (the caller reports the exception) and its
    inaccurate in_memory warning."""
    flt, runner_log = _HoldErrors(), logging.getLogger("apache_beam.runners.portability.fn_api_runner.fn_runner")
    warning = _HoldInMemoryWarning()
    handlers = list(logging.getLogger().handlers)
    for h in handlers:
        h.addFilter(flt)
    runner_log.addFilter(warning)
    try:
        yield
    finally:
        runner_log.removeFilter(warning)
        for h in handlers:
            h.removeFilter(flt)


def explain(exc: BaseException) -> str | None:
    """A one-line description of an IO failure inside a pipeline run, or None if it is not one."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return f"[Errno {seen.errno}] {seen.strerror}: {seen.filename or ''}".rstrip(": ")
        seen = seen.__cause__ or seen.__context__
    m = _ERRNO.search(str(exc))
    return f"[Errno {m.group(1)}] {m.group(2).rstrip(chr(39))}" if m else None


@contextmanager
def frozen_heap():
    """For the duration: the objects alive at entry are left out of garbage collection, then put back.

    A local run's process holds a quarter of a million long-lived objects before the first row (Beam,
    pandas, pyarrow, numpy, the lists), and every full collection the rows' allocations trigger walks
    them all: ~80 ms each, 0.4 s of a 10k-row scan (measured, benchmarks/RESULTS.md). None of them is
    garbage the run makes, so they are frozen (``gc.freeze``) while it runs and unfrozen after, so an
    application that embeds ``run()`` keeps its collector as it was (one that froze its own heap
    already is left alone: unfreezing would undo its choice)."""
    import gc

    mine = gc.get_freeze_count() == 0
    if mine:
        gc.freeze()
    try:
        yield
    finally:
        if mine:
            gc.unfreeze()


def run_beam(build, options):
    """Build and run a pipeline; IO failures become OutputError with a one-line message.
    Returns the pipeline result (for a dry run, the translated job is ``result.job``)."""
    import apache_beam as beam

    try:
        with quiet_beam(), size_flushed_data_plane(), short_sampler_period(), frozen_heap():
            p = beam.Pipeline(options=options)
            build(p)
            result = p.run()
            result.wait_until_finish()
        return result
    except Exception as exc:  # noqa: BLE001 - classified below, re-raised when not an IO failure
        why = explain(exc)
        if why is None:
            raise
        raise OutputError(f"the run stopped on an IO error: {why} (outputs written so far are complete "
                          "files; rerun to resume)") from None


def error_exit(exc: BaseException) -> int:
    """Print a launch or run error as one line; its exit code (module doc)."""
    print(f"shardguard: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
    return 3 if isinstance(exc, OutputError) else 2


__all__ = ["OutputError", "UsageError", "error_exit", "explain", "frozen_heap", "quiet_beam", "run_beam"]
