"""kNN expansion around confirmed matches (the SIO method), a dataset-scope rule.

Seeds are the rows a ``remove`` hash list matched, in every shard of the run (done shards included).
They reach every worker as one side input, bounded: more than ``expand.max_seeds`` fails the shards
with a clear message instead of exhausting memory. Each shard's verdict compares its embeddings with
all seeds in chunks (memory ~ chunk rows × seeds, not rows × seeds; nothing per row crosses a
shuffle, so memory does not grow with the dataset), and a row keeps at most
``expand.max_per_row`` neighbouring seeds (the most similar; one is enough to flag it), so a loose
threshold or a degenerate model cannot blow up the records either. Neighbours are never seeds in turn.
"""
from __future__ import annotations

import apache_beam as beam
import numpy as np

from shardguard.indexes.arrowio import read_table
from shardguard.transforms.contracts import DatasetMatches, FailureRecord, MatchRecord
from shardguard.transforms.rules import DATASET, SIDE, SIDE_DEFAULT, Rule, column
from shardguard.transforms.rules.concepts import embedding_matrix

NEIGHBOR_SOURCE = "neighbor-of-known-bad"
_CELLS = 16 << 20  # similarity matrix cells computed at a time (64 MB of float32)


def seeds_of(table, shard: str, seed_rules) -> list[tuple[str, str, np.ndarray]]:
    """(shard, key, float16 embedding) of the rows a seed rule matched."""
    hit = [False] * table.num_rows
    for rule in seed_rules:
        for i, matches in enumerate(rule.match(table)):
            hit[i] = hit[i] or any("@" not in m.type for m in matches)  # as stored, not a view
    emb, pos = embedding_matrix(table)
    keys = column(table, "key")
    return [(shard, keys[i], emb[j].astype(np.float16)) for j, i in enumerate(pos) if hit[i]]


def neighbours(table, shard: str, seeds: list, threshold: float, max_per_row: int) -> list[tuple[int, MatchRecord]]:
    """(row, match) for every row within ``threshold`` cosine of a seed (not itself), at most
    ``max_per_row`` per row, the most similar first (ties by seed id)."""
    emb, pos = embedding_matrix(table)
    if not pos or not seeds:
        return []
    seed_mat = np.stack([s[2].astype(np.float32) for s in seeds])
    keys = column(table, "key")
    step = max(1, _CELLS // len(seeds))
    out = []
    for a in range(0, len(pos), step):
        sims = emb[a:a + step] @ seed_mat.T
        for r in range(sims.shape[0]):
            i = pos[a + r]
            close = [(-float(sims[r, j]), j) for j in np.nonzero(sims[r] >= threshold)[0]
                     if (seeds[j][0], seeds[j][1]) != (shard, keys[i])]
            for neg, j in sorted(close)[:max_per_row]:
                out.append((i, MatchRecord(NEIGHBOR_SOURCE, "neighbor", "clip", f"{seeds[j][0]}/{seeds[j][1]}",
                                           round(-neg, 6))))
    return out


class BoundedSeeds(beam.CombineFn):
    """All seeds, sorted, as long as there are at most ``limit``; past it, only their count. Inputs
    are one shard's seeds each (a list: thousands of seed views cross the runner as a few elements)."""

    def __init__(self, limit: int):
        self._limit = limit

    def create_accumulator(self):  # noqa: D102
        return [0, []]

    def add_input(self, acc, seeds):  # noqa: D102
        acc[0] += len(seeds)
        if acc[0] <= self._limit:
            acc[1].extend(seeds)
        else:
            acc[1] = []  # over the limit: only the count is kept (memory stays bounded)
        return acc

    def merge_accumulators(self, accs):  # noqa: D102
        n = sum(a[0] for a in accs)
        return [n, [s for a in accs for s in a[1]] if n <= self._limit else []]

    def extract_output(self, acc):  # noqa: D102
        return {"count": acc[0], "limit": self._limit, "seeds": sorted(acc[1], key=lambda s: (s[0], s[1]))}


def bounded_side(per_shard, combine: BoundedSeeds) -> dict:
    """The seed set as a dataset rule's side value: the combine of every shard's seeds, and the value
    that stands for it when no shard has any (``SIDE_DEFAULT``: the verdict's singleton view supplies
    it, so the combine runs without Beam's default branch — a further stage and shuffle that would
    only inject that empty value)."""
    return {SIDE: per_shard | "BoundSeeds" >> beam.CombineGlobally(combine).without_defaults(),
            SIDE_DEFAULT: combine.extract_output(combine.create_accumulator())}


class SeedsDoFn(beam.DoFn):
    """Base of an expansion's per-shard seed step: the rule's seed lists loaded once per worker, and
    a shard's features table (None for a shard without features)."""

    def __init__(self, rule, layout, shared):
        self._rule, self._layout, self._shared = rule, layout, shared

    def setup(self):
        """Load the seed lists once per worker process."""
        for r in self._rule.seed_rules:
            r.setup(self._shared)

    def features(self, ref):
        """The shard's features table, or None when its features failed."""
        return None if ref.features is None else read_table(self._layout.abs(ref.features["path"]))


class _SeedsFn(SeedsDoFn):
    def process(self, ref):
        table = self.features(ref)
        if table is not None:
            yield seeds_of(table, ref.shard, self._rule.seed_rules)


class KnnExpansion(Rule):
    """``neighbor-of-known-bad``: rows within ``expand.threshold`` cosine of a confirmed match."""

    kinds = ("neighbor",)
    scope = DATASET
    label = "score"

    def __init__(self, threshold: float, action: str, seed_rules: list, max_seeds: int, max_per_row: int):
        self.threshold, self.action, self.seed_rules = threshold, action, list(seed_rules)
        self.max_seeds, self.max_per_row = max_seeds, max_per_row

    @classmethod
    def example(cls, directory: str, table) -> "KnnExpansion":  # noqa: D102
        from shardguard.transforms.rules.hashlists import HashListRule

        return cls(0.5, "quarantine", [HashListRule.example(directory, table)], 1000, 10)

    def side_example(self, tables: dict, shared) -> dict:
        """The side value ``expand`` would compute over ``tables`` (shard → features), for the tests."""
        for r in self.seed_rules:
            r.setup(shared)
        seeds = [s for shard, t in sorted(tables.items()) for s in seeds_of(t, shard, self.seed_rules)]
        return {"count": len(seeds), "limit": self.max_seeds, "seeds": seeds}

    @classmethod
    def build(cls, ctx) -> list[Rule]:  # noqa: D102
        e = ctx.cfg.expand
        if e.threshold is None:
            return []
        return [cls(e.threshold, e.action, ctx.seed_rules(), e.max_seeds, e.max_per_row)]

    def reasons(self) -> dict[str, str]:  # noqa: D102
        return {NEIGHBOR_SOURCE: self.action}

    def requires(self) -> set[str]:  # noqa: D102
        return {"embedding"}

    def fingerprint(self):  # noqa: D102
        return ["knn", self.threshold, self.action, [r.fingerprint() for r in self.seed_rules],
                self.max_seeds, self.max_per_row]

    def expand(self, refs, ctx) -> dict:  # noqa: D102
        return bounded_side(refs | "Seeds" >> beam.ParDo(_SeedsFn(self, ctx.layout, ctx.shared)),
                            BoundedSeeds(self.max_seeds))

    def shard_matches(self, table, ref, seedset) -> DatasetMatches:  # noqa: D102
        if seedset["count"] > seedset["limit"]:
            return DatasetMatches(failure=FailureRecord(
                "expand", "SeedLimitExceeded", f"kNN expansion found {seedset['count']} seeds, more than "
                f"expand.max_seeds ({seedset['limit']}); each worker would hold them all (dim × 2 bytes "
                "each): raise the limit if memory allows, or split the run"))
        rows = neighbours(table, ref.shard, seedset["seeds"], self.threshold, self.max_per_row)
        beam.metrics.Metrics.counter("match", f"hit_{NEIGHBOR_SOURCE}").inc(len(rows))
        return DatasetMatches(rows=tuple(rows))
