"""The hashes extractor: every registered hash type's column, computed for the configured ones.

Cryptographic hashes read the stored bytes (before decoding: a known-bad file that is not a valid
image is still caught by exact lists). Perceptual hashes read the row's one decoded image; pHash and
dHash leave a grayscale array that ``finish`` resizes and hashes a whole batch at a time
(``indexes/lanczos.py`` and one vectorised DCT; bit-identical to the per-image functions, tested).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from shardguard.indexes.hashtypes import HASH_TYPES
from shardguard.transforms.extractors import DecodeNeeds, FeatureExtractor

BATCHED = ("phash", "dhash")  # hashed for a whole batch at once by ``finish_hash_batch``


class HashExtractor(FeatureExtractor):
    """Hash columns for every type in ``HASH_TYPES`` (null where not computed)."""

    name = "hashes"
    always = True

    def __init__(self, names: tuple[str, ...] = (), exact: bool = True, for_views: str = "off"):
        self.names, self.exact = tuple(names), exact
        # the robust views mode: leave PDQ's DCTs and the mirrored pHash for the views extractor
        self.for_views = for_views if for_views != "off" else None

    @classmethod
    def example(cls, directory: str) -> "HashExtractor":  # noqa: D102
        return cls(tuple(HASH_TYPES), exact=False)

    def columns(self) -> list[pa.Field]:  # noqa: D102
        fields = []
        for ht in HASH_TYPES.values():
            fields.append(pa.field(ht.name, pa.string()))
            if ht.quality_column:
                fields.append(pa.field(ht.quality_column, pa.int32()))
        return fields

    def computed(self) -> set[str]:  # noqa: D102
        qual = {HASH_TYPES[n].quality_column for n in self.names if HASH_TYPES[n].quality_column}
        return set(self.names) | qual

    def fingerprint(self) -> dict:  # noqa: D102
        return {"hashes": list(self.names)}

    def decode_needs(self) -> DecodeNeeds | None:  # noqa: D102
        needs = [DecodeNeeds(HASH_TYPES[n].min_side, HASH_TYPES[n].color)
                 for n in self.names if HASH_TYPES[n].perceptual]
        if not needs:
            return None
        sides = [n.min_side for n in needs]
        return DecodeNeeds(None if None in sides else max(sides), any(n.color for n in needs))

    def from_bytes(self, rec: dict, data: bytes) -> None:  # noqa: D102
        view = _BytesOnly(data)
        for name in self.names:
            if not HASH_TYPES[name].perceptual:
                rec.update(HASH_TYPES[name].compute(view))

    def from_image(self, rec: dict, img, row: dict) -> None:  # noqa: D102
        for name in self.names:
            ht = HASH_TYPES[name]
            if not ht.perceptual:
                continue
            if name in BATCHED:
                if "_gray" not in rec:  # one grayscale array serves both pHash and dHash
                    rec["_gray"] = img.hash_gray_array
                    rec["_src"] = ((img.width, img.height), img.hash_block)
                rec.setdefault("_batched", []).append(name)
                if self.for_views and name == "phash":
                    rec["_batched"].append("phash_mirror")
            elif name == "pdq" and self.for_views:
                from shardguard.indexes.imagehashes import pdq_with_dct

                flips = 1 if self.for_views == "default" else 7  # default: the mirror only
                rec["pdq"], rec["pdq_quality"], rec["_pdq_dct"] = pdq_with_dct(img.pdq_input, flips,
                                                                               sampled=not img.exact)
            else:
                rec.update(ht.compute(img))

    def finish(self, recs: list[dict], final: bool) -> None:  # noqa: D102
        finish_hash_batch(recs)


def finish_hash_batch(records: list[dict]) -> None:
    """Hash the deferred pHash/dHash inputs of a batch of records in place: each grayscale image is
    resized (``indexes/lanczos.py``: compiled per image, so mixed shapes cost no more than uniform
    ones), then the whole batch is hashed with one vectorised DCT; bit-identical to the per-image
    functions (tested)."""
    from shardguard.indexes import imagehashes

    kernels = {"phash": ((32, 32), imagehashes.phash_batch), "dhash": ((9, 8), imagehashes.dhash_batch)}
    todo = [r for r in records if "_gray" in r]
    for name, ((w, h), kernel) in kernels.items():
        rows = [r for r in todo if name in r["_batched"]]
        if not rows:
            continue
        small = _resized(rows, w, h)
        for r, value in zip(rows, kernel(small)):
            r[name] = value
        if name == "phash":
            _mirror_phash(rows, small)
    for r in todo:
        del r["_gray"], r["_batched"], r["_src"]


def _resized(rows: list[dict], w: int, h: int) -> np.ndarray:
    """(N, h, w) uint8: every record's grayscale image resized as ``imagehashes.lanczos_resize``
    resizes it, in record order (images of one shape and reduction in one call: batched products
    where the compiled kernel is not built)."""
    from shardguard.indexes import imagehashes

    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        full, block = r["_src"]
        groups.setdefault((r["_gray"].shape, full if block > 1 else None, block), []).append(i)
    out = np.empty((len(rows), h, w), np.uint8)
    for (_, full, block), idx in groups.items():
        out[idx] = imagehashes.lanczos_resize_many([rows[i]["_gray"] for i in idx], w, h, full, block)
    return out


def _mirror_phash(recs: list[dict], small: np.ndarray) -> None:
    """The mirror view's pHash, for records that asked for it: the resized 32×32 array mirrored
    before the DCT (LANCZOS samples symmetrically, so this equals the mirrored image's pHash)."""
    want = [i for i, r in enumerate(recs) if "phash_mirror" in r["_batched"]]
    if want:
        from shardguard.indexes import imagehashes

        mirrored = np.ascontiguousarray(small[want][:, :, ::-1])
        for i, value in zip(want, imagehashes.phash_batch(mirrored)):
            recs[i]["_phash_mirror"] = value


class _BytesOnly:
    """The ImageLike view a cryptographic hash needs: bytes, no pixels."""

    exact = True

    def __init__(self, data: bytes):
        self.data = data
