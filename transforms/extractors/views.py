"""Query-side views: hashes of cheap views of each image, from its one decode, so that modified
copies of a listed image can match its list entry (``indexes/views.py``).

``default``: the mirror (pHash: the resized array mirrored before its DCT; PDQ: decimated again from
the same filtered pixels, ``indexes/views.py``) and, when the image has a uniform border (letter-box, padding, a frame), the image without it
(PDQ of the trimmed pixels). ``full`` adds the other six dihedral views (flips, 90°
rotations). Stored compactly in one ``views`` column (view, phash, pdq, pdq_quality per view; phash
only where it is free: the mirror), so a re-filter matches them without decoding. Views are matched
only against PDQ lists, with PDQ's quality floor: pHash alone collides on bordered and flat images
(measured: a 20% black border put a photo 4 bits from an unrelated one), PDQ at quality ≥ 50 does not.
"""
from __future__ import annotations

import pyarrow as pa

from shardguard.transforms.extractors import FeatureExtractor

VIEW_TYPE = pa.struct([("view", pa.string()), ("phash", pa.string()), ("pdq", pa.string()),
                       ("pdq_quality", pa.int32())])
MODES = ("off", "default", "full")
# The trimmed view is hashed from a box-reduced copy no smaller than this (a letter-boxed dataset,
# img2dataset's ``border`` resize, hashes it on most rows). Not less: reduced to 128 px, a 256-px
# photo's trimmed view moved 24 bits (bench_robust.py: letterbox recall 1.00 → 0.90)
TRIM_MIN_SIDE = 192


class ViewsExtractor(FeatureExtractor):
    """``views``: hashes of the mirror, the trimmed image and (``full``) the other dihedral views."""

    name = "views"

    def __init__(self, mode: str = "default"):
        self.mode = mode

    def columns(self) -> list[pa.Field]:  # noqa: D102
        return [pa.field("views", pa.list_(VIEW_TYPE))]

    def fingerprint(self) -> dict:  # noqa: D102
        return {"views": self.mode, "version": 2}

    def from_image(self, rec: dict, img, row: dict) -> None:  # noqa: D102
        from shardguard.indexes import views

        out = []
        dct = rec.pop("_pdq_dct", None)
        names = ("mirror",) if self.mode == "default" else views.DIHEDRAL
        for name in names:
            pdq = views.pdq_bits(views.dihedral(dct, name)) if dct is not None else None
            out.append([name, None, pdq, rec.get("pdq_quality") if pdq else None])
        trim = self._trimmed(img, rec.get("pdq") is not None)
        if trim is not None:
            out.append(trim)
        rec["_views"] = out

    @staticmethod
    def _trimmed(img, with_pdq: bool):
        """["trim", None, pdq, quality] of the image without its uniform border, or None. The border
        is found on the pixels PDQ reads (a reduced copy would place the edge a few pixels off)."""
        from shardguard.indexes import imagehashes, views

        if not with_pdq:
            return None
        border = views.uniform_border(img.gray_input)
        if border is None:
            return None
        crop = views.trimmed(img.pdq_pixels, border)
        if min(crop.size) < 16:
            return None
        factor = min(crop.size) // TRIM_MIN_SIDE
        return ["trim", None, *imagehashes.pdq(crop.reduce(factor) if factor > 1 else crop, sampled=not img.exact)]

    def finish(self, recs: list[dict], final: bool) -> None:  # noqa: D102
        for r in recs:
            views = r.pop("_views", None)
            mirror_phash = r.pop("_phash_mirror", None)
            if views is None:
                continue
            for v in views:
                if v[0] == "mirror":
                    v[1] = mirror_phash
            r["views"] = [dict(zip(("view", "phash", "pdq", "pdq_quality"), v)) for v in views]

    def arrays(self, recs: list[dict]) -> list[pa.Array]:  # noqa: D102
        return [pa.array([r.get("views") for r in recs], pa.list_(VIEW_TYPE))]


def view_hashes(table, column: str, quality_floor: int) -> list[list[tuple[str, str]]]:
    """Per row, (view, hash) of its views for ``column`` (phash or pdq), PDQ views at or above the
    quality floor only."""
    if "views" not in table.column_names:
        return [[] for _ in range(table.num_rows)]
    out = []
    for views in table.column("views").to_pylist():
        out.append([(v["view"], v[column]) for v in views or [] if v.get(column)
                    and (column != "pdq" or (v.get("pdq_quality") or 0) >= quality_floor)])
    return out
