"""PDQ from the JPEG's luma plane alone vs. from the full RGB decode, next to re-encoding noise
measured on the same images — whether fast mode may skip the chroma decode for PDQ (issue 20).

Rows: the first ``--rows`` of the first shard of each real-photo corpus (``corpus.py``: 256 px
``border`` q95, 512 px ``keep_ratio``, ``mixed`` 128-1,000 px). For each row with PDQ quality ≥ 50
(rows below cannot match): PDQ of the RGB decode (what the scan hashes) against
- PDQ of the luma plane (Pillow's draft mode "L" at full scale: libjpeg decodes Y only);
- fast mode's whole PDQ: the luma plane, and the filter evaluated only where PDQ samples it
  (``imagehashes.pdq(..., sampled=True)``);
- PDQ of the same pixels re-encoded at q90 and at q75 (the yardstick: what a re-upload changes).
Printed: percentiles of the Hamming distances, the decode times and the PDQ kernel's time per row
(exact float schedule vs sampled) on the luma planes.
Run: ``.venv/bin/python benchmarks/bench_pdq_luma.py [--rows 1000]``.
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table  # noqa: E402
from corpus import build  # noqa: E402

CORPORA = (("border 256", "border", 256), ("keep_ratio 512", "keep_ratio", 512), ("mixed 128-1000", "mixed", 1000))


def _pdq_rgb(data: bytes):
    from PIL import Image

    from shardguard.indexes import imagehashes

    return imagehashes.pdq(Image.open(io.BytesIO(data)).convert("RGB"))


def _luma(data: bytes):
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img.draft("L", img.size)  # scale 1: the Y plane, no chroma decode or colour conversion
    return img.convert("L")


def _pdq_luma(data: bytes, sampled: bool = False) -> str:
    from PIL import Image

    from shardguard.indexes import imagehashes

    y = np.asarray(_luma(data))
    return imagehashes.pdq(Image.fromarray(np.repeat(y[:, :, None], 3, axis=2)), sampled=sampled)[0]


def _kernel_ms(rows: list[bytes]) -> tuple[float, float]:
    """PDQ per luma plane, ms: the reference's float schedule, then the sampled filter."""
    from shardguard.indexes import imagehashes

    planes, out = [_luma(d) for d in rows], []
    for sampled in (False, True):
        t = time.perf_counter()
        for y in planes:
            imagehashes.pdq(y, sampled=sampled)
        out.append(1000 * (time.perf_counter() - t) / len(planes))
    return out[0], out[1]


def _reencoded(data: bytes, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _hd(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _decode_ms(rows: list[bytes], mode: str) -> float:
    from PIL import Image

    t = time.perf_counter()
    for data in rows:
        img = Image.open(io.BytesIO(data))
        if mode == "L":
            img.draft("L", img.size)
        img.load()
    return 1000 * (time.perf_counter() - t) / len(rows)


def measure(mode: str, size: int, n: int) -> dict[str, list[int] | float]:
    """Distances (quality ≥ 50 rows) and decode times for one corpus."""
    import pyarrow.parquet as pq

    shard = build(mode, size, 1, 1000) / "00000.parquet"
    rows = pq.read_table(shard, columns=["jpg"]).column(0).to_pylist()[:n]
    out: dict = {"luma": [], "fast": [], "q90": [], "q75": [], "low": 0}
    for data in rows:
        ref, quality = _pdq_rgb(data)
        if quality < 50:
            out["low"] += 1
            continue
        out["luma"].append(_hd(ref, _pdq_luma(data)))
        out["fast"].append(_hd(ref, _pdq_luma(data, sampled=True)))
        for q in (90, 75):
            out[f"q{q}"].append(_hd(ref, _pdq_rgb(_reencoded(data, q))[0]))
    out["rgb_ms"], out["luma_ms"] = _decode_ms(rows, "RGB"), _decode_ms(rows, "L")
    out["exact_pdq_ms"], out["sampled_pdq_ms"] = _kernel_ms(rows)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1000)
    a = ap.parse_args()
    lines = []
    for label, mode, size in CORPORA:
        m = measure(mode, size, a.rows)
        for name, key in (("luma plane vs RGB decode", "luma"),
                          ("fast PDQ (luma plane, sampled filter) vs RGB decode", "fast"),
                          ("re-encoded q90 vs original", "q90"),
                          ("re-encoded q75 vs original", "q75")):
            d = np.array(m[key])
            lines.append((label, name, len(d), *(int(np.percentile(d, p)) for p in (50, 90, 99)), int(d.max()),
                          f"{np.mean(d > 31) * 100:.1f}%"))
        print(f"  {label}: quality < 50 skipped {m['low']}; decode RGB {m['rgb_ms']:.2f} ms, "
              f"luma plane {m['luma_ms']:.2f} ms per row; PDQ of the luma plane {m['exact_pdq_ms']:.3f} ms, "
              f"sampled {m['sampled_pdq_ms']:.3f} ms", file=sys.stderr)
    print(f"# PDQ from the luma plane; {machine()}; {time.strftime('%Y-%m-%d')}")
    print(table(lines, ("corpus", "comparison", "rows", "p50", "p90", "p99", "max", "> 31 bits")))


if __name__ == "__main__":
    main()
