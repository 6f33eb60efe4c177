"""Multi-index hashing for 64-bit codes (pHash, dHash) over large lists, in vectorised numpy.

The 64 bits are split into three substrings (22, 21, 21 bits). By pigeonhole, two codes within
distance r agree to within r // 3 bits on at least one substring, since 3 * (r // 3 + 1) > r. Each
substring has a direct-addressed bucket table (entries sorted by substring value plus the start of
every bucket), so a probe is two array reads. A query probes every value within r // 3 bits of
each of its substrings, gathers the candidates, and keeps those within r by exact popcount: results
equal brute force. Built at load time from the list's codes (a deterministic function of them, so
the artifact stores nothing extra).
"""
from __future__ import annotations

import itertools

import numpy as np

CHUNKS = ((0, 22), (22, 21), (43, 21))
_QUERY_BLOCK = 2048  # queries per vectorised step: bounds the candidate arrays' memory


def to_u64(codes: np.ndarray) -> np.ndarray:
    """(n, 8) uint8 codes → n uint64 values (byte order fixed, so tables and queries agree)."""
    return np.ascontiguousarray(codes).view(">u8").ravel().astype(np.uint64)


def _flips(bits: int, radius: int) -> np.ndarray:
    masks = [0]
    for k in range(1, radius + 1):
        masks += [sum(1 << i for i in c) for c in itertools.combinations(range(bits), k)]
    return np.array(masks, dtype=np.int64)


class Mih64:
    """Exact Hamming range search over 64-bit codes."""

    def __init__(self, codes_u64: np.ndarray, max_distance: int):
        self.codes = codes_u64
        self.max_distance = max_distance
        self.sub_radius = max_distance // len(CHUNKS)
        self.tables = []
        for shift, bits in CHUNKS:
            keys = ((codes_u64 >> np.uint64(shift)) & np.uint64((1 << bits) - 1)).astype(np.int64)
            order = np.argsort(keys, kind="stable")
            starts = np.searchsorted(keys[order], np.arange((1 << bits) + 1)).astype(np.int64)
            self.tables.append((shift, bits, order.astype(np.int64), starts, _flips(bits, self.sub_radius)))

    def range_search(self, queries_u64: np.ndarray, radius: int):
        """(query index, entry index, distance) arrays of every pair within ``radius`` (≤ the
        build radius), sorted by query then distance then entry."""
        if radius > self.max_distance:
            raise ValueError(f"index built for distance {self.max_distance}, asked {radius}")
        out_q, out_i, out_d = [], [], []
        for b in range(0, len(queries_u64), _QUERY_BLOCK):
            qb = queries_u64[b:b + _QUERY_BLOCK]
            cq, ci = [], []
            for shift, bits, order, starts, flips in self.tables:
                qk = ((qb >> np.uint64(shift)) & np.uint64((1 << bits) - 1)).astype(np.int64)
                probes = (qk[:, None] ^ flips[None, :]).ravel()
                lo, hi = starts[probes], starts[probes + 1]
                cnt = hi - lo
                total = int(cnt.sum())
                if not total:
                    continue
                first = np.concatenate(([0], np.cumsum(cnt)[:-1]))
                ci.append(order[np.repeat(lo - first, cnt) + np.arange(total)])
                cq.append(np.repeat(np.repeat(np.arange(len(qb)), len(flips)), cnt))
            if not ci:
                continue
            cq_a, ci_a = np.concatenate(cq), np.concatenate(ci)
            d = np.bitwise_count(qb[cq_a] ^ self.codes[ci_a])
            keep = d <= radius
            pair = np.unique(cq_a[keep] * len(self.codes) + ci_a[keep])  # a pair found via 2 substrings once
            q_idx, e_idx = pair // len(self.codes), pair % len(self.codes)
            out_q.append(q_idx + b)
            out_i.append(e_idx)
            out_d.append(np.bitwise_count(qb[q_idx] ^ self.codes[e_idx]).astype(np.int64))
        if not out_q:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        q, i, d = np.concatenate(out_q), np.concatenate(out_i), np.concatenate(out_d)
        order = np.lexsort((i, d, q))
        return q[order], i[order], d[order]
