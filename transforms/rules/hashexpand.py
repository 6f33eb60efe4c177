"""Hash-based expansion around confirmed matches, a dataset-scope rule that needs no model.

Seeds are the rows a ``remove`` list of a confirming hash (exact, or PDQ: ``HashType.confirms``) matched
on their as-stored image; views do not make seeds, nor do 64-bit pHash/dHash lists, whose chance
collisions would spread through the expansion.
Each seed's image is read again from its input (seeds are few; the bytes go to no output;
``seedviews.py`` caches the result), and a rich
set of views of it is hashed (crops, corner crops, zoom-outs, small rotations, caption strips, mirror:
``indexes/views.py::seed_views``). Every row of the dataset whose as-stored PDQ (quality ≥ 50) and
pHash are both within the strict joint rule of one seed view is flagged ``neighbor-of-known-bad``
(default action quarantine; the match records the seed, the view and the PDQ distance). Neighbours
are never seeds in turn: flat images that got the same frame or banner sit close to each other, so
iterating would spread along template collisions.
"""
from __future__ import annotations

import apache_beam as beam
import numpy as np

from shardguard.transforms.contracts import DatasetMatches, FailureRecord, MatchRecord
from shardguard.transforms.rules import DATASET, PRESET, SIDE, Rule, column
from shardguard.transforms.rules.expansion import NEIGHBOR_SOURCE, BoundedSeeds, bounded_side
from shardguard.transforms.rules.seedpack import SeedViews
from shardguard.transforms.rules.seedviews import SeedViewsFn, seed_rows


class SeedIndex:
    """The seed views made searchable once per seed set (not once per shard): the distinct
    (PDQ, pHash) pairs among them — copies of one known-bad image (common: a dataset holds many) give
    identical views, searched once — in a joint PDQ + pHash index (``indexes/jointsearch.py``), and
    the members of each, for pHash distances up to ``max_phash``; ``chunks`` as ``JointIndex``'s."""

    def __init__(self, seeds: "SeedViews | list", max_phash: int, chunks=None):
        from shardguard.indexes.jointsearch import JointIndex, phash_u64

        self.source = seeds  # what the runner handed over (the cache's identity check)
        self.seeds = packed = _packed(seeds)
        n = len(packed)
        pairs = np.concatenate([packed.pdq_codes(), packed.phash_codes()], axis=1)
        distinct, group = _unique_rows(pairs) if n else (pairs, np.zeros(0, np.int64))
        # members of each distinct pair as slices of one array (no list per pair: at max_seeds a
        # worker's index holds ~850k views); (seed, view) labels made only for a match's members
        self._order = np.argsort(group, kind="stable")
        self._starts = np.concatenate([[0], np.cumsum(np.bincount(group, minlength=len(distinct)))]).tolist()
        self._seed_of = np.frombuffer(packed.seed_of, "<i4")
        self._view_of = np.frombuffer(packed.view_of, "<i4")
        self.seed_ids = set(packed.seeds)
        self.index = JointIndex(distinct[:, :32], phash_u64(distinct[:, 32:]), max_phash, chunks)

    def __len__(self) -> int:
        return len(self.seeds)

    def members(self, entry: int) -> list[tuple[str, str]]:
        """(seed id, view name) of the seed views whose hashes are the index's ``entry``."""
        ks = self._order[self._starts[entry]:self._starts[entry + 1]]
        return [(self.seeds.seeds[s], self.seeds.views[v])
                for s, v in zip(self._seed_of[ks].tolist(), self._view_of[ks].tolist())]

    def serves(self, seeds: "SeedViews | list") -> bool:
        """Whether this index is of ``seeds`` (the same object, or an equal set)."""
        return seeds is self.source or seeds is self.seeds or self.seeds == _packed(seeds)


def _unique_rows(pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(pairs, axis=0, return_inverse=True)`` of uint8 rows, compared as whole byte
    strings: the same rows in the same (bytewise) order, ~6x faster than unique along an axis."""
    width = pairs.shape[1]
    keys = np.ascontiguousarray(pairs).view(np.dtype((np.void, width))).ravel()
    distinct, group = np.unique(keys, return_inverse=True)
    return distinct.view(np.uint8).reshape(-1, width), group.reshape(-1)


def _packed(seeds: "SeedViews | list") -> SeedViews:
    """The packed set as the runner hands it over, or a list of rows (examples, tests) packed."""
    return seeds if isinstance(seeds, SeedViews) else SeedViews.pack([s for s in seeds if s[0] != "error"])


def _searchable(table, min_quality: int) -> tuple[list[int], np.ndarray | None, np.ndarray | None]:
    """The rows with a pHash and a PDQ of quality ≥ ``min_quality`` (a missing quality counts 0), and
    those hashes: PDQ codes and pHash values, decoded from the columns' buffers at once."""
    from shardguard.indexes.hexcolumn import hex_codes, int_column
    from shardguard.indexes.jointsearch import phash_u64

    names = table.column_names
    if "pdq" not in names or "phash" not in names:
        return [], None, None
    pdq, has_pdq = hex_codes(table.column("pdq"), 32)
    ph, has_ph = hex_codes(table.column("phash"), 8)
    qual = int_column(table.column("pdq_quality") if "pdq_quality" in names else None, table.num_rows, 0)
    rows = np.flatnonzero(has_pdq & has_ph & (qual >= min_quality))
    return rows.tolist(), pdq[rows], phash_u64(ph[rows])


def neighbours(table, shard: str, seeds: "SeedViews | list | SeedIndex", rule: "HashExpansion") -> list[tuple[int, MatchRecord]]:
    """(row, match) for rows whose as-stored PDQ and pHash are within the joint rule of a seed view.
    The search over the distinct seed views (~44 per seed) is ``jointsearch.JointIndex``'s: a
    multi-index on the pHash half when there are many, FAISS's flat search on PDQ when few; both exact."""
    rows, pdq, ph = _searchable(table, rule.min_quality)
    if not rows or not seeds:
        return []
    ix = seeds if isinstance(seeds, SeedIndex) else SeedIndex(seeds, rule.phash_distance)
    q, views, dists = ix.index.search(pdq, ph, rule.pdq_distance, rule.phash_distance)
    out = []
    bounds = np.searchsorted(q, np.arange(len(rows) + 1)).tolist()
    keys = table.column("key")
    for j in np.unique(q).tolist():
        i = rows[j]
        if f"{shard}/{keys[i].as_py()}" in ix.seed_ids:
            continue  # a seed: a confirming list matched it already
        lo, hi = bounds[j], bounds[j + 1]
        found = sorted((d, *label) for d, c in zip(dists[lo:hi].tolist(), views[lo:hi].tolist())
                       for label in ix.members(c))
        seen: set[str] = set()
        for d, seed, view in found:
            if seed not in seen and len(seen) < rule.max_per_row:
                seen.add(seed)
                out.append((i, MatchRecord(NEIGHBOR_SOURCE, "neighbor", f"pdq@{view}", seed, float(d))))
    return out


class BoundedSeedViews(BoundedSeeds):
    """``BoundedSeeds`` of seed views, handed on packed (``SeedViews``), read errors apart."""

    def extract_output(self, acc):  # noqa: D102 - pack sorts the views itself
        return {"count": acc[0], "limit": self._limit, "errors": sorted(s for s in acc[1] if s[0] == "error"),
                "seeds": SeedViews.pack([s for s in acc[1] if s[0] != "error"])}


class HashExpansion(Rule):
    """``neighbor-of-known-bad`` by hashes: rows near a view of a confirmed match (module doc)."""

    kinds = ("neighbor",)
    scope = DATASET

    def __init__(self, seed_rules: list, full: bool = False, pdq_distance: int = 31, phash_distance: int = 12,
                 min_quality: int = 50, action: str = "quarantine", max_seeds: int = 10_000, max_per_row: int = 10,
                 columns=None, reuse: bool = True):
        self.seed_rules, self.full = list(seed_rules), full
        self.pdq_distance, self.phash_distance, self.min_quality = pdq_distance, phash_distance, min_quality
        self.action, self.max_seeds, self.max_per_row, self.columns = action, max_seeds, max_per_row, columns
        self.reuse = reuse  # False under --force: hash every seed's views again
        self.parent_set = None  # a re-filter's parent seed set, when it is this run's (seedset.py)
        self._cached: SeedIndex | None = None
        self._shared = None

    def __getstate__(self):  # a worker builds its own index (FAISS objects do not pickle)
        return dict(self.__dict__, _cached=None, _shared=None)

    def setup(self, shared) -> None:
        """Keep the worker's shared handles: the seed index is built once per process and seed set."""
        self._shared = shared

    @classmethod
    def build(cls, ctx) -> list[Rule]:  # noqa: D102
        r = ctx.cfg.robust
        from shardguard.indexes.hashtypes import get_hash_type

        seeds = [s for s in ctx.seed_rules() if get_hash_type(s.hash_type).confirms]
        if not r.expansion or r.views == "off" or not seeds:
            return []  # (pdq and phash are computed whenever expansion is on: plan.hashes_for)
        return [cls(seeds, r.views == "full", r.pdq_max_distance, r.phash_max_distance, 50, r.action,
                    r.max_seeds, r.max_per_row, ctx.columns, reuse=not ctx.cfg.force)]

    @classmethod
    def example(cls, directory: str, table) -> "HashExpansion":  # noqa: D102
        from shardguard.transforms.rules.hashlists import HashListRule

        return cls([HashListRule.example(directory, table)], pdq_distance=64, phash_distance=32, min_quality=0)

    def reasons(self) -> dict[str, str]:  # noqa: D102
        return {NEIGHBOR_SOURCE: self.action}

    def view_set(self) -> str:
        """Which seed views are hashed (a seeds file of another set is not reused)."""
        return f"seed-views-v1-{'full' if self.full else 'default'}"

    def requires(self) -> set[str]:  # noqa: D102
        return {"pdq", "pdq_quality", "phash"}

    def fingerprint(self):  # noqa: D102
        return ["hash-expansion", [r.fingerprint() for r in self.seed_rules], self.full, self.pdq_distance,
                self.phash_distance, self.min_quality, self.action, self.max_seeds, self.max_per_row]

    def expand(self, refs, ctx) -> dict:
        """The seed set as the verdicts' side value: the parent's (``seedset.py``), or every shard's
        seeds combined, then written for this run's children."""
        from shardguard.transforms.rules import seedset

        key = seedset.seed_set_key(self)
        if self.parent_set is not None:  # linked into this run at launch (refilter.py)
            return {PRESET: seedset.SeedSetFile(seedset.set_path(ctx.layout, key), self.parent_set.sha256, key)}
        out = bounded_side(refs | "SeedViews" >> beam.ParDo(SeedViewsFn(self, ctx.layout, ctx.shared)),
                           BoundedSeedViews(self.max_seeds * 64))
        _ = out[SIDE] | "SaveSeedSet" >> beam.Map(seedset.save_seed_set, ctx.layout, key, not self.reuse)
        return out

    def side_example(self, tables: dict, shared) -> dict:
        """Seed views of the example table's first seed (its own hashes stand in for an image)."""
        for r in self.seed_rules:
            r.setup(shared)
        (shard, t), = tables.items()
        rows = seed_rows(t, self.seed_rules)
        pdq, qual, ph, keys = (column(t, c) for c in ("pdq", "pdq_quality", "phash", "key"))
        seeds = [(f"{shard}/{keys[i]}", "as-is", pdq[i], qual[i], ph[i]) for i in rows if pdq[i] and ph[i]][:1]
        return {"count": len(seeds), "limit": self.max_seeds, "seeds": seeds}

    def shard_matches(self, table, ref, side) -> DatasetMatches:  # noqa: D102
        # packed sets carry their read errors apart; a plain list of rows (examples, tests) inline
        errors = side["errors"] if "errors" in side else [s for s in side["seeds"] if s[0] == "error"]
        if errors:
            return DatasetMatches(failure=FailureRecord("expand", "SeedUnreadable", f"hash expansion: the input of "
                                                        f"shard {errors[0][1]} cannot be read to hash its seeds: "
                                                        f"{errors[0][2]}"))
        if side["count"] > side["limit"]:
            return DatasetMatches(failure=FailureRecord("expand", "SeedLimitExceeded", f"hash expansion: "
                                                        f"{side['count']} seed views, more than {side['limit']}"))
        return DatasetMatches(rows=tuple(neighbours(table, ref.shard, self._index(side["seeds"]), self)))

    def _index(self, seeds: "SeedViews | list") -> SeedIndex:
        """The seed set's index, built once per worker process and seed set: every shard's verdict
        gets the same side value (the same object from the runner's cache, or an equal one), and the
        verdict threads of a process share one index (with ``max_seeds`` seeds it holds ~850k views)."""
        cached = self._cached
        if cached is None or not cached.serves(seeds):
            build = lambda: SeedIndex(seeds, self.phash_distance)  # noqa: E731
            if self._shared is None:
                cached = build()
            else:
                cached = self._shared.acquire(f"seed-index|{_packed(seeds).digest()}|{self.phash_distance}", build)
            self._cached = cached
        return cached
