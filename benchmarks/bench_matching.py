"""Matching at scale: lookups/s against a 10M-entry pHash list (distance ≤ 8) and a 1M-entry PDQ
list (≤ 31), one core, side by side:
  shardguard   the list artifact's index via ListMatcher, whole batch and in batches of 1,000:
               64-bit codes: the multi-index (mih.py), compiled loop and its numpy fallback;
               PDQ: FAISS multi-hash (exact by pigeonhole)
  HMA-style    a FAISS IndexBinaryFlat range search (what a flat HMA index does)
  brute force  numpy XOR + popcount over the whole list (a sample of queries; it is slow)
Queries: half near-duplicates of list entries (k ≤ threshold bits flipped), half random.
Goal (issue 7): ≥ 50,000 lookups/s/core for pHash at distance 8.
Run: ``.venv/bin/python benchmarks/bench_matching.py [--phash N] [--pdq N]``.
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table  # noqa: E402


def queries(rng, db, n, maxflip):
    q = rng.integers(0, 256, (n, db.shape[1]), dtype=np.uint8)
    near = db[rng.integers(0, len(db), n // 2)].copy()
    nbits = db.shape[1] * 8
    for row in near:
        for p in rng.choice(nbits, rng.integers(0, maxflip + 1), replace=False):
            row[p // 8] ^= 1 << (p % 8)
    q[: n // 2] = near
    return q


def popcount_brute(db, qs, radius):
    table8 = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(1).astype(np.uint8)
    hits = 0
    for q in qs:
        d = table8[np.bitwise_xor(db, q)].sum(axis=1, dtype=np.uint16)
        hits += int((d <= radius).sum())
    return hits


def bench(type_name, n, radius, nq, rng):
    import faiss

    from shardguard.indexes.artifacts import ListSettings, build_artifact
    from shardguard.indexes.hashtypes import HASH_TYPES
    from shardguard.indexes.listformats import ParsedList
    from shardguard.indexes.matcher import ListMatcher

    faiss.omp_set_num_threads(1)
    ht = HASH_TYPES[type_name]
    db = rng.integers(0, 256, (n, ht.nbytes), dtype=np.uint8)
    parsed = ParsedList(hash_type=ht)
    parsed.codes = bytearray(db.tobytes())
    parsed.lines.frombytes(np.arange(1, n + 1, dtype=np.int64).tobytes())
    parsed.source_sha256 = "0" * 64
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        build_artifact(parsed, ListSettings("bench", type_name, radius, 0), d, "bench")
        t_build = time.perf_counter() - t0
        m = ListMatcher.load(d)
    qs = queries(rng, db, nq, radius)
    hexes = [q.tobytes().hex() for q in qs]
    t0 = time.perf_counter()
    got = m.match_batch(hexes)
    t_sg = time.perf_counter() - t0
    t0 = time.perf_counter()
    small = [h for b in range(0, nq, 1000) for h in m.match_batch(hexes[b:b + 1000])]
    t_small = time.perf_counter() - t0
    assert small == got
    kind = m.sidecar["index"]["kind"]
    extra = []
    if kind == "mih64":
        kind += f", {m._mih.backend} loop"
        if m._mih.backend == "c":  # same tables, numpy loop: the fallback where nothing compiled
            m._mih._search = None
            t0 = time.perf_counter()
            assert m.match_batch(hexes) == got
            extra.append(("", "shardguard (mih64, numpy fallback loop)", f"{nq / (time.perf_counter() - t0):,.0f}", ""))
    flat = faiss.IndexBinaryFlat(ht.nbits)
    flat.add(db)
    sub = qs[: max(200, nq // 50)]
    t0 = time.perf_counter()
    lims, _, _ = flat.range_search(sub, radius + 1)
    t_flat = (time.perf_counter() - t0) * nq / len(sub)
    bsub = qs[:20]
    t0 = time.perf_counter()
    brute_hits = popcount_brute(db, bsub, radius)
    t_brute = (time.perf_counter() - t0) * nq / len(bsub)
    assert sum(len(g) for g in got[:20]) == brute_hits  # exact, like brute force
    assert [len(g) for g in got[: len(sub)]] == list(np.diff(lims)), "multi-hash misses hits"
    return [(f"{type_name} {n:,} entries, d ≤ {radius}", f"shardguard ({kind}), {nq:,} per batch", f"{nq / t_sg:,.0f}", f"{t_build:.0f}s"),
            ("", f"shardguard ({kind}), 1,000 per batch", f"{nq / t_small:,.0f}", ""), *extra,
            ("", "HMA-style flat index (FAISS IndexBinaryFlat)", f"{nq / t_flat:,.0f}", ""),
            ("", "brute force (numpy)", f"{nq / t_brute:,.0f}", "")]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phash", type=int, default=10_000_000)
    ap.add_argument("--pdq", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=20_000)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = bench("phash", a.phash, 8, a.queries, rng) + bench("pdq", a.pdq, 31, a.queries // 4, rng)
    print(f"# matching lookups/s on one core; {machine()}; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MB")
    print(table(rows, ("list", "index", "lookups/s", "build")))


if __name__ == "__main__":
    main()
