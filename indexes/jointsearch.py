"""Joint PDQ + pHash range search: every (query, entry) pair within both radii (hash expansion's rule).

The entries are a run's distinct seed views (up to ``max_seeds`` × ~85, new with every run) and the
queries every row of the dataset, so the search grows as rows × views: FAISS's flat range search
over the 256-bit PDQ costs ~2 ns per pair, 8.8 s of CPU for 100k rows against 44,000 views.
The pHash half of the rule (≤ 16 of 64 bits) is selective enough for multi-index hashing: split
the 64 bits into m substrings and, by pigeonhole, a pHash within r agrees to within r // m bits on
one of them. ``mih.Mih64``'s compiled loop finds those pairs with ~70 bucket probes per query;
their PDQ distance is then checked exactly. The number of substrings is chosen per index from a
cost model measured on that benchmark (each probe costs ~40 candidate checks); where the model says
comparing every pair is cheaper (few views), or the compiled loop was not built, FAISS's flat
search is used. Both paths give exactly the pairs of a brute-force comparison (tested).
"""
from __future__ import annotations

from math import comb

import numpy as np

PROBE_COST = 40  # a bucket probe, in candidate checks (measured: see the module doc)
FLAT_COST = 2.0  # one pair of the flat search, in the same units
MAX_CHUNKS = 8  # the compiled loop's table limit
QUERY_BLOCK = 4096  # queries per multi-index call: bounds the pHash-near pairs held before the PDQ check


def phash_u64(codes: np.ndarray) -> np.ndarray:
    """(n, 8) uint8 pHash codes → n uint64 values (big-endian, as their hex strings read)."""
    return np.ascontiguousarray(codes).view(">u8").reshape(-1).astype(np.uint64)


def even_chunks(m: int) -> tuple:
    """(shift, bits) of m substrings covering 64 bits, as equal as possible."""
    bits = [64 // m + (1 if i < 64 % m else 0) for i in range(m)]
    return tuple((sum(bits[:i]), b) for i, b in enumerate(bits))


def mih_cost(n: int, radius: int, m: int) -> float:
    """Estimated cost per query of a multi-index of m substrings over n entries at ``radius``."""
    sub = radius // m
    return sum(sum(comb(b, k) for k in range(sub + 1)) * (PROBE_COST + n / 2 ** b) for _, b in even_chunks(m))


def best_chunks(n: int, radius: int) -> tuple | None:
    """The cheapest substring layout for n entries at ``radius``, or None when the flat search is cheaper."""
    costs = {m: mih_cost(n, radius, m) for m in range(4, MAX_CHUNKS + 1)}  # ≤ 16 bits: bucket tables ≤ 256 KiB
    m = min(costs, key=costs.get)
    return even_chunks(m) if costs[m] < FLAT_COST * n else None


class JointIndex:
    """Entries' PDQ codes ((n, 32) uint8) and pHash values (n uint64), searched by both at once, up to
    ``max_phash`` pHash bits. ``chunks``: None picks by the cost model (the flat search where
    ``Mih64``'s compiled loop is not built); a layout forces the multi-index; False forces the flat
    search. ``compiled`` is passed to ``Mih64``."""

    def __init__(self, pdq: np.ndarray, phash: np.ndarray, max_phash: int, chunks=None, compiled: bool | None = None):
        self.pdq = np.ascontiguousarray(pdq, dtype=np.uint8).reshape(-1, 32)
        self.phash = np.ascontiguousarray(phash, dtype=np.uint64).reshape(-1)
        self.max_phash = max_phash
        if chunks is None:
            from shardguard.indexes.mih import _compiled

            chunks = _compiled() is not None and best_chunks(len(self.pdq), max_phash)
        layout = chunks or None
        self._mih = self._flat = None
        if layout and len(self.pdq):
            from shardguard.indexes.mih import Mih64

            self._mih = Mih64(self.phash, max_phash, compiled=compiled, chunks=layout)
        else:
            import faiss

            self._flat = faiss.IndexBinaryFlat(256)
            self._flat.add(self.pdq)

    def __len__(self) -> int:
        return len(self.pdq)

    @property
    def kind(self) -> str:
        """"mih" or "flat": which search answers queries."""
        return "mih" if self._mih is not None else "flat"

    def search(self, pdq: np.ndarray, phash: np.ndarray, r_pdq: int, r_phash: int):
        """(query, entry, PDQ distance) int64 arrays of every pair with PDQ distance ≤ ``r_pdq`` and
        pHash distance ≤ ``r_phash`` (≤ ``max_phash``), sorted by query, then entry."""
        pdq = np.ascontiguousarray(pdq, dtype=np.uint8).reshape(-1, 32)
        phash = np.ascontiguousarray(phash, dtype=np.uint64).reshape(-1)
        if r_phash > self.max_phash:
            raise ValueError(f"index built for pHash distance {self.max_phash}, asked {r_phash}")
        if not len(self.pdq) or not len(pdq):
            empty = np.zeros(0, np.int64)
            return empty, empty, empty
        q, e, d = self._mih_pairs(pdq, phash, r_pdq, r_phash) if self._mih is not None \
            else self._flat_pairs(pdq, phash, r_pdq, r_phash)
        order = np.lexsort((e, q))
        return q[order], e[order], d[order]

    def _mih_pairs(self, pdq, phash, r_pdq, r_phash):
        # in blocks of queries: the pHash-near pairs (before the PDQ check) stay bounded in memory
        parts = []
        for b in range(0, len(pdq), QUERY_BLOCK):
            q, e, _ = self._mih.range_search(phash[b:b + QUERY_BLOCK], r_phash)
            q = q + b
            d = np.bitwise_count(pdq.view(np.uint64)[q] ^ self.pdq.view(np.uint64)[e]).sum(axis=1).astype(np.int64)
            keep = d <= r_pdq
            parts.append((q[keep], e[keep], d[keep]))
        return tuple(np.concatenate(a) for a in zip(*parts))

    def _flat_pairs(self, pdq, phash, r_pdq, r_phash):
        lims, dists, ids = self._flat.range_search(pdq, r_pdq + 1)  # distances strictly below the radius
        q = np.repeat(np.arange(len(pdq), dtype=np.int64), np.diff(lims).astype(np.int64))
        ids = ids.astype(np.int64)
        keep = np.bitwise_count(self.phash[ids] ^ phash[q]) <= r_phash
        return q[keep], ids[keep], dists[keep].astype(np.int64)
