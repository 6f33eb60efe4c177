"""BLAS threads per worker: the scan with ``--blas-threads 1`` (default) side by side with BLAS's own
default (``0``: one BLAS thread per core inside every runner worker), on real photos built as
img2dataset builds LAION shards (``corpus.py``): CPU seconds and wall seconds of the whole scan
process (fresh process each, the two settings interleaved, repeated), default hash set and robust
views, an md5 list of every 100th row (so hash expansion has seeds).

Run: ``.venv/bin/python benchmarks/bench_threads.py [--shards 10] [--repeat 2] [--mode border --size 256]``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_memory import seed_list  # noqa: E402
from common import machine, table  # noqa: E402
from corpus import build  # noqa: E402

CHILD = """
import json, os, resource, sys, time
from shardguard.pipelines.scan import run
t = time.perf_counter()
rc = run(sys.argv[1:])
u = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"rc": rc, "wall": time.perf_counter() - t, "cpu": u.ru_utime + u.ru_stime}))
"""


def scan(files: list[Path], seeds: Path, threads: int) -> tuple[float, float]:
    """(CPU s, wall s) of one scan in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [a for p in files for a in ("--input", str(p))]
        args += ["--output", f"{tmp}/out", "--quiet", "--hash-list", f"seeds@md5={seeds}",
                 "--blas-threads", str(threads)]
        res = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True)
        data = json.loads([x for x in res.stdout.splitlines() if x.startswith("{")][-1])
        assert data["rc"] == 0, res.stderr[-2000:]
        return data["cpu"], data["wall"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=int, default=10, help="1,000-row shards")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--mode", default="border")
    ap.add_argument("--size", type=int, default=256)
    a = ap.parse_args()
    corpus = build(a.mode, a.size, a.shards, 1000)
    files = [corpus / f"{s:05d}.parquet" for s in range(a.shards)]
    res: dict[int, list] = {1: [], 0: []}
    with tempfile.TemporaryDirectory() as tmp:
        seeds = seed_list(corpus, a.shards, Path(tmp) / "seeds.txt")
        for _ in range(a.repeat):
            for threads in res:
                res[threads].append(scan(files, seeds, threads))
                print(f"  blas_threads={threads}: cpu {res[threads][-1][0]:.1f} s, wall {res[threads][-1][1]:.1f} s",
                      file=sys.stderr)
    rows = [(f"--blas-threads {t}" + (" (default)" if t == 1 else " (BLAS's own)"),
             " / ".join(f"{c:.1f}" for c, _ in v), " / ".join(f"{w:.1f}" for _, w in v),
             f"{a.shards * 1000 / min(w for _, w in v):.0f}") for t, v in res.items()]
    ratio = min(c for c, _ in res[0]) / min(c for c, _ in res[1])
    print(f"# {a.shards * 1000} rows, {a.mode} {a.size} px real photos; {machine()}")
    print(table(rows, ("setting", "CPU s (each run)", "wall s (each run)", "rows/s (best)")))
    print(f"CPU, BLAS's own / one thread (best runs): {ratio:.2f}")


if __name__ == "__main__":
    main()
