"""End-to-end scans of the seeded sample: decisions, accounting, byte-identity, resume, runners."""
from __future__ import annotations

import hashlib
import json
import shutil

import pyarrow.parquet as pq
import pytest
from conftest import run_scan, sample_list_flags
from helpers import assert_bytes_nowhere, tree_bytes


@pytest.fixture(scope="module")
def scanned(sample, tmp_path_factory):
    src, planted = sample
    out = tmp_path_factory.mktemp("scan") / "out"
    rc = run_scan(["--input", str(src / "shards" / "*.parquet"), "--output", str(out)]
                  + sample_list_flags(src))
    assert rc == 0
    return src, planted, out


def _keys(path):
    return pq.read_table(path, columns=["key"]).column(0).to_pylist()


def test_known_bad_variants_removed_distractors_kept(scanned):
    src, planted, out = scanned
    removed = {k for p in (out / "removed").glob("*.parquet") for k in _keys(p)}
    kept = {k for p in (out / "clean").glob("*.parquet") for k in _keys(p)}
    assert removed == set(planted["bad_keys"])
    assert kept == set(planted["distractor_keys"])
    assert not kept & set(planted["error_keys"])  # undecodable and failed rows fail closed


def test_counts_add_up_per_shard_and_in_total(scanned):
    src, planted, out = scanned
    m = json.loads((out / "manifest.json").read_text())
    total_in = sum(pq.read_metadata(p).num_rows for p in (src / "shards").glob("*.parquet"))
    t = m["totals"]["counts"]
    assert t["rows_in"] == total_in == t["kept"] + t["removed"] + t["quarantined"] + t["errored"]
    for s in m["shards"]:
        c = s["counts"]
        assert c["rows_in"] == pq.read_metadata(s["input"]["path"]).num_rows
        assert c["rows_in"] == c["kept"] + c["removed"] + c["quarantined"] + c["errored"]
        assert len(_keys(out / s["outputs"]["clean"]["path"])) == c["kept"]
        assert len(_keys(out / s["outputs"]["errors"]["path"])) == c["errored"]
    assert t["errored"] == len(planted["error_keys"])
    assert m["totals"]["errors"] == {"decode/truncated": 3, "input/status_failed_to_download": 3}


def test_clean_rows_identical_to_input_rows(scanned):
    src, planted, out = scanned
    for shard in sorted((src / "shards").glob("*.parquet")):
        inp = pq.read_table(shard)
        clean = pq.read_table(out / "clean" / shard.name)
        assert clean.schema.equals(inp.schema, check_metadata=True)
        keys = set(clean.column("key").to_pylist())
        expected = inp.filter([k in keys for k in inp.column("key").to_pylist()])
        assert clean.equals(expected)  # same rows, same order, same values (image bytes included)


def test_removal_records_and_manifest_hold_no_image_bytes(scanned):
    src, planted, out = scanned
    bad = set(planted["bad_keys"])
    removed_bytes = [r["jpg"] for p in sorted((src / "shards").glob("*.parquet"))
                     for r in pq.read_table(p).to_pylist() if r["key"] in bad]
    assert len(removed_bytes) == len(bad)
    assert_bytes_nowhere(out, removed_bytes)
    rec = pq.read_table(next((out / "removed").glob("*.parquet"))).to_pylist()[0]
    assert set(rec) == {"row", "key", "url", "sha256", "verdict", "reasons", "matches"}
    assert rec["matches"] and {"source", "kind", "type", "entry", "distance"} == set(rec["matches"][0])
    manifest = (out / "manifest.json").read_text()
    for line in (src / "lists" / "known-bad-pdq.csv").read_text().splitlines():
        assert line.split(",")[0] not in manifest  # list entries never in the manifest


def test_manifest_records_provenance(scanned):
    src, planted, out = scanned
    m = json.loads((out / "manifest.json").read_text())
    assert m["config"]["lists"][0]["type"] == "pdq" and m["code_version"]["package"]
    assert {l["name"] for l in m["lists"]} == {"known-bad-pdq", "known-bad-phash", "known-bad-md5"}
    for l in m["lists"]:
        assert len(l["fingerprint"]) == 64 and l["source"]["sha256"] and "entries.parquet" in l["files"]
    for s in m["shards"]:  # fingerprints are of the input files, however they were taken
        data = open(s["input"]["path"], "rb").read()
        assert s["input"]["sha256"] == hashlib.sha256(data).hexdigest() and s["input"]["size"] == len(data)
    s = m["shards"][0]
    for o in s["outputs"].values():
        assert (out / o["path"]).exists() and len(o["sha256"]) == 64
    assert m["libraries"]["apache-beam"]


def test_rerun_skips_done_shards_and_force_redoes(scanned, tmp_path):
    src, planted, _ = scanned
    out = tmp_path / "out"
    args = ["--input", str(src / "shards" / "*.parquet"), "--output", str(out)] + sample_list_flags(src)
    assert run_scan(args) == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet") if "lists" not in p.parts}
    assert run_scan(args) == 0
    assert {p: p.stat().st_mtime_ns for p in before} == before  # nothing rewritten
    assert run_scan(args + ["--force"]) == 0
    assert all(p.stat().st_mtime_ns != t for p, t in before.items())


def test_a_changed_config_redoes_shards(scanned, tmp_path):
    src, planted, _ = scanned
    out = tmp_path / "out"
    base = ["--input", str(src / "shards" / "*.parquet"), "--output", str(out)]
    assert run_scan(base + sample_list_flags(src)[:2]) == 0
    assert run_scan(base + sample_list_flags(src)) == 2  # another config into the same output: refused
    assert run_scan(base + sample_list_flags(src) + ["--force"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["lists"]) == 3 and m["totals"]["counts"]["removed"] == len(planted["bad_keys"])
    assert all(s["config_fingerprint"] == m["config_fingerprint"] for s in m["shards"])


def test_outputs_deterministic_and_equal_under_multi_processing(scanned, tmp_path):
    src, planted, out = scanned
    mp = tmp_path / "mp"
    shutil.copytree(src, tmp_path / "src")  # same bytes, other path: outputs must not depend on it
    args = ["--input", str(src / "shards" / "*.parquet"), "--output", str(mp)] + sample_list_flags(src)
    assert run_scan(args + ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]) == 0
    assert tree_bytes(out) == tree_bytes(mp)


def test_no_temp_files_left(scanned):
    _, _, out = scanned
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp-")]
