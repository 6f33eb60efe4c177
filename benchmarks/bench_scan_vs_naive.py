"""Hash-only scan vs. a naive single-process loop, side by side, on the same ~5,000-row shard set.

Baseline ("naive"): for each row, ``imagehash.phash(Image.open(...))`` + ``hashlib.md5`` — what a
quick script would do. shardguard: the full scan pipeline (read, decode once, hash, match a pHash
list, write clean/removed/features/errors, manifest) on the in-process runner, then with 2 worker
processes. Run: ``.venv/bin/python benchmarks/bench_scan_vs_naive.py [--rows N]``.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import sys
import tempfile

import imagehash
import pyarrow.parquet as pq
from PIL import Image

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from common import machine, shard_set, table, timed  # noqa: E402


def naive(shards) -> int:
    n = 0
    for path in sorted(shards.glob("*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=64, columns=["jpg"]):
            for data in batch.column(0).to_pylist():
                imagehash.phash(Image.open(io.BytesIO(data)))
                hashlib.md5(data).hexdigest()
                n += 1
    return n


def scan(shards, hashes: str, extra: list[str]) -> int:
    from shardguard.pipelines.scan import run

    work = tempfile.mkdtemp(prefix="sg-bench-")
    try:
        lst = f"{work}/list.txt"
        with open(lst, "w") as f:
            f.write("phash 0123456789abcdef\n")
        rc = run(["--input", str(shards / "*.parquet"), "--output", f"{work}/out", "--hashes", hashes,
                  "--hash-list", f"phash={lst}"] + extra)
        assert rc == 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return sum(pq.read_metadata(p).num_rows for p in shards.glob("*.parquet"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5000)
    a = ap.parse_args()
    shards = shard_set(a.rows)
    import logging
    logging.getLogger("shardguard").setLevel(logging.WARNING)
    runs = [("naive loop: phash(Image.open)+md5, 1 process", lambda: naive(shards))]
    runs.append(("shardguard scan md5+phash, in-process", lambda: scan(shards, "md5,phash", [])))
    runs.append(("shardguard scan md5+phash, 2 threads", lambda: scan(
        shards, "md5,phash", ["--direct_running_mode=multi_threading", "--direct_num_workers=2"])))
    runs.append(("shardguard scan md5+phash, 2 processes", lambda: scan(
        shards, "md5,phash", ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])))
    runs.append(("shardguard scan all 5 hashes, 2 threads", lambda: scan(
        shards, "md5,sha256,phash,dhash,pdq", ["--direct_running_mode=multi_threading", "--direct_num_workers=2"])))
    runs.append(("shardguard scan all 5 hashes, 2 processes", lambda: scan(
        shards, "md5,sha256,phash,dhash,pdq", ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])))
    results = []
    base = None
    for name, fn in runs:
        secs, n = timed(fn)
        rate = n / secs
        base = base or rate
        results.append((name, n, f"{secs:.1f}", f"{rate:.0f}", f"{rate / base:.2f}x"))
    print(f"# scan vs naive, {machine()}")
    print(table(results, ("run", "rows", "seconds", "rows/s", "vs naive")))


if __name__ == "__main__":
    main()
