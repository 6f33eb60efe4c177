"""Verdict stage, part 1: gather each shard's features and match them against the hash lists.

Lists are loaded once per worker process in ``setup()`` through Beam's ``Shared`` (one copy shared
by all threads of a process) and queried a whole shard at a time, so FAISS sees large batches.
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.shared import Shared

from shardguard.indexes.matcher import ListMatcher


class LoadedLists:
    """Holder of loaded matchers (``Shared`` needs a weak-referenceable object)."""

    def __init__(self, refs: tuple[tuple[str, str], ...]):
        self.matchers = [ListMatcher.load(art_dir, fp) for art_dir, fp in refs]


def assemble_shard(shard: str, grouped: dict) -> dict:
    """One shard's bundle: info, features sorted by row, and a failure if rows do not add up."""
    info = grouped["info"][0] if grouped["info"] else {"shard": shard}
    bundle = {"shard": shard, "info": info, "features": [], "failure": None}
    if grouped["failed"]:
        bundle["failure"] = dict(grouped["failed"][0])
        return bundle
    feats = sorted(grouped["features"], key=lambda r: r["row"])
    expected = info.get("num_rows")
    rows = [r["row"] for r in feats]
    if expected is None or rows != list(range(expected)):
        bundle["failure"] = {"stage": "accounting", "error_class": "row_count_mismatch",
                             "message": f"expected rows 0..{expected}, got {len(rows)} distinct "
                                        f"{len(set(rows))}"}
        return bundle
    bundle["features"] = feats
    return bundle


def match_rows(features: list[dict], matchers) -> list[list[dict]]:
    """Every match of every row against every list, as plain dicts, in list order."""
    per_row: list[list[dict]] = [[] for _ in features]
    for m in matchers:
        ht = m.hash_type
        hexes = [f.get(ht.name) for f in features]
        quals = [f.get(ht.quality_column) for f in features] if ht.quality_column else None
        for i, hits in enumerate(m.match_batch(hexes, quals)):
            per_row[i].extend(h.as_dict() for h in hits)
    return per_row


class MatchShardFn(beam.DoFn):
    """(shard, co-grouped info/features/failed) → shard bundle with ``matches`` per row."""

    def __init__(self, list_refs: tuple[tuple[str, str], ...]):
        self._refs = tuple(list_refs)
        self._shared = Shared()
        self._lists = None

    def setup(self):
        tag = "|".join(fp for _, fp in self._refs)
        self._lists = self._shared.acquire(lambda: LoadedLists(self._refs), tag=tag)

    def process(self, element):
        shard, grouped = element
        bundle = assemble_shard(shard, grouped)
        if bundle["failure"] is None:
            bundle["matches"] = match_rows(bundle["features"], self._lists.matchers)
            for hits in bundle["matches"]:
                for source in {h["source"] for h in hits}:
                    Metrics.counter("match", f"hit_{source}").inc()
        yield bundle


class MatchShards(beam.PTransform):
    """{"info", "features", "failed"} keyed by shard → one matched bundle per shard."""

    def __init__(self, list_refs):
        super().__init__()
        self._refs = tuple(list_refs)

    def expand(self, parts):
        return (parts | "GroupByShard" >> beam.CoGroupByKey()
                | "MatchLists" >> beam.ParDo(MatchShardFn(self._refs)))
