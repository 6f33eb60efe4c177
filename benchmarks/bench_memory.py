"""Peak memory of a scan: 2 vs 20 shards of the same size (streaming: the ratio should stay near 1).

Each scan runs in a fresh Python process on the in-process runner (one worker thread, and the
default two threads); peak RSS is that process's ``ru_maxrss``.
Run: ``.venv/bin/python benchmarks/bench_memory.py [--rows-per-shard N]``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CACHE, machine, table  # noqa: E402

CHILD = """
import json, resource, sys, logging
from shardguard.pipelines.scan import run
logging.getLogger("shardguard").setLevel(logging.WARNING)
rc = run(sys.argv[1:])
print(json.dumps({"rc": rc, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def shards(n: int, rows: int) -> Path:
    from shardguard.pipelines.sample_data import encode, make_image, shard_rows, write_shard

    d = CACHE / f"mem-{rows}"
    for s in range(n):
        p = d / f"{s:05d}.parquet"
        if not p.exists():
            write_shard(str(p), shard_rows([("c", encode(make_image(s * 10_000 + i, 384)), "success")
                                            for i in range(rows)], f"{s:05d}"))
    return d


def peak(pattern: str, extra: list[str]) -> float:
    with tempfile.TemporaryDirectory() as out:
        res = subprocess.run([sys.executable, "-c", CHILD, "--input", pattern, "--output", out,
                              "--hashes", "md5,sha256,phash,dhash,pdq", *extra], capture_output=True, text=True)
        line = [l for l in res.stdout.splitlines() if l.startswith("{")][-1]
        data = json.loads(line)
        assert data["rc"] == 0, res.stderr[-2000:]
        return data["maxrss_mb"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows-per-shard", type=int, default=200)
    a = ap.parse_args()
    d = shards(20, a.rows_per_shard)
    rows = []
    for label, extra in (("1 worker thread", ["--direct_num_workers=1"]), ("default (2 threads)", [])):
        two = peak(str(d / "0000[01].parquet"), extra)
        twenty = peak(str(d / "*.parquet"), extra)
        rows.append((label, f"{two:.0f}", f"{twenty:.0f}", f"{twenty / two:.2f}"))
    print(f"# peak RSS (MB) of a scan, 2 vs 20 shards of {a.rows_per_shard} rows (384 px JPEG); {machine()}")
    print(table(rows, ("runner", "2 shards", "20 shards", "ratio")))


if __name__ == "__main__":
    main()
