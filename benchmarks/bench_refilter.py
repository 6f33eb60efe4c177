"""Re-filter vs. scan rows/s on the same dataset and lists, side by side.

The scan computes features (decode, hashes, optionally CLIP) and applies lists A; the re-filter
applies lists A + B from the stored features. Variants: hashes only; with embeddings (tiny model on
the whole set, and ViT-B-32 with random weights on a subset, CPU). Both runs are end to end
(pipeline start-up included), on the default local runner.
Run: ``.venv/bin/python benchmarks/bench_refilter.py [--rows N] [--vit-rows N]``.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, shard_set, table, timed  # noqa: E402


def make_lists(shards: Path, work: Path, b_every: int = 1) -> tuple[str, str]:
    """List A: md5 of 1% of rows; list B: pHash of another 1% of the rows of every ``b_every``-th
    shard (1: the new list changes every shard; 10: one shard in ten, as new lists usually do)."""
    from shardguard.indexes import imagehashes
    from shardguard.transforms.decode import decode_image

    a, b = [], []
    for i, p in enumerate(sorted(shards.glob("*.parquet"))):
        rows = pq.read_table(p, columns=["jpg"]).column(0).to_pylist()
        for j in range(0, len(rows), 100):
            a.append(__import__("hashlib").md5(rows[j]).hexdigest())
            if i % b_every == 0:
                b.append(imagehashes.phash(decode_image(rows[j + 1]).gray))
    (work / "a.txt").write_text("\n".join(a) + "\n")
    (work / "b.txt").write_text("\n".join(b) + "\n")
    return f"md5={work / 'a.txt'}", f"phash={work / 'b.txt'}"


def compare(label: str, shards: Path, extra: list[str], b_every: int = 1) -> tuple:
    from shardguard.pipelines.refilter import run as refilter
    from shardguard.pipelines.scan import run as scan

    work = Path(tempfile.mkdtemp(prefix="sg-refilter-"))
    try:
        la, lb = make_lists(shards, work, b_every)
        n = sum(pq.read_metadata(p).num_rows for p in shards.glob("*.parquet"))
        t_scan, rc = timed(scan, ["--input", str(shards / "*.parquet"), "--output", str(work / "scan"),
                                  "--hash-list", la, *extra])
        assert rc == 0
        t_ref, rc = timed(refilter, ["--from", str(work / "scan"), "--output", str(work / "ref"),
                                     "--hash-list", lb])
        assert rc == 0
        return (label, n, f"{n / t_scan:.0f}", f"{n / t_ref:.0f}", f"{t_scan / t_ref:.1f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--vit-rows", type=int, default=1000)
    ap.add_argument("--photos", default="", help="MODE:SIZE: real photos built by corpus.py (1,000-row shards), "
                                                 "e.g. border:256, instead of seeded 384-px images")
    a = ap.parse_args()
    import logging
    logging.getLogger("shardguard").setLevel(logging.WARNING)
    if a.photos:
        from corpus import build

        mode, size = a.photos.split(":")
        big = build(mode, int(size), a.rows // 1000, 1000)
    else:
        big = shard_set(a.rows, shards=max(1, a.rows // 500))
    tiny = ["--clip-model", str(ROOT / "configs/models/tiny-clip.json")]
    rows = [compare("hashes only; new list changes every shard", big, []),
            compare("hashes only; new list changes 1 shard in 10", big, [], 10),
            compare("hashes + tiny CLIP; changes 1 shard in 10", big, tiny, 10)]
    if a.vit_rows:
        small = shard_set(a.vit_rows, shards=max(1, a.vit_rows // 500))
        rows.append(compare("hashes + ViT-B-32 (random, CPU); every shard", small, ["--clip-model", "ViT-B-32"]))
    print(f"# refilter vs scan, end to end, default local runner; {machine()}")
    print(table(rows, ("features", "rows", "scan rows/s", "refilter rows/s", "refilter speed-up")))


if __name__ == "__main__":
    main()
