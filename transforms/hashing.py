"""Features stage: decode each row once and hash it, right after reading (no shuffle of bytes)."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from shardguard.transforms.features import (OK, compute_row_features, error_record, finish_batch,
                                             pack_records)

DEAD_LETTER = "dead_letter"
TO_EMBED = "to_embed"


def attach_embedding(element) -> tuple:
    """((shard, record), PredictionResult) → (shard, record with embedding and clip_score)."""
    (shard, rec), result = element
    out = dict(rec)
    out.update(result.inference)
    return shard, out


class ComputeFeaturesFn(beam.DoFn):
    """(shard, rows) → (shard, packed features records: ``pack_records``); failures go to
    ``dead_letter``, packed the same way;
    with a CLIP model, decoded rows go one by one to ``to_embed`` (RunInference batches them)."""

    def __init__(self, hash_names: tuple[str, ...], max_pixels: int, clip_size: int | None = None,
                 exact: bool = True):
        self._hashes, self._max_pixels, self._clip_size = tuple(hash_names), max_pixels, clip_size
        self._exact = exact
        self._ok = Metrics.counter("features", "rows_ok")

    def _one(self, row: dict):
        pixels = None
        try:
            if "missing_image_column" in row:
                rec = error_record(row, "input", "missing_column",
                                   f"shard has no image column {row['missing_image_column']!r}")
            else:
                rec, pixels = compute_row_features(row, self._hashes, self._max_pixels, self._clip_size,
                                                   self._exact, defer=True)
        except Exception as exc:  # noqa: BLE001 - never lose a row to an unexpected library error
            rec = error_record(row, "features", type(exc).__name__, str(exc))
        return rec, pixels

    def process(self, element):
        shard, rows = element
        ok, failed = [], []
        done = [(row, *self._one(row)) for row in (rows if isinstance(rows, list) else [rows])]
        finish_batch([rec for _, rec, _ in done])
        for row, rec, pixels in done:
            if rec["status"] != OK:
                Metrics.counter(rec["error_stage"], f"failed_{rec['error_class']}").inc()
                failed.append(rec)
            elif pixels is not None:
                # the record rides as the RunInference key; pixels and caption are the example
                yield beam.pvalue.TaggedOutput(TO_EMBED, ((shard, rec), (pixels, row.get("caption"))))
            else:
                ok.append(rec)
        self._ok.inc(len(ok))
        if ok:
            yield shard, pack_records(ok)
        if failed:
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, (shard, pack_records(failed)))


class ComputeFeatures(beam.PTransform):
    """(shard, rows) PCollection → (shard, features) covering every row, failures included; a
    features item is a packed batch or (with CLIP) one record: ``features.unpack_records`` reads both.

    Failures are routed through a dead-letter output (counted per class) and then rejoin the main
    output, because every row must reach the verdict stage to be accounted.
    """

    def __init__(self, hash_names: tuple[str, ...], max_pixels: int, clip_handler=None,
                 clip_size: int | None = None, exact: bool = True):
        super().__init__()
        self._hashes, self._max_pixels, self._exact = hash_names, max_pixels, exact
        self._handler, self._clip_size = clip_handler, clip_size

    def expand(self, rows):
        fn = ComputeFeaturesFn(self._hashes, self._max_pixels, self._clip_size if self._handler else None,
                               self._exact)
        out = rows | "DecodeAndHash" >> beam.ParDo(fn).with_outputs(DEAD_LETTER, TO_EMBED, main="ok")
        parts = [out.ok, out[DEAD_LETTER]]
        if self._handler is not None:
            from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

            parts.append(out[TO_EMBED] | "Embed" >> RunInference(KeyedModelHandler(self._handler))
                         | "AttachEmbedding" >> beam.Map(attach_embedding))
        return parts | "AllRows" >> beam.Flatten()
