"""Split-view poisoning (integrity-mismatch) and metadata-only pre-filtering."""
from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_scan

from shardguard.pipelines.prefilter import run as prefilter
from shardguard.pipelines.sample_data import encode, make_image, shard_rows
from shardguard.transforms.urls import domain_matches, normalize_url


def test_integrity_mismatch_removed(tmp_path):
    a, b, c = (encode(make_image(i)) for i in (1, 2, 3))
    rows = shard_rows([("ok", a, "success"), ("swapped", b, "success"), ("no ref", c, "success")], "i")
    rows[0]["ref"] = hashlib.sha256(a).hexdigest().upper()  # case does not matter
    rows[1]["ref"] = hashlib.sha256(b"what the metadata promised").hexdigest()
    rows[2]["ref"] = None
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "s.parquet")
    out = tmp_path / "out"
    assert run_scan(["--input", str(tmp_path / "s.parquet"), "--output", str(out),
                     "--integrity-column", "ref", "--integrity-type", "sha256"]) == 0
    removed = pq.read_table(out / "removed" / "s.parquet").to_pylist()
    assert [(r["key"], r["reasons"]) for r in removed] == [("i0001", ["integrity-mismatch"])]
    assert removed[0]["matches"][0]["type"] == "sha256"
    assert json.loads((out / "manifest.json").read_text())["totals"]["counts"]["kept"] == 2


@pytest.mark.parametrize("url,norm", [
    ("HTTP://Example.COM:80/a/B?x=1#frag", "http://example.com/a/B?x=1"),
    ("https://example.com:443", "https://example.com/"), ("https://ex.com.:8443/p", "https://ex.com:8443/p"),
    ("ftp://h/x", "ftp://h/x"), ("mailto:a@b", None), ("not a url", None), ("http://[::1", None),
])
def test_normalize_url(url, norm):
    assert normalize_url(url) == norm


def test_domain_matching():
    assert domain_matches("a.b.example.com", {"example.com"}) == "example.com"
    assert domain_matches("badexample.com", {"example.com"}) is None


@pytest.fixture()
def laion_meta(tmp_path):
    urls = ["https://img.optout.org/1.jpg", "http://cdn.example.com/cat.jpg", "https://good.net/dog.jpg",
            "https://partner.io/x.jpg?id=7", None, "javascript:alert(1)", "https://GOOD.net:443/dog2.jpg"]
    t = pa.table({"URL": urls, "TEXT": [f"t{i}" for i in range(7)], "WIDTH": list(range(7)),
                  "punsafe": [0.1] * 7})
    pq.write_table(t, tmp_path / "part-0.parquet")
    (tmp_path / "domains.txt").write_text("# opt-out registry\noptout.org\n*.example.com\n")
    (tmp_path / "urls.txt").write_text("https://GOOD.net/dog2.jpg\n")
    (tmp_path / "urlmd5.txt").write_text(hashlib.md5(b"https://partner.io/x.jpg?id=7").hexdigest() + "\n")
    return tmp_path, t


def test_prefilter_removes_listed_urls_and_keeps_schema(laion_meta):
    d, t = laion_meta
    out = d / "out"
    rc = prefilter(["--input", str(d / "part-*.parquet"), "--output", str(out), "--url-column", "URL",
                    "--domain-list", str(d / "domains.txt"), "--url-list", str(d / "urls.txt"),
                    "--url-hash-list", f"md5={d / 'urlmd5.txt'}"])
    assert rc == 0
    clean = pq.read_table(out / "clean" / "part-0.parquet")
    assert clean.schema.equals(t.schema) and clean.column("URL").to_pylist() == ["https://good.net/dog.jpg"]
    removed = {r["url"]: r["reasons"] for r in pq.read_table(out / "removed" / "part-0.parquet").to_pylist()}
    assert removed == {"https://img.optout.org/1.jpg": ["domain:domains"],
                       "http://cdn.example.com/cat.jpg": ["domain:domains"],
                       "https://partner.io/x.jpg?id=7": ["urlhash:urlmd5"],
                       "https://GOOD.net:443/dog2.jpg": ["url:urls"]}
    m = json.loads((out / "manifest.json").read_text())
    c = m["totals"]["counts"]
    assert (c["rows_in"], c["kept"], c["removed"], c["errored"]) == (7, 1, 4, 2)
    assert m["kind"] == "prefilter" and m["totals"]["errors"] == {"input/bad_url": 2}


def test_prefilter_bad_list_names_file_and_line(laion_meta, capsys):
    d, _ = laion_meta
    (d / "bad.txt").write_text("ok.com\nnot a domain!\n")
    assert prefilter(["--input", str(d / "part-*.parquet"), "--output", str(d / "o"), "--url-column", "URL",
                      "--domain-list", str(d / "bad.txt")]) == 2
    assert f"{d / 'bad.txt'}:2: not a domain name" in capsys.readouterr().err
