"""Clean shards of fully kept inputs: the input file itself, fingerprinted by the copy, and never
published when the file was rewritten after its rows were read."""
from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import run_scan
from shardguard.transforms.parquet_shards import ShardChanged, copy_unchanged, shard_metadata


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


def test_copy_unchanged_is_the_input_and_its_fingerprint(tmp_path):
    src = _shard(tmp_path / "a.parquet", 300)
    meta = shard_metadata(str(src))
    sha, size = copy_unchanged(str(src), str(tmp_path / "c.parquet"), meta["layout_sha256"], meta["footer_size"])
    data = src.read_bytes()
    assert (tmp_path / "c.parquet").read_bytes() == data
    assert (sha, size) == (hashlib.sha256(data).hexdigest(), len(data))


def test_a_file_rewritten_after_its_rows_were_read_is_not_copied(tmp_path):
    src = _shard(tmp_path / "a.parquet", 300)
    meta = shard_metadata(str(src))
    _shard(src, 300, seed=9, row_group_size=100)  # rewritten between the row read and the copy
    with pytest.raises(ShardChanged, match="changed after its rows were read"):
        copy_unchanged(str(src), str(tmp_path / "c.parquet"), meta["layout_sha256"], meta["footer_size"])
    assert not list(tmp_path.glob("*c.parquet"))  # nothing published, no temp left behind


def test_scan_of_clean_shards_copies_inputs_byte_for_byte(tmp_path):
    ins = tmp_path / "in"
    ins.mkdir()
    for i in range(2):
        _shard(ins / f"{i:05d}.parquet", 60, seed=i)
    out = tmp_path / "out"
    assert run_scan(["--input", str(ins / "*.parquet"), "--output", str(out), "--hashes", "md5,phash"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    for s in m["shards"]:
        data = open(s["input"]["path"], "rb").read()
        assert s["counts"]["kept"] == s["counts"]["rows_in"] == 60
        assert (out / s["outputs"]["clean"]["path"]).read_bytes() == data
        assert s["input"]["sha256"] == s["outputs"]["clean"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_refilter_copy_of_a_fully_kept_shard_checks_the_parent_sha(tmp_path):
    from shardguard.transforms.write import InputChanged, write_clean

    src = _shard(tmp_path / "a.parquet", 40)
    data = src.read_bytes()
    info = {"path": str(src), "shard": "a", "num_rows": 40, "verify_input": True, "format": "parquet",
            "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    dst = {"clean": str(tmp_path / "out" / "a.parquet")}
    (tmp_path / "out").mkdir()
    files, (sha, size) = write_clean(info, set(range(40)), dst, None)
    assert (tmp_path / "out" / "a.parquet").read_bytes() == data and sha == files["clean"]["sha256"]
    (tmp_path / "out" / "a.parquet").unlink()
    with pytest.raises(InputChanged):
        write_clean(dict(info, sha256="0" * 64), set(range(40)), dst, None)
    assert not list((tmp_path / "out").iterdir())


def test_a_partly_kept_shard_rewritten_after_its_rows_were_read_fails_closed(tmp_path):
    from shardguard.transforms.write import InputChanged, write_clean

    src = _shard(tmp_path / "a.parquet", 40)
    info = dict(shard_metadata(str(src)), path=str(src), shard="a")
    (tmp_path / "out").mkdir()
    dst = {"clean": str(tmp_path / "out" / "a.parquet")}
    files, (sha, _) = write_clean(info, set(range(0, 40, 2)), dst, None)  # unchanged: copies 20 rows
    assert files["clean"]["rows"] == 20 and sha == hashlib.sha256(src.read_bytes()).hexdigest()
    (tmp_path / "out" / "a.parquet").unlink()
    _shard(src, 40, seed=5)  # rewritten: same row count, other images at the kept positions
    with pytest.raises(InputChanged, match="changed after its rows were read"):
        write_clean(info, set(range(0, 40, 2)), dst, None)
    assert not list((tmp_path / "out").iterdir())
