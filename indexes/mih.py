"""Multi-index hashing for 64-bit codes (pHash, dHash) over large lists, in vectorised numpy.

The 64 bits are split into three substrings (22, 21, 21 bits). By pigeonhole, two codes within
distance r agree to within r // 3 bits on at least one substring, since 3 * (r // 3 + 1) > r. Each
substring has a direct-addressed bucket table (entries sorted by substring value plus the start of
every bucket), so a probe is two array reads. A query probes every value within r // 3 bits of
each of its substrings, gathers the candidates, and keeps those within r by exact popcount: results
equal brute force. Built at load time from the list's codes (a deterministic function of them, so
the artifact stores nothing extra).

Each table also keeps the codes in its own bucket order, so a bucket's candidates are one
contiguous run of memory. The probe-and-verify loop runs in a small C extension (``_mihext``,
built by setup.py; 6-8× the numpy path on a 10M list) with the GIL released; where it was not built (a source
checkout without a compiler) the same tables are searched with vectorised numpy, which is also the
test oracle for the compiled loop.
"""
from __future__ import annotations

import itertools

import numpy as np

CHUNKS = ((0, 22), (22, 21), (43, 21))
_QUERY_BLOCK = 2048  # queries per vectorised step: bounds the candidate arrays' memory
_C_BLOCK = 16384  # queries per compiled call: its partitioned path holds 8 bytes per probe (~33 MB)


def to_u64(codes: np.ndarray) -> np.ndarray:
    """(n, 8) uint8 codes → n uint64 values (byte order fixed, so tables and queries agree)."""
    return np.ascontiguousarray(codes).view(">u8").ravel().astype(np.uint64)


def _flips(bits: int, radius: int) -> np.ndarray:
    masks = [0]
    for k in range(1, radius + 1):
        masks += [sum(1 << i for i in c) for c in itertools.combinations(range(bits), k)]
    return np.array(masks, dtype=np.int64)


def _compiled():
    """The C search function, or None where the extension was not built."""
    try:
        from shardguard.indexes import _mihext
    except ImportError:
        return None
    return _mihext.search


class Mih64:
    """Exact Hamming range search over 64-bit codes.

    ``compiled``: None uses the C loop when it is built; False forces numpy; True requires C.
    ``chunks``: (shift, bits) substrings covering the 64 bits; more, shorter ones suit larger radii
    over fewer entries (hash expansion: ``jointsearch.best_chunks``).
    """

    def __init__(self, codes_u64: np.ndarray, max_distance: int, compiled: bool | None = None,
                 chunks: tuple = CHUNKS):
        if len(codes_u64) >= 2**32:
            raise ValueError("mih64 holds at most 2**32 - 1 entries per list")
        self.codes = np.ascontiguousarray(codes_u64, dtype=np.uint64)
        self.max_distance = max_distance
        self.sub_radius = max_distance // len(chunks)
        self._search = _compiled() if compiled is not False else None
        if compiled and self._search is None:
            raise ImportError("shardguard.indexes._mihext is not built (reinstall with a C compiler)")
        self.tables = []
        for shift, bits in chunks:
            keys = ((self.codes >> np.uint64(shift)) & np.uint64((1 << bits) - 1)).astype(np.int64)
            order = np.argsort(keys, kind="stable")
            starts = np.searchsorted(keys[order], np.arange((1 << bits) + 1)).astype(np.uint32)
            self.tables.append((shift, bits, self.sub_radius, starts, self.codes[order],
                                order.astype(np.uint32), _flips(bits, self.sub_radius)))

    @property
    def backend(self) -> str:
        """"c" or "numpy": which loop answers queries (recorded in benchmarks)."""
        return "c" if self._search is not None else "numpy"

    def range_search(self, queries_u64: np.ndarray, radius: int):
        """(query index, entry index, distance) arrays of every pair within ``radius`` (≤ the
        build radius), sorted by query then distance then entry."""
        if radius > self.max_distance:
            raise ValueError(f"index built for distance {self.max_distance}, asked {radius}")
        queries_u64 = np.ascontiguousarray(queries_u64, dtype=np.uint64)
        if self._search is not None:
            q, i, d = self._compiled_search(queries_u64, radius)
        else:
            q, i, d = self._numpy_search(queries_u64, radius)
        order = np.lexsort((i, d, q))
        return q[order], i[order], d[order]

    def _compiled_search(self, queries_u64: np.ndarray, radius: int):
        parts = []
        for b in range(0, len(queries_u64), _C_BLOCK):
            blob = self._search(queries_u64[b:b + _C_BLOCK], radius, len(self.codes), self.tables)
            raw = np.frombuffer(blob, dtype=np.int64).reshape(-1, 3).copy()
            raw[:, 0] += b
            parts.append(raw)
        raw = np.concatenate(parts) if parts else np.zeros((0, 3), dtype=np.int64)
        return raw[:, 0], raw[:, 1], raw[:, 2]

    def _numpy_search(self, queries_u64: np.ndarray, radius: int):
        out_q, out_i, out_d = [], [], []
        for b in range(0, len(queries_u64), _QUERY_BLOCK):
            qb = queries_u64[b:b + _QUERY_BLOCK]
            cq, ci = [], []
            for shift, bits, _, starts, _, order, flips in self.tables:
                qk = ((qb >> np.uint64(shift)) & np.uint64((1 << bits) - 1)).astype(np.int64)
                probes = (qk[:, None] ^ flips[None, :]).ravel()
                lo, hi = starts[probes].astype(np.int64), starts[probes + 1].astype(np.int64)
                cnt = hi - lo
                total = int(cnt.sum())
                if not total:
                    continue
                first = np.concatenate(([0], np.cumsum(cnt)[:-1]))
                ci.append(order[np.repeat(lo - first, cnt) + np.arange(total)].astype(np.int64))
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
        return np.concatenate(out_q), np.concatenate(out_i), np.concatenate(out_d)
