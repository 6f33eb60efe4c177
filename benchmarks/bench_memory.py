"""Peak memory of a scan as the dataset grows: 2k, 20k and 60k rows, with and without kNN expansion.

Corpus: real photos as img2dataset builds LAION shards (``corpus.py``: 256 px ``border``, JPEG q95,
1,000-row shards), default hash set. "expansion" adds the tiny seeded CLIP model and
``--expand-threshold 0.9`` around an md5 list holding every 100th row (random weights make many
neighbours: the adversarial case). Each scan runs in a fresh Python process on the default local
runner; peak RSS is that process's ``ru_maxrss``. The ratio 60k / 2k should stay near 1 (target ≤ 1.2):
a worker's memory must not depend on the dataset's size.

Run: ``.venv/bin/python benchmarks/bench_memory.py [--sizes 2,20,60]`` (thousands of rows).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, table  # noqa: E402
from corpus import build  # noqa: E402

CHILD = """
import json, resource, sys, logging
from shardguard.pipelines.scan import run
logging.getLogger("shardguard").setLevel(logging.WARNING)
rc = run(sys.argv[1:])
print(json.dumps({"rc": rc, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def seed_list(corpus: Path, shards: int, out: Path) -> Path:
    """md5 of every 100th row of the first ``shards`` shards: the expansion's seeds."""
    import pyarrow.parquet as pq

    lines = []
    for s in range(shards):
        col = pq.read_table(corpus / f"{s:05d}.parquet", columns=["jpg"]).column(0)
        lines += [hashlib.md5(col[i].as_py()).hexdigest() for i in range(0, len(col), 100)]
    out.write_text("\n".join(lines) + "\n")
    return out


def peak(pattern_files: list[Path], extra: list[str]) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        inputs = [a for p in pattern_files for a in ("--input", str(p))]
        res = subprocess.run([sys.executable, "-c", CHILD, *inputs, "--output", f"{tmp}/out", "--quiet", *extra],
                             capture_output=True, text=True)
        line = [x for x in res.stdout.splitlines() if x.startswith("{")][-1]
        data = json.loads(line)
        assert data["rc"] == 0, res.stderr[-2000:]
        m = json.loads(Path(f"{tmp}/out/manifest.json").read_text())
        return data["maxrss_mb"], m["totals"]["counts"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="2,20,60", help="thousands of rows (1,000-row shards)")
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    corpus = build("border", 256, max(sizes), 1000)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label in ("hash lists", "expansion"):
            line = [label]
            for k in sizes:
                files = [corpus / f"{s:05d}.parquet" for s in range(k)]
                seeds = seed_list(corpus, k, Path(tmp) / f"seeds{k}.txt")
                extra = ["--hash-list", f"seeds@md5={seeds}"]
                if label == "expansion":
                    extra += ["--clip-model", str(ROOT / "configs/models/tiny-clip.json"), "--expand-threshold", "0.9"]
                mb, counts = peak(files, extra)
                line.append(f"{mb:.0f} MB ({counts['quarantined']} q)")
                print(f"  {label} {k}k rows: {mb:.0f} MB, {counts}", file=sys.stderr)
            first = float(line[1].split()[0])
            line.append(f"{float(line[-1].split()[0]) / first:.2f}")
            rows.append(tuple(line))
    print(f"# peak RSS of a scan vs dataset size (real photos, 256 px, 1,000-row shards); {machine()}")
    print(table(rows, ("mode", *[f"{k}k rows" for k in sizes], f"{sizes[-1]}k / {sizes[0]}k")))


if __name__ == "__main__":
    main()
