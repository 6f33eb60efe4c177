"""Dedup at scale: synthetic feature rows with exact and near duplicates planted at known rates,
through the pipeline's own dedup stage (the features files written as the features stage writes
them), on the default local runner.

Rows: ``--rows`` in shards of 10,000. 5% of rows are exact copies of another row (same sha256), 5%
are near copies (their PDQ differs from a base row's by 1-12 bits; quality 80); the rest are unique.
Printed per size: wall time, peak RSS of the process (a fresh one per size), rows flagged per kind,
and exactness: flagged rows == the planted duplicates (exact: all rows; perceptual: the planted
clusters, which at 256 bits cannot collide by chance within 16 bits), plus a brute-force all-pairs
check of a 3,000-row sample.

Run: ``.venv/bin/python benchmarks/bench_dedup.py [--sizes 100000,1000000]``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table  # noqa: E402

SHARD = 10_000

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[3])
from bench_dedup import make_features, run_dedup
refs = make_features(int(sys.argv[1]), sys.argv[2])
t = time.perf_counter()
got = run_dedup(refs, sys.argv[2])
print(json.dumps({"seconds": time.perf_counter() - t,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "got": got}))
"""


def planted(rows: int):
    """(sha256 bytes, pdq bytes) per row, with 5% exact and 5% near duplicates (seeded)."""
    import numpy as np

    rng = np.random.default_rng(0)
    sha = rng.integers(0, 256, (rows, 32), dtype=np.uint8)
    pdq = rng.integers(0, 256, (rows, 32), dtype=np.uint8)
    n_dup = rows // 20
    src, dst = rng.choice(rows, n_dup, replace=False), rng.choice(rows, n_dup, replace=False)
    sha[dst], pdq[dst] = sha[src], pdq[src]
    for s, d in zip(rng.choice(rows, n_dup, replace=False), rng.choice(rows, n_dup, replace=False)):
        bits = np.unpackbits(pdq[s])
        bits[rng.choice(256, rng.integers(1, 13), replace=False)] ^= 1
        pdq[d] = np.packbits(bits)
    return sha, pdq


def make_features(rows: int, out: str) -> list:
    """Write the planted rows as features files, as the features stage does; return their ShardRefs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from shardguard.transforms.contracts import RunLayout, ShardInfo, ShardRef, ShardSpec

    sha, pdq = planted(rows)
    layout, refs = RunLayout(out), []
    (Path(out) / "features").mkdir(parents=True, exist_ok=True)
    for start in range(0, rows, SHARD):
        shard, n = f"{start // SHARD:05d}", min(SHARD, rows - start)
        t = pa.table({"row": pa.array(range(n), pa.int64()), "key": [f"{shard}-{i}" for i in range(n)],
                      "status": ["ok"] * n, "sha256": [x.tobytes().hex() for x in sha[start:start + n]],
                      "pdq": [x.tobytes().hex() for x in pdq[start:start + n]],
                      "pdq_quality": pa.array([80] * n, pa.int32()), "caption_sha256": pa.nulls(n, pa.string())})
        pq.write_table(t, layout.output("features", shard))
        info = ShardInfo(shard=shard, path="-", format="parquet", num_rows=n, sha256="-", size=0)
        refs.append(ShardRef(ShardSpec(shard, "-", "parquet"), info, {"path": f"features/{shard}.parquet"}))
    return refs


class DedupOnly:
    """A PTransform running one dedup rule's wiring (what the verdict stage joins to shards)."""

    def __new__(cls, rule, ctx):
        import apache_beam as beam

        class _T(beam.PTransform):
            def expand(self, refs):
                return rule.expand(refs, ctx)["keyed"]

        return _T()


def _rows_of(kv):
    return [[kv[0], row] for row, _ in kv[1].rows]


def run_dedup(refs, out: str) -> dict:
    """The dedup stage (exact and perceptual) over the refs; flagged [shard, row] per kind."""
    import apache_beam as beam

    from shardguard.pipelines.config import DedupConfig
    from shardguard.pipelines.dataplane import size_flushed_data_plane
    from shardguard.pipelines.options import pipeline_options
    from shardguard.transforms.contracts import ColumnNames, RunLayout
    from shardguard.transforms.rules.dedup import DedupRule
    from shardguard.transforms.shared import SharedHandles
    from shardguard.transforms.verdict import DatasetContext, VerdictSettings

    rules = [DedupRule(s) for s in DedupConfig(kinds=("exact", "perceptual"), caption_conflicts=None).settings()]
    settings = VerdictSettings(tuple(rules), {}, "drop", False, ColumnNames(), "x")
    ctx = DatasetContext(RunLayout(out), SharedHandles(), settings)
    with size_flushed_data_plane(), beam.Pipeline(options=pipeline_options([])) as p:
        refs_pc = p | beam.Create(refs)
        for r in rules:
            (refs_pc | f"Run-{r.s.kind}" >> DedupOnly(r, ctx) | f"Rows-{r.s.kind}" >> beam.FlatMap(_rows_of)
             | f"Json-{r.s.kind}" >> beam.Map(json.dumps)
             | f"Write-{r.s.kind}" >> beam.io.WriteToText(f"{out}/flagged.{r.s.kind}", shard_name_template=""))
    return {r.s.kind: [json.loads(x) for x in Path(f"{out}/flagged.{r.s.kind}").read_text().splitlines()]
            for r in rules}


def check(rows: int, got: dict) -> tuple[str, str]:
    """(exact vs planted, perceptual vs a brute-force all-pairs sample of 3,000 rows)."""
    import numpy as np

    sha, pdq = planted(rows)
    first: dict[bytes, int] = {}
    want_exact = set()
    for i, h in enumerate(map(bytes, sha)):
        if h in first:
            want_exact.add(i)
        first.setdefault(h, i)
    got_exact = {int(s) * SHARD + r for s, r in got["exact"]}
    got_near = {int(s) * SHARD + r for s, r in got["perceptual"]}
    sample = sorted(np.random.default_rng(1).choice(rows, min(rows, 3000), replace=False))
    bits = np.unpackbits(pdq[sample], axis=1)
    close = set()
    for a in range(len(sample)):  # a later row of a close pair is never its component's representative
        d = np.count_nonzero(bits[a + 1:] != bits[a], axis=1)
        close |= {sample[a + 1 + b] for b in np.nonzero(d <= 16)[0]}
    missed = len(close - got_near)
    exact = "identical" if got_exact == want_exact else f"DIFFER by {len(got_exact ^ want_exact)} rows"
    return exact, f"{len(close)} close rows, {missed} missed"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,1000000")
    a = ap.parse_args()
    rows = []
    for n in (int(x) for x in a.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            res = subprocess.run([sys.executable, "-c", CHILD, str(n), tmp, str(Path(__file__).resolve().parent)],
                                 capture_output=True, text=True)
            line = [x for x in res.stdout.splitlines() if x.startswith("{")]
            assert line, res.stderr[-3000:]
            data = json.loads(line[-1])
        exact, near = check(n, data["got"])
        rows.append((f"{n:,}", f"{data['seconds']:.0f}", f"{data['maxrss_mb']:.0f}", f"{len(data['got']['exact']):,}",
                     f"{len(data['got']['perceptual']):,}", exact, near))
        print(rows[-1], file=sys.stderr)
    print(f"# dedup (exact + perceptual) over synthetic feature rows, default local runner; {machine()}")
    print(table(rows, ("rows", "seconds", "peak RSS MB", "exact flagged", "perceptual flagged", "exact vs planted",
                       "perceptual vs brute force (sample)")))


if __name__ == "__main__":
    main()
