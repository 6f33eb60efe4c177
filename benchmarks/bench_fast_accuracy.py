"""How far fast-decode pHash/dHash stray from the exact ones, next to re-encoding noise (issue 7).

Corpus: every photo in ``../shared/testdata`` (or ``$SHARDGUARD_TESTDATA``; JPEG and PNG) re-encoded
as JPEG at 7 sizes and 2 qualities (``sample_data.photo_variants``), plus 120 seeded synthetic
images. For each image the exact hashes (``--exact-decode``: bit-identical to imagehash on the full
decode) are compared with:
  pHash only        JPEG luma-only draft (DCT scaling) to ≥ 64 px, resized with block-summed LANCZOS weights
  pHash + dHash     the same from a draft to ≥ 128 px (what a run computing dHash without PDQ does)
  with PDQ          full decode of the luma plane (a colour JPEG's Y only), box-reduced to ≥ 128 px for
                    pHash/dHash, block-summed weights; PDQ itself from that luma plane at full size
  old draft 64      the first fast path: a 64-px draft resized as if it were the image (reference)
and, as the yardstick, re-encoding noise: exact hashes of the same picture at JPEG q75 vs q92.
A second table does the same for PDQ (rows with exact PDQ quality ≥ 50: the ones that can match).
Run: ``.venv/bin/python benchmarks/bench_fast_accuracy.py``.
"""
from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, table  # noqa: E402


def testdata() -> Path:
    """The reference data directory (exits with a reason when absent)."""
    d = Path(os.environ.get("SHARDGUARD_TESTDATA") or ROOT.parent / "shared" / "testdata")
    if not d.is_dir():
        sys.exit(f"reference data not found at {d}: set SHARDGUARD_TESTDATA")
    return d


def stats(dist: list[int]) -> tuple:
    """(identical %, p99, max) of a list of bit distances."""
    a = np.asarray(dist)
    return f"{100 * np.mean(a == 0):.1f}%", f"{np.percentile(a, 99):.0f}", f"{a.max()}"


def main() -> None:
    import imagehash
    from PIL import Image

    from shardguard.pipelines.sample_data import encode, make_image, photo_variants
    from shardguard.transforms.features import compute_row_features

    paths = sorted(p for p in testdata().rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    real = photo_variants(paths)
    synth = [encode(make_image(i, 256 + 64 * (i % 8)), quality=85) for i in range(120)]
    ham = lambda a, b: (int(a, 16) ^ int(b, 16)).bit_count()  # noqa: E731

    def row(data):
        return {"row": 0, "key": "k", "key_derived": False, "url": None, "caption": None,
                "status": "success", "image": data}

    def old_draft(data):
        im = Image.open(io.BytesIO(data))
        im.draft("RGB", (64, 64))
        g = im.convert("RGB").convert("L")
        return str(imagehash.phash(g)), str(imagehash.dhash(g))

    out, pdq_out = [], []
    for label, corpus in (("real photos", real), ("synthetic", synth)):
        runs = {"p64": ("phash",), "pd128": ("phash", "dhash"), "pdq": ("phash", "dhash", "pdq")}
        d: dict[str, list[int]] = {f"{k}_{h}": [] for k in (*runs, "old") for h in "pd"}
        d["pdq"] = []
        for data in corpus:
            ex = compute_row_features(row(data), ("phash", "dhash", "pdq"), 10**9, None, exact=True)[0]
            for key, hashes in runs.items():
                rec = compute_row_features(row(data), hashes, 10**9, None, exact=False)[0]
                for h, name in (("p", "phash"), ("d", "dhash")):
                    if name in hashes:
                        d[f"{key}_{h}"].append(ham(rec[name], ex[name]))
                if "pdq" in hashes and ex["pdq_quality"] >= 50:
                    d["pdq"].append(ham(rec["pdq"], ex["pdq"]))
            op, od = old_draft(data)
            d["old_p"].append(ham(op, ex["phash"]))
            d["old_d"].append(ham(od, ex["dhash"]))
        for name, key in (("pHash only: luma draft >= 64 px", "p64"), ("pHash + dHash: luma draft >= 128 px", "pd128"),
                          ("with PDQ: luma plane, reduce >= 128 px", "pdq"), ("old draft 64 (reference)", "old")):
            dh = stats(d[f"{key}_d"]) if d[f"{key}_d"] else ("-", "-", "-")
            out.append((label, len(corpus), name, *stats(d[f"{key}_p"]), *dh))
        pdq_out.append((label, len(d["pdq"]), "PDQ: luma plane, sampled filter", *stats(d["pdq"]),
                        f"{np.mean(np.asarray(d['pdq']) > 31) * 100:.1f}%"))
    # the yardstick: the same picture saved at two JPEG qualities, both hashed exactly
    noise_p, noise_d = [], []
    for a, b in zip(real[0::2], real[1::2]):  # photo_variants yields q75, q92 pairs
        ea = imagehash.phash(Image.open(io.BytesIO(a)).convert("RGB")), imagehash.dhash(Image.open(io.BytesIO(a)).convert("RGB"))
        eb = imagehash.phash(Image.open(io.BytesIO(b)).convert("RGB")), imagehash.dhash(Image.open(io.BytesIO(b)).convert("RGB"))
        noise_p.append(ea[0] - eb[0])
        noise_d.append(ea[1] - eb[1])
    out.append(("real photos", len(noise_p), "re-encoding noise: exact q75 vs exact q92", *stats(noise_p), *stats(noise_d)))
    noise_pdq = _pdq_noise(real)
    pdq_out.append(("real photos", len(noise_pdq), "re-encoding noise: exact q75 vs exact q92", *stats(noise_pdq),
                    f"{np.mean(np.asarray(noise_pdq) > 31) * 100:.1f}%"))
    print(f"# fast-decode hashes vs exact; {len(paths)} photos x 14 variants; {machine()}")
    print(table(out, ("corpus", "images", "path", "pHash identical", "p99", "max", "dHash identical", "p99", "max")))
    print(table(pdq_out, ("corpus", "images (quality >= 50)", "path", "PDQ identical", "p99", "max", "> 31 bits")))


def _pdq_noise(real: list[bytes]) -> list[int]:
    """PDQ (exact, RGB) distances between the q75 and q92 copies of each picture, both of quality ≥ 50."""
    from PIL import Image

    from shardguard.indexes.imagehashes import pdq

    out = []
    for a, b in zip(real[0::2], real[1::2]):
        (ha, qa), (hb, qb) = (pdq(Image.open(io.BytesIO(x)).convert("RGB")) for x in (a, b))
        if min(qa, qb) >= 50:
            out.append((int(ha, 16) ^ int(hb, 16)).bit_count())
    return out


if __name__ == "__main__":
    main()
