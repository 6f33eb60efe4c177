"""End to end with img2dataset itself: download from a loopback server (known-bad images, images
replaced after the metadata's hashes were taken, 404s), in parquet, webdataset and files form, then scan.

img2dataset spawns worker processes and checks for albumentations updates online: the environment
variable below stops the check, and everything runs inside functions (spawn re-imports ``__main__``).
"""
from __future__ import annotations

import hashlib
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_scan

from shardguard.pipelines.sample_data import encode, make_image, serve_images, variants

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
img2dataset = pytest.importorskip("img2dataset", reason="img2dataset is a dev dependency (pip install .[dev])")

N = 24


@pytest.fixture(scope="module")
def downloaded(tmp_path_factory):
    d = tmp_path_factory.mktemp("i2d")
    originals = {i: make_image(3000 + i) for i in range(N)}
    bad = {0, 1, 2}            # their near-copies are served; a PDQ list holds the originals
    poisoned = {5, 6}          # metadata hash of one image, server returns another
    missing = {9, 10}          # 404
    served, refs = {}, {}
    for i, img in originals.items():
        data = variants(img)["recompressed"] if i in bad else encode(img)
        refs[i] = hashlib.sha256(data).hexdigest()
        if i in poisoned:
            data = encode(make_image(9000 + i))  # replaced after the metadata was collected
        if i not in missing:
            served[f"/img/{i}.jpg"] = data
    from shardguard.indexes import imagehashes
    (d / "bad_pdq.txt").write_text("".join(imagehashes.pdq(originals[i])[0] + "\n" for i in sorted(bad)))
    with serve_images(served) as srv:
        meta = pa.table({"url": [srv.url(f"/img/{i}.jpg") for i in range(N)],
                         "caption": [f"image {i}" for i in range(N)],
                         "ref_sha256": [refs[i] for i in range(N)]})
        pq.write_table(meta, d / "meta.parquet")
        for fmt in ("parquet", "webdataset", "files"):
            img2dataset.download(
                url_list=str(d / "meta.parquet"), input_format="parquet", url_col="url", caption_col="caption",
                output_format=fmt, output_folder=str(d / fmt), processes_count=1, thread_count=4,
                resize_mode="no", disable_all_reencoding=True,  # stored bytes == downloaded bytes
                save_additional_columns=["ref_sha256"], enable_wandb=False,
                number_sample_per_shard=10, distributor="multiprocessing", timeout=5, retries=0)
    return d, bad, poisoned, missing


def _scan(d, fmt):
    out = d / f"scan_{fmt}"
    pattern = "*.parquet" if fmt in ("parquet", "files") else "*"
    rc = run_scan(["--input", str(d / fmt / pattern), "--output", str(out),
                   "--hash-list", f"pdq={d / 'bad_pdq.txt'}", "--integrity-column", "ref_sha256"])
    assert rc == 0
    return out


def _decisions(out):
    """Row number (from the URL) → reasons (removed) or error class (errored)."""
    url_of = {r["key"]: r["url"] for p in (out / "features").glob("*.parquet")
              for r in pq.read_table(p, columns=["key", "url"]).to_pylist()}
    dec = {}
    for kind in ("removed", "errors"):
        for p in (out / kind).glob("*.parquet"):
            for r in pq.read_table(p).to_pylist():
                i = int(url_of[r["key"]].rsplit("/", 1)[1].split(".")[0])
                dec[i] = r.get("reasons") or [r.get("error_class")]
    return dec


def test_parquet_webdataset_and_files_scans_agree_and_catch_everything(downloaded):
    d, bad, poisoned, missing = downloaded
    results = {fmt: _decisions(_scan(d, fmt)) for fmt in ("parquet", "webdataset", "files")}
    assert results["parquet"] == results["webdataset"] == results["files"]
    dec = results["parquet"]
    assert {i for i in range(N) if dec.get(i) == ["hashlist:bad_pdq"]} == bad
    assert {i for i in range(N) if dec.get(i) == ["integrity-mismatch"]} == poisoned
    assert {i for i in range(N) if dec.get(i) == ["status_failed_to_download"]} == missing
    assert set(dec) == bad | poisoned | missing
    for fmt in ("parquet", "webdataset", "files"):
        m = json.loads((d / f"scan_{fmt}" / "manifest.json").read_text())
        c = m["totals"]["counts"]
        assert c["rows_in"] == N and c["kept"] == N - len(bad | poisoned | missing)
        assert {s["input"]["format"] for s in m["shards"]} == {fmt}


def test_files_layout_clean_copy_is_the_kept_files_and_verifies(downloaded):
    from shardguard.pipelines.cli import main as cli

    d, bad, poisoned, missing = downloaded
    out = d / "scan_files"
    assert cli(["manifest", "verify", str(out)]) == 0
    for meta in sorted((d / "files").glob("*.parquet")):
        kept = pq.read_table(out / "clean" / meta.name).column("key").to_pylist()
        files = sorted(p.name for p in (out / "clean" / meta.stem).iterdir())
        assert sorted(f.split(".")[0] for f in files if f.endswith(".jpg")) == sorted(kept)
        for f in files:
            assert (out / "clean" / meta.stem / f).read_bytes() == (d / "files" / meta.stem / f).read_bytes()
    victim = next((out / "clean").glob("*/*.jpg"))
    victim.write_bytes(b"tampered")
    assert cli(["manifest", "verify", str(out)]) == 1
