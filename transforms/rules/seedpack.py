"""Hash expansion's seed set, packed in columns for the trip to every shard's verdict.

The seed set reaches every worker as one side value. As a list of (seed, view, pdq, quality, phash)
tuples — five Python objects and a tuple per view, up to ``max_seeds`` × 64 views — it cost more to
ship than to use: the runner's side-input cache walks every object of a value to weigh it (~120 ms
per worker for 2,600 views; minutes and gigabytes at the limit), then unpickles them all. Packed, the
same set is a few byte strings plus the distinct seed ids and view names, and the index is built
from the packed hashes directly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_PDQ_BYTES, _PHASH_BYTES = 32, 8


@dataclass(frozen=True)
class SeedViews:
    """Seed views, one row per (seed, view), sorted by (seed, view): the distinct seed ids and view
    names, and per row their indexes (int32), the PDQ (32 bytes), the PDQ quality (int32) and the
    pHash (8 bytes, the hex string's order)."""

    seeds: tuple[str, ...]
    views: tuple[str, ...]
    seed_of: bytes
    view_of: bytes
    pdq: bytes
    quality: bytes
    phash: bytes

    @classmethod
    def pack(cls, rows: list[tuple]) -> "SeedViews":
        """Pack (seed, view, pdq hex, quality, phash hex) rows; sorted by (seed, view) first."""
        rows = sorted(rows, key=lambda r: (r[0], r[1]))
        seeds, views = sorted({r[0] for r in rows}), sorted({r[1] for r in rows})
        s_ix, v_ix = {s: i for i, s in enumerate(seeds)}, {v: i for i, v in enumerate(views)}
        for r in rows:
            if len(r[2] or "") != 2 * _PDQ_BYTES or len(r[4] or "") != 2 * _PHASH_BYTES:
                raise ValueError(f"seed {r[0]} view {r[1]}: a PDQ of 64 and a pHash of 16 hex digits are needed")
        return cls(tuple(seeds), tuple(views), _int32([s_ix[r[0]] for r in rows]), _int32([v_ix[r[1]] for r in rows]),
                   bytes.fromhex("".join(r[2] for r in rows)), _int32([r[3] or 0 for r in rows]),
                   bytes.fromhex("".join(r[4] for r in rows)))

    def __len__(self) -> int:
        return len(self.pdq) // _PDQ_BYTES

    def pdq_codes(self) -> np.ndarray:
        """The PDQ hashes as an (n, 32) uint8 array (FAISS's binary code layout)."""
        return np.frombuffer(self.pdq, np.uint8).reshape(len(self), _PDQ_BYTES)

    def phash_codes(self) -> np.ndarray:
        """The pHashes as an (n, 8) uint8 array (the hex string's byte order)."""
        return np.frombuffer(self.phash, np.uint8).reshape(len(self), _PHASH_BYTES)

    def digest(self) -> str:
        """sha256 of the whole set (equal sets, equal digests): the key of its index in a worker."""
        import hashlib

        h = hashlib.sha256(repr((self.seeds, self.views)).encode())
        for part in (self.seed_of, self.view_of, self.pdq, self.quality, self.phash):
            h.update(len(part).to_bytes(8, "little"))
            h.update(part)
        return h.hexdigest()

    def labels(self) -> list[tuple[str, str]]:
        """(seed id, view name) of every row."""
        seed_of, view_of = np.frombuffer(self.seed_of, "<i4"), np.frombuffer(self.view_of, "<i4")
        return [(self.seeds[s], self.views[v]) for s, v in zip(seed_of.tolist(), view_of.tolist())]

    def rows(self) -> list[tuple]:
        """The rows as ``pack`` took them (sorted)."""
        quality = np.frombuffer(self.quality, "<i4").tolist()
        pdq, phash = self.pdq_codes(), self.phash_codes()
        return [(s, v, pdq[k].tobytes().hex(), quality[k], phash[k].tobytes().hex())
                for k, (s, v) in enumerate(self.labels())]


def _int32(values: list[int]) -> bytes:
    return np.asarray(values, dtype="<i4").tobytes()
