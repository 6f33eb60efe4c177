"""Hex hash columns decoded at once equal Python's own conversion, and damaged values are refused."""
from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest

from shardguard.indexes.hashtypes import HASH_TYPES
from shardguard.indexes.hexcolumn import hex_codes, int_column


def _oracle(values, nbytes):
    codes = np.zeros((len(values), nbytes), dtype=np.uint8)
    for i, v in enumerate(values):
        if v:
            codes[i] = np.frombuffer(bytes.fromhex(v), dtype=np.uint8)
    return codes, np.array([bool(v) for v in values])


@pytest.mark.parametrize("name", ["md5", "sha256", "phash", "pdq"])
@pytest.mark.parametrize("string_type", [pa.string(), pa.large_string()])
def test_hex_codes_equal_bytes_fromhex(name, string_type):
    nbytes = HASH_TYPES[name].nbytes
    rng = np.random.default_rng(nbytes)
    values = [rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes().hex() for _ in range(50)]
    values[3], values[10], values[11] = None, "", values[11].upper()
    col = pa.chunked_array([pa.array(values[:7], string_type), pa.array(values[7:], string_type)])
    for c in (col, col.combine_chunks().slice(4, 30)):  # chunked, and a slice (an offset into the buffers)
        want = _oracle(c.to_pylist(), nbytes)
        got = hex_codes(c, nbytes)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


def test_null_and_empty_columns():
    codes, present = hex_codes(pa.array([None, None], pa.string()), 16)
    assert codes.shape == (2, 16) and not present.any()
    assert hex_codes(pa.array([], pa.string()), 8)[0].shape == (0, 8)


@pytest.mark.parametrize("bad,message", [("abc", "3 characters"), ("zz" * 16, "not a hex digit"),
                                         ("0" * 31 + "g", "not a hex digit"), ("0" * 15 + " " + "0" * 16,
                                                                              "not a hex digit")])
def test_a_damaged_value_is_refused_with_its_row(bad, message):
    good = hashlib.md5(b"x").hexdigest()
    with pytest.raises(ValueError, match=f"row 2: .*{message}"):
        hex_codes(pa.array([good, None, bad, good]), 16)


def test_a_null_that_holds_characters_is_no_hash():
    """Arrow lets a null slot span characters; they are skipped, not decoded into the next rows."""
    good = [hashlib.md5(bytes([i])).hexdigest() for i in range(3)]
    data = (good[0] + "ff" * 16 + good[1] + good[2]).encode()
    offsets = np.array([0, 32, 64, 96, 128], dtype=np.int32)
    validity = np.packbits(np.array([1, 0, 1, 1, 0, 0, 0, 0], dtype=bool), bitorder="little")
    col = pa.Array.from_buffers(pa.string(), 4, [pa.py_buffer(validity.tobytes()), pa.py_buffer(offsets.tobytes()),
                                                  pa.py_buffer(data)], null_count=1)
    codes, present = hex_codes(col, 16)
    assert present.tolist() == [True, False, True, True]
    assert [codes[i].tobytes().hex() for i in (0, 2, 3)] == good and not codes[1].any()


def test_int_column_marks_missing_values():
    col = pa.chunked_array([pa.array([70, None], pa.int32()), pa.array([49], pa.int32())])
    assert int_column(col, 3).tolist() == [70, -1, 49]
    assert int_column(None, 2).tolist() == [-1, -1]


def test_a_column_of_another_type_is_refused():
    with pytest.raises(TypeError, match="must hold strings"):
        hex_codes(pa.array([1, 2]), 16)
