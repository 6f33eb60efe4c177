"""Dedup at scale: synthetic feature rows with exact and near duplicates planted at known rates,
through the pipeline's own dedup stage (the features files written as the features stage writes
them), on the default local runner.

Rows: ``--rows`` in shards of 10,000. 5% of rows are exact copies of another row (same sha256), 5%
are near copies (their PDQ differs from a base row's by 1-12 bits; quality 80); the rest are unique.
Printed per size: wall time, peak RSS of the process (a fresh one per size), rows flagged per kind,
and exactness: the flagged rows of each kind against a brute-force oracle over every row (``oracle``:
all pairs within each planted family, union-find; rows outside the families are random 256-bit codes,
which cannot come within 16 bits by chance).

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


def planted(rows: int, relations: list | None = None):
    """(sha256 bytes, pdq bytes) per row, with 5% exact and 5% near duplicates (seeded); the planted
    (source, copy) pairs are appended to ``relations`` when given."""
    import numpy as np

    rng = np.random.default_rng(0)
    sha = rng.integers(0, 256, (rows, 32), dtype=np.uint8)
    pdq = rng.integers(0, 256, (rows, 32), dtype=np.uint8)
    n_dup = rows // 20
    src, dst = rng.choice(rows, n_dup, replace=False), rng.choice(rows, n_dup, replace=False)
    sha[dst], pdq[dst] = sha[src], pdq[src]
    near = list(zip(rng.choice(rows, n_dup, replace=False), rng.choice(rows, n_dup, replace=False)))
    for s, d in near:
        bits = np.unpackbits(pdq[s])
        bits[rng.choice(256, rng.integers(1, 13), replace=False)] ^= 1
        pdq[d] = np.packbits(bits)
    if relations is not None:
        relations += [(int(a), int(b)) for a, b in zip(src, dst)] + [(int(a), int(b)) for a, b in near]
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


def _families(rows: int, relations: list) -> list[list[int]]:
    """Rows joined by any planted relation (union-find), families of two or more."""
    parent = list(range(rows))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in relations:
        parent[find(a)] = find(b)
    fams: dict[int, list[int]] = {}
    for i in {x for r in relations for x in r}:
        fams.setdefault(find(i), []).append(i)
    return [sorted(f) for f in fams.values() if len(f) > 1]


def oracle(rows: int, max_distance: int = 16) -> tuple[set, set]:
    """(exact, perceptual) rows that are not their cluster's representative, by brute force: rows
    outside a planted family are uniform random 256-bit codes (two within 16 bits: probability
    ~2^-200), so every close pair lies inside a family; all pairs of each family are compared, the
    close ones joined (union-find), and every member but the lowest row of a component is flagged."""
    import numpy as np

    relations: list = []
    sha, pdq = planted(rows, relations)
    out = []
    for codes, limit in ((sha, 0), (pdq, max_distance)):
        flagged = set()
        for fam in _families(rows, relations):
            bits = np.unpackbits(codes[fam], axis=1)
            comp = {i: i for i in fam}

            def root(i):
                while comp[i] != i:
                    i = comp[i]
                return i

            for a in range(len(fam)):
                d = np.count_nonzero(bits[a + 1:] != bits[a], axis=1)
                for b in np.nonzero(d <= limit)[0]:
                    ra, rb = root(fam[a]), root(fam[a + 1 + b])
                    comp[max(ra, rb)] = min(ra, rb)
            flagged |= {i for i in fam if root(i) != i}
        out.append(flagged)
    return out[0], out[1]


def check(rows: int, got: dict) -> tuple[str, str]:
    """(exact vs the oracle, perceptual vs the oracle): identical, or by how many rows they differ."""
    want_exact, want_near = oracle(rows)
    got_exact = {int(s) * SHARD + r for s, r in got["exact"]}
    got_near = {int(s) * SHARD + r for s, r in got["perceptual"]}

    def verdict(g, w):
        return "identical" if g == w else f"DIFFER: {len(w - g)} missed, {len(g - w)} extra"

    return verdict(got_exact, want_exact), verdict(got_near, want_near)


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
    print(table(rows, ("rows", "seconds", "peak RSS MB", "exact flagged", "perceptual flagged", "exact vs oracle",
                       "perceptual vs oracle")))


if __name__ == "__main__":
    main()
