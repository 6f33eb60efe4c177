"""Re-filter read stage: stored features instead of pixels.

For each shard of a parent run: check the input still has the parent's sha256 (the clean shard is
copied from it), read ``features/<shard>.parquet`` (checked against the sha256 the parent recorded),
and emit the same ``info`` / per-row features / ``failed`` outputs the scan's features stage emits, so
the verdict stage that follows is literally the scan's.
"""
from __future__ import annotations

import io

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from shardguard.indexes import fileio
from shardguard.transforms.read import DONE, FAILED, INFO, PlanShardFn
from shardguard.transforms.features import embeddings_from_table


def read_feature_rows(path: str, expected_sha256: str | None) -> list[dict]:
    """Features records of one shard, as the scan produced them (embeddings back to float16)."""
    data = fileio.read_bytes(path)
    if expected_sha256 and __import__("hashlib").sha256(data).hexdigest() != expected_sha256:
        raise ValueError(f"{path}: features file does not match the sha256 in the parent manifest")
    table = pq.read_table(io.BytesIO(data))
    embedded = None
    if "embedding" in table.column_names:
        embedded = embeddings_from_table(table)
        table = table.drop_columns(["embedding"])
    rows = table.to_pylist()
    if embedded is not None:
        flat, valid = embedded
        for i, r in enumerate(rows):
            r["embedding"] = flat[i].copy() if valid[i] else None
    return rows


def parent_kept_rows(parent_dir: str, outputs: dict, num_rows: int) -> list[int]:
    """Rows the parent kept: all rows but those in its removed, review and (not kept) error records."""
    dropped: set[int] = set()
    for kind in ("removed", "review", "errors"):
        table = pq.read_table(io.BytesIO(fileio.read_bytes(fileio.join(parent_dir, outputs[kind]["path"]))))
        for r in table.to_pylist():
            if kind != "errors" or not r["kept"]:
                dropped.add(r["row"])
    return [i for i in range(num_rows) if i not in dropped]


class ReadFeaturesFn(beam.DoFn):
    """Parent shard spec → info (with what the writer needs to reuse the parent's clean shard),
    per-row features, failed."""

    def __init__(self):
        self._rows = Metrics.counter("refilter", "rows")

    def process(self, spec):
        shard = spec["shard"]
        try:
            if "open_error" in spec:
                raise ValueError(spec["open_error"])
            rows = read_feature_rows(spec["features_path"], spec.get("features_sha256"))
            outs = spec["parent_outputs"]
            files = {k: {"path": fileio.join(spec["parent_dir"], o["path"]), "sha256": o["sha256"], "rows": o["rows"]}
                     for k, o in outs.items() if k in ("clean", "clean_metadata")}
            info = dict(spec, num_rows=len(rows), verify_input=True, parent_features={
                "path": spec["features_path"], "sha256": spec["features_sha256"]}, parent_clean={
                "files": files, "kept_rows": parent_kept_rows(spec["parent_dir"], outs, len(rows))})
        except Exception as exc:  # noqa: BLE001 - recorded as a failed shard; the run goes on
            yield beam.pvalue.TaggedOutput(INFO, (shard, spec))
            yield beam.pvalue.TaggedOutput(FAILED, (shard, {"stage": "refilter-read",
                                                            "error_class": type(exc).__name__,
                                                            "message": str(exc)[:500]}))
            return
        yield beam.pvalue.TaggedOutput(INFO, (shard, info))
        self._rows.inc(len(rows))
        # one element per shard: the verdict stage accepts a list where the scan sends single rows
        yield shard, rows


class ReadStoredFeatures(beam.PTransform):
    """Parent shard specs → {"features", "info", "failed", "done"} (the scan's shapes)."""

    def __init__(self, output_dir: str, config_fp: str, force: bool):
        super().__init__()
        self._args = (output_dir, config_fp, force)

    def expand(self, specs):
        # plan_shard uses the parent's recorded input sha256 here: no input is read to plan
        planned = specs | "Plan" >> beam.ParDo(PlanShardFn(*self._args)).with_outputs(DONE, main="todo")
        read = (planned.todo | "Spread" >> beam.Reshuffle()
                | "Features" >> beam.ParDo(ReadFeaturesFn()).with_outputs(INFO, FAILED, main="rows"))
        return {"features": read.rows, "info": read[INFO], "failed": read[FAILED], "done": planned[DONE]}
