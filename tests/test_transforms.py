"""Transforms under TestPipeline: features with a dead-letter path, verdict decisions."""
from __future__ import annotations

import apache_beam as beam
import imagehash
from apache_beam.testing.util import assert_that, equal_to

from conftest import beam_test_pipeline
from shardguard.pipelines.sample_data import encode, make_image
from shardguard.transforms.decide import decide
from shardguard.transforms.decode import decode_image
from shardguard.transforms.features import unpack_records
from shardguard.transforms.hashing import ComputeFeatures


def _row(i, data, status="success"):
    return ("s", {"row": i, "key": f"k{i}", "key_derived": False, "url": None, "caption": None,
                  "status": status, "image": data})


def test_compute_features_routes_every_row():
    good = encode(make_image(3))
    rows = [_row(0, good), _row(1, b"<html>"), _row(2, None, "failed_to_download")]
    want_phash = str(imagehash.phash(decode_image(good).rgb))
    with beam_test_pipeline() as p:
        out = (p | beam.Create(rows) | ComputeFeatures(("md5", "phash"), 10_000_000)
               | beam.FlatMap(lambda kv: [(r["row"], r["status"], r["error_class"], r["phash"], "image" in r)
                                          for r in unpack_records(kv[1])]))
        assert_that(out, equal_to([(0, "ok", None, want_phash, False),
                                   (1, "error", "unidentified", None, False),
                                   (2, "error", "status_failed_to_download", None, False)]))


def _feat(status="ok", cls=None):
    return {"row": 0, "key": "k", "url": "u", "sha256": "s", "status": status, "error_class": cls}


def _m(source, d=0.0):
    return {"source": source, "kind": "hashlist", "type": "pdq", "entry": "e", "distance": d}


def test_decide_precedence():
    actions = {"hashlist:r": "remove", "hashlist:q": "quarantine", "hashlist:t": "tag"}
    assert decide(_feat(), [_m("t"), _m("q")], actions, "drop")["verdict"] == "quarantine"
    v = decide(_feat(), [_m("q"), _m("r"), _m("t")], actions, "drop")
    assert v["verdict"] == "remove" and v["reasons"] == ["hashlist:q", "hashlist:r", "hashlist:t"]
    assert decide(_feat(), [_m("t")], actions, "drop")["verdict"] == "keep"
    assert decide(_feat("error", "truncated"), [], actions, "drop")["verdict"] == "error"
    v = decide(_feat("error", "truncated"), [], actions, "keep-and-flag")
    assert v["verdict"] == "keep" and v["reasons"] == ["unchecked:truncated"]
    assert decide(_feat("error", "truncated"), [_m("r")], actions, "drop")["verdict"] == "remove"


def test_packed_features_round_trip():
    from shardguard.transforms.features import compute_row_features, finish_batch, pack_records

    recs = [compute_row_features(_row(i, d)[1], ("md5", "phash"), 10_000_000, exact=False, defer=True)[0]
            for i, d in enumerate([encode(make_image(1)), b"junk", encode(make_image(2))])]
    finish_batch(recs)
    packed = pack_records(recs)
    assert "sha256" not in packed[1] and "md5" in packed[1]  # all-null columns travel as nothing
    assert unpack_records(packed) == recs
    assert unpack_records(recs[0]) == [recs[0]] and unpack_records(recs) == recs
    import pytest

    with pytest.raises(ValueError, match="not a packed"):
        unpack_records(("other", (), ()))
