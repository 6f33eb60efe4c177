"""Features stage: decode each row once and hash it, right after reading (no shuffle of bytes)."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from shardguard.transforms.features import OK, compute_row_features, error_record

DEAD_LETTER = "dead_letter"


class ComputeFeaturesFn(beam.DoFn):
    """(shard, row) → (shard, features record); rows that fail go to ``dead_letter`` as records."""

    def __init__(self, hash_names: tuple[str, ...], max_pixels: int):
        self._hashes, self._max_pixels = tuple(hash_names), max_pixels
        self._ok = Metrics.counter("features", "rows_ok")

    def process(self, element):
        shard, row = element
        try:
            if "missing_image_column" in row:
                rec = error_record(row, "input", "missing_column",
                                   f"shard has no image column {row['missing_image_column']!r}")
            else:
                rec = compute_row_features(row, self._hashes, self._max_pixels)
        except Exception as exc:  # noqa: BLE001 - never lose a row to an unexpected library error
            rec = error_record(row, "features", type(exc).__name__, str(exc))
        if rec["status"] == OK:
            self._ok.inc()
            yield shard, rec
        else:
            Metrics.counter(rec["error_stage"], f"failed_{rec['error_class']}").inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, (shard, rec))


class ComputeFeatures(beam.PTransform):
    """(shard, row) PCollection → (shard, features record) for every row, failures included.

    Failures are routed through a dead-letter output (counted per class) and then rejoin the main
    output, because every row must reach the verdict stage to be accounted.
    """

    def __init__(self, hash_names: tuple[str, ...], max_pixels: int):
        super().__init__()
        self._hashes, self._max_pixels = hash_names, max_pixels

    def expand(self, rows):
        out = rows | "DecodeAndHash" >> beam.ParDo(
            ComputeFeaturesFn(self._hashes, self._max_pixels)).with_outputs(DEAD_LETTER, main="ok")
        return (out.ok, out[DEAD_LETTER]) | "AllRows" >> beam.Flatten()
