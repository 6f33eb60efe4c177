"""Per-row features: decode each row once and let every extractor read what it needs.

``FeatureRunner.compute`` turns a batch of input rows into one features record per row, in order,
never carrying image bytes onward. A row that cannot be processed becomes an error record with stage,
class and message; it is never dropped. The features file's schema is the base columns below plus
every registered extractor's columns (``features_schema``), in registry order.
"""
from __future__ import annotations

import pyarrow as pa

from shardguard.transforms.decode import DecodeError, decode_image
from shardguard.transforms.extractors import ordered

BASE_FIELDS = [
    pa.field("row", pa.int64()), pa.field("key", pa.string()), pa.field("key_derived", pa.bool_()),
    pa.field("url", pa.string()), pa.field("status", pa.string()), pa.field("input_status", pa.string()),
    pa.field("error_stage", pa.string()), pa.field("error_class", pa.string()), pa.field("error_message", pa.string()),
]
OK, ERROR = "ok", "error"
DEFAULT_MIN_SIDE = 64  # a decode that only validates the image (no pixel consumer) drafts this small


def features_schema(extractors) -> pa.Schema:
    """Base columns plus every active (or always-present) extractor's columns, in registry order."""
    return pa.schema(BASE_FIELDS + [f for e in ordered(extractors) for f in e.columns()])


def features_table(recs: list[dict], extractors) -> pa.Table:
    """Features records (sorted by row) to the features table."""
    arrays, fields = [], []
    for f in BASE_FIELDS:
        arrays.append(pa.array([r.get(f.name) for r in recs], type=f.type))
        fields.append(f)
    for e in ordered(extractors):
        custom = e.arrays(recs)
        cols = e.columns()
        arrays += custom if custom is not None else [pa.array([r.get(f.name) for r in recs], type=f.type)
                                                     for f in cols]
        fields += cols
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def decode_plan(extractors, exact: bool) -> tuple[int | None, bool]:
    """(JPEG draft side or None for a full decode, luma only) for the row's one decode: no draft in
    exact mode or when an extractor needs the full image (PDQ moves by up to 20 bits on 256-px drafts,
    measured); else the largest side anyone needs; luma only when nobody needs colour."""
    needs = [n for n in (e.decode_needs() for e in extractors) if n is not None]
    color = any(n.color for n in needs)
    if exact or any(n.min_side is None for n in needs):
        return None, not color
    return max([DEFAULT_MIN_SIDE] + [n.min_side for n in needs]), not color


class FeatureRunner:
    """Computes features records for batches of rows with a fixed set of extractors."""

    def __init__(self, extractors, max_pixels: int, exact: bool):
        self.extractors = list(extractors)
        self.max_pixels, self.exact = max_pixels, exact
        self.draft, self.luma = decode_plan(self.extractors, exact)

    def base_record(self, row: dict) -> dict:
        """The identity part of a features record (every other field absent = null)."""
        rec = {"row": row["row"], "key": row["key"], "key_derived": row["key_derived"], "url": row.get("url"),
               "input_status": row.get("status")}
        for e in self.extractors:
            e.from_row(rec, row)
        return rec

    def error_record(self, row: dict, stage: str, error_class: str, message: str) -> dict:
        """A features record for a row that could not be processed."""
        rec = self.base_record(row)
        rec.update(status=ERROR, error_stage=stage, error_class=error_class, error_message=message[:500])
        return rec

    def one(self, row: dict) -> dict:
        """The record of one row (batch work left for ``finish``); never raises for bad data."""
        try:
            return self._one(row)
        except Exception as exc:  # noqa: BLE001 - never lose a row to an unexpected library error
            return self.error_record(row, "features", type(exc).__name__, str(exc))

    def _one(self, row: dict) -> dict:
        if "missing_image_column" in row:
            return self.error_record(row, "input", "missing_column",
                                     f"shard has no image column {row['missing_image_column']}")
        if row.get("member_error"):
            return self.error_record(row, "input", *row["member_error"])
        status = row.get("status")
        if status is not None and status != "success":
            return self.error_record(row, "input", f"status_{status}", f"input status is {status!r}")
        data = row.get("image")
        if data is None:
            return self.error_record(row, "input", "null_image", "image column is null")
        rec = self.base_record(row)
        for e in self.extractors:
            e.from_bytes(rec, data)
        try:
            img = decode_image(data, self.max_pixels, exact=self.exact, draft_size=self.draft, luma=self.luma)
        except DecodeError as exc:
            rec.update(status=ERROR, error_stage="decode", error_class=exc.error_class, error_message=str(exc)[:500])
            return rec
        for e in self.extractors:
            e.from_image(rec, img, row)
        rec["status"] = OK
        return rec

    def finish(self, recs: list[dict], final: bool = True) -> None:
        """Batch work of every extractor, in place (``final``: no more rows follow in this shard)."""
        live = [r for r in recs if r.get("status") == OK]
        for e in self.extractors:
            e.finish(live, final)

    def compute(self, rows: list[dict], final: bool = True) -> list[dict]:
        """Records of a batch of rows, in order."""
        recs = [self.one(row) for row in rows]
        self.finish(recs, final)
        return recs


class MetadataRunner(FeatureRunner):
    """Records of metadata rows (a pre-filter): no image is read; a row whose URL is not an absolute
    http(s)/ftp URL is errored (``input/bad_url``: it could not be checked)."""

    def _one(self, row: dict) -> dict:
        from shardguard.transforms.urls import normalize_url

        url = row.get("url")
        if not isinstance(url, str) or normalize_url(url) is None:
            return self.error_record(row, "input", "bad_url", f"not a usable URL: {str(url)[:80]!r}")
        rec = self.base_record(row)
        rec["status"] = OK
        return rec


def hash_runner(hash_names, max_pixels: int, exact: bool = True, clip_size: int | None = None,
                views: str = "off") -> FeatureRunner:
    """A runner with the hashes extractor (and CLIP pixels, without a model, when ``clip_size``;
    the robust views of ``views`` mode unless off)."""
    from shardguard.transforms.extractors.basic import ImageInfo, IntegrityRef
    from shardguard.transforms.extractors.clip import ClipExtractor
    from shardguard.transforms.extractors.hashes import HashExtractor
    from shardguard.transforms.extractors.views import ViewsExtractor

    ex = [HashExtractor(tuple(hash_names), exact, for_views=views), ImageInfo(), IntegrityRef()]
    if views != "off":
        ex.append(ViewsExtractor(views))
    if clip_size:
        ex.append(ClipExtractor(size=clip_size))
    return FeatureRunner(ex, max_pixels, exact)


def compute_row_features(row: dict, hash_names, max_pixels: int, clip_size: int | None = None,
                         exact: bool = True, defer: bool = False, views: str = "off"):
    """(features record, CLIP pixels or None) of one row with the hashes extractor: the scan's own
    code for one image (``lookup``, tests, benchmarks). ``defer`` leaves pHash/dHash for
    ``finish_batch``; ``clip_size`` asks for the uint8 pixels the embedding stage would read."""
    runner = hash_runner(hash_names, max_pixels, exact, clip_size, views)
    rec = runner.one(row)
    if not defer:
        runner.finish([rec])
    rec.pop("_caption", None)
    return rec, rec.pop("_clip", None)


def finish_batch(records: list[dict]) -> None:
    """Hash deferred pHash/dHash inputs of ``compute_row_features(..., defer=True)`` records."""
    from shardguard.transforms.extractors.hashes import finish_hash_batch

    finish_hash_batch(records)
