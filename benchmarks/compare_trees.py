"""Outputs of this checkout vs. a baseline commit, byte for byte, on the same data (the architecture
change had to leave every data file as it was).

The baseline's source is checked out with ``git worktree`` into a scratch folder and imported from
there (``PYTHONPATH``; the compiled kernels are copied from this checkout: same C sources). Both run
the same commands — scan with three lists, scan with the tiny CLIP model and kNN expansion, a
re-filter adding a list, a webdataset scan, a metadata pre-filter — and every data file (clean shards
and tars, removal/review/error records, features) is compared. Summaries and manifests are not:
they gained fields (tags, dataset fingerprint, health, unique run ids).

Run: ``.venv/bin/python benchmarks/compare_trees.py [--baseline a0fb589]``.
"""
from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIRS = ("clean", "removed", "review", "errors", "features")


def baseline_package(ref: str, work: Path) -> Path:
    """A folder to put on PYTHONPATH that imports ``shardguard`` from commit ``ref``."""
    src = work / "src"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(src), ref], check=True,
                   capture_output=True)
    for so in (ROOT / "indexes").glob("*.so"):
        shutil.copy(so, src / "indexes" / so.name)
    pkg = work / "pkg" / "shardguard"
    pkg.mkdir(parents=True)
    for d in ("pipelines", "transforms", "indexes"):
        (pkg / d).symlink_to(src / d)
    return work / "pkg"


def cli(args: list[str], pythonpath: Path | None, cwd: Path) -> int:
    env = dict(os.environ, SHARDGUARD_LOG="WARNING")
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    code = "import sys; from shardguard.pipelines.cli import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True).returncode


def make_data(d: Path) -> None:
    """The sample dataset, a webdataset copy of one shard, and LAION-like URL metadata."""
    import tarfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    from shardguard.pipelines.sample_data import build_sample

    build_sample(str(d / "sample"))
    table = pq.read_table(d / "sample" / "shards" / "00000.parquet")
    (d / "wds").mkdir()
    with tarfile.open(d / "wds" / "00000.tar", "w", format=tarfile.PAX_FORMAT) as tf:
        for r in table.to_pylist():
            if r["jpg"] is not None:
                info = tarfile.TarInfo(f"{r['key']}.jpg")
                info.size, info.mtime = len(r["jpg"]), 1700000000
                tf.addfile(info, io.BytesIO(r["jpg"]))
    pq.write_table(table.drop_columns(["jpg"]), d / "wds" / "00000.parquet")
    (d / "meta").mkdir()
    urls = [f"https://site{i % 7}.example.com/img/{i}.jpg" for i in range(200)] + ["not a url"]
    pq.write_table(pa.table({"URL": urls, "TEXT": ["t"] * len(urls)}), d / "meta" / "part-0.parquet")
    (d / "urls.txt").write_text("https://site3.example.com/img/3.jpg\n")
    (d / "domains.txt").write_text("site5.example.com\n")


def commands(d: Path, out: Path) -> list[tuple[str, list[str]]]:
    lists = ["--hash-list", f"pdq={d}/sample/lists/known-bad-pdq.csv", "--hash-list",
             f"phash={d}/sample/lists/known-bad-phash.txt", "--hash-list", f"md5={d}/sample/lists/known-bad-md5.txt"]
    shards = ["--input", f"{d}/sample/shards/*.parquet"]
    return [
        ("scan", ["scan", *shards, "--output", f"{out}/scan", *lists]),
        ("clip", ["scan", *shards, "--output", f"{out}/clip", *lists[:2], "--clip-model",
                  str(ROOT / "configs/models/tiny-clip.json"), "--expand-threshold", "0.98"]),
        ("parent", ["scan", *shards, "--output", f"{out}/parent", *lists[4:]]),
        ("refilter", ["refilter", "--from", f"{out}/parent", "--output", f"{out}/refilter", *lists[:2]]),
        ("wds", ["scan", "--input", f"{d}/wds/*", "--output", f"{out}/wds", *lists[:2]]),
        ("prefilter", ["prefilter", "--input", f"{d}/meta/*.parquet", "--output", f"{out}/prefilter",
                       "--url-column", "URL", "--url-list", f"{d}/urls.txt", "--domain-list", f"{d}/domains.txt"]),
    ]


def compare(a: Path, b: Path) -> tuple[int, list[str]]:
    """(data files compared, those that differ or exist on one side only)."""
    files = lambda r: {p.relative_to(r).as_posix() for k in DATA_DIRS for p in (r / k).glob("*")  # noqa: E731
                       if p.suffix in (".parquet", ".tar")}
    names = files(a) | files(b)
    return len(names), sorted(n for n in names if not ((a / n).exists() and (b / n).exists()
                                                      and (a / n).read_bytes() == (b / n).read_bytes()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", default="a0fb589", help="commit to compare with")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="shardguard-compare-"))
    try:
        old_path = baseline_package(a.baseline, work)
        make_data(work / "data")
        print(f"# data files, this checkout vs {a.baseline} (same inputs, same commands)")
        for label, args in commands(work / "data", work / "new"):
            rc_new = cli(args, None, work)
            rc_old = cli([x.replace(str(work / "new"), str(work / "old")) for x in args], old_path, work)
            n, diff = compare(work / "new" / args[args.index("--output") + 1].rsplit("/", 1)[1],
                              work / "old" / args[args.index("--output") + 1].rsplit("/", 1)[1])
            print(f"{label:10s} exit {rc_new}/{rc_old}  {n} data files  "
                  + ("all byte-identical" if not diff else f"DIFFER: {', '.join(diff[:6])}"))
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / "src")], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
