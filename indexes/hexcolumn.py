"""Hex hash columns of a features table as fixed-width codes, without a Python string per row.

A re-filter matches every row of every shard against every list again; turning each hex value into
a Python string and then into bytes cost more than the matching (~0.4 s of CPU per 100,000 rows per
list, measured). Here the column's Arrow buffers are decoded at once: the values' characters are
decoded in one call where they lie back to back, else gathered into an ``(n, digits)`` array and
mapped through a nibble table.
"""
from __future__ import annotations

import binascii

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_NIBBLE = np.full(256, 255, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _NIBBLE[_c] = _i
    _NIBBLE[ord(chr(_c).upper())] = _i


def _string_array(column) -> pa.Array:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    t = arr.type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)):
        raise TypeError(f"a hex hash column must hold strings, not {t}")
    return arr


def hex_codes(column, nbytes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, present)`` of a column of hex strings: ``codes`` is an ``(n, nbytes)`` uint8 array
    (zeros where absent), ``present`` marks non-null, non-empty values (rows without a hash). A
    present value that is not ``2 * nbytes`` hex digits raises ValueError: a features file is
    written by shardguard, so such a value means it is damaged."""
    arr = _string_array(column)
    n, digits = len(arr), 2 * nbytes
    codes = np.zeros((n, nbytes), dtype=np.uint8)
    if n == 0 or arr.null_count == n:
        return codes, np.zeros(n, dtype=bool)
    wide = np.int64 if pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=wide)[arr.offset:arr.offset + n + 1].astype(np.int64)
    lengths = np.diff(offsets)
    present = (lengths > 0) & ~pc.is_null(arr).to_numpy(zero_copy_only=False)
    if np.any(present & (lengths != digits)):
        bad = int(np.flatnonzero(present & (lengths != digits))[0])
        raise ValueError(f"row {bad}: a hash of {lengths[bad]} characters where {digits} hex digits belong")
    if not present.any():
        return codes, present
    at_once = _unhexlified(arr, offsets, lengths, present, nbytes)
    if at_once is not None:
        codes[present] = at_once
        return codes, present
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    nib = _NIBBLE[data[offsets[:-1][present, None] + np.arange(digits)]]
    if np.any(nib == 255):
        bad = int(np.flatnonzero(present)[np.flatnonzero((nib == 255).any(axis=1))[0]])
        raise ValueError(f"row {bad}: a hash with a character that is not a hex digit")
    codes[present] = (nib[:, 0::2] << 4) | nib[:, 1::2]
    return codes, present


def _unhexlified(arr: pa.Array, offsets, lengths, present, nbytes: int) -> np.ndarray | None:
    """The present values decoded in one call where their characters lie back to back (no null or
    empty value holds any): binascii's decoder, ~10x the nibble table (0.24 vs 2.7 ms for 8,800
    PDQs). None where that does not hold or a character is not a hex digit (the table names the row)."""
    if lengths[~present].any():
        return None
    try:
        raw = binascii.unhexlify(memoryview(arr.buffers()[2])[offsets[0]:offsets[-1]])
    except binascii.Error:
        return None
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, nbytes)


def int_column(column, n: int, missing: int = -1) -> np.ndarray:
    """An integer column as int64 (``missing`` for nulls; all ``missing`` when there is no column)."""
    if column is None:
        return np.full(n, missing, dtype=np.int64)
    return pc.fill_null(column, missing).to_numpy().astype(np.int64)
