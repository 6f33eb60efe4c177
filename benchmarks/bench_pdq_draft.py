"""PDQ from a JPEG draft (DCT scaling to ≥ 512 px on the short side) vs. a full decode, next to
re-encoding noise — whether fast mode may decode large JPEGs smaller for PDQ (issue 20).

Corpus: every photo of ``../shared/testdata`` (≥ 96 px) upscaled so its long side is 1,100, 1,600 and
2,200 px (bicubic), saved as JPEG q92 (and q75 for the yardstick); rows with PDQ quality < 50 skipped.
Printed: the Hamming distance between PDQ of the full decode and PDQ of the draft decode, and between
PDQ of the q92 and the q75 files (both full decodes): percentiles.
Run: ``.venv/bin/python benchmarks/bench_pdq_draft.py``.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table  # noqa: E402
from corpus import photo_paths  # noqa: E402


def _hd(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _jpeg(img, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def main() -> None:
    from PIL import Image

    from shardguard.indexes import imagehashes

    drift, noise = [], []
    for p in photo_paths():
        im = Image.open(p).convert("RGB")
        if min(im.size) < 96:
            continue
        for side in (1100, 1600, 2200):
            s = side / max(im.size)
            big = im.resize((round(im.width * s), round(im.height * s)), Image.Resampling.BICUBIC)
            q92, q75 = _jpeg(big, 92), _jpeg(big, 75)
            full = Image.open(io.BytesIO(q92)).convert("RGB")
            h, quality = imagehashes.pdq(full)
            if quality < 50:
                continue
            draft = Image.open(io.BytesIO(q92))
            short = min(full.size)
            draft.draft("RGB", (512 * full.width // short, 512 * full.height // short))
            drift.append(_hd(h, imagehashes.pdq(draft.convert("RGB"))[0]))
            noise.append(_hd(h, imagehashes.pdq(Image.open(io.BytesIO(q75)).convert("RGB"))[0]))
    pct = (50, 90, 99, 100)
    rows = [(name, len(v), *[f"{x:.0f}" for x in np.percentile(v, pct)])
            for name, v in (("draft ≥ 512 px vs full decode", drift), ("q75 vs q92, full decodes", noise))]
    print(f"# PDQ bits apart; {machine()}")
    print(table(rows, ("comparison", "images", "p50", "p90", "p99", "max")))


if __name__ == "__main__":
    main()
