"""webdataset shards: untrusted member names, unsorted members, metadata beside the tar, and the
same decisions as the parquet form of the same rows."""
from __future__ import annotations

import io
import json
import tarfile

import pyarrow.parquet as pq
import pytest
from conftest import run_scan

from shardguard.pipelines.sample_data import encode, make_image, shard_rows, variants, write_shard
from shardguard.transforms.formats.webdataset import split_member


@pytest.mark.parametrize("name,want", [
    ("000001.jpg", ("000001", "jpg")), ("dir/000001.json", ("dir/000001", "json")),
    ("a.b.c", ("a", "b.c")), ("../evil.jpg", None), ("/etc/passwd.jpg", None), ("a/../b.jpg", None),
    ("x\x00.jpg", None), ("noext", None), ("dir\\x.jpg", None), ("./x.jpg", None),
])
def test_split_member(name, want):
    assert split_member(name) == want


def _add(tf, name, data: bytes, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname, info.mtime = (len(data) if kind == tarfile.REGTYPE else 0), kind, link, 1700000000
    tf.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


@pytest.fixture(scope="module")
def wds(tmp_path_factory):
    """One tar + metadata (unsorted members, hostile names) and the equivalent parquet shard."""
    d = tmp_path_factory.mktemp("wds")
    bad = make_image(77)
    imgs = {"k0": encode(make_image(70)), "k1": variants(bad)["recompressed"], "k2": encode(make_image(71)),
            "k3": encode(make_image(72))}
    meta_rows = []
    for i, k in enumerate(["k0", "k1", "k2", "k3", "k4"]):  # k4: failed download, no member
        meta_rows.append({"key": k, "url": f"http://h/{k}", "caption": f"cap {k}",
                          "status": "success" if k != "k4" else "failed_to_download"})
    with tarfile.open(d / "00000.tar", "w", format=tarfile.PAX_FORMAT) as tf:
        for k in ["k2", "k0", "k3", "k1"]:  # not sorted
            _add(tf, f"{k}.jpg", imgs[k])
            _add(tf, f"{k}.txt", f"cap {k}".encode())
            _add(tf, f"{k}.json", json.dumps({"key": k}).encode())
        _add(tf, "../escape.jpg", imgs["k0"])
        _add(tf, "/abs.jpg", imgs["k0"])
        _add(tf, "link.jpg", b"", tarfile.SYMTYPE, "/etc/passwd")
        _add(tf, "dup.jpg", imgs["k2"])
        _add(tf, "dup.jpg", imgs["k3"])
    import pyarrow as pa
    pq.write_table(pa.Table.from_pylist(meta_rows), d / "00000.parquet")
    # the same five metadata rows as an img2dataset parquet shard
    rows = shard_rows([(r["caption"], imgs.get(r["key"]), r["status"]) for r in meta_rows], "x")
    for r, m in zip(rows, meta_rows):
        r["key"] = m["key"]
    write_shard(str(d / "pq" / "00000.parquet"), rows)
    from shardguard.indexes import imagehashes
    (d / "pdq.txt").write_text(imagehashes.pdq(bad)[0] + "\n")
    out_w, out_p = d / "out_wds", d / "out_pq"
    assert run_scan(["--input", str(d / "*"), "--output", str(out_w), "--hash-list", f"pdq={d / 'pdq.txt'}"]) == 0
    assert run_scan(["--input", str(d / "pq" / "*.parquet"), "--output", str(out_p),
                     "--hash-list", f"pdq={d / 'pdq.txt'}"]) == 0
    return d, out_w, out_p


def test_tar_rows_accounted_and_unsafe_members_fail_closed(wds):
    d, out, _ = wds
    m = json.loads((out / "manifest.json").read_text())
    (s,) = m["shards"]
    assert s["input"]["format"] == "webdataset"
    c = s["counts"]
    # 5 metadata rows + 4 tar keys the metadata lacks (../escape, /abs, link, dup)
    assert c["rows_in"] == 9 == c["kept"] + c["removed"] + c["errored"]
    assert (c["kept"], c["removed"], c["errored"]) == (3, 1, 5)
    assert s["errors"] == {"input/duplicate_key": 1, "input/status_failed_to_download": 1,
                           "input/unsafe_member_name": 2, "input/unsafe_member_type": 1}


def test_clean_tar_holds_kept_members_with_original_bytes_and_headers(wds):
    d, out, _ = wds
    src = tarfile.open(d / "00000.tar")
    with tarfile.open(out / "clean" / "00000.tar") as tf:
        names = tf.getnames()
        assert names == ["k2.jpg", "k2.txt", "k2.json", "k0.jpg", "k0.txt", "k0.json", "k3.jpg", "k3.txt", "k3.json"]
        for n in names:
            a, b = tf.getmember(n), src.getmember(n)
            assert (a.mtime, a.mode, a.size) == (b.mtime, b.mode, b.size)
            assert tf.extractfile(n).read() == src.extractfile(n).read()
    meta = pq.read_table(out / "clean" / "00000.parquet")
    assert meta.column("key").to_pylist() == ["k0", "k2", "k3"]
    assert meta.schema.equals(pq.read_table(d / "00000.parquet").schema)


def test_same_decisions_as_parquet_form(wds):
    d, out_w, out_p = wds
    kept = lambda o, f: sorted(pq.read_table(o / "clean" / f, columns=["key"]).column(0).to_pylist())  # noqa: E731
    assert kept(out_w, "00000.parquet") == kept(out_p, "00000.parquet")
    rem = lambda o: sorted((r["key"], tuple(r["reasons"])) for r in pq.read_table(o / "removed" / "00000.parquet").to_pylist())  # noqa: E731
    assert rem(out_w) == rem(out_p) == [("k1", ("hashlist:pdq",))]


def test_webdataset_refilter_reuses_or_rewrites_clean_tar(wds, tmp_path):
    from shardguard.pipelines.refilter import run as refilter
    d, out, _ = wds
    assert refilter(["--from", str(out), "--output", str(tmp_path / "r0")]) == 0
    assert (tmp_path / "r0" / "clean" / "00000.tar").read_bytes() == (out / "clean" / "00000.tar").read_bytes()
    assert refilter(["--from", str(out), "--output", str(tmp_path / "r1"), "--retire-list", "pdq",
                     "--features-only"]) == 0  # retiring the only list: checking nothing is said out loud
    with tarfile.open(tmp_path / "r1" / "clean" / "00000.tar") as tf:
        assert "k1.jpg" in tf.getnames()
    from shardguard.pipelines.cli import main as cli
    assert cli(["manifest", "verify", str(tmp_path / "r1")]) == 0
