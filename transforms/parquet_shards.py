"""Plain functions over img2dataset-style parquet shards: identity, row streaming, filtered copy.

Shards are read through Beam's FileSystems (local, gs://, s3://) with pyarrow, a record batch at a
time, projecting only the columns a stage needs, so memory is bounded by the batch size and not by
the shard.
"""
from __future__ import annotations

import hashlib
import io
import posixpath
from contextlib import contextmanager
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from shardguard.indexes import fileio

READ_BATCH_ROWS = 64  # image rows per record batch: ~64 images in memory per reading thread


@dataclass(frozen=True)
class ColumnNames:
    """Input column names (img2dataset's by default)."""

    image: str = "jpg"
    key: str = "key"
    url: str = "url"
    caption: str = "caption"
    status: str = "status"
    integrity: str | None = None  # reference content hash of the stored bytes (md5/sha256 hex)


@contextmanager
def open_parquet(path: str):
    """A pyarrow ParquetFile over a Beam filesystem path."""
    raw = FileSystems.open(path, compression_type="uncompressed")
    try:
        yield pq.ParquetFile(pa.PythonFile(raw, mode="r"))
    finally:
        raw.close()


def shard_ids(paths: list[str]) -> dict[str, str]:
    """Stable shard ids: the file stem, disambiguated by a path hash where two stems collide."""
    import hashlib

    stems: dict[str, list[str]] = {}
    for p in paths:
        stem = posixpath.basename(p.rstrip("/")).split(".", 1)[0] or "shard"
        stems.setdefault(stem, []).append(p)
    out = {}
    for stem, group in stems.items():
        for p in group:
            out[p] = stem if len(group) == 1 else f"{stem}-{hashlib.sha1(p.encode()).hexdigest()[:8]}"
    return out


def derive_keys(raw_keys: list, shard: str) -> list[tuple[str, bool]]:
    """(key, derived) per row: the input key when present and unique in the shard, else
    ``<shard>#<row>`` (marked derived), which cannot collide with another row's."""
    counts: dict = {}
    for k in raw_keys:
        if k is not None:
            counts[str(k)] = counts.get(str(k), 0) + 1
    out = []
    for i, k in enumerate(raw_keys):
        if k is not None and str(k) != "" and counts[str(k)] == 1 and "#" not in str(k):
            out.append((str(k), False))
        else:
            out.append((f"{shard}#{i}", True))
    return out


def iter_rows(path: str, shard: str, cols: ColumnNames):
    """Yield one dict per input row: row, key, key_derived, url, caption, status, image.

    Raises on an unreadable file; a missing image column yields rows with ``missing_image_column``
    set so that every row is still accounted.
    """
    with open_parquet(path) as pf:
        names = set(pf.schema_arrow.names)
        raw_keys = (pf.read(columns=[cols.key]).column(0).to_pylist() if cols.key in names
                    else [None] * pf.metadata.num_rows)
        keys = derive_keys(raw_keys, shard)
        wanted = [c for c in (cols.image, cols.url, cols.caption, cols.status, cols.integrity) if c and c in names]
        row = 0
        if not wanted:  # nothing but (maybe) keys: still one record per row
            for row in range(pf.metadata.num_rows):
                yield _row(row, keys[row], {}, cols, names)
            return
        for batch in pf.iter_batches(batch_size=READ_BATCH_ROWS, columns=wanted):
            data = batch.to_pydict()
            for i in range(batch.num_rows):
                yield _row(row, keys[row], {c: data[c][i] for c in data}, cols, names)
                row += 1


def _row(row: int, key: tuple[str, bool], values: dict, cols: ColumnNames, names: set) -> dict:
    out = {"row": row, "key": key[0], "key_derived": key[1], "url": values.get(cols.url),
           "caption": values.get(cols.caption), "status": values.get(cols.status),
           "image": values.get(cols.image)}
    if cols.integrity:
        out["integrity_ref"] = values.get(cols.integrity)
    if cols.image not in names:
        out["missing_image_column"] = cols.image
    return out


def layout_digest(md: pq.FileMetaData) -> str:
    """sha256 of a parquet footer's content (row groups, column chunk offsets, sizes, statistics):
    it changes when the file is rewritten, so a copy can prove it is the file whose rows were read."""
    import json

    return hashlib.sha256(json.dumps(md.to_dict(), sort_keys=True, default=str).encode()).hexdigest()


def shard_metadata(path: str) -> dict:
    """Row count, column names, compression and footer digest of a shard (reads only the footer)."""
    with open_parquet(path) as pf:
        md = pf.metadata
        codec = md.row_group(0).column(0).compression.lower() if md.num_row_groups and md.num_columns else "snappy"
        return {"num_rows": md.num_rows, "columns": pf.schema_arrow.names, "compression": codec,
                "format": "parquet", "layout_sha256": layout_digest(md), "footer_size": md.serialized_size}


class ShardChanged(ValueError):
    """The input file is not the one whose rows were read (rewritten during the run)."""


_COPY_CHUNK = 8 << 20


def copy_unchanged(src: str, dst: str, layout_sha256: str, footer_size: int) -> tuple[str, int]:
    """Copy a shard whose rows are all kept byte for byte (its clean shard is the input file);
    return (sha256, size), which are then also the input's fingerprint, so a clean shard costs one
    read. The footer inside the copied bytes must match the one seen when its rows were read, or
    ShardChanged is raised and nothing appears at ``dst``: a file rewritten mid-run is never
    published as clean without having been scanned.
    """
    digest, size, tail = hashlib.sha256(), 0, b""
    with FileSystems.open(src, compression_type="uncompressed") as f, fileio.atomic_writer(dst) as out:
        while chunk := f.read(_COPY_CHUNK):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
            tail = (tail + chunk)[-(footer_size + 8):] if len(chunk) < footer_size + 8 else chunk[-(footer_size + 8):]
        try:  # the footer is the last footer_size + 8 bytes; b"PAR1" stands in for the file head
            same = layout_digest(pq.read_metadata(pa.BufferReader(b"PAR1" + tail))) == layout_sha256
        except Exception:  # noqa: BLE001 - an unparsable tail is a changed file
            same = False
        if not same:
            raise ShardChanged(f"{src} changed after its rows were read (footer differs); not copied")
    return digest.hexdigest(), size


ROW_GROUP_BYTES = 64 << 20  # clean shards: row groups of about this size (bounded memory)


def write_filtered_copy(src: str, dst: str, keep_rows: set[int], compression: str,
                        layout_sha256: str | None = None) -> tuple[str, int]:
    """Copy the rows of ``src`` whose position is in ``keep_rows`` to ``dst`` atomically, with the
    input's schema (and its metadata), column order and values; return (sha256, rows written).
    With ``layout_sha256`` (the footer digest seen when the rows were read), a file rewritten since
    raises ShardChanged before anything is written: rows are kept by position, so positions must
    still mean the rows that were scanned.

    Kept rows are buffered into row groups of about ``ROW_GROUP_BYTES`` (writing one per read batch
    would make thousands of tiny row groups and be slow to write and to read).
    """
    import numpy as np

    keep = np.array(sorted(keep_rows), dtype=np.int64)
    with open_parquet(src) as pf:
        if layout_sha256 and layout_digest(pf.metadata) != layout_sha256:
            raise ShardChanged(f"{src} changed after its rows were read (footer differs); not copied")
        return _copy_rows(pf, dst, keep, compression)


def _copy_rows(pf: pq.ParquetFile, dst: str, keep, compression: str) -> tuple[str, int]:
    import numpy as np

    written, start = 0, 0
    with fileio.atomic_writer(dst) as out:
        sink = _HashingSink(out)
        buffered = io.BufferedWriter(sink, buffer_size=8 << 20)
        writer = pq.ParquetWriter(pa.PythonFile(buffered, mode="w"), pf.schema_arrow,
                                  compression=compression if compression != "uncompressed" else "none")
        pending, pending_bytes = [], 0
        for batch in pf.iter_batches(batch_size=READ_BATCH_ROWS):
            idx = np.arange(start, start + batch.num_rows)
            kept = batch.filter(pa.array(np.isin(idx, keep)))
            start += batch.num_rows
            if kept.num_rows:
                pending.append(kept)
                pending_bytes += kept.nbytes
            if pending_bytes >= ROW_GROUP_BYTES:
                written += _flush(writer, pending)
                pending, pending_bytes = [], 0
        written += _flush(writer, pending)
        writer.close()
        buffered.flush()
    return sink.sha.hexdigest(), written


def _flush(writer, batches) -> int:
    if not batches:
        return 0
    table = pa.Table.from_batches(batches)
    writer.write_table(table, row_group_size=table.num_rows)
    return table.num_rows


class _HashingSink(io.RawIOBase):
    """Raw writer that sha256-hashes what passes through, so the output is never re-read."""

    def __init__(self, f):
        super().__init__()
        self._f, self.sha = f, hashlib.sha256()

    def writable(self):  # noqa: D102
        return True

    def write(self, data):  # noqa: D102
        self.sha.update(data)
        self._f.write(data)
        return len(data)

    def close(self):  # noqa: D102 - the atomic writer owns the real file
        super().close()
