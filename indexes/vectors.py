"""Stored embedding vectors (supplied by the user, clip-retrieval's layout): read by rows, checked.

A ``.npy`` file is read by byte ranges after its header (an ``img_emb_N.npy`` of LAION holds about a
million vectors; a shard needs a few thousand of them), through Beam's FileSystems; a parquet file's
vector column is read whole. Every vector read is checked to be L2-normalised.
"""
from __future__ import annotations

import io

import numpy as np
import pyarrow as pa

from shardguard.indexes.arrowio import read_table


class VectorFileError(ValueError):
    """A vector file that cannot be used; the message names the file (and row)."""


def npy_header(path: str) -> tuple[tuple, np.dtype, int]:
    """(shape, dtype, data offset) of a .npy file, from its header alone."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path, compression_type="uncompressed") as f:
        head = f.read(1 << 16)
    bio = io.BytesIO(head)
    try:
        version = np.lib.format.read_magic(bio)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(bio)
    except Exception as exc:  # noqa: BLE001 - any unreadable header is the same error
        raise VectorFileError(f"{path}: not a .npy array ({exc})") from None
    if fortran or len(shape) != 2 or dtype not in (np.float16, np.float32):
        raise VectorFileError(f"{path}: expected a C-order (n, dim) float16/float32 array, got {shape} {dtype}")
    return shape, dtype, bio.tell()


def read_rows(path: str, rows: np.ndarray, column: str | None = None) -> np.ndarray:
    """float32 vectors of ``rows`` of one file (a .npy read by ranges, or a parquet column)."""
    if column is not None:
        col = read_table(path, columns=[column]).column(0).combine_chunks()
        dim = col.type.list_size if pa.types.is_fixed_size_list(col.type) else len(col[0])
        flat = np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)
        return flat[rows]
    from apache_beam.io.filesystems import FileSystems

    (n, dim), dtype, offset = npy_header(path)
    width = dim * np.dtype(dtype).itemsize
    out = np.zeros((len(rows), dim), np.float32)
    with FileSystems.open(path, compression_type="uncompressed") as f:
        for i, r in enumerate(rows):
            f.seek(offset + int(r) * width)
            out[i] = np.frombuffer(f.read(width), dtype=dtype)
    return out


def check_norms(path: str, rows: np.ndarray, vecs: np.ndarray) -> None:
    """Supplied embeddings must be L2-normalised (float16 storage: within 1%)."""
    norms = np.linalg.norm(vecs, axis=1)
    bad = np.nonzero(np.abs(norms - 1) > 0.01)[0]
    if len(bad):
        raise VectorFileError(f"{path} row {int(rows[bad[0]])}: embedding norm {norms[bad[0]]:.3f}; supplied "
                         "embeddings must be L2-normalised")


def write_index(out_dir: str, keys: list, files: list[int], rows: list[int], paths: list[str]) -> None:
    """The key → (file, row) index as a sorted parquet table; duplicate keys are refused."""
    import pyarrow.parquet as pq

    from shardguard.indexes import fileio

    table = pa.table({"key": pa.array([None if k is None else str(k) for k in keys], pa.string()),
                      "file": pa.array(files, pa.int32()), "row": pa.array(rows, pa.int64())})
    table = table.filter(pa.compute.is_valid(table.column("key"))).sort_by("key")
    k = table.column("key").to_numpy(zero_copy_only=False)
    dup = np.nonzero(k[1:] == k[:-1])[0]
    if len(dup):
        raise VectorFileError(f"--embeddings: key {k[dup[0]]!r} has two embeddings; keys must be unique")
    fileio.ensure_dir(out_dir)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    fileio.write_atomic(fileio.join(out_dir, "index.parquet"), buf.getvalue())
    fileio.write_atomic(fileio.join(out_dir, "files.json"), fileio.canonical_json({"files": paths}))
