"""What every pipeline command does around the Beam run: prepare the output, run, explain failures.

* Before any work the output directory is probed with a small atomic write, so a read-only,
  missing or full output stops the run at once with one clear line.
* Temporary files left by a killed run (``.tmp-*`` beside their targets) are removed at the start
  of the next run into the same output (one writer per output directory at a time, as documented).
* An IO error raised inside the pipeline (disk full, permission denied) is reported as one line
  naming the errno and path, not a wall of worker tracebacks; the exit code is 3.
"""
from __future__ import annotations

import re
import sys

from apache_beam.io.filesystems import FileSystems

from shardguard.indexes import fileio

OUTPUT_SUBDIRS = ("clean", "removed", "review", "errors", "features", "shards")
_ERRNO = re.compile(r"\[Errno (\d+)\] ([^\n]{0,300})")


class OutputError(OSError):
    """The output cannot be written; the message is one line for the user."""


def cleanup_stale_temps(output_dir: str) -> int:
    """Remove ``.tmp-*`` files a killed run left in the output tree; return how many."""
    patterns = [fileio.join(output_dir, d, ".tmp-*") for d in OUTPUT_SUBDIRS + ("lists/*",)]
    patterns.append(fileio.join(output_dir, ".tmp-*"))
    stale = []
    for result in FileSystems.match(patterns):
        stale += [m.path for m in result.metadata_list]
    if stale:
        FileSystems.delete(stale)
    return len(stale)


def prepare_output(output_dir: str) -> int:
    """Probe that the output is writable and clear stale temporaries; raise OutputError."""
    try:
        fileio.ensure_dir(output_dir)
        probe = fileio.join(output_dir, ".shardguard-write-probe")
        fileio.write_atomic(probe, b"probe\n")
        FileSystems.delete([probe])
        return cleanup_stale_temps(output_dir)
    except OSError as exc:
        raise OutputError(f"cannot write to output {output_dir}: {exc.strerror or exc}") from None


def explain(exc: BaseException) -> str | None:
    """A one-line description of an IO failure inside a pipeline run, or None if it is not one."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return f"[Errno {seen.errno}] {seen.strerror}: {seen.filename or ''}".rstrip(": ")
        seen = seen.__cause__ or seen.__context__
    m = _ERRNO.search(str(exc))
    return f"[Errno {m.group(1)}] {m.group(2).rstrip(chr(39))}" if m else None


def run_beam(build, options):
    """Build and run a pipeline; IO failures become OutputError with a one-line message.
    Returns the pipeline result (for a dry run, the translated job is ``result.job``)."""
    import apache_beam as beam

    try:
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
    """Print a launch or run error as one line; its exit code: 3 when the output cannot be written,
    2 for a bad config, list, model or pin."""
    print(f"shardguard: error: {exc}", file=sys.stderr)
    return 3 if isinstance(exc, OutputError) else 2
