"""Re-filter vs. scan rows/s on the same dataset and lists, side by side.

The scan computes features (decode, hashes, optionally CLIP) and applies lists A; the re-filter
applies lists A + B from the stored features. Variants: hashes only; with embeddings (tiny model on
the whole set, and ViT-B-32 with random weights on a subset, CPU). Both runs are end to end
(pipeline start-up included), on the default local runner.
Run: ``.venv/bin/python benchmarks/bench_refilter.py [--rows N] [--vit-rows N] [--repeat N]``.
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


def make_lists(shards: Path, work: Path, b_every: int = 1, b_type: str = "phash") -> tuple[str, str]:
    """List A: md5 of 1% of rows; list B: pHash (or md5) of another 1% of the rows of every
    ``b_every``-th shard (1: the new list changes every shard; 10: one shard in ten, as new lists
    usually do). On the real-photo corpus (a few photos augmented) a pHash entry matches copies in
    every shard; md5 entries (every augmented row differs) change only the chosen shards — and, being
    a confirming list, make new expansion seeds whose images the re-filter reads again."""
    from shardguard.indexes import imagehashes
    from shardguard.transforms.decode import decode_image

    a, b = [], []
    for i, p in enumerate(sorted(shards.glob("*.parquet"))):
        rows = pq.read_table(p, columns=["jpg"]).column(0).to_pylist()
        for j in range(0, len(rows), 100):
            a.append(__import__("hashlib").md5(rows[j]).hexdigest())
            if i % b_every == 0:
                b.append(imagehashes.phash(decode_image(rows[j + 1]).gray) if b_type == "phash"
                         else __import__("hashlib").md5(rows[j + 1]).hexdigest())
    (work / "a.txt").write_text("\n".join(a) + "\n")
    (work / "b.txt").write_text("\n".join(b) + "\n")
    return f"md5={work / 'a.txt'}", f"{b_type}={work / 'b.txt'}"


def _empty_graph(n: int) -> None:
    """A pipeline of the re-filter's shape doing no work: shards spread over the runner's threads
    (``featurestage.Spread``), then two per-shard steps (features, verdict). Beam's own cost for
    ``n`` shards: graph construction, translation, bundle processors, stage ends."""
    from types import SimpleNamespace

    import apache_beam as beam

    from shardguard.pipelines.options import pipeline_options
    from shardguard.pipelines.runutil import run_beam
    from shardguard.transforms.featurestage import Spread

    def build(p):
        specs = p | beam.Impulse() | beam.FlatMap(lambda _: [SimpleNamespace(shard=f"{i:05d}") for i in range(n)])
        return specs | Spread() | "F" >> beam.Map(lambda x: x) | "V" >> beam.Map(lambda x: x)
    run_beam(build, pipeline_options([]))


def _verify_all(run: Path, shards: list[str], unchanged: list[str]) -> None:
    """sha256 of every file a re-filter takes over from ``run`` (every features file, the unchanged
    shards' clean files), two at a time, as the re-filter's two runner threads would."""
    from concurrent.futures import ThreadPoolExecutor

    from shardguard.indexes import fileio

    paths = [str(run / "features" / f"{s}.parquet") for s in shards]
    paths += [str(run / "clean" / f"{s}.parquet") for s in unchanged]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(fileio.sha256_file, paths))


def floor(work: Path, t_scan: float, t_ref: float, b_every: int) -> str:
    """What a re-filter cannot avoid on this machine, measured: Beam's cost for a graph of its shape,
    and reading every unchanged parent file once to check it against its recorded sha256 before it
    is linked; against what 50× of this scan allows."""
    import json

    shards = sorted(s["shard"] for s in json.loads((work / "scan" / "manifest.json").read_text())["shards"])
    _empty_graph(len(shards))
    t_beam = min(timed(_empty_graph, len(shards))[0] for _ in range(3))
    unchanged = [s for i, s in enumerate(shards) if i % b_every]
    t_sha = min(timed(_verify_all, work / "scan", shards, unchanged)[0] for _ in range(3))
    return (f"floor (1 shard in {b_every} changes): Beam graph of the re-filter's shape, no work {t_beam:.2f} s; "
            f"sha256 of the {len(unchanged)} unchanged shards' parent files, 2 threads {t_sha:.2f} s; "
            f"together {t_beam + t_sha:.2f} s. The re-filter took {t_ref:.2f} s; 50x of this scan "
            f"({t_scan:.1f} s) allows {t_scan / 50:.2f} s in all.")


def _again(work: Path, lb: str, times: int) -> list[float]:
    """The same re-filter ``times`` more times in this process, each into a fresh directory: its
    steady cost, once one-time imports (FAISS's, for a pHash list the scan did not use) are paid."""
    from shardguard.pipelines.refilter import run as refilter

    out = []
    for _ in range(times):
        shutil.rmtree(work / "again", ignore_errors=True)
        t, rc = timed(refilter, ["--from", str(work / "scan"), "--output", str(work / "again"), "--hash-list", lb])
        assert rc == 0
        out.append(t)
    return out


def compare(label: str, shards: Path, extra: list[str], b_every: int = 1, notes: list | None = None,
            b_type: str = "phash", repeat: int = 0) -> tuple:
    from shardguard.pipelines.refilter import run as refilter
    from shardguard.pipelines.scan import run as scan

    work = Path(tempfile.mkdtemp(prefix="sg-refilter-"))
    try:
        la, lb = make_lists(shards, work, b_every, b_type)
        n = sum(pq.read_metadata(p).num_rows for p in shards.glob("*.parquet"))
        t_scan, rc = timed(scan, ["--input", str(shards / "*.parquet"), "--output", str(work / "scan"),
                                  "--hash-list", la, *extra])
        assert rc == 0
        t_ref, rc = timed(refilter, ["--from", str(work / "scan"), "--output", str(work / "ref"),
                                     "--hash-list", lb])
        assert rc == 0
        if notes is not None:
            notes.append(floor(work, t_scan, t_ref, b_every))
        if repeat:
            again = _again(work, lb, repeat)
            med = sorted(again)[len(again) // 2]
            notes.append(f"the same re-filter {repeat} more times in this process: "
                         f"{', '.join(f'{t:.2f}' for t in again)} s; median {med:.2f} s = {t_scan / med:.1f}x")
        return (label, n, f"{n / t_scan:.0f}", f"{n / t_ref:.0f}", f"{t_scan / t_ref:.1f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--vit-rows", type=int, default=1000)
    ap.add_argument("--shard-rows", type=int, default=500,
                    help="rows per synthetic shard (img2dataset writes 10,000; 500 makes 40 shards of 20k rows)")
    ap.add_argument("--only-one-in-ten", action="store_true",
                    help="run only the hashes-only, 1-shard-in-10 comparison (for large --rows)")
    ap.add_argument("--new-list", choices=("phash", "md5"), default="phash", help="the re-filter's new list's type")
    ap.add_argument("--repeat", type=int, default=0,
                    help="time the 1-in-10 re-filter this many more times in the process (first run apart)")
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
        big = shard_set(a.rows, shards=max(1, a.rows // a.shard_rows))
    tiny = ["--clip-model", str(ROOT / "configs/models/tiny-clip.json")]
    notes: list[str] = []
    t = a.new_list
    # run in this order (the first scan also pays one-time imports, so never the headline one)
    rows = [] if a.only_one_in_ten else [compare("hashes only; new list changes every shard", big, [], b_type=t)]
    rows.append(compare("hashes only; new list changes 1 shard in 10", big, [], 10, notes, b_type=t, repeat=a.repeat))
    if not a.only_one_in_ten:
        rows.append(compare("hashes + tiny CLIP; changes 1 shard in 10", big, tiny, 10, b_type=t))
    if a.vit_rows and not a.only_one_in_ten:
        small = shard_set(a.vit_rows, shards=max(1, a.vit_rows // 500))
        rows.append(compare("hashes + ViT-B-32 (random, CPU); every shard", small, ["--clip-model", "ViT-B-32"]))
    print(f"# refilter vs scan, end to end, default local runner; {machine()}")
    print(table(rows, ("features", "rows", "scan rows/s", "refilter rows/s", "refilter speed-up")))
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
