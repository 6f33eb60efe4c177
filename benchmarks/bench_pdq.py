"""PDQ per image: shardguard's compiled PDQ (indexes/_pdqext.c) vs. the pdqhash package, one thread.

Both hash the same decoded RGB arrays (seeded synthetic images at several sizes, plus the photos
in ../shared/testdata when present); every hash and quality is checked equal before anything is
timed. Also the features stage with the default hash set (md5, sha256, pHash, dHash, PDQ) on
512-px JPEGs, with each PDQ. Best of ``--repeat`` interleaved runs.
Run: ``.venv/bin/python benchmarks/bench_pdq.py [--repeat R]``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, shard_set, table, timed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    import pyarrow.parquet as pq
    from PIL import Image

    from shardguard.indexes import _pdqext, imagehashes
    from shardguard.pipelines.sample_data import make_image
    from shardguard.transforms.features import compute_row_features, finish_batch

    sets = {n: [np.ascontiguousarray(np.asarray(make_image(i, n).convert("RGB"))) for i in range(40)]
            for n in (256, 512, 1024)}
    td = Path(os.environ.get("SHARDGUARD_TESTDATA") or ROOT.parent / "shared" / "testdata")
    photos = [np.ascontiguousarray(np.asarray(Image.open(p).convert("RGB")))
              for p in sorted(td.rglob("*")) if p.suffix.lower() in (".jpg", ".jpeg", ".png")] if td.is_dir() else []
    if photos:
        sets["testdata photos"] = photos
    ours = lambda x: _pdqext.hash(x, x.shape[0], x.shape[1])  # noqa: E731
    for imgs in sets.values():  # identical before timed
        for x in imgs:
            b, q = ours(x)
            assert (b.hex(), q) == imagehashes.pdq_reference(x)

    data = [b for p in sorted(shard_set(6000, shards=12, size=512).glob("*.parquet"))[:2]
            for b in pq.read_table(p, columns=["jpg"]).column(0).to_pylist()]
    hashes = ("md5", "sha256", "phash", "dhash", "pdq")

    def stage():
        for s in range(0, len(data), 64):
            finish_batch([compute_row_features({"row": i, "key": str(i), "key_derived": False, "url": None,
                                                "caption": None, "status": "success", "image": b},
                                               hashes, 10**9, None, False, defer=True)[0]
                          for i, b in enumerate(data[s:s + 64], s)])

    import shardguard.indexes as pkg

    def with_reference(fn):  # the features stage as a worker without the compiled PDQ runs it
        def go():
            saved = sys.modules["shardguard.indexes._pdqext"]
            sys.modules["shardguard.indexes._pdqext"] = None
            del pkg._pdqext
            try:
                fn()
            finally:
                sys.modules["shardguard.indexes._pdqext"] = pkg._pdqext = saved
        return go

    best: dict[tuple, float] = {}
    for _ in range(a.repeat):
        for name, imgs in sets.items():
            for impl, fn in (("pdqhash", imagehashes.pdq_reference), ("compiled", ours)):
                t = timed(lambda: [fn(x) for x in imgs])[0] / len(imgs)
                best[name, impl] = min(best.get((name, impl), 1e9), t)
        for impl, fn in (("pdqhash", with_reference(stage)), ("compiled", stage)):
            t = timed(fn)[0] / len(data)
            best["stage", impl] = min(best.get(("stage", impl), 1e9), t)
    rows = []
    for name in [*sets, "stage"]:
        label = (f"{name} px, PDQ only" if isinstance(name, int) else
                 "features stage, 5 hashes, 512-px JPEG" if name == "stage" else f"{name}, PDQ only")
        ref, comp = best[name, "pdqhash"], best[name, "compiled"]
        rows.append((label, f"{1 / ref:.0f}", f"{1 / comp:.0f}", f"{ref / comp:.1f}x"))
    print(f"# PDQ per image, one thread; hashes checked identical; {machine()}")
    print(table(rows, ("images", "pdqhash img/s", "compiled img/s", "speed-up")))


if __name__ == "__main__":
    main()
