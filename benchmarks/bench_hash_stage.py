"""Hash stage per core vs. the naive loop and the draft-decode floor; Beam overhead on top of it.

On the same seeded 512×512 JPEGs (q90), single thread each:
  naive          ``imagehash.phash(Image.open(...))`` + md5 (the baseline)
  draft floor    ``Image.open`` + JPEG draft to 64 px (RGB, as the issue measured it) + load
  luma floor     the same, decoding the luma channel only (draft mode "L"): what the stage decodes
  stage (fast)   shardguard's per-row features, md5 + pHash, default fast decode
  stage (exact)  the same with ``--exact-decode`` (bit-identical to imagehash)
and the whole hash-only scan under Beam (in-process runner, one worker thread) vs. the fast stage
alone, and vs. the same scan without a runner (``plain_scan.py``: the pipeline's DoFns called in a
loop, same outputs), which splits the gap into Beam's own cost and the reading and writing any scan
does. Goals (issue 7): stage ≥ 3.5× naive and ≥ 75% of the draft floor; Beam overhead ≤ 25%.

Beam overhead is given two ways: end to end (one scan of all images, pipeline start-up included)
and per row at steady state, from scans of half and all of the shards: (T_all − T_half) / (rows
added) is the cost of one more row, start-up cancelled out, which is what a billion-row run pays.
Every timing is the best of ``--repeat`` runs, interleaved, since this VM is noisy; dirty pages are
flushed (``os.sync``) before each timed run, or one scan's writes throttle the next one's.
Run: ``.venv/bin/python benchmarks/bench_hash_stage.py [--images N] [--repeat R]``.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, shard_set, table, timed  # noqa: E402
from plain_scan import differing_outputs, scan_without_runner  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=6000)
    ap.add_argument("--repeat", type=int, default=2)
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

    def floor(mode):
        def go():
            for b in data:
                im = Image.open(io.BytesIO(b))
                im.draft(mode, (64, 64))
                im.load()
        return go

    def stage(exact):
        def go():  # as the features DoFn runs it: 64-row batches, pHash hashed per batch
            for start in range(0, len(data), 64):
                recs = [compute_row_features({"row": i, "key": str(i), "key_derived": False, "url": None,
                                              "caption": None, "status": "success", "image": b},
                                             ("md5", "phash"), 10**9, None, exact, defer=True)[0]
                        for i, b in enumerate(data[start:start + 64], start)]
                finish_batch(recs)
        return go

    half_dir = Path(tempfile.mkdtemp(prefix="sg-half-"))
    paths = sorted(shards.glob("*.parquet"))
    for p in paths[: len(paths) // 2]:
        (half_dir / p.name).symlink_to(p)
    n_half = sum(pq.read_metadata(p).num_rows for p in paths[: len(paths) // 2])

    def a_scan(src, beam=True):
        def go():
            work = tempfile.mkdtemp(prefix="sg-hs-")
            try:
                argv = ["--input", str(src / "*.parquet"), "--output", f"{work}/o", "--hashes", "md5,phash"]
                if beam:
                    assert scan(argv + ["--direct_num_workers=1"]) == 0
                else:
                    assert scan_without_runner(argv)["totals"]["counts"]["shards_failed"] == 0
            finally:
                shutil.rmtree(work, ignore_errors=True)
        return go

    n = len(data)
    runs = (("naive", naive), ("floor", floor("RGB")), ("luma", floor("L")), ("fast", stage(False)),
            ("exact", stage(True)), ("beam", a_scan(shards)), ("beam_half", a_scan(half_dir)),
            ("plain", a_scan(shards, beam=False)), ("plain_half", a_scan(half_dir, beam=False)))
    t: dict[str, float] = {}
    for _ in range(a.repeat):
        for name, fn in runs:
            os.sync()
            t[name] = min(t.get(name, float("inf")), timed(fn)[0])
    shutil.rmtree(half_dir, ignore_errors=True)
    check = Path(tempfile.mkdtemp(prefix="sg-same-"))
    argv = ["--input", str(shards / "*.parquet"), "--hashes", "md5,phash"]
    scan(argv + ["--output", str(check / "beam"), "--direct_num_workers=1"])
    scan_without_runner(argv + ["--output", str(check / "plain")])
    differ = differing_outputs(check / "beam", check / "plain")
    shutil.rmtree(check, ignore_errors=True)
    assert not differ, f"the no-runner scan's outputs differ from the pipeline's: {differ[:5]}"
    startup = {}
    for k in ("beam", "plain"):  # seconds per added row, start-up cancelled
        marginal = (t[k] - t[f"{k}_half"]) / (n - n_half)
        startup[k] = t[k] - marginal * n
        t[f"{k}_steady"] = marginal * n
    rate = {k: n / v for k, v in t.items()}
    rows = [("naive: imagehash.phash(Image.open) + md5", f"{rate['naive']:.0f}", "1.00x", ""),
            ("draft-decode floor (64 px, decode only)", f"{rate['floor']:.0f}", f"{rate['floor'] / rate['naive']:.2f}x", "100%"),
            ("luma-only draft floor (64 px, mode L)", f"{rate['luma']:.0f}", f"{rate['luma'] / rate['naive']:.2f}x",
             f"{100 * rate['luma'] / rate['floor']:.0f}%"),
            ("hash stage, fast decode (md5 + pHash)", f"{rate['fast']:.0f}", f"{rate['fast'] / rate['naive']:.2f}x",
             f"{100 * rate['fast'] / rate['floor']:.0f}%"),
            ("hash stage, --exact-decode", f"{rate['exact']:.0f}", f"{rate['exact'] / rate['naive']:.2f}x",
             f"{100 * rate['exact'] / rate['floor']:.0f}%"),
            ("whole scan under Beam (1 worker thread), end to end", f"{rate['beam']:.0f}",
             f"{rate['beam'] / rate['naive']:.2f}x", f"{100 * rate['beam'] / rate['floor']:.0f}%"),
            ("whole scan under Beam, steady state (per added row)", f"{rate['beam_steady']:.0f}",
             f"{rate['beam_steady'] / rate['naive']:.2f}x", f"{100 * rate['beam_steady'] / rate['floor']:.0f}%"),
            ("same scan, no runner (DoFns in a loop), end to end", f"{rate['plain']:.0f}",
             f"{rate['plain'] / rate['naive']:.2f}x", f"{100 * rate['plain'] / rate['floor']:.0f}%"),
            ("same scan, no runner, steady state", f"{rate['plain_steady']:.0f}",
             f"{rate['plain_steady'] / rate['naive']:.2f}x", f"{100 * rate['plain_steady'] / rate['floor']:.0f}%")]
    print(f"# hash stage per core, {n} images 512x512 JPEG q90; {machine()}")
    print(table(rows, ("run", "images/s", "vs naive", "of draft floor")))
    pct = lambda a, b: f"{100 * (t[a] - t[b]) / t[b]:.0f}%"  # noqa: E731
    print(f"stage vs luma-only floor: {100 * rate['fast'] / rate['luma']:.0f}%")
    print(f"whole scan under Beam over the fast stage alone: end to end {pct('beam', 'fast')}, steady state "
          f"{pct('beam_steady', 'fast')} (start-up {startup['beam']:.1f} s)")
    print(f"  of which reading shards and writing outputs (no-runner scan over the stage): end to end "
          f"{pct('plain', 'fast')}, steady state {pct('plain_steady', 'fast')}")
    print(f"  and Beam's runner (Beam scan over the no-runner scan): end to end {pct('beam', 'plain')}, "
          f"steady state {pct('beam_steady', 'plain_steady')}")


if __name__ == "__main__":
    main()
