"""Finding modified copies: recall per transform family, false positives, and cost per row, for
today's rule (``--robust off``) side by side with the ``default`` and ``full`` robust modes.

Corpus: the distinct pictures among the photos of ``../shared/testdata`` (files that are variants of
one picture — the PDQ bridge modifications, the mode conversions, the resize tests — count as one;
python-threatexchange's random-noise mode-conversion images are not photos and are left out), at
most 512 px, JPEG q90. Three folds: in each, a different third of the pictures PDQ can hash
(quality ≥ 50) is "bad" — the lists hold their PDQ, pHash and md5, and the dataset holds each bad
original once (what a hash list confirms: the seeds) — so every picture is bad once and clean
twice. Every picture, bad and clean, also appears modified: mirrored, bordered (3 colours × 3
widths), letter-boxed, cropped (centre, corners), rotated 2-8° (black and white fill), overlaid
(caption banner top and bottom, corner logo), re-encoded, resized, colour-changed.

Printed (summed over the folds): recall per family on the bad pictures' copies (flagged = removed or
quarantined), false positives on the clean pictures' rows (those of today's as-stored rule, which
every mode keeps, apart from those the views and the expansion add), hits on the ~1,500 Holidays PDQ hashes of HMA's sample data
(unrelated photos: every row's as-stored hash and views matched against them must give 0), and µs per
row of the features stage in each mode (one thread, the same images).

Run: ``.venv/bin/python benchmarks/bench_robust.py``.
"""
from __future__ import annotations

import hashlib
import io
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, table  # noqa: E402
from corpus import photo_paths  # noqa: E402

MODES = ("off", "default", "full")
GROUPS = ("bridge-mods", "reg-test-input/dih", "misc-images/modes", "img2dataset/tests")  # variants of one picture
NOISE = ("hashing/resources/I16.png", "hashing/resources/LA.png", "hashing/resources/rgb.jpeg")  # random pixels
FOLDS = 3


def _pdq(img):
    from shardguard.indexes import imagehashes

    return imagehashes.pdq(img)


def pictures() -> list[tuple[str, object, int]]:
    """(name, RGB image ≤ 512 px, PDQ quality) of each distinct picture: files of one variants folder,
    or whose PDQ (as stored or without a uniform border) is within 40 bits, count once (the largest
    file stands for the picture): python-threatexchange's letterboxed sample is the bridge photo."""
    import numpy as np
    from PIL import Image

    from shardguard.indexes import views

    files = []
    for p in photo_paths():
        if any(str(p).endswith(n) for n in NOISE):
            continue
        img = Image.open(p).convert("RGB")
        if min(img.size) >= 96:
            img.thumbnail((512, 512))
            border = views.uniform_border(np.asarray(img.convert("L")))
            trim = _pdq(views.trimmed(img, border))[0] if border else None
            files.append((str(p), p.stem, img, *_pdq(img), trim))
    parent = list(range(len(files)))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    def near(a, b) -> bool:
        return any(x and y and (int(x, 16) ^ int(y, 16)).bit_count() <= 40 for x in (a[3], a[5]) for y in (b[3], b[5]))

    for i, fi in enumerate(files):
        for j in range(i):
            same_dir = any(g in fi[0] and g in files[j][0] for g in GROUPS)
            close = fi[4] >= 50 and files[j][4] >= 50 and near(fi, files[j])
            if same_dir or close:
                parent[find(i)] = find(j)
    groups: dict[int, tuple] = {}
    for i, f in enumerate(files):
        r = find(i)
        if r not in groups or f[2].size[0] * f[2].size[1] > groups[r][2].size[0] * groups[r][2].size[1]:
            groups[r] = f
    return sorted(((f[1], f[2], f[4]) for f in groups.values()), key=lambda x: hashlib.sha256(x[0].encode()).hexdigest())


def encode(img, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _banner(img, top: bool):
    from PIL import ImageDraw

    out = img.copy()
    h = max(12, img.height // 7)
    y = 0 if top else img.height - h
    d = ImageDraw.Draw(out)
    d.rectangle([0, y, img.width, y + h], fill=(20, 20, 20))
    d.text((8, y + h // 4), "LOOK AT THIS amazing photo!!", fill=(255, 255, 255))
    return out


def _logo(img):
    from PIL import ImageDraw

    out, s = img.copy(), max(16, min(img.size) // 6)
    d = ImageDraw.Draw(out)
    d.ellipse([img.width - s - 6, img.height - s - 6, img.width - 6, img.height - 6], fill=(230, 30, 30))
    return out


def transforms(img) -> dict[str, dict[str, object]]:
    """family → {variant: modified image}."""
    from PIL import Image, ImageEnhance, ImageOps

    w, h = img.size
    fam: dict[str, dict] = {"flip": {"mirror": ImageOps.mirror(img)}}
    fam["border"] = {f"{c}{p}": ImageOps.expand(img, border=(int(w * p / 100), int(h * p / 100)), fill=col)
                     for c, col in (("black", (0, 0, 0)), ("white", (255, 255, 255)), ("gray", (128, 128, 128)))
                     for p in (5, 10, 20)}
    fam["letterbox"] = {}
    for name, ratio in (("16:9", 16 / 9), ("4:3", 4 / 3)):
        tw = max(w, int(h * ratio))
        canvas = Image.new("RGB", (tw, max(h, int(tw / ratio))))
        canvas.paste(img, ((canvas.width - w) // 2, (canvas.height - h) // 2))
        fam["letterbox"][name] = canvas
    fam["crop"] = {f"centre{f}": img.crop((int(w * (100 - f) / 200), int(h * (100 - f) / 200),
                                           w - int(w * (100 - f) / 200), h - int(h * (100 - f) / 200))) for f in (90, 80)}
    fam["crop"].update({"topleft90": img.crop((0, 0, int(w * .9), int(h * .9))),
                        "bottomright90": img.crop((int(w * .1), int(h * .1), w, h))})
    fam["rotate"] = {f"{a}{n}": img.rotate(a, resample=Image.Resampling.BILINEAR, fillcolor=c)
                     for a in (2, 5, 8) for n, c in (("k", (0, 0, 0)), ("w", (255, 255, 255)))}
    fam["overlay"] = {"banner-top": _banner(img, True), "banner-bottom": _banner(img, False), "logo": _logo(img)}
    fam["reencode"] = {"q50": ("jpeg", 50), "q30": ("jpeg", 30)}
    fam["resize"] = {"half": img.resize((w // 2, h // 2)), "double": img.resize((w * 2, h * 2))}
    fam["colour"] = {"gray": ImageOps.grayscale(img).convert("RGB"), "bright": ImageEnhance.Brightness(img).enhance(1.3),
                     "contrast": ImageEnhance.Contrast(img).enhance(1.3), "desat": ImageEnhance.Color(img).enhance(0.5)}
    return fam


def build(d: Path, pics: list, fold: int) -> dict:
    """One fold's shard and lists; returns key → (picture, bad?, family, variant)."""
    from shardguard.indexes import imagehashes
    from shardguard.pipelines.sample_data import shard_rows, write_shard

    usable = [n for n, _, q in pics if q >= 50]  # a bad picture must be one a PDQ list can hold
    bad_names = set(usable[fold::FOLDS])
    truth, items, pdq, ph, md5 = {}, [], [], [], []
    for name, img, _ in pics:
        bad = name in bad_names
        original = encode(img)
        if bad:
            pdq.append(imagehashes.pdq(img)[0])
            ph.append(imagehashes.phash(img.convert("L")))
            md5.append(hashlib.md5(original).hexdigest())
            items.append((f"{name}/original", original, "success"))
            truth[len(items) - 1] = (name, bad, "original", "")
        for fam, variants in transforms(img).items():
            for var, v in variants.items():
                data = encode(img, v[1]) if isinstance(v, tuple) else encode(v)
                items.append((f"{name}/{fam}/{var}", data, "success"))
                truth[len(items) - 1] = (name, bad, fam, var)
    rows = shard_rows(items, "r")
    write_shard(str(d / "in" / "00000.parquet"), rows)
    (d / "pdq.txt").write_text("\n".join(pdq) + "\n")
    (d / "phash.txt").write_text("\n".join(ph) + "\n")
    (d / "md5.txt").write_text("\n".join(md5) + "\n")
    return {rows[i]["key"]: t for i, t in truth.items()}


def flagged(out: Path) -> set[str]:
    import pyarrow.parquet as pq

    return {k for kind in ("removed", "review") for p in (out / kind).glob("*.parquet")
            for k in pq.read_table(p, columns=["key"]).column(0).to_pylist()}


def scan(d: Path, out: Path, mode: str, lists: list[str]) -> set[str]:
    from shardguard.pipelines.scan import run

    args = ["--input", str(d / "in" / "*.parquet"), "--output", str(out), "--quiet", "--robust", mode]
    for spec in lists:
        args += ["--hash-list", spec]
    import contextlib

    with contextlib.redirect_stdout(io.StringIO()):  # the run's summary: not this table's business
        rc = run(args)
    assert rc in (0, 1)  # 1: a health check (a list flagging every row cannot happen here)
    return flagged(out)


def costs(shard: Path, limit: int = 1000) -> dict[str, float]:
    """µs per row of the features stage (decode once, default hashes, and the mode's views) for each
    mode, on the first ``limit`` rows of one shard: the modes interleaved, best of 3 rounds."""
    import pyarrow.parquet as pq

    from shardguard.pipelines.config import DEFAULT_HASHES
    from shardguard.transforms.extractors import ordered
    from shardguard.transforms.extractors.hashes import HashExtractor
    from shardguard.transforms.extractors.views import ViewsExtractor
    from shardguard.transforms.features import FeatureRunner

    runners = {m: FeatureRunner(ordered([HashExtractor(DEFAULT_HASHES, False, for_views=m)]
                                        + ([ViewsExtractor(m)] if m != "off" else [])), 10**9, False) for m in MODES}
    rows = pq.read_table(shard, columns=["key", "jpg"]).slice(0, limit).to_pylist()
    rows = [dict(r, row=i, key_derived=False, image=r["jpg"]) for i, r in enumerate(rows)]
    best = dict.fromkeys(MODES, 1e9)
    for _ in range(3):
        for m in MODES:
            t = time.perf_counter()
            for a in range(0, len(rows), 64):
                runners[m].compute(rows[a:a + 64])
            best[m] = min(best[m], (time.perf_counter() - t) / len(rows) * 1e6)
    return best


def corpora(d: Path) -> dict[str, Path]:
    """Shards to time the modes on: this benchmark's rows, and img2dataset-style real-photo shards
    (``corpus.py``) resized with ``border`` (every non-square photo letter-boxed: the trimmed view
    is hashed on most rows, the costliest case) and ``keep_ratio`` (no borders)."""
    from corpus import build as build_corpus

    out = {"this benchmark's rows": d / "in" / "00000.parquet"}
    for mode in ("border", "keep_ratio"):
        out[f"img2dataset {mode} 256 px"] = build_corpus(mode, 256, 1, 1000) / "00000.parquet"
    return out


def holidays(d: Path) -> tuple[Path, int]:
    """The Holidays PDQ hashes (unrelated photos), minus entries of pictures that are also in this
    corpus (the PDQ bridge photo is a Holidays photo: within 40 bits of any of its dihedral views)."""
    from PIL import Image

    src = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "ThreatExchange" / "hasher-matcher-actioner" / "sample_data"
    hashes = [line.split(",")[0] for f in ("holidays-jpg1-pdq-hashes.csv", "holidays-jpg2-pdq-hashes.csv")
              for line in (src / f).read_text().splitlines() if line.strip()]
    ours = [_pdq(img.transpose(t) if t is not None else img)[0] for _, img, _ in pictures()
            for t in (None, *Image.Transpose)]
    keep = [h for h in hashes if min((int(h, 16) ^ int(o, 16)).bit_count() for o in ours) > 40]
    (d / "holidays.txt").write_text("\n".join(keep) + "\n")
    return d / "holidays.txt", len(hashes) - len(keep)


def main() -> None:
    import logging

    logging.getLogger("shardguard").setLevel(logging.WARNING)
    pics = pictures()
    truth, flags, neg = {}, {m: set() for m in MODES}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for fold in range(FOLDS):
            d = Path(tmp) / f"fold{fold}"
            t = build(d, pics, fold)
            lists = [f"pdq={d / 'pdq.txt'}", f"phash={d / 'phash.txt'}", f"md5={d / 'md5.txt'}"]
            for m in MODES:
                flags[m] |= {(fold, k) for k in scan(d, d / f"out-{m}", m, lists)}
            truth.update({(fold, k): v for k, v in t.items()})
        d = Path(tmp) / "fold0"
        hol, dropped = holidays(d)
        neg = {m: len(scan(d, d / f"hol-{m}", m, [f"pdq={hol}"])) for m in MODES}
        cost = {name: costs(path) for name, path in corpora(d).items()}
    print(report(truth, flags, neg, dropped, cost))


def report(truth: dict, flags: dict, neg: dict, dropped: int, costs: dict) -> str:
    """The table: recall per family, false positives, Holidays hits, cost."""
    families = sorted({t[2] for t in truth.values() if t[2] != "original"})
    rows = []
    for fam in families + ["all modified"]:
        keys = [k for k, t in truth.items() if t[1] and (t[2] == fam or (fam == "all modified" and t[2] != "original"))]
        rows.append((fam, len(keys), *[f"{sum(k in flags[m] for k in keys) / len(keys):.2f}" for m in MODES]))
    clean = [k for k, t in truth.items() if not t[1]]
    today = {k for k in clean if k in flags["off"]}
    rows.append(("false positives: today's as-stored rule", len(clean), *[str(len(today & flags[m])) for m in MODES]))
    rows.append(("false positives: added by views/expansion", len(clean),
                 *[str(sum(k in flags[m] and k not in today for k in clean)) for m in MODES]))
    n_rows = sum(1 for k in truth if k[0] == 0)
    rows.append((f"hits on Holidays PDQ (unrelated; {dropped} of ours dropped)", n_rows, *[str(neg[m]) for m in MODES]))
    for name, c in costs.items():
        rows.append((f"features µs/row: {name}", n_rows if "this" in name else 1000, *[f"{c[m]:.0f}" for m in MODES]))
        rows.append(("  ratio to --robust off", "", *[f"{c[m] / c['off']:.2f}" for m in MODES]))
    names = sorted({t[0] for t in truth.values()})
    head = f"# modified copies: {len(names)} pictures, {FOLDS} folds (each picture bad in one); {machine()}"
    missed = sorted({f"{t[0]}/{t[2]}/{t[3]}" for k, t in truth.items() if t[1] and t[2] != "original"
                     and k not in flags["default"]})
    return "\n".join([head, table(rows, ("family", "rows", *[f"--robust {m}" for m in MODES])),
                      "missed by default: " + json.dumps(missed)])


if __name__ == "__main__":
    main()
