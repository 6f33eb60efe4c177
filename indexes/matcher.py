"""Match hashes against a loaded list artifact: exact lookups, or a Hamming range search — every pair
compared in numpy for small lists, a numpy multi-index for large 64-bit ones, FAISS otherwise.

``ListMatcher.match_batch`` takes a batch of hex hashes (None where a row has none) and returns, per
row, the list of matches. The matcher interface is deliberately batch-in/batch-out and stateless
after loading, so the same object can sit behind a per-worker side input (``Shared``) or, for lists
too large for a worker, behind a join on hash buckets.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shardguard.indexes.arrowio import read_table
from shardguard.indexes.artifacts import load_artifact_files
from shardguard.indexes.hashtypes import HashType, get_hash_type

PAIRS_BLOCK = 4096  # queries per distance matrix of a pairwise list (≤ 64 entries: ≤ 1 MiB)


@dataclass(frozen=True)
class Match:
    """One list hit for one row: which list, which hash type, which entry, how far."""

    source: str
    type: str
    entry: str
    distance: int

    def as_dict(self) -> dict:
        """Plain dict for records (the schema of removal/review ``matches``)."""
        return {"source": self.source, "kind": "hashlist", "type": self.type, "entry": self.entry,
                "distance": float(self.distance)}


class ListMatcher:
    """A loaded, verified list artifact that answers match queries."""

    def __init__(self, sidecar: dict, blobs: dict):
        self.sidecar = sidecar
        self.name: str = sidecar["name"]
        self.hash_type: HashType = get_hash_type(sidecar["type"])
        self.max_distance: int = int(sidecar["max_distance"])
        self.min_quality: int = int(sidecar["min_quality"])
        table = read_table(blobs["entries.parquet"])
        nbytes = self.hash_type.nbytes
        codes = table.column("code").combine_chunks()
        raw = codes.buffers()[1].to_pybytes()[codes.offset * nbytes:(codes.offset + len(codes)) * nbytes]
        self._codes = np.frombuffer(raw, dtype=f"S{nbytes}")
        # Entry labels stay columnar and are made only for hits: 10M Python strings would cost
        # ~0.6 GB and make every full garbage collection walk them (measured: match_batch on a 10M
        # list swung between 49k and 80k lookups/s with the GC's timing).
        self._lines = table.column("line").to_numpy()
        self._ids = table.column("entry_id").combine_chunks()
        self._index = self._mih = self._pairs = None
        kind = sidecar["index"]["kind"]
        if self.hash_type.perceptual and kind == "pairwise":
            self._pairs = np.frombuffer(raw, dtype=np.uint8).reshape(-1, nbytes).view(np.uint64)
        elif self.hash_type.perceptual and kind == "mih64":
            from shardguard.indexes.mih import Mih64, to_u64

            self._mih = Mih64(to_u64(np.frombuffer(raw, dtype=np.uint8).reshape(-1, 8)), self.max_distance)
        elif self.hash_type.perceptual:
            import faiss

            self._index = faiss.deserialize_index_binary(np.frombuffer(blobs["index.faissbin"], dtype=np.uint8))

    @classmethod
    def load(cls, art_dir: str, expected_fingerprint: str | None = None) -> "ListMatcher":
        """Load and verify an artifact directory."""
        return cls(*load_artifact_files(art_dir, expected_fingerprint))

    def __len__(self) -> int:
        return len(self._codes)

    def _label(self, i: int) -> str:
        """The entry's id from the list file, else ``line N`` (its line in the list)."""
        entry = self._ids[i].as_py()
        return entry if entry else f"line {self._lines[i]}"

    def _eligible(self, hexes, qualities) -> list[int]:
        rows = []
        for i, h in enumerate(hexes):
            if not h:
                continue
            if self.min_quality and (qualities is None or qualities[i] is None
                                     or qualities[i] < self.min_quality):
                continue  # too low quality to trust a perceptual match (PDQ guidance)
            rows.append(i)
        return rows

    def match_batch(self, hexes, qualities=None) -> list[list[Match]]:
        """Matches for each row of a batch; rows without a hash or below min_quality get none."""
        out: list[list[Match]] = [[] for _ in hexes]
        rows = self._eligible(hexes, qualities)
        if rows:
            for r, m in self._search(np.asarray(rows), self.hash_type.to_codes([hexes[i] for i in rows])):
                out[r].append(m)
        return out

    def match_codes(self, codes: np.ndarray, present: np.ndarray, qualities: np.ndarray | None = None
                    ) -> list[tuple[int, Match]]:
        """The hits of a column of codes (``hexcolumn.hex_codes``) as ``(row, Match)`` pairs, a row's
        hits in ``match_batch``'s order: only rows with a hit cost Python work. Rows not ``present``,
        or below min_quality (``qualities``: -1 where unknown), are not searched."""
        ok = np.asarray(present, dtype=bool)
        if self.min_quality:
            ok = ok & (qualities >= self.min_quality) if qualities is not None else np.zeros_like(ok)
        rows = np.flatnonzero(ok)
        return self._search(rows, np.ascontiguousarray(codes[rows])) if len(rows) else []

    def _search(self, rows: np.ndarray, queries: np.ndarray) -> list[tuple[int, Match]]:
        if self._pairs is not None:
            return self._match_pairs(rows, queries)
        if self._mih is not None:
            return self._match_mih(rows, queries)
        if self._index is None:
            return self._match_exact(rows, queries)
        return self._match_hamming(rows, queries)

    def _hit(self, entry: int, distance: int) -> Match:
        return Match(self.name, self.hash_type.name, self._label(entry), distance)

    def _match_mih(self, rows, queries) -> list[tuple[int, Match]]:
        from shardguard.indexes.mih import to_u64

        q, i, d = self._mih.range_search(to_u64(queries), self.max_distance)
        return [(int(rows[qi]), self._hit(ei, int(dist))) for qi, ei, dist in zip(q.tolist(), i.tolist(), d.tolist())]

    def _match_exact(self, rows, queries) -> list[tuple[int, Match]]:
        keys = queries.view(f"S{self.hash_type.nbytes}").ravel()
        pos = np.searchsorted(self._codes, keys)
        found = pos < len(self._codes)
        found[found] = self._codes[pos[found]] == keys[found]
        return [(int(rows[q]), self._hit(int(pos[q]), 0)) for q in np.flatnonzero(found)]

    def _match_pairs(self, rows, queries) -> list[tuple[int, Match]]:
        # in blocks of queries: the distance matrix stays small; a query's hits by distance, then entry
        words = np.ascontiguousarray(queries).view(np.uint64)
        out = []
        for b in range(0, len(words), PAIRS_BLOCK):
            block = words[b:b + PAIRS_BLOCK]
            dist = np.zeros((len(block), len(self._pairs)), np.int32)
            for w in range(words.shape[1]):
                dist += np.bitwise_count(block[:, w, None] ^ self._pairs[None, :, w])
            q, e = np.nonzero(dist <= self.max_distance)
            d = dist[q, e]
            order = np.lexsort((e, d, q))
            out.extend((int(rows[b + qi]), self._hit(ei, di))
                       for qi, ei, di in zip(q[order].tolist(), e[order].tolist(), d[order].tolist()))
        return out

    def _match_hamming(self, rows, queries) -> list[tuple[int, Match]]:
        # FAISS returns distances strictly below the radius, so ask for max_distance + 1.
        lims, dists, ids = self._index.range_search(np.ascontiguousarray(queries), self.max_distance + 1)
        out = []
        for qi in np.flatnonzero(np.diff(lims)):  # queries with a hit only
            lo, hi = int(lims[qi]), int(lims[qi + 1])
            out.extend((int(rows[qi]), self._hit(i, int(d)))
                       for d, i in sorted(zip(dists[lo:hi].tolist(), ids[lo:hi].tolist())))  # deterministic order
        return out
