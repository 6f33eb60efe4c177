"""Contract tests: every registered input format, feature extractor and rule runs these, so a new one
gets its tests by declaring itself (python-threatexchange's ``SignalTypeAutoTest`` is the model).

The last test is the README's "adding a hash type" example: a test-only sha512 type, registered with
one entry in ``HASH_TYPES``, reaches the features file and is matched identically by a scan and by a
re-filter of an earlier run."""
from __future__ import annotations

import hashlib
import json
import pickle

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_scan

from shardguard.pipelines.sample_data import encode, make_image
from shardguard.transforms.contracts import ColumnNames, MatchRecord, RunLayout, ShardSpec
from shardguard.transforms.formats import InputChanged, claim_shards, formats

ROWS = [(f"k{i}", encode(make_image(i, 96)), "success") for i in range(5)] + [
    ("broken", b"not an image", "success"), ("gone", None, "failed_to_download"),
    ("k0-copy", encode(make_image(0, 96)), "success")]


@pytest.fixture(params=sorted(formats()))
def fmt(request):
    return formats()[request.param]


class TestInputFormatContract:
    """What every input format promises: it claims its shards, counts and streams every row in order
    (unusable ones included), and writes exactly the kept rows, refusing an input that changed."""

    def _shard(self, fmt, tmp_path):
        path = fmt.write_example(str(tmp_path), ROWS)
        (shard,) = [(p, f) for p, f in claim_shards(sorted(str(x) for x in tmp_path.iterdir())) if p == path]
        assert shard[1] == fmt.name
        return ShardSpec("00000", path, fmt.name)

    def test_claims_counts_and_streams_every_row(self, fmt, tmp_path):
        spec = self._shard(fmt, tmp_path)
        info = fmt.read_info(spec, ColumnNames())
        rows = list(fmt.iter_rows(info, ColumnNames()))
        assert info.num_rows == len(rows) == len(ROWS) and [r["row"] for r in rows] == list(range(len(ROWS)))
        assert [r["key"] for r in rows] == [k for k, _, _ in ROWS]
        assert rows[0]["image"] == ROWS[0][1] and rows[6]["image"] is None
        assert (info.sha256, info.size) == fmt.fingerprint(spec.path)

    def test_writes_exactly_the_kept_rows_and_refuses_a_changed_input(self, fmt, tmp_path):
        spec = self._shard(fmt, tmp_path / "in" if (tmp_path / "in").mkdir() is None else tmp_path)
        info = fmt.read_info(spec, ColumnNames())
        layout = RunLayout(str(tmp_path / "out"))
        for keep in ({0, 2, 4}, set(range(len(ROWS)))):
            dst = fmt.clean_paths(layout, "00000")
            for p in dst.values():
                (tmp_path / "out" / "clean").mkdir(parents=True, exist_ok=True)
            files = fmt.write_clean(info, keep, dst, ColumnNames(), verify_sha256=True)
            assert files["clean"]["rows"] == len(keep) and set(files) == set(dst)
        fmt.write_example(str(tmp_path / "in"), ROWS[1:] + ROWS[:1])  # rewritten in place
        import os
        import shutil
        dst = fmt.clean_paths(layout, "00000")
        for p in dst.values():  # a file, or a folder of files (the files format)
            shutil.rmtree(p) if os.path.isdir(p) else os.path.exists(p) and os.remove(p)
        with pytest.raises(InputChanged):
            fmt.write_clean(info, {0, 2}, dst, ColumnNames(), verify_sha256=True)
        assert not [p for p in dst.values() if os.path.exists(p) and (os.path.isfile(p) or os.listdir(p))]


def _features(tmp_path, classes=None):
    """An example shard's features table with the given extractors (default: the hashes, the image
    and integrity columns and the tiny CLIP model: what the rules' examples read)."""
    from shardguard.transforms.extractors import ordered
    from shardguard.transforms.extractors.clip import ClipExtractor
    from shardguard.transforms.extractors.hashes import HashExtractor
    from shardguard.transforms.features import FeatureRunner, features_table
    from shardguard.transforms.shared import SharedHandles

    exs = ordered([cls.example(str(tmp_path)) for cls in classes or (HashExtractor, ClipExtractor)])
    for e in exs:
        e.setup(SharedHandles())
    rows = [{"row": i, "key": k, "key_derived": False, "url": f"https://example.com/{k}.jpg", "caption": f"c {k}",
             "status": s, "image": d, "integrity_ref": hashlib.sha256(d or b"").hexdigest() if i else "0" * 64}
            for i, (k, d, s) in enumerate(ROWS)]
    recs = FeatureRunner(exs, 10**8, False).compute(rows)
    return exs, recs, features_table(recs, exs)


@pytest.fixture(scope="module")
def example_features(tmp_path_factory):
    return _features(tmp_path_factory.mktemp("features"))


def _extractor_classes():
    from shardguard.transforms.extractors import registry

    return registry()


@pytest.mark.parametrize("cls", _extractor_classes(), ids=lambda c: c.name)
def test_feature_extractor_contract(cls, tmp_path):
    exs, recs, table = _features(tmp_path, [cls])  # each extractor with the always-present ones
    ex = next(e for e in exs if type(e) is cls)
    names = [f.name for f in ex.columns()]
    assert names and all(n in table.column_names for n in names)  # its columns reach the features file
    assert ex.computed() <= set(names)
    json.dumps(ex.fingerprint())  # plain data: it enters the features fingerprint
    assert type(pickle.loads(pickle.dumps(ex))) is cls  # travels to workers before setup
    ok = [i for i, r in enumerate(recs) if r.get("status") == "ok"]
    for name in ex.computed():
        col = table.column(name).to_pylist()
        assert all(col[i] is not None for i in ok), name  # filled for every row it could read
    assert not any(k.startswith("_") for r in recs for k in r)  # no working state left in records


def _rule_classes():
    from shardguard.transforms.rules import registry

    return registry()


@pytest.mark.parametrize("cls", _rule_classes(), ids=lambda c: c.kinds[0])
def test_rule_contract(cls, example_features, tmp_path):
    from shardguard.transforms.rules import DATASET
    from shardguard.transforms.shared import SharedHandles

    _, _, table = example_features
    rule = cls.example(str(tmp_path), table)
    reasons = rule.reasons()
    assert reasons and set(reasons.values()) <= {"remove", "quarantine", "tag"}
    assert rule.requires() <= set(table.column_names)
    json.dumps(rule.fingerprint())
    rule = pickle.loads(pickle.dumps(rule))
    shared = SharedHandles()
    rule.setup(shared)
    if rule.scope == DATASET:
        found = rule.shard_matches(table, type("Ref", (), {"shard": "00000"})(),
                                   rule.side_example({"00000": table}, shared)).rows
        per_row = [[m for r, m in found if r == i] for i in range(table.num_rows)]
    else:
        per_row = rule.match(table)
    assert len(per_row) == table.num_rows
    hits = [m for ms in per_row for m in ms]
    assert hits, "the example should match some rows"
    assert all(isinstance(m, MatchRecord) and m.reason in reasons and m.kind in cls.kinds for m in hits)


def test_a_hash_type_added_with_one_registry_entry_is_computed_stored_and_matched(tmp_path, monkeypatch):
    """README, Extending shardguard: ``HASH_TYPES["sha512"] = crypto_hash_type("sha512")``."""
    from shardguard.indexes import hashtypes
    from shardguard.pipelines.refilter import run as refilter

    monkeypatch.setitem(hashtypes.HASH_TYPES, "sha512", hashtypes.crypto_hash_type("sha512"))
    parquet = formats()["parquet"]
    (tmp_path / "in").mkdir()
    parquet.write_example(str(tmp_path / "in"), ROWS)
    (tmp_path / "bad.txt").write_text(hashlib.sha512(ROWS[1][1]).hexdigest() + "\n")
    scan = ["--input", str(tmp_path / "in" / "*.parquet"), "--quiet", "--hashes", "md5,sha512"]
    assert run_scan(scan + ["--output", str(tmp_path / "plain"), "--features-only"]) == 0
    assert run_scan(scan + ["--output", str(tmp_path / "fresh"), "--hash-list", f"sha512={tmp_path / 'bad.txt'}"]) == 0
    assert refilter(["--from", str(tmp_path / "plain"), "--output", str(tmp_path / "re"), "--quiet",
                     "--hash-list", f"sha512={tmp_path / 'bad.txt'}"]) == 0
    feats = pq.read_table(tmp_path / "plain" / "features" / "00000.parquet")
    assert feats.column("sha512")[1].as_py() == hashlib.sha512(ROWS[1][1]).hexdigest()
    fresh, re = (pq.read_table(tmp_path / d / "removed" / "00000.parquet") for d in ("fresh", "re"))
    assert fresh.equals(re) and fresh.column("key").to_pylist() == ["k1"]
    assert fresh.column("reasons").to_pylist() == [["hashlist:bad"]]
    assert isinstance(feats.schema.field("sha512").type, pa.DataType)
