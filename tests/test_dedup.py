"""Dedup inside a dataset, each kind against a brute-force oracle over the stored features: clusters
(union-find over every pair), representatives (lowest (shard, row) not removed for a safety reason),
records and caption conflicts; on the default runner, under multi_processing, after an interrupted
run is resumed, and added by a re-filter."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, run_scan
from helpers import tree_bytes

from shardguard.pipelines.refilter import run as refilter
from shardguard.pipelines.sample_data import encode, make_image, shard_rows, variants, write_shard

TINY = str(ROOT / "configs/models/tiny-clip.json")
SAFETY = ["--clip-model", TINY, "--integrity-column", "sha256"]
FLAGS = ["--dedup", "exact,perceptual,semantic", *SAFETY]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """4 shards: exact copies across shards (one with another caption), near copies, distinct images;
    the integrity check removes the first exact copy (its recorded sha256 is wrong): a row removed for
    a safety reason must not be its cluster's representative."""
    d = tmp_path_factory.mktemp("dedup")
    base = {i: make_image(5000 + i) for i in range(6)}
    for s in range(4):
        items = [(f"u{s}-{i}", encode(make_image(6000 + 10 * s + i)), "success") for i in range(5)]
        items.append((f"copy{s}", encode(base[0]), "success"))  # exact copies in every shard
        items.append((f"near{s}", variants(base[1])["recompressed" if s % 2 else "resized"], "success"))
        items.append((f"near2-{s}", variants(base[2])["brighter"] if s < 2 else encode(base[2]), "success"))
        rows = shard_rows(items, f"{s:05d}")
        for r in rows:
            r["caption"] = "a boat" if r["key"] != "00002" + "0005" else "a weapon"  # copy2: another caption
            if r["key"] == "00000" + "0005":
                r["sha256"] = "0" * 64  # the integrity check removes this copy
        write_shard(str(d / "in" / f"{s:05d}.parquet"), rows)
    return d


def _scan(d, out, *extra):
    return run_scan(["--input", str(d / "in" / "*.parquet"), "--output", str(out), "--quiet", *extra])


def _features(out):
    rows = []
    for p in sorted((out / "features").glob("*.parquet")):
        for r in pq.read_table(p).to_pylist():
            rows.append(dict(r, shard=p.stem))
    return rows


def _oracle(rows, close, removed: set):
    """Components of the rows by brute force (union-find over every close pair) → {(shard, row): rep}."""
    parent = list(range(len(rows)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            if close(rows[i], rows[j]):
                parent[find(i)] = find(j)
    comps: dict[int, list] = {}
    for i in range(len(rows)):
        comps.setdefault(find(i), []).append(i)
    out = {}
    for members in comps.values():
        if len(members) < 2:
            continue
        key = lambda i: ((rows[i]["shard"], rows[i]["row"]) in removed, rows[i]["shard"], rows[i]["row"])  # noqa: E731
        rep = rows[min(members, key=key)]
        for i in members:
            if rows[i] is not rep:
                out[(rows[i]["shard"], rows[i]["row"])] = f"{rep['shard']}/{rep['key']}"
    return out


def _dedup_records(out, kind):
    got = {}
    for p in list((out / "removed").glob("*.parquet")) + list((out / "review").glob("*.parquet")):
        for r in pq.read_table(p).to_pylist():
            for m in r["matches"]:
                if m["source"] == kind and m["kind"] == "dedup":
                    got[(p.stem, r["row"])] = m["entry"]
    return got


def _ham(a, b):
    return (int(a, 16) ^ int(b, 16)).bit_count()


@pytest.fixture(scope="module")
def scanned(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("scan") / "out"
    assert _scan(data, out, *FLAGS) == 0
    return out


def test_every_kind_equals_the_brute_force_oracle(scanned):
    rows = [r for r in _features(scanned) if r["status"] == "ok"]
    removed = {("00000", 5)}  # the integrity check removes it
    ok = lambda r: r["pdq_quality"] >= 50  # noqa: E731
    oracles = {
        "exact": _oracle(rows, lambda a, b: a["sha256"] == b["sha256"], removed),
        "perceptual": _oracle(rows, lambda a, b: ok(a) and ok(b) and _ham(a["pdq"], b["pdq"]) <= 16, removed),
        "semantic": _oracle(rows, lambda a, b: float(np.dot(np.float32(a["embedding"]), np.float32(b["embedding"])))
                            >= 0.95, removed)}
    for kind, want in oracles.items():
        assert _dedup_records(scanned, kind) == want, kind
    copies = {k: v for k, v in oracles["exact"].items() if k[1] == 5}
    assert copies == {(s, 5): "00001/00001" + "0005" for s in ("00000", "00002", "00003")}  # not the removed copy


def test_caption_conflicts_are_tagged(scanned):
    tagged = {(p.stem, r["key"]): r for p in (scanned / "tagged").glob("*.parquet") for r in pq.read_table(p).to_pylist()}
    copies = {k: v for k, v in tagged.items() if k[1].endswith("0005")}
    assert len(copies) == 4 and all("caption-conflict" in r["reasons"] for r in copies.values())
    m = json.loads((scanned / "manifest.json").read_text())
    assert m["totals"]["tags"]["caption-conflict"] >= 4


def test_same_results_under_multi_processing_and_after_resume(data, scanned, tmp_path):
    flags = FLAGS
    mp = tmp_path / "mp"
    assert _scan(data, mp, *flags, "--direct_running_mode=multi_processing", "--direct_num_workers=2") == 0
    assert tree_bytes(mp) == tree_bytes(scanned)
    resumed = tmp_path / "resumed"
    shutil.copytree(scanned, resumed)
    for p in resumed.rglob("00002.*"):  # interrupted before shard 00002 was written
        p.unlink()
    assert _scan(data, resumed, *flags) == 0
    assert tree_bytes(resumed) == tree_bytes(scanned)


def test_a_refilter_adds_and_drops_dedup_from_stored_features(data, scanned, tmp_path):
    plain = tmp_path / "plain"
    assert _scan(data, plain, *SAFETY) == 0
    assert refilter(["--from", str(plain), "--output", str(tmp_path / "re"), "--quiet",
                     "--dedup", "exact,perceptual,semantic"]) == 0
    for kind in ("exact", "perceptual", "semantic"):
        assert _dedup_records(tmp_path / "re", kind) == _dedup_records(scanned, kind)
    assert refilter(["--from", str(tmp_path / "re"), "--output", str(tmp_path / "none"), "--quiet",
                     "--dedup", "none"]) == 0
    assert not any(_dedup_records(tmp_path / "none", k) for k in ("exact", "perceptual", "semantic"))


def test_manifest_tools_show_clusters_and_representatives(scanned, capsys):
    from shardguard.pipelines.cli import main as cli

    m = json.loads((scanned / "manifest.json").read_text())
    assert m["dedup"]["per_kind"]["exact"]["rows"] == len(_dedup_records(scanned, "exact"))
    assert m["dedup"]["per_kind"]["exact"]["clusters"] == len(set(_dedup_records(scanned, "exact").values()))
    capsys.readouterr()
    assert cli(["manifest", "show", str(scanned)]) == 0
    assert "dedup exact:" in capsys.readouterr().out
    assert cli(["manifest", "why", str(scanned), "00001" + "0005"]) == 0
    out = capsys.readouterr().out
    assert "representative of 3 duplicate row(s)" in out and "00000/000000005 (exact, perceptual, semantic)" in out
    assert cli(["manifest", "why", str(scanned), "00002" + "0005"]) == 0
    assert "duplicate of 00001/000010005" in capsys.readouterr().out
