"""Does live progress slow a scan? The same scan with progress polled every 0.5 s (the terminal
rate) and with ``--quiet``, interleaved, best of N each, in fresh processes.

Corpus: ``corpus.py``'s real photos (256 px border, 1,000-row shards), default hash set, one md5
list. Run: ``.venv/bin/python benchmarks/bench_progress.py [--shards 10] [--repeat 3]``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table  # noqa: E402
from corpus import build  # noqa: E402


def scan(corpus: Path, shards: int, quiet: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "md5.txt").write_text("0" * 32 + "\n")
        args = [sys.executable, "-m", "shardguard.pipelines.cli", "scan", "--output", f"{tmp}/out",
                "--hash-list", f"md5={tmp}/md5.txt", *(["--quiet"] if quiet else [])]
        for s in range(shards):
            args += ["--input", str(corpus / f"{s:05d}.parquet")]
        env = dict(os.environ, SHARDGUARD_PROGRESS_SECONDS="0.5", SHARDGUARD_LOG="WARNING")
        t = time.perf_counter()
        subprocess.run(args, env=env, check=True, capture_output=True)
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    corpus = build("border", 256, max(a.shards, 60), 1000)
    times = {"progress every 0.5 s": [], "--quiet": []}
    for _ in range(a.repeat):
        for label in times:
            times[label].append(scan(corpus, a.shards, label == "--quiet"))
    quiet = min(times["--quiet"])
    rows = [(label, f"{min(v):.1f}", f"{sorted(v)[len(v) // 2]:.1f}", f"{min(v) / quiet:.3f}") for label, v in times.items()]
    print(f"# scan of {a.shards}k rows (real photos, 256 px), with and without live progress; {machine()}")
    print(table(rows, ("mode", "best s", "median s", "best vs --quiet")))


if __name__ == "__main__":
    main()
