"""Dedup inside a dataset, a dataset-scope rule per kind: exact, perceptual, semantic.

Each kind finds duplicate pairs across every shard's features without holding all rows in one
worker — exact: rows grouped by the digest of their stored bytes; perceptual: rows grouped by hash
substrings (the pigeonhole split: two hashes within d bits share one of d + 1 substrings), candidates
verified by full distance; semantic: a k-means over a deterministic sample of the embeddings assigns
rows to clusters of ~``rows_per_cluster``, pairs are compared within clusters — then joins the pairs
into connected components by an iterative join (hash-to-min, a fixed number of rounds, checked to have
converged) that runs on any Beam runner. Each component keeps one representative (the lowest
``(shard, row)`` that no safety rule removes); every other member gets ``dedup:<kind>`` with its
representative as the match's entry; a component whose members carry different captions marks them
all ``caption-conflict`` (default action tag). Per-row results reach their shard keyed by shard.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import apache_beam as beam
import numpy as np

from shardguard.transforms import dedupgraph as dg
from shardguard.transforms.contracts import DatasetMatches, FailureRecord
from shardguard.transforms.rules import DATASET, KEYED, Rule

ROUNDS = 24  # hash-to-min rounds: converges in O(log diameter); checked afterwards
SAMPLE = 100_000  # embeddings the semantic k-means is trained on


@dataclass(frozen=True)
class DedupSettings:
    """One kind's parameters (from ``DedupConfig``)."""

    kind: str
    column: str  # sha256 / md5, pdq / phash / dhash, embedding
    max_distance: float = 0.0  # perceptual bits
    min_quality: int = 0
    threshold: float = 1.0  # semantic cosine
    rows_per_cluster: int = 2000
    max_group: int = 50_000  # rows per bucket or cluster compared pairwise; more fails loudly
    action: str = "remove"
    conflicts: str | None = "tag"  # caption-conflict action, or None


class NodesFn(beam.DoFn):
    """A shard's rows as dedup nodes with what their kind compares (module doc); each row's
    ``Meta`` goes to the ``meta`` output."""

    META = "meta"

    def __init__(self, s: DedupSettings, ctx):
        self._s, self._ctx = s, ctx

    def setup(self):
        """Load the row rules (to know which rows a safety rule removes)."""
        for r in self._ctx.settings.rules:
            if r.scope != DATASET:
                r.setup(self._ctx.shared)

    def process(self, ref):
        """(node, value) for every checked row of one shard; (node, Meta) to ``meta``."""
        from shardguard.indexes.arrowio import read_table
        from shardguard.transforms.decide import REMOVE
        from shardguard.transforms.rules import column
        from shardguard.transforms.verdict import judge

        if ref.features is None:
            return
        table = read_table(self._ctx.layout.abs(ref.features["path"]))
        row_rules = [r for r in self._ctx.settings.rules if r.scope != DATASET]
        removed = judge(table, row_rules, [], self._ctx.settings).positions_with(REMOVE)
        caps = column(table, "caption_sha256")
        keys, status = column(table, "key"), column(table, "status")
        for i, (v, cap) in enumerate(zip(row_values(table, self._s), caps)):
            if status[i] == "ok" and v is not None:
                node = dg.node_id(i in removed, ref.shard, i)
                yield node, v
                yield beam.pvalue.TaggedOutput(self.META, (node, dg.Meta(keys[i], cap or "")))


def row_values(table, s: DedupSettings) -> list:
    """What each row compares (digest, hash, or embedding); None where it has none or is below quality."""
    from shardguard.transforms.rules import column

    if s.kind == "semantic":
        from shardguard.transforms.rules.concepts import embedding_matrix

        emb, pos = embedding_matrix(table)
        out = [None] * table.num_rows
        for j, i in enumerate(pos):
            out[i] = emb[j]
        return out
    vals = column(table, s.column)
    if s.kind == "perceptual" and s.min_quality and "pdq_quality" in table.column_names and s.column == "pdq":
        vals = [v if (q or 0) >= s.min_quality else None for v, q in zip(vals, column(table, "pdq_quality"))]
    return vals


def bucket_keys(nv, s: DedupSettings):
    """One (substring key, (node, code)) per pigeonhole substring of a row's hash."""
    node, hexcode = nv
    code = bytes.fromhex(hexcode)
    for key in dg.substrings(code, int(s.max_distance) + 1, len(code) * 8):
        yield key, (node, code)


def bucket_pairs(kv, s: DedupSettings):
    """Pairs of one bucket within the distance (or an overflow marker when it is too large)."""
    _, members = kv
    members = sorted(set(members))
    if len(members) > s.max_group:
        yield ("overflow", len(members))
        return
    if len(members) > 1:
        codes = np.frombuffer(b"".join(c for _, c in members), np.uint8).reshape(len(members), -1)
        yield from dg.hamming_pairs([n for n, _ in members], codes, int(s.max_distance))


def exact_pairs(kv, s: DedupSettings):
    """Star edges of one digest group (or an overflow marker)."""
    members = sorted(set(kv[1]))
    if len(members) > s.max_group:
        yield ("overflow", len(members))
        return
    yield from dg.star_edges(members)


def sample_key(nv) -> str:
    """A deterministic order for the k-means sample (hash of the row's identity)."""
    return hashlib.sha256(f"{nv[0][1]}/{nv[0][2]}".encode()).hexdigest()


def centroids(sample: list, count: int, s: DedupSettings) -> np.ndarray:
    """k-means centroids (k = rows / rows_per_cluster) of the sample, deterministic (seeded, sorted)."""
    vecs = np.stack([v for _, v in sorted(sample, key=sample_key)]).astype(np.float32) if sample else None
    k = max(1, min(count // s.rows_per_cluster, len(sample) // 4)) if sample else 1
    if vecs is None or k == 1:
        return np.zeros((1, vecs.shape[1] if vecs is not None else 1), np.float32)
    rng = np.random.default_rng(1234)
    cent = vecs[rng.choice(len(vecs), k, replace=False)]
    for _ in range(15):  # spherical k-means: embeddings are unit vectors
        assign = np.argmax(vecs @ cent.T, axis=1)
        for c in range(k):
            members = vecs[assign == c]
            if len(members):
                v = members.sum(axis=0)
                cent[c] = v / max(np.linalg.norm(v), 1e-12)
    return cent


def assign(nv, centroids):
    """(nearest centroid, (node, embedding))."""
    node, emb = nv
    return int(np.argmax(centroids @ emb)), (node, emb)


def cluster_pairs(kv, s: DedupSettings):
    """Pairs of one k-means cluster above the cosine threshold (or an overflow marker)."""
    members = sorted(kv[1], key=lambda m: m[0])
    if len(members) > s.max_group:
        yield ("overflow", len(members))
        return
    if len(members) > 1:
        yield from dg.cosine_pairs([m for m, _ in members], np.stack([e for _, e in members]), s.threshold)


def is_overflow(item) -> bool:
    """True for a bucket or cluster that was too large to compare."""
    return item[0] == "overflow"


class DedupRule(Rule):
    """``dedup:<kind>`` (and ``caption-conflict``): see the module doc."""

    kinds = ("dedup", "conflict")
    scope = DATASET

    def __init__(self, s: DedupSettings):
        self.s = s

    @property
    def label(self) -> str:  # noqa: D102
        return "score" if self.s.kind == "semantic" else "distance"

    @classmethod
    def build(cls, ctx) -> list[Rule]:  # noqa: D102
        return [cls(s) for s in ctx.cfg.dedup.settings()]

    @classmethod
    def example(cls, directory: str, table) -> "DedupRule":  # noqa: D102
        return cls(DedupSettings("exact", "md5"))

    def reasons(self) -> dict[str, str]:  # noqa: D102
        out = {f"dedup:{self.s.kind}": self.s.action}
        if self.s.conflicts:
            out["caption-conflict"] = self.s.conflicts
        return out

    def requires(self) -> set[str]:  # noqa: D102
        need = {self.s.column} | ({"pdq_quality"} if self.s.column == "pdq" and self.s.min_quality else set())
        return need | ({"caption_sha256"} if self.s.conflicts else set())

    def fingerprint(self):  # noqa: D102
        import dataclasses

        return ["dedup", dataclasses.asdict(self.s)]

    def expand(self, refs, ctx) -> dict:  # noqa: D102
        from shardguard.transforms.rules.dedupwire import dedup_matches

        return {KEYED: dedup_matches(self, refs, ctx)}

    def side_example(self, tables: dict, shared):
        """Not a side-value rule (its matches are keyed by shard)."""
        return None

    def shard_matches(self, table, ref, side):
        """The contract test's view: pairs of one table by brute force (the pipeline joins shards)."""
        from shardguard.transforms.rules import column

        vals, keys = column(table, self.s.column), column(table, "key")
        groups: dict = {}
        for i, v in enumerate(vals):
            if v is not None:
                groups.setdefault(v, []).append((dg.node_id(False, ref.shard, i), dg.Meta(keys[i], ""), 0.0))
        rows = [rec for g in groups.values() if len(g) > 1
                for rec in dg.component_records(min(g)[0], g, self.s.kind, self.s.column, False)]
        return DatasetMatches(rows=tuple((r, m) for _, r, m in rows))


def failure_matches(ref, overflow, s: DedupSettings):
    """Every shard fails when a bucket or cluster was too large to compare, or components did not
    converge: dedup would otherwise be incomplete without a word."""
    if not overflow:
        return
    yield ref.shard, DatasetMatches(failure=FailureRecord("dedup", "DedupLimit", f"dedup:{s.kind}: {overflow}"))
