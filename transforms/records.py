"""Record schemas of the verdict outputs and the parquet helper that writes them deterministically.

Removal, review and tag records hold keys, url, sha256, verdict, reasons and every match — never
image bytes, never list entries beyond their id. Error records hold key, stage, error class and message.
"""
from __future__ import annotations

import functools
import io

import pyarrow as pa
import pyarrow.parquet as pq

from shardguard.indexes import fileio
from shardguard.transforms.contracts import MATCH_TYPE

VERDICT_SCHEMA = pa.schema([
    ("row", pa.int64()), ("key", pa.string()), ("url", pa.string()), ("sha256", pa.string()),
    ("verdict", pa.string()), ("reasons", pa.list_(pa.string())), ("matches", pa.list_(MATCH_TYPE)),
])

ERROR_SCHEMA = pa.schema([
    ("row", pa.int64()), ("key", pa.string()), ("stage", pa.string()), ("error_class", pa.string()),
    ("message", pa.string()), ("kept", pa.bool_()),
])


def parquet_bytes(table: pa.Table) -> bytes:
    """A table as parquet with fixed settings (deterministic bytes)."""
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


@functools.lru_cache(maxsize=16)
def _empty(schema: pa.Schema) -> bytes:
    # most shards' review, tag and error files are empty: the same bytes every time (~0.4 ms each)
    return parquet_bytes(schema.empty_table())


def write_table(path: str, table: pa.Table) -> dict:
    """Write a table as parquet atomically with fixed settings (deterministic bytes);
    return ``{"sha256", "rows"}``."""
    return {"sha256": fileio.write_atomic(path, parquet_bytes(table)), "rows": table.num_rows}


def write_rows(path: str, rows: list[dict], schema: pa.Schema) -> dict:
    """Write rows (dicts) with a fixed schema as parquet atomically; return ``{"sha256", "rows"}``."""
    data = parquet_bytes(pa.Table.from_pylist(rows, schema=schema)) if rows else _empty(schema)
    return {"sha256": fileio.write_atomic(path, data), "rows": len(rows)}
