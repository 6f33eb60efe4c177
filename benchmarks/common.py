"""Shared benchmark helpers: a cached seeded shard set and a side-by-side table printer."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench"


def shard_set(rows: int = 5000, shards: int = 10, size: int = 384) -> Path:
    """A seeded img2dataset-like shard set (JPEG q90, ``size`` px), built once into .bench/."""
    from shardguard.pipelines.sample_data import encode, make_image, shard_rows, write_shard

    d = CACHE / f"shards-{rows}-{shards}-{size}"
    if (d / "done").exists():
        return d
    per = rows // shards
    for s in range(shards):
        items = [(f"img {s}-{i}", encode(make_image(s * 100_000 + i, size)), "success") for i in range(per)]
        write_shard(str(d / f"{s:05d}.parquet"), shard_rows(items, f"{s:05d}"))
    (d / "done").write_text("ok")
    return d


def machine() -> str:
    """One line describing where the numbers were taken."""
    return f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, python {platform.python_version()}"


def timed(fn, *args, **kw):
    """(seconds, result) of one call."""
    t = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - t, out


def table(rows: list[tuple], header: tuple) -> str:
    """A plain aligned text table."""
    cols = list(zip(header, *rows))
    widths = [max(len(str(c)) for c in col) for col in cols]
    line = lambda r: "  ".join(str(c).rjust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(tuple("-" * w for w in widths))] + [line(r) for r in rows])
