"""Hash stage per core vs. the naive loop and the draft-decode floor; Beam overhead on top of it.

On the same seeded 512×512 JPEGs (q90), single thread each:
  naive          ``imagehash.phash(Image.open(...))`` + md5 (the baseline)
  draft floor    ``Image.open`` + JPEG draft to 64 px + load: the least work any pHash can do
  stage (fast)   shardguard's per-row features, md5 + pHash, default fast decode
  stage (exact)  the same with ``--exact-decode`` (bit-identical to imagehash)
and the whole hash-only scan under Beam (in-process runner, one worker thread) vs. the fast stage
alone. Goals (issue 7): stage ≥ 3.5× naive and ≥ 75% of the draft floor; Beam overhead ≤ 25%.
Run: ``.venv/bin/python benchmarks/bench_hash_stage.py [--images N]``.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, shard_set, table, timed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=6000)
    a = ap.parse_args()
    import logging

    import imagehash
    from PIL import Image

    from shardguard.pipelines.scan import run as scan
    from shardguard.transforms.features import compute_row_features, finish_batch
    logging.getLogger("shardguard").setLevel(logging.WARNING)
    shards = shard_set(a.images, shards=max(1, a.images // 500), size=512)
    data = [b for p in sorted(shards.glob("*.parquet")) for b in pq.read_table(p, columns=["jpg"]).column(0).to_pylist()]

    def naive():
        for b in data:
            imagehash.phash(Image.open(io.BytesIO(b)))
            hashlib.md5(b).hexdigest()

    def floor():
        for b in data:
            im = Image.open(io.BytesIO(b))
            im.draft("RGB", (64, 64))
            im.load()

    def stage(exact):
        def go():  # as the features DoFn runs it: 64-row batches, pHash hashed per batch
            for start in range(0, len(data), 64):
                recs = [compute_row_features({"row": i, "key": str(i), "key_derived": False, "url": None,
                                              "caption": None, "status": "success", "image": b},
                                             ("md5", "phash"), 10**9, None, exact, defer=True)[0]
                        for i, b in enumerate(data[start:start + 64], start)]
                finish_batch(recs)
        return go

    def beam_scan():
        work = tempfile.mkdtemp(prefix="sg-hs-")
        try:
            assert scan(["--input", str(shards / "*.parquet"), "--output", f"{work}/o", "--hashes", "md5,phash",
                         "--direct_num_workers=1"]) == 0
        finally:
            shutil.rmtree(work, ignore_errors=True)

    n = len(data)
    t = {name: timed(fn)[0] for name, fn in (("naive", naive), ("floor", floor), ("fast", stage(False)),
                                              ("exact", stage(True)), ("beam", beam_scan))}
    rate = {k: n / v for k, v in t.items()}
    rows = [("naive: imagehash.phash(Image.open) + md5", f"{rate['naive']:.0f}", "1.00x", ""),
            ("draft-decode floor (64 px, decode only)", f"{rate['floor']:.0f}", f"{rate['floor'] / rate['naive']:.2f}x", "100%"),
            ("hash stage, fast decode (md5 + pHash)", f"{rate['fast']:.0f}", f"{rate['fast'] / rate['naive']:.2f}x",
             f"{100 * rate['fast'] / rate['floor']:.0f}%"),
            ("hash stage, --exact-decode", f"{rate['exact']:.0f}", f"{rate['exact'] / rate['naive']:.2f}x",
             f"{100 * rate['exact'] / rate['floor']:.0f}%"),
            ("whole scan under Beam (1 worker thread)", f"{rate['beam']:.0f}", f"{rate['beam'] / rate['naive']:.2f}x",
             f"{100 * rate['beam'] / rate['floor']:.0f}%")]
    print(f"# hash stage per core, {n} images 512x512 JPEG q90; {machine()}")
    print(table(rows, ("run", "images/s", "vs naive", "of draft floor")))
    print(f"Beam overhead over the fast stage alone: {100 * (t['beam'] - t['fast']) / t['fast']:.0f}% "
          "(the scan also reads shards, fingerprints inputs, writes clean/removed/features and the manifest)")


if __name__ == "__main__":
    main()
