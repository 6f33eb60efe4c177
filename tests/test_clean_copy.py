"""Clean shards of fully kept inputs: the input file itself, fingerprinted by the copy, and never
published when the file was rewritten after its rows were read."""
from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_scan

from shardguard.transforms.contracts import ShardInfo
from shardguard.transforms.formats import InputChanged
from shardguard.transforms.formats.parquet import ParquetFormat, copy_whole, shard_metadata


def _jpeg(seed: int, i: int) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    px = np.random.default_rng(seed * 1000 + i).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(px).resize((64, 64)).save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def _shard(path, n, seed=0, row_group_size=None):
    data = [_jpeg(seed, i) for i in range(n)]
    table = pa.table({"key": [f"{seed}-{i:04d}" for i in range(n)], "jpg": data})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def test_a_whole_copy_is_the_input_byte_for_byte(tmp_path):
    src = _shard(tmp_path / "a.parquet", 300)
    meta = shard_metadata(str(src))
    data = src.read_bytes()
    sha = copy_whole(str(src), str(tmp_path / "c.parquet"), hashlib.sha256(data).hexdigest(),
                     meta["layout_sha256"], meta["footer_size"])
    assert (tmp_path / "c.parquet").read_bytes() == data and sha == hashlib.sha256(data).hexdigest()


def test_a_file_rewritten_after_its_rows_were_read_is_not_copied(tmp_path):
    src = _shard(tmp_path / "a.parquet", 300)
    meta = shard_metadata(str(src))
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    _shard(src, 300, seed=9, row_group_size=100)  # rewritten between the row read and the copy
    with pytest.raises(InputChanged, match="changed after its rows were read"):
        copy_whole(str(src), str(tmp_path / "c.parquet"), sha, meta["layout_sha256"], meta["footer_size"])
    _shard(src, 300, seed=9)  # rewritten with the same layout: the sha256 still tells
    meta2 = shard_metadata(str(src))
    with pytest.raises(InputChanged, match="changed since it was scanned"):
        copy_whole(str(src), str(tmp_path / "c.parquet"), sha, meta2["layout_sha256"], meta2["footer_size"])
    assert not list(tmp_path.glob("*c.parquet"))  # nothing published, no temp left behind


def test_scan_of_clean_shards_copies_inputs_byte_for_byte(tmp_path):
    ins = tmp_path / "in"
    ins.mkdir()
    for i in range(2):
        _shard(ins / f"{i:05d}.parquet", 60, seed=i)
    out = tmp_path / "out"
    assert run_scan(["--input", str(ins / "*.parquet"), "--output", str(out), "--hashes", "md5,phash", "--features-only"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    for s in m["shards"]:
        data = open(s["input"]["path"], "rb").read()
        assert s["counts"]["kept"] == s["counts"]["rows_in"] == 60
        assert (out / s["outputs"]["clean"]["path"]).read_bytes() == data
        assert s["input"]["sha256"] == s["outputs"]["clean"]["sha256"] == hashlib.sha256(data).hexdigest()


def _info(src, **kw):
    data = src.read_bytes()
    return ShardInfo(shard="a", path=str(src), format="parquet", sha256=hashlib.sha256(data).hexdigest(),
                     size=len(data), **{**shard_metadata(str(src)), **kw})


def test_a_fully_kept_shard_copy_checks_the_recorded_sha(tmp_path):
    src = _shard(tmp_path / "a.parquet", 40)
    info = _info(src, layout_sha256=None)  # a re-filter of an older parent: no footer digest
    dst = {"clean": str(tmp_path / "out" / "a.parquet")}
    (tmp_path / "out").mkdir()
    files = ParquetFormat().write_clean(info, set(range(40)), dst, None, verify_sha256=True)
    assert (tmp_path / "out" / "a.parquet").read_bytes() == src.read_bytes()
    assert files["clean"]["sha256"] == info.sha256
    (tmp_path / "out" / "a.parquet").unlink()
    import dataclasses

    with pytest.raises(InputChanged):
        ParquetFormat().write_clean(dataclasses.replace(info, sha256="0" * 64), set(range(40)), dst, None, True)
    assert not list((tmp_path / "out").iterdir())


def test_a_partly_kept_shard_rewritten_after_its_rows_were_read_fails_closed(tmp_path):
    src = _shard(tmp_path / "a.parquet", 40)
    info = _info(src)
    (tmp_path / "out").mkdir()
    dst = {"clean": str(tmp_path / "out" / "a.parquet")}
    files = ParquetFormat().write_clean(info, set(range(0, 40, 2)), dst, None, verify_sha256=False)
    assert files["clean"]["rows"] == 20
    (tmp_path / "out" / "a.parquet").unlink()
    _shard(src, 40, seed=5)  # rewritten: same row count, other images at the kept positions
    with pytest.raises(InputChanged, match="changed after its rows were read"):
        ParquetFormat().write_clean(info, set(range(0, 40, 2)), dst, None, verify_sha256=False)
    with pytest.raises(InputChanged, match="changed since it was scanned"):  # a re-filter checks the sha256
        ParquetFormat().write_clean(info, set(range(0, 40, 2)), dst, None, verify_sha256=True)
    assert not list((tmp_path / "out").iterdir())


def test_a_partly_kept_shard_with_other_bytes_behind_the_same_footer_is_not_published(tmp_path):
    """A re-filter hashes the input while it copies the kept rows: a byte changed inside an image
    (footer, sizes and row count unchanged) fails the copy and nothing appears; the error is the
    sha256's."""
    src = tmp_path / "a.parquet"
    pq.write_table(pa.table({"key": [str(i) for i in range(40)], "jpg": [_jpeg(0, i) for i in range(40)]}),
                   src, compression="none")  # the image bytes lie in the file as they are
    info = _info(src)
    raw = bytearray(src.read_bytes())
    img = pq.read_table(src).column("jpg")[2].as_py()
    at = bytes(raw).index(img) + len(img) // 2
    raw[at] ^= 0xFF
    src.write_bytes(bytes(raw))
    (tmp_path / "out").mkdir()
    dst = {"clean": str(tmp_path / "out" / "a.parquet")}
    with pytest.raises(InputChanged, match="changed since it was scanned"):
        ParquetFormat().write_clean(info, set(range(0, 40, 2)), dst, None, verify_sha256=True)
    assert not list((tmp_path / "out").iterdir())
    files = ParquetFormat().write_clean(info, set(range(0, 40, 2)), dst, None, verify_sha256=False)
    assert files["clean"]["rows"] == 20  # only the sha256 tells this file from the scanned one


def test_a_partly_kept_shard_whose_input_is_gone_fails_as_input_changed(tmp_path):
    """Gone before its compression is looked up (a parent that did not record it): the shard fails
    with the input's error, not with whatever the copy ran into first."""
    import dataclasses

    src = _shard(tmp_path / "a.parquet", 40)
    info = dataclasses.replace(_info(src), compression=None)
    src.unlink()
    (tmp_path / "out").mkdir()
    with pytest.raises(InputChanged, match="cannot be read"):
        ParquetFormat().write_clean(info, set(range(0, 40, 2)), {"clean": str(tmp_path / "out" / "a.parquet")},
                                    None, verify_sha256=True)
    assert not list((tmp_path / "out").iterdir())


def test_copies_and_hashes_read_in_reused_chunks(tmp_path, monkeypatch):
    """Small chunks (the footer check's tail spans several of them): the same bytes, sha256 and
    footer check as one read; a reader without ``readinto`` reads the plain way."""
    import io

    from shardguard.indexes import fileio

    src = _shard(tmp_path / "a.parquet", 300)
    data, meta = src.read_bytes(), shard_metadata(str(src))
    sha = hashlib.sha256(data).hexdigest()
    monkeypatch.setattr(fileio, "_CHUNK", 1000)  # < the footer: the tail is pieced together
    assert meta["footer_size"] > 1000
    assert fileio.sha256_file(str(src)) == (sha, len(data))
    assert copy_whole(str(src), str(tmp_path / "c.parquet"), sha, meta["layout_sha256"], meta["footer_size"]) == sha
    assert fileio.copy_verified(str(src), str(tmp_path / "d.parquet"), sha) == sha
    assert (tmp_path / "c.parquet").read_bytes() == data == (tmp_path / "d.parquet").read_bytes()

    class Plain:
        def __init__(self):
            self._f = io.BytesIO(data)

        def read(self, n):
            return self._f.read(n)

    assert b"".join(bytes(c) for c in fileio.read_chunks(Plain())) == data
    chunks = list(fileio.read_chunks(io.BytesIO(data)))
    assert len(chunks) == -(-len(data) // 1000) and chunks[0].obj is chunks[-1].obj  # one buffer
