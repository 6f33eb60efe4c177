"""The data users already have: Hugging Face ``Image`` columns, LAION's column names, clear messages
when a shard has no usable column (img2dataset's three layouts: ``test_img2dataset_e2e.py``)."""
from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
from conftest import run_scan

from shardguard.pipelines.sample_data import encode, make_image


def _hf_shard(path, n=6):
    """A Hugging Face datasets parquet: ``image`` is a struct of ``bytes`` and ``path``; no key column."""
    imgs = [encode(make_image(700 + i)) for i in range(n)]
    image = pa.array([{"bytes": b, "path": f"img{i}.jpg"} for i, b in enumerate(imgs)]
                     + [{"bytes": None, "path": "elsewhere/remote.jpg"}],
                     pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    table = pa.table({"image": image, "text": [f"photo {i}" for i in range(n + 1)]})
    pq.write_table(table, path)
    return imgs, table


def test_hugging_face_image_columns_are_scanned(tmp_path):
    (tmp_path / "in").mkdir()
    imgs, table = _hf_shard(tmp_path / "in" / "train-00000.parquet")
    (tmp_path / "md5.txt").write_text(hashlib.md5(imgs[2]).hexdigest() + "\n")
    out = tmp_path / "out"
    assert run_scan(["--input", str(tmp_path / "in" / "*.parquet"), "--output", str(out), "--quiet",
                     "--hash-list", f"md5={tmp_path / 'md5.txt'}", "--caption-column", "text"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["totals"]["counts"] == dict(m["totals"]["counts"], rows_in=7, kept=5, removed=1, errored=1)
    assert m["totals"]["errors"] == {"input/path_only": 1}
    err = pq.read_table(out / "errors" / "train-00000.parquet").to_pylist()[0]
    assert err["key"] == "train-00000#6" and "only a path ('elsewhere/remote.jpg')" in err["message"]
    clean = pq.read_table(out / "clean" / "train-00000.parquet")
    assert clean.schema.equals(table.schema) and clean.num_rows == 5  # the input's own schema and values


def test_laion_column_names_match_case_insensitively(tmp_path):
    from shardguard.pipelines.prefilter import run as prefilter

    (tmp_path / "meta").mkdir()
    urls = ["https://a.example.com/1.jpg", "https://b.example.com/2.jpg"]
    pq.write_table(pa.table({"URL": urls, "TEXT": ["x", "y"]}), tmp_path / "meta" / "part-0.parquet")
    (tmp_path / "domains.txt").write_text("b.example.com\n")
    out = tmp_path / "out"
    assert prefilter(["--input", str(tmp_path / "meta" / "*.parquet"), "--output", str(out), "--quiet",
                      "--domain-list", str(tmp_path / "domains.txt")]) == 0  # --url-column url finds URL
    removed = pq.read_table(out / "removed" / "part-0.parquet").to_pylist()
    assert [r["url"] for r in removed] == [urls[1]]


def test_a_shard_without_the_image_column_says_which_columns_it_has(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    pq.write_table(pa.table({"key": ["a", "b"], "picture": [b"x", b"y"]}), tmp_path / "in" / "s.parquet")
    out = tmp_path / "out"
    assert run_scan(["--input", str(tmp_path / "in" / "*.parquet"), "--output", str(out), "--quiet",
                     "--features-only"]) == 1  # every row errored: the health check fails the run
    err = pq.read_table(out / "errors" / "s.parquet").to_pylist()[0]
    assert err["message"] == "shard has no image column 'jpg' (columns: key, picture)"
    assert "all 2 rows errored, nothing in it was checked: input/missing_column (2)" in capsys.readouterr().out


def test_claiming_shards_never_lists_a_shard_folder_through(tmp_path, monkeypatch):
    """Telling an img2dataset ``files`` shard (a parquet beside a folder of images) from a plain
    parquet shard takes one listing request that stops at the first file: at launch, a folder of a
    million images must not be listed."""
    from apache_beam.io.filesystems import FileSystems

    from shardguard.transforms.formats import claim_shards

    pq.write_table(pa.table({"key": ["a"]}), tmp_path / "00000.parquet")
    (tmp_path / "00000").mkdir()
    for i in range(50):
        (tmp_path / "00000" / f"{i:03d}.jpg").write_bytes(b"x")
    pq.write_table(pa.table({"key": ["b"], "jpg": [b"y"]}), tmp_path / "00001.parquet")
    listed, match = [], FileSystems.match
    monkeypatch.setattr(FileSystems, "match", staticmethod(
        lambda *a, **k: [listed.extend(r.metadata_list) or r for r in match(*a, **k)]))
    paths = sorted(str(p) for p in tmp_path.glob("*.parquet"))
    assert claim_shards(paths) == [(paths[0], "files"), (paths[1], "parquet")]
    assert len(listed) <= 2
