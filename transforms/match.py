"""Verdict stage, part 1: gather each shard's features and match them — hash lists, concept indexes,
the optional minimum CLIP-score rule, then kNN expansion around confirmed hash matches.

Lists and concept indexes are loaded once per worker process in ``setup()`` through Beam's ``Shared``
and queried a whole shard at a time, so FAISS sees large batches.

kNN expansion (the SIO method): rows confirmed by a known-bad hash list (a ``remove`` list) are seeds.
Seeds are few, so they reach every worker as a side input; each shard's embeddings are compared with
all seeds in one matrix product, which makes a seed in shard 3 flag a neighbour in shard 7. When
seeds are many, the same interface becomes an approximate nearest-neighbour join (see README).
"""
from __future__ import annotations

import logging

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.utils.shared import Shared

from shardguard.indexes.matcher import ListMatcher
from shardguard.transforms.features import unpack_records

_LOG = logging.getLogger(__name__)
NEIGHBOR_SOURCE = "neighbor-of-known-bad"
INTEGRITY_SOURCE = "integrity-mismatch"


class LoadedIndexes:
    """Holder of loaded list and concept matchers (``Shared`` needs a weak-referenceable object)."""

    def __init__(self, list_refs, concept_refs):
        from shardguard.indexes.concepts import ConceptMatcher

        self.lists = [ListMatcher.load(art_dir, fp) for art_dir, fp in list_refs]
        self.concepts = [ConceptMatcher(art_dir, fp) for art_dir, fp in concept_refs]


def assemble_shard(shard: str, grouped: dict) -> dict:
    """One shard's bundle: info, features sorted by row, and a failure if rows do not add up."""
    info = grouped["info"][0] if grouped["info"] else {"shard": shard}
    bundle = {"shard": shard, "info": info, "features": [], "failure": None}
    if grouped["failed"]:
        bundle["failure"] = dict(grouped["failed"][0])
        return bundle
    feats = []
    for item in grouped["features"]:  # a packed batch or a record (scan), a list (re-filter)
        feats.extend(unpack_records(item))
    feats.sort(key=lambda r: r["row"])
    expected = info.get("num_rows")
    rows = [r["row"] for r in feats]
    if expected is None or rows != list(range(expected)):
        bundle["failure"] = {"stage": "accounting", "error_class": "row_count_mismatch",
                             "message": f"expected rows 0..{expected}, got {len(rows)} distinct "
                                        f"{len(set(rows))}"}
        return bundle
    bundle["features"] = feats
    return bundle


def embedding_matrix(features: list[dict]) -> tuple[np.ndarray, list[int]]:
    """(float32 matrix of the rows that have embeddings, their positions)."""
    pos = [i for i, f in enumerate(features) if f.get("embedding") is not None]
    if not pos:
        return np.zeros((0, 0), np.float32), pos
    return np.stack([np.asarray(features[i]["embedding"], dtype=np.float32) for i in pos]), pos


def integrity_match(f: dict, hash_type: str) -> dict | None:
    """A mismatch when the row carries a reference hash and its stored bytes hash differently."""
    ref, got = f.get("integrity_ref"), f.get(hash_type)
    if not ref or not got or ref == got:
        return None
    return {"source": INTEGRITY_SOURCE, "kind": "integrity", "type": hash_type,
            "entry": f"expected {ref[:16]}", "distance": 1.0}


def match_rows(features: list[dict], lists, concepts=(), min_clip_score: float | None = None,
               integrity_type: str | None = None) -> list[list[dict]]:
    """Every match of every row: hash lists, concepts, the clip-score rule, the integrity check."""
    per_row: list[list[dict]] = [[] for _ in features]
    for m in lists:
        ht = m.hash_type
        hexes = [f.get(ht.name) for f in features]
        quals = [f.get(ht.quality_column) for f in features] if ht.quality_column else None
        for i, hits in enumerate(m.match_batch(hexes, quals)):
            per_row[i].extend(h.as_dict() for h in hits)
    if concepts:
        emb, pos = embedding_matrix(features)
        for c in concepts:
            for i, hits in zip(pos, c.match_batch(emb)):
                per_row[i].extend(hits)
    if min_clip_score is not None:
        for i, f in enumerate(features):
            if f.get("clip_score") is not None and f["clip_score"] < min_clip_score:
                per_row[i].append({"source": "min-clip-score", "kind": "rule", "type": "clip_score",
                                   "entry": f"< {min_clip_score}", "distance": round(float(f["clip_score"]), 6)})
    if integrity_type:
        checked = mismatched = 0
        for i, f in enumerate(features):
            checked += bool(f.get("integrity_ref") and f.get(integrity_type))
            hit = integrity_match(f, integrity_type)
            if hit:
                mismatched += 1
                per_row[i].append(hit)
        if checked >= 10 and mismatched > checked // 2:
            _LOG.warning("integrity: %d of %d checked rows of a shard do not match their reference %s; "
                         "if the shard was downloaded with re-encoding (img2dataset resizes and re-encodes "
                         "unless disable_all_reencoding=True), its sha256 column hashes the downloaded, "
                         "not the stored bytes", mismatched, checked, integrity_type)
    return per_row


def seeds_of(bundle: dict, seed_sources: frozenset) -> list[tuple[str, str, np.ndarray]]:
    """(shard, key, embedding) of rows matched by a list in ``seed_sources`` (confirmed known-bad)."""
    if bundle["failure"] is not None:
        return []
    out = []
    for f, hits in zip(bundle["features"], bundle["matches"]):
        if f.get("embedding") is not None and any(
                h["kind"] == "hashlist" and h["source"] in seed_sources for h in hits):
            out.append((bundle["shard"], f["key"], np.asarray(f["embedding"], dtype=np.float16)))
    return sorted(out, key=lambda s: (s[0], s[1]))


def expand_neighbors(bundle: dict, seeds: list, threshold: float) -> dict:
    """Add a ``neighbor-of-known-bad`` match to every row within ``threshold`` cosine of a seed."""
    if bundle["failure"] is not None or not seeds:
        return bundle
    emb, pos = embedding_matrix(bundle["features"])
    if not pos:
        return bundle
    seeds = sorted(seeds, key=lambda s: (s[0], s[1]))
    seed_mat = np.stack([np.asarray(s[2], dtype=np.float32) for s in seeds])
    sims = emb @ seed_mat.T
    matches = [list(m) for m in bundle["matches"]]
    for r, i in enumerate(pos):
        key = bundle["features"][i]["key"]
        for j in np.nonzero(sims[r] >= threshold)[0]:
            s_shard, s_key, _ = seeds[j]
            if (s_shard, s_key) == (bundle["shard"], key):
                continue  # a seed is not its own neighbour
            matches[i].append({"source": NEIGHBOR_SOURCE, "kind": "neighbor", "type": "clip",
                               "entry": f"{s_shard}/{s_key}", "distance": round(float(sims[r, j]), 6)})
    return dict(bundle, matches=matches)


class MatchShardFn(beam.DoFn):
    """(shard, co-grouped info/features/failed) → shard bundle with ``matches`` per row."""

    def __init__(self, list_refs, concept_refs=(), min_clip_score: float | None = None,
                 integrity_type: str | None = None):
        self._lrefs, self._crefs = tuple(list_refs), tuple(concept_refs)
        self._min_score, self._integrity = min_clip_score, integrity_type
        self._shared = Shared()
        self._idx = None

    def setup(self):
        tag = "|".join(fp for _, fp in self._lrefs + self._crefs)
        self._idx = self._shared.acquire(lambda: LoadedIndexes(self._lrefs, self._crefs), tag=tag)

    def process(self, element):
        shard, grouped = element
        bundle = assemble_shard(shard, grouped)
        if bundle["failure"] is None:
            bundle["matches"] = match_rows(bundle["features"], self._idx.lists, self._idx.concepts,
                                           self._min_score, self._integrity)
            for hits in bundle["matches"]:
                for source in {h["source"] for h in hits}:
                    Metrics.counter("match", f"hit_{source}").inc()
        yield bundle


class ExpandFn(beam.DoFn):
    """Wraps ``expand_neighbors`` with the seeds side input."""

    def __init__(self, threshold: float):
        self._threshold = threshold

    def process(self, bundle, seeds):
        out = expand_neighbors(bundle, seeds, self._threshold)
        if out is not bundle:
            n = sum(1 for m in out["matches"] for h in m if h["source"] == NEIGHBOR_SOURCE)
            Metrics.counter("match", f"hit_{NEIGHBOR_SOURCE}").inc(n)
        yield out


class MatchShards(beam.PTransform):
    """{"info", "features", "failed"} keyed by shard → one matched bundle per shard (+ expansion)."""

    def __init__(self, list_refs, concept_refs=(), min_clip_score=None, expand_threshold=None,
                 seed_sources=(), integrity_type=None):
        super().__init__()
        self._lrefs, self._crefs, self._min = tuple(list_refs), tuple(concept_refs), min_clip_score
        self._integrity = integrity_type
        self._expand, self._seed_sources = expand_threshold, frozenset(seed_sources)

    def expand(self, parts):
        bundles = (parts | "GroupByShard" >> beam.CoGroupByKey()
                   | "MatchIndexes" >> beam.ParDo(MatchShardFn(self._lrefs, self._crefs, self._min,
                                                             self._integrity)))
        if self._expand is None:
            return bundles
        sources = self._seed_sources
        seeds = bundles | "Seeds" >> beam.FlatMap(seeds_of, sources)
        return bundles | "ExpandNeighbors" >> beam.ParDo(ExpandFn(self._expand), beam.pvalue.AsList(seeds))
