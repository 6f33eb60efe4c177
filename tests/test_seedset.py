"""Hash expansion's seed set as a run artifact: a re-filter whose seed rules are its parent's takes the
parent's set (no second pass over the features) and writes what computing it again writes; any other
re-filter computes its own."""
from __future__ import annotations

import hashlib
import json
import shutil

import pyarrow.parquet as pq
import pytest
from conftest import run_scan
from helpers import tree_bytes
from test_robust import _lists, data, scanned  # noqa: F401 - the module's fixtures, shared

from shardguard.pipelines import refilter as rf
from shardguard.pipelines.cli import main as cli
from shardguard.pipelines.refilter import run as refilter


def _sets(run) -> list[dict]:
    return json.loads((run / "manifest.json").read_text()).get("seed_sets") or []


def _no_seeds_stage(*_a, **_k):
    raise AssertionError("the seeds stage ran: the parent's seed set was not taken")


def test_a_scan_records_its_seed_set(scanned):  # noqa: F811
    (s,) = _sets(scanned)
    assert s["rows"] == 44 and not s["from_parent"] and (scanned / s["path"]).is_file()
    assert cli(["manifest", "verify", str(scanned)]) == 0


def test_a_refilter_takes_its_parents_seed_set_and_writes_the_same_bytes(scanned, tmp_path, monkeypatch):  # noqa: F811
    from shardguard.transforms.rules import seedviews

    with monkeypatch.context() as m:  # taken: the per-shard seeds step must not run at all
        m.setattr(seedviews.SeedViewsFn, "process", _no_seeds_stage)
        assert refilter(["--from", str(scanned), "--output", str(tmp_path / "taken"), "--quiet"]) == 0
    with monkeypatch.context() as m:  # computed again, as before the seed set was an artifact
        m.setattr(rf, "take_parent_seed_sets", lambda *a, **k: None)
        assert refilter(["--from", str(scanned), "--output", str(tmp_path / "computed"), "--quiet"]) == 0
    (taken,), (computed,) = _sets(tmp_path / "taken"), _sets(tmp_path / "computed")
    assert taken["from_parent"] and not computed["from_parent"]
    assert dict(taken, from_parent=0) == dict(computed, from_parent=0) == dict(_sets(scanned)[0], from_parent=0)
    a, b = tree_bytes(tmp_path / "taken"), tree_bytes(tmp_path / "computed")
    a.pop("manifest.json"), b.pop("manifest.json")
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    assert any(k.startswith("seeds/") for k in a) and any(k.startswith("review/") for k in a)
    assert cli(["manifest", "verify", str(tmp_path / "taken")]) == 0


def test_another_seed_rule_force_or_a_changed_file_computes_the_set_again(data, scanned, tmp_path):  # noqa: F811
    d, keys = data
    other = tmp_path / "md5b.txt"
    row = next(r for r in pq.read_table(d / "in" / "00000.parquet").to_pylist() if r["key"] == keys["clean3"])
    other.write_text(hashlib.md5(row["jpg"]).hexdigest() + "\n")
    assert refilter(["--from", str(scanned), "--output", str(tmp_path / "new"), "--quiet",
                     "--hash-list", f"md5b@md5={other}"]) == 0
    (s,) = _sets(tmp_path / "new")
    assert not s["from_parent"] and s["rows"] == 88  # a second seed's views: computed, not taken
    assert refilter(["--from", str(scanned), "--output", str(tmp_path / "forced"), "--quiet", "--force"]) == 0
    assert not _sets(tmp_path / "forced")[0]["from_parent"]
    shutil.copytree(scanned, tmp_path / "p")
    path = tmp_path / "p" / _sets(scanned)[0]["path"]
    path.write_bytes(path.read_bytes()[:-1] + b"\0")  # the parent's set no longer has its recorded sha256
    assert refilter(["--from", str(tmp_path / "p"), "--output", str(tmp_path / "c"), "--quiet"]) == 0
    assert not _sets(tmp_path / "c")[0]["from_parent"]
    assert tree_bytes(tmp_path / "c")["review/00000.parquet"] == tree_bytes(scanned)["review/00000.parquet"]
    shutil.copytree(scanned, tmp_path / "q")
    seeds = next((tmp_path / "q" / "seeds").glob("*.parquet"))
    seeds.write_bytes(seeds.read_bytes() + b"\0")  # a shard's seeds file changed: the set is taken, that shard fails
    assert refilter(["--from", str(tmp_path / "q"), "--output", str(tmp_path / "d"), "--quiet"]) == 1
    s = {x["shard"]: x for x in json.loads((tmp_path / "d" / "manifest.json").read_text())["shards"]}
    bad = seeds.name.split(".")[0]
    assert s[bad]["status"] == "failed" and "is not the recorded" in s[bad]["failure"]["message"]
    assert not (tmp_path / "d" / "seeds" / seeds.name).exists() and not (tmp_path / "d" / "clean" / seeds.name).exists()


def test_a_parent_with_a_failed_shard_or_no_recorded_set_gives_none():
    from shardguard.transforms.rules.hashexpand import HashExpansion
    from shardguard.transforms.rules.seedset import parent_seed_set, seed_set_key

    rule = HashExpansion([])
    parent = {"seed_sets": [{"key": seed_set_key(rule), "path": "seedset/x.parquet", "sha256": "0" * 64}],
              "shards": [{"shard": "a", "status": "ok", "outputs": {}}, {"shard": "b", "status": "failed"}]}
    assert parent_seed_set(rule, parent, "/nowhere", False) is None  # shard b failed: its seeds are unknown
    assert parent_seed_set(rule, dict(parent, seed_sets=[]), "/nowhere", False) is None
    assert parent_seed_set(HashExpansion([], full=True), parent, "/nowhere", False) is None


def test_a_set_with_an_unreadable_seed_or_past_its_limit_is_not_written_and_keys_are_checked(tmp_path):
    from shardguard.transforms.contracts import RunLayout
    from shardguard.transforms.rules.hashexpand import BoundedSeedViews
    from shardguard.transforms.rules.seedset import read_seed_set, save_seed_set, set_bytes, set_path

    p, h = "ab" * 32, "0123456789abcdef"
    fn, layout = BoundedSeedViews(2), RunLayout(str(tmp_path))
    within = fn.extract_output(fn.add_input(fn.create_accumulator(), [("s/a", "as-is", p, 80, h)]))
    over = fn.extract_output(fn.add_input(fn.create_accumulator(), [(f"s/{c}", "as-is", p, 80, h) for c in "abc"]))
    unread = fn.extract_output(fn.add_input(fn.create_accumulator(), [("error", "s07", "OSError: gone", 0, "")]))
    for value in (over, unread):
        save_seed_set(value, layout, "k" * 64)
        assert not (tmp_path / "seedset").exists()
    save_seed_set(within, layout, "k" * 64)
    with open(set_path(layout, "k" * 64), "rb") as f:
        assert read_seed_set(f.read(), "k" * 64) == within
    with pytest.raises(ValueError, match="not the set of key"):
        read_seed_set(set_bytes(within, "k" * 64), "j" * 64)


def test_a_rerun_without_seeds_does_not_record_the_set_an_earlier_run_left(data, tmp_path):  # noqa: F811
    """The same run directory and config, run again after the seed's image changed: no row is a seed
    now, so no set is written, and the earlier run's file (same key) must not be recorded as this one's."""
    from shardguard.pipelines.sample_data import encode, make_image, write_shard

    d, keys = data
    shutil.copytree(d / "in", tmp_path / "in")
    out = tmp_path / "run"
    args = ["--input", str(tmp_path / "in" / "*.parquet"), "--output", str(out), "--quiet", *_lists(d)]
    assert run_scan(args) == 0
    (s,) = _sets(out)
    rows = pq.read_table(tmp_path / "in" / "00000.parquet").to_pylist()
    for r in rows:
        if r["key"] == keys["seed"]:
            r["jpg"] = encode(make_image(424242))  # another picture: the md5 list matches nothing now
    write_shard(str(tmp_path / "in" / "00000.parquet"), rows)
    assert run_scan(args) == 0
    assert _sets(out) == [] and not (out / s["path"]).exists()
    assert cli(["manifest", "verify", str(out)]) == 0


def test_a_written_set_reads_back_as_the_packed_set_and_distinct_views_as_numpy_finds_them():
    """Many seeds and views (copies included): the file read back column-wise is the packed value
    the combine handed over, and the seed index's distinct rows are ``np.unique``'s."""
    import numpy as np

    from shardguard.transforms.rules.hashexpand import _unique_rows
    from shardguard.transforms.rules.seedpack import SeedViews
    from shardguard.transforms.rules.seedset import read_seed_set, set_bytes

    rng = np.random.default_rng(11)
    rows = [(f"{s:05d}/k{k}", view, rng.integers(0, 256, 32, np.uint8).tobytes().hex(), int(rng.integers(0, 101)),
             rng.integers(0, 256, 8, np.uint8).tobytes().hex())
            for s in range(3) for k in range(7) for view in ("as-is", "mirror", "crop-10", "rot+5")]
    rows += [(f"00009/k{k}", v, p, q, h) for k, (_, v, p, q, h) in enumerate(rows[:8])]  # copies of views
    value = {"count": len(rows), "limit": 10_000, "errors": [], "seeds": SeedViews.pack(rows)}
    assert read_seed_set(set_bytes(value, "k" * 64), "k" * 64) == value
    pairs = np.concatenate([value["seeds"].pdq_codes(), value["seeds"].phash_codes()], axis=1)
    want, group = np.unique(pairs, axis=0, return_inverse=True)
    got = _unique_rows(pairs)
    assert len(got[0]) == len(rows) - 8 and np.array_equal(got[0], want) and np.array_equal(got[1], group.reshape(-1))


def test_a_rerun_keeps_its_own_set_and_removes_another_configs(data, tmp_path):  # noqa: F811
    """A set file of another key (an earlier run with other seed lists) is removed; the run's own
    set is kept untouched and recorded."""
    d, _ = data
    out = tmp_path / "run"
    args = ["--input", str(d / "in" / "*.parquet"), "--output", str(out), "--quiet", *_lists(d)]
    assert run_scan(args) == 0
    (s,) = _sets(out)
    mtime = (out / s["path"]).stat().st_mtime_ns
    (out / "seedset" / ("0" * 16 + ".parquet")).write_bytes(b"another config's set")
    assert run_scan(args) == 0
    assert _sets(out) == [s] and (out / s["path"]).stat().st_mtime_ns == mtime
    assert sorted(p.name for p in (out / "seedset").iterdir()) == [s["path"].rsplit("/", 1)[-1]]
    assert cli(["manifest", "verify", str(out)]) == 0


def test_a_refilter_taking_the_set_translates_for_dataflow_with_no_stage_for_it(scanned, tmp_path, capsys):  # noqa: F811
    """The taken set is read by the workers (a preset side value): the translated job has no step
    that computes or hands it over, and the dry run writes nothing."""
    pytest.importorskip("apache_beam.runners.dataflow.internal.apiclient",
                        reason="needs apache-beam[gcp] (pip install .[dataflow])")
    from test_dataflow import DATAFLOW

    capsys.readouterr()
    assert refilter(["--from", str(scanned), "--output", str(tmp_path / "df"), "--quiet", *DATAFLOW]) == 0
    names = [line.strip() for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert "Verdict/DecideAndWrite" in names
    assert not [n for n in names if n.startswith("Verdict/Dataset-")]
    assert not (tmp_path / "df").exists()


def test_a_preset_seed_set_loads_only_with_its_recorded_sha256(tmp_path):
    from shardguard.transforms.contracts import RunLayout
    from shardguard.transforms.rules.hashexpand import BoundedSeedViews
    from shardguard.transforms.rules.seedset import SeedSetFile, save_seed_set, set_path

    fn, layout = BoundedSeedViews(2), RunLayout(str(tmp_path))
    value = fn.extract_output(fn.add_input(fn.create_accumulator(), [("s/a", "as-is", "ab" * 32, 80, "0123456789abcdef")]))
    save_seed_set(value, layout, "k" * 64)
    path = set_path(layout, "k" * 64)
    with open(path, "rb") as f:
        preset = SeedSetFile(path, hashlib.sha256(f.read()).hexdigest(), "k" * 64)
    assert preset.load() == value and preset.tag == f"seed-set|{preset.sha256}"
    with open(path, "ab") as f:
        f.write(b"\0")
    with pytest.raises(ValueError, match="changed after the re-filter took it"):
        preset.load()
