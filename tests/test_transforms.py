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


def test_decide_shortcut_gives_the_full_rules_record():
    """Rows nothing matched take a shortcut; it must build the record the full rules would, and
    every other row must still reach them (a matched or unchecked row is never kept by it)."""
    from shardguard.transforms.decide import decide_full

    actions = {"hashlist:r": "remove", "hashlist:q": "quarantine", "hashlist:t": "tag"}
    for row in (_feat(), dict(_feat(), url=None, sha256=None), _feat("error", "truncated")):
        for matches in ([], [_m("t")], [_m("q")], [_m("r"), _m("t")]):
            for on_error in ("drop", "keep-and-flag"):
                assert decide(row, matches, actions, on_error) == decide_full(row, matches, actions, on_error)
    assert decide({"row": 1, "key": "k", "status": "ok"}, [], actions, "drop") == decide_full(
        {"row": 1, "key": "k", "status": "ok"}, [], actions, "drop")  # no url or sha256 fields at all


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
