"""A real-photo corpus built the way img2dataset builds LAION shards, for benchmarks that must not
flatter shardguard with uniform synthetic images.

The photos in ``../shared/testdata`` (or ``$SHARDGUARD_TESTDATA``) are augmented so every row differs
(seeded random crop of 60-100% of the area, mirror, brightness/contrast/colour jitter), then resized
as img2dataset resizes: ``border`` (fit inside S×S, pad black, JPEG q95: every image S×S),
``keep_ratio`` (shorter side S, aspect kept: almost every image its own shape) or ``mixed`` (longest
side drawn from 128-1000 px). Shards hold img2dataset's columns; they are cached in ``.bench/``.

Run: ``.venv/bin/python benchmarks/corpus.py --mode border --size 256 --shards 20 --rows 1000``.
"""
from __future__ import annotations

import argparse
import io
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench"


def photo_paths() -> list[Path]:
    """Every JPEG/PNG photo in the shared test data (sorted), or an error saying where to put it."""
    d = Path(os.environ.get("SHARDGUARD_TESTDATA") or ROOT.parent / "shared" / "testdata")
    paths = sorted(p for p in d.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not paths:
        raise SystemExit(f"no photos under {d}: set SHARDGUARD_TESTDATA (see shared/testdata/SOURCES.md)")
    return paths


def augment(img, rng):
    """A seeded random crop, mirror and colour jitter of an RGB image."""
    from PIL import ImageEnhance, ImageOps

    w, h = img.size
    area = rng.uniform(0.6, 1.0)
    aspect = rng.uniform(0.75, 1.33)
    cw = max(16, min(w, int((area * w * h * aspect) ** 0.5)))
    ch = max(16, min(h, int((area * w * h / aspect) ** 0.5)))
    x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    img = img.crop((int(x), int(y), int(x) + cw, int(y) + ch))
    if rng.random() < 0.5:
        img = ImageOps.mirror(img)
    for enh in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        img = enh(img).enhance(rng.uniform(0.8, 1.2))
    return img


def resize(img, mode: str, size: int, rng):
    """img2dataset's resize modes (LANCZOS down, as its default ``resize_mode`` uses cv2 area/lanczos)."""
    from PIL import Image

    w, h = img.size
    if mode == "border":
        s = size / max(w, h)
        img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
        canvas = Image.new("RGB", (size, size))
        canvas.paste(img, ((size - img.width) // 2, (size - img.height) // 2))
        return canvas
    if mode == "keep_ratio":
        s = size / min(w, h)
    else:  # mixed: longest side 128..1000
        s = int(rng.integers(128, 1001)) / max(w, h)
    return img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)


def _shard(args) -> str:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    out, index, rows, mode, size, paths = args
    rng = np.random.default_rng(1_000_003 * index + size)
    photos = [Image.open(p).convert("RGB") for p in paths]
    keys, jpgs, ws, hs = [], [], [], []
    for i in range(rows):
        img = resize(augment(photos[int(rng.integers(len(photos)))], rng), mode, size, rng)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=95)
        keys.append(f"{index:05d}{i:04d}")
        jpgs.append(buf.getvalue())
        ws.append(img.width)
        hs.append(img.height)
    n = len(keys)
    table = pa.table({"key": keys, "url": [f"https://example.com/{k}.jpg" for k in keys],
                      "caption": [f"photo {k}" for k in keys], "status": ["success"] * n,
                      "error_message": pa.nulls(n, pa.string()), "width": ws, "height": hs,
                      "sha256": pa.nulls(n, pa.string()), "jpg": pa.array(jpgs, pa.binary())})
    path = Path(out) / f"{index:05d}.parquet"
    pq.write_table(table, path)
    return str(path)


def _link_cached(d: Path, mode: str, size: int, shards: int, rows: int) -> None:
    """Shard i depends only on (i, mode, size, rows): link the ones another cached corpus has built."""
    for other in sorted(CACHE.glob(f"corpus-{mode}-{size}-*x{rows}")):
        for s in range(shards):
            src, dst = other / f"{s:05d}.parquet", d / f"{s:05d}.parquet"
            if other != d and src.exists() and not dst.exists():
                os.link(src, dst)


def build(mode: str, size: int, shards: int, rows: int, workers: int | None = None) -> Path:
    """The corpus directory (built once, then cached)."""
    d = CACHE / f"corpus-{mode}-{size}-{shards}x{rows}"
    if (d / "done").exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    _link_cached(d, mode, size, shards, rows)
    paths = photo_paths()
    jobs = [(str(d), s, rows, mode, size, paths) for s in range(shards) if not (d / f"{s:05d}.parquet").exists()]
    with ProcessPoolExecutor(workers or os.cpu_count()) as ex:
        list(ex.map(_shard, jobs))
    (d / "done").write_text("ok")
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("border", "keep_ratio", "mixed"), default="border")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--shards", type=int, default=20)
    ap.add_argument("--rows", type=int, default=1000)
    a = ap.parse_args()
    print(build(a.mode, a.size, a.shards, a.rows))


if __name__ == "__main__":
    main()
