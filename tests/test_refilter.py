"""Re-filtering from stored features equals a fresh scan; lineage; retiring lists; missing features."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from conftest import run_scan
from helpers import tree_bytes

from shardguard.pipelines.refilter import run as refilter


def _lists(src):
    L = src / "lists"
    return {"md5": f"md5={L / 'known-bad-md5.txt'}", "pdq": f"pdq={L / 'known-bad-pdq.csv'}",
            "phash": f"phash={L / 'known-bad-phash.txt'}"}


OFF = ("--robust", "off")


def _scan(src, out, *lists, extra=()):
    args = ["--input", str(src / "shards" / "*.parquet"), "--output", str(out), *extra]
    for l in lists:
        args += ["--hash-list", l]
    return run_scan(args)


def _comparable(root):
    """Everything but the manifest (whose lineage and kind differ by design) and list dirs' paths."""
    return {k: v for k, v in tree_bytes(root).items() if k not in ("manifest.json", ".shardguard-run.json") and not k.startswith("lists/")}


@pytest.fixture(scope="module")
def runs(sample, tmp_path_factory):
    src, planted = sample
    d = tmp_path_factory.mktemp("refilter")
    L = _lists(src)
    assert _scan(src, d / "parent", L["md5"]) == 0
    assert _scan(src, d / "fresh", L["md5"], L["pdq"]) == 0
    assert refilter(["--from", str(d / "parent"), "--output", str(d / "child"), "--hash-list", L["pdq"]]) == 0
    return src, planted, d


def test_refilter_equals_fresh_scan(runs):
    src, planted, d = runs
    assert _comparable(d / "child") == _comparable(d / "fresh")  # clean bytes, records, summaries
    kept = lambda r: {k for p in (r / "clean").glob("*.parquet")  # noqa: E731
                      for k in pq.read_table(p, columns=["key"]).column(0).to_pylist()}
    assert kept(d / "child") == kept(d / "fresh") == set(planted["distractor_keys"])


def test_lineage_recorded(runs):
    src, planted, d = runs
    m = json.loads((d / "child" / "manifest.json").read_text())
    p = m["parent"]
    import hashlib
    assert m["kind"] == "refilter" and p["path"] == str(d / "parent")
    assert p["manifest_sha256"] == hashlib.sha256((d / "parent" / "manifest.json").read_bytes()).hexdigest()
    assert p["lists_added"] == ["known-bad-pdq"] and p["lists_retired"] == []
    c = p["changes"]
    flagged = lambda run: {(f.stem, r["key"]): r["reasons"] for kind in ("removed", "review")  # noqa: E731
                           for f in (run / kind).glob("*.parquet") for r in pq.read_table(f).to_pylist()}
    before, after = flagged(d / "parent"), flagged(d / "child")
    new = {k: v for k, v in after.items() if k not in before}
    assert c["restored_total"] == 0 and c["newly_flagged_total"] == len(new) > 0
    by_reason = {}
    for reasons in new.values():
        for r in reasons:
            by_reason[r] = by_reason.get(r, 0) + 1
    assert c["newly_flagged_by_reason"] == by_reason and "hashlist:known-bad-pdq" in by_reason


def test_diff_reads_only_shards_whose_flagged_records_differ(runs, monkeypatch):
    """Equal recorded sha256s mean equal rows: such shards are not read, and the diff is unchanged."""
    from shardguard.pipelines import lineage

    src, planted, d = runs
    full = lineage.diff_runs(str(d / "parent"), str(d / "child"))
    read = []
    real = lineage.read_table
    monkeypatch.setattr(lineage, "read_table", lambda path, **k: read.append(str(path)) or real(path, **k))
    m = {r: json.loads((d / r / "manifest.json").read_text())["shards"] for r in ("parent", "child")}
    sha = lambda s: [s["outputs"][k]["sha256"] for k in ("removed", "review")]  # noqa: E731
    differ = {a["shard"] for a, b in zip(m["parent"], m["child"]) if sha(a) != sha(b)}
    assert lineage.diff_runs(str(d / "parent"), str(d / "child")) == full and full["newly_flagged_total"] > 0
    assert read and {p.rsplit("/", 1)[1].split(".")[0] for p in read} == differ
    read.clear()
    same = lineage.diff_runs(str(d / "child"), str(d / "fresh"))  # equal records (test above): nothing to read
    assert read == [] and same["newly_flagged_total"] == same["restored_total"] == same["changed_total"] == 0


def test_retiring_a_list_restores_exactly_the_rows_only_it_removed(runs, tmp_path):
    src, planted, d = runs
    L = _lists(src)
    assert _scan(src, tmp_path / "both", L["md5"], L["phash"], extra=OFF) == 0  # lists only: no expansion
    assert refilter(["--from", str(tmp_path / "both"), "--output", str(tmp_path / "retired"),
                     "--retire-list", "known-bad-phash"]) == 0
    m = json.loads((tmp_path / "retired" / "manifest.json").read_text())
    both = {(r["shard"], r["key"]) for r in m["parent"]["changes"]["restored"]}
    removed_before = {}
    for p in (tmp_path / "both" / "removed").glob("*.parquet"):
        for r in pq.read_table(p).to_pylist():
            removed_before[(p.stem, r["key"])] = r["reasons"]
    only_phash = {k for k, reasons in removed_before.items() if reasons == ["hashlist:known-bad-phash"]}
    assert both == only_phash and len(only_phash) == len(planted["bad_keys"]) - 3
    assert m["parent"]["lists_retired"] == ["known-bad-phash"]
    assert m["totals"]["reasons"] == {"hashlist:known-bad-md5": 3}


def test_refilter_never_decodes_or_loads_a_model(runs, tmp_path, monkeypatch):
    src, planted, d = runs

    def boom(*a, **k):
        raise AssertionError("refilter must not decode or embed")

    import shardguard.indexes.models as models
    import shardguard.transforms.features as features
    monkeypatch.setattr(features, "decode_image", boom)
    monkeypatch.setattr(models, "build_model", boom)
    assert refilter(["--from", str(d / "parent"), "--output", str(tmp_path / "c"),
                     "--hash-list", _lists(src)["phash"], "--direct_num_workers=1"]) == 0


def test_missing_feature_is_a_clear_error(sample, tmp_path, capsys):
    src, _ = sample
    assert _scan(src, tmp_path / "p", extra=["--hashes", "md5", "--features-only", *OFF]) == 0
    capsys.readouterr()
    assert refilter(["--from", str(tmp_path / "p"), "--output", str(tmp_path / "c"),
                     "--hash-list", _lists(src)["pdq"]]) == 2
    err = capsys.readouterr().err
    assert "needs feature 'pdq'" in err and "shards: 00000, 00001, 00002" in err
    assert refilter(["--from", str(tmp_path / "p"), "--output", str(tmp_path / "c"),
                     "--expand-threshold", "0.9"]) == 2
    assert "needs feature 'embedding'" in capsys.readouterr().err


def test_moved_inputs_fail_clearly_and_relocate_fixes_it(sample, tmp_path):
    import shutil

    src, _ = sample
    moved = tmp_path / "src"
    shutil.copytree(src, moved)
    assert _scan(moved, tmp_path / "p", _lists(moved)["md5"]) == 0
    (moved / "shards").rename(tmp_path / "elsewhere")
    # no change in kept rows: the parent's clean shards are reused and the inputs are not needed
    assert refilter(["--from", str(tmp_path / "p"), "--output", str(tmp_path / "c0")]) == 0
    pdq = ["--hash-list", _lists(moved)["pdq"]]
    assert refilter(["--from", str(tmp_path / "p"), "--output", str(tmp_path / "c1"), *pdq]) == 1
    m = json.loads((tmp_path / "c1" / "manifest.json").read_text())
    assert {s["status"] for s in m["shards"]} == {"failed"}
    assert "cannot be read" in m["shards"][0]["failure"]["message"]
    assert refilter(["--from", str(tmp_path / "p"), "--output", str(tmp_path / "c2"), *pdq,
                     "--relocate", f"{moved / 'shards'}={tmp_path / 'elsewhere'}"]) == 0


def test_changed_input_is_refused(sample, tmp_path):
    import shutil

    src, _ = sample
    moved = tmp_path / "src"
    shutil.copytree(src, moved)
    # without expansion, so that the pdq list newly flags rows of the changed shard
    assert _scan(moved, tmp_path / "p", _lists(moved)["md5"], extra=OFF) == 0
    shard = moved / "shards" / "00001.parquet"
    t = pq.read_table(shard)
    pq.write_table(t, shard, compression="gzip")  # same rows, other bytes
    assert refilter(["--from", str(tmp_path / "p"), "--output", str(tmp_path / "c"),
                     "--hash-list", _lists(moved)["pdq"]]) == 1
    s = {x["shard"]: x for x in json.loads((tmp_path / "c" / "manifest.json").read_text())["shards"]}
    assert s["00001"]["status"] == "failed" and "changed since it was scanned" in s["00001"]["failure"]["message"]
    assert s["00000"]["status"] == "ok" and not (tmp_path / "c" / "clean" / "00001.parquet").exists()


def test_refilter_under_multi_processing_equals_in_process(runs, tmp_path):
    src, planted, d = runs
    args = ["--from", str(d / "parent"), "--hash-list", _lists(src)["phash"]]
    assert refilter(args + ["--output", str(tmp_path / "a"), "--direct_num_workers=1"]) == 0
    assert refilter(args + ["--output", str(tmp_path / "b"), "--direct_running_mode=multi_processing",
                            "--direct_num_workers=2"]) == 0
    assert _comparable(tmp_path / "a") == _comparable(tmp_path / "b")
    for run in ("a", "b"):  # both took the parent's seed set (a pHash list changes no seed rule)
        assert [s["from_parent"] for s in json.loads((tmp_path / run / "manifest.json").read_text())["seed_sets"]] == [True]


def test_unchanged_shards_are_hard_linked_from_the_parent_after_the_check(runs, tmp_path):
    src, planted, d = runs
    assert refilter(["--from", str(d / "parent"), "--output", str(tmp_path / "same"), "--quiet"]) == 0
    for kind in ("clean", "features"):
        for p in sorted((d / "parent" / kind).glob("*.parquet")):
            assert (tmp_path / "same" / kind / p.name).stat().st_ino == p.stat().st_ino, (kind, p.name)
    # a parent clean file whose bytes are not the recorded ones is refused, never linked
    victim = tmp_path / "victim"
    import shutil

    shutil.copytree(d / "parent", victim)
    shard = sorted((victim / "clean").glob("*.parquet"))[0]
    data = shard.read_bytes()
    shard.unlink()
    shard.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert refilter(["--from", str(victim), "--output", str(tmp_path / "bad"), "--quiet"]) == 1
    assert not (tmp_path / "bad" / "clean" / shard.name).exists()


def test_a_missing_parent_features_file_stops_before_any_work_and_a_bad_marker_fails_its_shard(runs, tmp_path, capsys):
    """The parent's features are checked from one listing at launch; each shard's features marker is
    read by its worker, so an unreadable one fails that shard alone, with its reason."""
    import shutil

    src, planted, d = runs
    parent = tmp_path / "parent"
    shutil.copytree(d / "parent", parent)
    (parent / "features" / "00001.json").write_text("{not json")
    assert refilter(["--from", str(parent), "--output", str(tmp_path / "c"), "--quiet"]) == 1
    s = {x["shard"]: x for x in json.loads((tmp_path / "c" / "manifest.json").read_text())["shards"]}
    assert s["00001"]["status"] == "failed" and s["00001"]["failure"]["stage"] == "refilter-read"
    assert {s[k]["status"] for k in s if k != "00001"} == {"ok"}
    (parent / "features" / "00002.parquet").unlink()
    capsys.readouterr()
    assert refilter(["--from", str(parent), "--output", str(tmp_path / "d"), "--quiet"]) == 2
    assert "shard 00002: feature file features/00002.parquet is missing from" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
