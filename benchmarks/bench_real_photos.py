"""Real photos, mixed shapes: the naive loop vs. the shardguard scan, side by side in one run.

Corpora (``corpus.py``: the photos in ``../shared/testdata`` augmented so rows differ, then resized the
way img2dataset builds LAION shards): 256 px ``border`` JPEG q95 (every image 256×256), 384 and 512 px
``keep_ratio`` (shorter side fixed, aspect kept: almost every image its own shape) and ``mixed``
(longest side 128-1000 px); ``--rows`` each (1,000-row shards).

Each measurement is a fresh process, measured from outside, start to exit (interpreter start,
imports and shutdown included): wall seconds around it, CPU seconds its and its children's
(``RUSAGE_CHILDREN``). The scan is the command users run (``python -m shardguard.pipelines.cli scan``,
what the ``shardguard`` console script does):
- **decode floor**: ``Image.open`` → RGB → load, nothing else (1 process);
- **naive loop** (1 process): ``Image.open`` → RGB, ``imagehash`` pHash + dHash, ``pdqhash``,
  md5 + sha256, brute-force match against the same lists, write the kept rows (parquet);
- **shardguard scan** with its defaults (robust views and hash expansion on) and with ``--robust off``
  (the naive loop's work: no views), default local runner on every core.
Lists for both: md5 of every 100th row (hits, and seeds for hash expansion), ~3,000 Holidays PDQ
hashes (a negative set), 1,000 seeded random pHashes.

Run: ``.venv/bin/python benchmarks/bench_real_photos.py [--rows 2000,20000] [--corpora border256,...]``.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table  # noqa: E402
from corpus import build  # noqa: E402

CORPORA = {"border256": ("border", 256), "keep384": ("keep_ratio", 384), "keep512": ("keep_ratio", 512),
           "mixed": ("mixed", 1000)}
HMA = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "ThreatExchange" / "hasher-matcher-actioner" / "sample_data"


def make_lists(files: list[Path], d: Path) -> dict[str, Path]:
    """The three lists (module doc), written under ``d``."""
    import numpy as np
    import pyarrow.parquet as pq

    md5 = [hashlib.md5(c.as_py()).hexdigest() for f in files
           for c in pq.read_table(f, columns=["jpg"]).column(0)[::100]]
    pdq = [line.split(",")[0] for name in ("holidays-jpg1-pdq-hashes.csv", "holidays-jpg2-pdq-hashes.csv")
           for line in (HMA / name).read_text().splitlines() if line.strip()]
    rng = np.random.default_rng(7)
    phash = [f"{int(x):016x}" for x in rng.integers(0, 2**63, 1000, dtype=np.int64)]
    out = {}
    for name, values in (("md5", md5), ("pdq", pdq), ("phash", phash)):
        out[name] = d / f"{name}.txt"
        out[name].write_text("\n".join(values) + "\n")
    return out


def _children_cpu() -> float:
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return c.ru_utime + c.ru_stime


def _bits(hexes: list[str]):
    import numpy as np

    return np.array([np.frombuffer(bytes.fromhex(h), np.uint8) for h in hexes]).view(np.uint64)


def decode_floor(files: list[Path]) -> int:
    """Decode every row to RGB, nothing else."""
    import pyarrow.parquet as pq
    from PIL import Image

    n = 0
    for f in files:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=256, columns=["jpg"]):
            for data in batch.column(0).to_pylist():
                Image.open(io.BytesIO(data)).convert("RGB").load()
                n += 1
    return n


def naive(files: list[Path], lists: dict[str, Path], out: Path) -> int:
    """The naive loop (module doc); returns rows kept."""
    import imagehash
    import numpy as np
    import pdqhash
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    md5s = set(lists["md5"].read_text().split())
    pdqs, phashes = _bits(lists["pdq"].read_text().split()), _bits(lists["phash"].read_text().split())
    kept = 0
    for f in files:
        table_in = pq.read_table(f)
        keep = []
        for i, data in enumerate(table_in.column("jpg").to_pylist()):
            img = Image.open(io.BytesIO(data)).convert("RGB")
            ph, dh = imagehash.phash(img), imagehash.dhash(img)
            bits, quality = pdqhash.compute(np.asarray(img))
            pdq = np.packbits(bits).view(np.uint64)
            md5, _ = hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()
            phv = np.frombuffer(bytes.fromhex(str(ph)), np.uint8).view(np.uint64)
            hit = (md5 in md5s or (quality >= 50 and np.bitwise_count(pdqs ^ pdq).sum(1).min() <= 31)
                   or np.bitwise_count(phashes ^ phv).sum(1).min() <= 8)
            del dh
            if not hit:
                keep.append(i)
        pq.write_table(table_in.take(pa.array(keep, pa.int64())), out / f.name)
        kept += len(keep)
    return kept


def scan_command(files: list[Path], lists: dict[str, Path], out: Path, extra: list[str]) -> list[str]:
    """The shardguard scan as users run it (the console script's entry point)."""
    args = [a for f in files for a in ("--input", str(f))] + ["--output", str(out), "--quiet"]
    args += [a for name, p in lists.items() for a in ("--hash-list", f"{name}={p}")]
    return [sys.executable, "-m", "shardguard.pipelines.cli", "scan", *args, *extra]


def child(kind: str, spec: dict) -> None:
    """One naive-loop or decode-floor measurement in this (fresh) process; prints JSON."""
    files, lists, out = [Path(f) for f in spec["files"]], {k: Path(v) for k, v in spec["lists"].items()}, Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    res = decode_floor(files) if kind == "decode" else naive(files, lists, out)
    print(json.dumps({"result": res}))


def measure(kind: str, files, lists, tmp: Path, extra=()) -> dict:
    """Run one measurement in a fresh process; its wall and CPU seconds, start to exit (module doc)."""
    out = tmp / f"out-{kind}-{len(extra)}"
    spec = {"files": [str(f) for f in files], "lists": {k: str(v) for k, v in lists.items()}, "out": str(out)}
    cmd = (scan_command(files, lists, out, list(extra)) if kind == "scan"
           else [sys.executable, __file__, "--child", kind, json.dumps(spec)])
    cpu, t = _children_cpu(), time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t, _children_cpu() - cpu
    assert res.returncode == 0, f"{kind} exit {res.returncode}: {res.stderr[-3000:]}"
    line = [x for x in res.stdout.splitlines() if x.startswith("{")]
    return {"wall": wall, "cpu": cpu, "result": json.loads(line[-1])["result"] if line else res.returncode}


RUNS = (("decode floor (1 process)", "decode", ()), ("naive loop (1 process)", "naive", ()),
        ("shardguard scan, defaults", "scan", ()), ("shardguard scan, --robust off", "scan", ("--robust", "off")))


def bench(name: str, rows: int) -> list[tuple]:
    """The four runs on one corpus; table rows."""
    mode, size = CORPORA[name]
    corpus = build(mode, size, rows // 1000, 1000)
    files = [corpus / f"{s:05d}.parquet" for s in range(rows // 1000)]
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        lists = make_lists(files, Path(tmp))
        got = {}
        for label, kind, extra in RUNS:
            got[label] = measure(kind, files, lists, Path(tmp), extra)
            print(f"  {name} {rows}: {label}: {got[label]}", file=sys.stderr)
    naive_run = got["naive loop (1 process)"]
    for label, _, _ in RUNS:
        g = got[label]
        out.append((name, f"{rows:,}", label, f"{g['cpu']:.1f}", f"{g['wall']:.1f}", f"{rows / g['cpu']:.0f}",
                    f"{naive_run['cpu'] / g['cpu']:.2f}", f"{naive_run['wall'] / g['wall']:.2f}"))
    return out


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        return child(sys.argv[2], json.loads(sys.argv[3]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", default="2000,20000")
    ap.add_argument("--corpora", default=",".join(CORPORA))
    a = ap.parse_args()
    rows = [r for n in a.rows.split(",") for c in a.corpora.split(",") for r in bench(c, int(n))]
    print(f"# real photos, default hash set, whole process; {machine()}; {time.strftime('%Y-%m-%d')}")
    print(table(rows, ("corpus", "rows", "run", "CPU s", "wall s", "rows/s per core", "naive CPU / this",
                       "naive wall / this")))


if __name__ == "__main__":
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    main()
