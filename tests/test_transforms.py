"""Transforms: the features runner (every row accounted), the stages under TestPipeline, decide."""
from __future__ import annotations

import apache_beam as beam
import imagehash
import pyarrow.parquet as pq
from apache_beam.testing.util import assert_that, equal_to
from conftest import beam_test_pipeline

from shardguard.pipelines.sample_data import encode, make_image, shard_rows, write_shard
from shardguard.transforms.contracts import MatchRecord, RunLayout, ShardSpec
from shardguard.transforms.decide import decide
from shardguard.transforms.decode import decode_image
from shardguard.transforms.features import hash_runner


def _row(i, data, status="success"):
    return {"row": i, "key": f"k{i}", "key_derived": False, "url": None, "caption": None, "status": status,
            "image": data}


def test_feature_runner_accounts_for_every_row():
    good = encode(make_image(3))
    recs = hash_runner(("md5", "phash"), 10_000_000).compute(
        [_row(0, good), _row(1, b"<html>"), _row(2, None, "failed_to_download"), {"row": 3, "key": "k3",
         "key_derived": False, "missing_image_column": "jpg"}])
    want = str(imagehash.phash(decode_image(good).rgb))
    assert [(r["row"], r["status"], r.get("error_class"), r.get("phash")) for r in recs] == [
        (0, "ok", None, want), (1, "error", "unidentified", None), (2, "error", "status_failed_to_download", None),
        (3, "error", "missing_column", None)]
    assert recs[1]["md5"]  # crypto hashes come from the bytes, before decoding fails
    assert not any(k.startswith("_") for r in recs for k in r)  # no working state leaves the runner


def _settings(tmp_path):
    from shardguard.transforms.contracts import ColumnNames
    from shardguard.transforms.extractors import ordered
    from shardguard.transforms.extractors.hashes import HashExtractor
    from shardguard.transforms.featurestage import FeatureSettings

    return FeatureSettings(tuple(ordered([HashExtractor(("md5", "phash"), True)])), 10_000_000, True,
                           ColumnNames(), "fp")


def test_features_stage_writes_one_file_per_shard(tmp_path):
    from shardguard.transforms.featurestage import FeaturesStage, ShardSpecs
    from shardguard.transforms.shared import SharedHandles

    specs = []
    for s in range(3):
        path = tmp_path / "in" / f"{s:05d}.parquet"
        write_shard(str(path), shard_rows([(f"c{i}", encode(make_image(s * 10 + i)), "success") for i in range(5)]
                                          + [("bad", b"junk", "success")], f"{s:05d}"))
        specs.append(ShardSpec(f"{s:05d}", str(path), "parquet"))
    layout = RunLayout(str(tmp_path / "out"))
    with beam_test_pipeline() as p:
        refs = p | ShardSpecs(specs) | FeaturesStage(layout, _settings(tmp_path), SharedHandles())
        got = refs | beam.Map(lambda r: (r.shard, r.info.num_rows, r.features["rows"], r.failure))
        assert_that(got, equal_to([(f"{s:05d}", 6, 6, None) for s in range(3)]))
    table = pq.read_table(tmp_path / "out" / "features" / "00001.parquet")
    assert table.column("status").to_pylist() == ["ok"] * 5 + ["error"]
    assert (tmp_path / "out" / "features" / "00001.json").exists()  # the stage's done marker


def _m(source, d=0.0):
    return MatchRecord(source, "hashlist", "pdq", "e", d)


def _feat(status="ok", cls=None):
    return {"row": 0, "key": "k", "url": "u", "sha256": "s", "status": status, "error_class": cls}


def test_decide_precedence_and_tags():
    actions = {"hashlist:r": "remove", "hashlist:q": "quarantine", "hashlist:t": "tag"}
    assert decide(_feat(), [_m("t"), _m("q")], actions, "drop")["verdict"] == "quarantine"
    v = decide(_feat(), [_m("q"), _m("r"), _m("t")], actions, "drop")
    assert v["verdict"] == "remove" and v["reasons"] == ["hashlist:q", "hashlist:r", "hashlist:t"]
    v = decide(_feat(), [_m("t")], actions, "drop")
    assert v["verdict"] == "keep" and v["tags"] == ["hashlist:t"] and v["reasons"] == ["hashlist:t"]
    assert decide(_feat("error", "truncated"), [], actions, "drop")["verdict"] == "error"
    v = decide(_feat("error", "truncated"), [], actions, "keep-and-flag")
    assert v["verdict"] == "keep" and v["reasons"] == ["unchecked:truncated"]
    assert decide(_feat("error", "truncated"), [_m("r")], actions, "drop")["verdict"] == "remove"


def test_sparse_verdicts_equal_every_row_decided():
    """``judge`` records only matched or unchecked rows; deciding every row with ``decide`` (the
    oracle) gives the same records for those, keeps all the others with no reason, and the
    counts, keep set and removed positions agree."""
    import random

    import pyarrow as pa

    from shardguard.transforms.contracts import DatasetMatches
    from shardguard.transforms.decide import KEEP, REMOVE
    from shardguard.transforms.verdict import VerdictSettings, error_records, judge
    from shardguard.transforms.write import count_verdicts

    rnd = random.Random(7)
    n = 300
    statuses = [rnd.choice(["ok"] * 8 + ["error", None]) for _ in range(n)]
    table = pa.table({"row": list(range(n)), "key": [f"k{i}" for i in range(n)], "url": [f"u{i}" for i in range(n)],
                      "sha256": [f"s{i}" for i in range(n)], "status": statuses,
                      "error_stage": [None if s == "ok" else "decode" for s in statuses],
                      "error_class": [None if s == "ok" else "truncated" for s in statuses],
                      "error_message": [None if s == "ok" else "m" for s in statuses]})
    per_rule = {src: [[_m(src, rnd.random())] if rnd.random() < 0.05 else [] for _ in range(n)] for src in "rqt"}

    class Rule:
        scope = "row"

        def __init__(self, src):
            self.src = src

        def match(self, t):
            return per_rule[self.src]
    dataset = [DatasetMatches(rows=tuple((i, _m("q", 0.5)) for i in range(0, n, 37)))]
    actions = {"hashlist:r": "remove", "hashlist:q": "quarantine", "hashlist:t": "tag"}
    for on_error in ("drop", "keep-and-flag"):
        settings = VerdictSettings((), actions, on_error, False, None, "fp")
        sv = judge(table, [Rule(s) for s in "rqt"], dataset, settings)
        fields = table.to_pylist()
        hits = [per_rule["r"][i] + per_rule["q"][i] + per_rule["t"][i] for i in range(n)]
        for row, m in dataset[0].rows:
            hits[row] = hits[row] + [m]
        full = [decide(f, h, actions, on_error) for f, h in zip(fields, hits)]
        assert list(sv.positions) == [i for i in range(n) if hits[i] or statuses[i] != "ok"]
        assert list(sv.records) == [full[i] for i in sv.positions]
        plain = [full[i] for i in range(n) if i not in set(sv.positions)]
        assert all(v["verdict"] == KEEP and not v["reasons"] and not v["matches"] for v in plain)
        assert sv.kept_rows() == {i for i, v in enumerate(full) if v["verdict"] == KEEP}
        assert sv.positions_with(REMOVE) == {i for i, v in enumerate(full) if v["verdict"] == REMOVE}
        cls = lambda rows: [f"{r['error_stage']}/{r['error_class']}" for r in rows]  # noqa: E731
        assert count_verdicts(sv.records, [r["status"] for r in sv.fields], cls(sv.fields),
                              plain_kept=n - len(sv.records)) == count_verdicts(full, statuses, cls(fields))
        assert error_records(sv.fields, sv.records) == error_records(fields, full)


def test_match_reasons_come_from_the_kind():
    assert _m("x").reason == "hashlist:x"
    assert MatchRecord("neighbor-of-known-bad", "neighbor", "clip", "s/k", 0.9).reason == "neighbor-of-known-bad"
    assert MatchRecord("min-clip-score", "rule", "clip_score", "< 0.2", 0.1).reason == "rule:min-clip-score"


def test_record_files_are_the_same_bytes_whether_empty_or_not_cached(tmp_path):
    """Empty record files (most shards' review, tag and error files) reuse one serialisation per
    schema: it must be byte for byte what writing the empty table gives, and a non-empty file is
    unaffected (a resumed or re-run shard must reproduce its files exactly)."""
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from shardguard.transforms import records

    for schema in (records.VERDICT_SCHEMA, records.ERROR_SCHEMA):
        fresh = records.parquet_bytes(pa.Table.from_pylist([], schema=schema))
        for n in range(2):  # the first call fills the cache, the second reads it
            out = records.write_rows(str(tmp_path / f"e{n}.parquet"), [], schema)
            data = (tmp_path / f"e{n}.parquet").read_bytes()
            assert data == fresh and out == {"sha256": hashlib.sha256(fresh).hexdigest(), "rows": 0}
            assert pq.read_table(tmp_path / f"e{n}.parquet").schema == schema
    row = {"row": 3, "key": "k", "stage": "decode", "error_class": "E", "message": "m", "kept": False}
    out = records.write_rows(str(tmp_path / "one.parquet"), [row], records.ERROR_SCHEMA)
    assert out["rows"] == 1 and pq.read_table(tmp_path / "one.parquet").to_pylist() == [row]
