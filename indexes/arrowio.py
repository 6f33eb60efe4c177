"""The one way shardguard reads parquet: no Arrow thread ever holds a Python object.

Why: ``pq.read_table(io.BytesIO(...))`` or ``pq.ParquetFile(pa.PythonFile(...))`` can return while
Arrow's own thread pool still holds Python objects (the pre-buffered read cache; ``~PyBuffer`` then
calls ``PyGILState_Ensure``). When that clean-up runs during interpreter shutdown, Python kills the
thread and the C++ unwinding ends in ``std::terminate``: exit 134 after complete outputs
(apache/arrow #33975, #34314). So every read here hands Arrow either a native file (local paths) or
an Arrow-owned buffer (a copy of the bytes; no Python object behind it), and turns off both
``pre_buffer`` and ``use_threads`` (``use_threads`` alone is not enough).

Large remote files (object stores) are read through Beam's file object with ``pre_buffer=False``
and ``use_threads=False``: reads then happen synchronously in the calling thread.
"""
from __future__ import annotations

from contextlib import contextmanager

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.localfilesystem import LocalFileSystem


def arrow_buffer(data: bytes) -> pa.Buffer:
    """A copy of ``data`` in memory that Arrow owns (no Python object to release later)."""
    out = pa.BufferOutputStream()
    out.write(data)
    return out.getvalue()


def _local_path(path: str) -> str | None:
    try:
        if isinstance(FileSystems.get_filesystem(path), LocalFileSystem):
            return path[len("file://"):] if path.startswith("file://") else path
    except ValueError:
        return None
    return None


@contextmanager
def open_parquet(path: str):
    """A ``ParquetFile`` over any Beam filesystem path, safe at interpreter exit (module doc).
    Read it with ``use_threads=False`` (``iter_batches``/``read``)."""
    local = _local_path(path)
    if local is not None:
        with pa.OSFile(local, "rb") as f:
            yield pq.ParquetFile(f, pre_buffer=False)
        return
    raw = FileSystems.open(path, compression_type="uncompressed")
    try:
        yield pq.ParquetFile(pa.PythonFile(raw, mode="r"), pre_buffer=False)
    finally:
        raw.close()


def read_table(source, columns=None) -> pa.Table:
    """A whole parquet table from a path (any Beam filesystem) or from bytes already in memory."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return pq.read_table(pa.BufferReader(arrow_buffer(bytes(source))), columns=columns,
                             use_threads=False, pre_buffer=False)
    with open_parquet(source) as pf:
        return pf.read(columns=columns, use_threads=False)


def read_metadata(source) -> pq.FileMetaData:
    """A parquet footer from a path or from bytes."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return pq.read_metadata(pa.BufferReader(arrow_buffer(bytes(source))))
    with open_parquet(source) as pf:
        return pf.metadata


def to_pylist(column) -> list:
    """A column's values as Python objects; a string column holding invalid UTF-8 (parquet does not
    validate it) is read as bytes and decoded with replacement, so one such value cannot fail a
    shard. Valid columns (checked at once: ~50 µs per 10,000 values) take Arrow's own conversion,
    4-5x faster than decoding value by value."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        if _valid_utf8(column):
            return column.to_pylist()
        return [None if v is None else v.decode("utf-8", "replace")
                for v in column.cast(pa.large_binary() if pa.types.is_large_string(column.type)
                                     else pa.binary()).to_pylist()]
    return column.to_pylist()


def _valid_utf8(column) -> bool:
    try:
        for chunk in (column.chunks if isinstance(column, pa.ChunkedArray) else [column]):
            chunk.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True
