"""Read stage: plan which shards need work, then stream each shard's rows.

``PlanShards`` skips a shard whose finished summary records the same input fingerprint (sha256 and
size, one streaming pass, taken only where such a summary exists) and config fingerprint
(``--force`` redoes it).
``ReadShardRows`` emits one element per input row, keyed by shard, plus a per-shard ``info`` output
(row count, columns, compression) and a ``failed`` dead-letter output for shards that cannot be read.
"""
from __future__ import annotations

import logging

import apache_beam as beam
from apache_beam.metrics import Metrics

from shardguard.indexes import fileio
from shardguard.transforms import parquet_shards, wds_shards
from shardguard.transforms.parquet_shards import ColumnNames

_LOG = logging.getLogger(__name__)
INFO, FAILED, DONE = "info", "failed", "done"
ROWS_PER_ELEMENT = 64  # rows (with image bytes) per element: one parquet read batch


def summary_path(output_dir: str, shard: str) -> str:
    """Where a shard's summary (its "done" marker) lives."""
    return fileio.join(output_dir, "shards", f"{shard}.json")


def input_fingerprint(spec: dict) -> tuple[str, int]:
    """(sha256, size) of a shard's input: the file, or for webdataset the tar and its metadata
    parquet together (sha256 over both digests), since both feed the outputs."""
    sha, size = fileio.sha256_file(spec["path"])
    if spec.get("format") == "webdataset":
        meta = wds_shards.metadata_path(spec["path"])
        if fileio.exists(meta):
            msha, msize = fileio.sha256_file(meta)
            import hashlib

            return hashlib.sha256(f"tar:{sha} metadata:{msha}".encode()).hexdigest(), size + msize
    return sha, size


def is_done(output_dir: str, shard: str, input_sha256: str, config_fp: str) -> bool:
    """True when the shard's summary records status ok for this input and config."""
    path = summary_path(output_dir, shard)
    if not fileio.exists(path):
        return False
    try:
        prev = fileio.read_json(path)
    except (ValueError, OSError):
        return False
    return (prev.get("status") == "ok" and prev.get("input", {}).get("sha256") == input_sha256
            and prev.get("config_fingerprint") == config_fp)


def plan_shard(spec: dict, output_dir: str, config_fp: str, force: bool) -> tuple[str, dict]:
    """(``"todo"`` or ``"done"``, spec, with the input fingerprint where it was needed) for one shard.

    In a re-filter the fingerprint is the sha256 the parent recorded (``parent_sha256``): the input
    is then read only if its clean rows change. In a scan it is needed here only to decide whether
    an earlier summary still holds; a shard with none (a first run, or ``--force``) is fingerprinted
    in the write stage instead, where a shard with every row kept gets it from its clean copy for
    free (one read of the input fewer).
    """
    if "parent_sha256" in spec:
        spec = dict(spec, sha256=spec["parent_sha256"], size=spec.get("parent_size"))
    elif force or not fileio.exists(summary_path(output_dir, spec["shard"])):
        return "todo", spec
    else:
        try:
            sha, size = input_fingerprint(spec)
        except Exception as exc:  # noqa: BLE001 - an unreadable shard is data, recorded as failed
            return "todo", dict(spec, open_error=f"{type(exc).__name__}: {exc}"[:500])
        spec = dict(spec, sha256=sha, size=size)
    if not force and is_done(output_dir, spec["shard"], spec["sha256"], config_fp):
        return "done", spec
    return "todo", spec


class PlanShardFn(beam.DoFn):
    """Wraps ``plan_shard``; shards already done go to the ``done`` output."""

    def __init__(self, output_dir: str, config_fp: str, force: bool):
        self._out, self._fp, self._force = output_dir, config_fp, force
        self._skipped = Metrics.counter("shards", "skipped_done")

    def process(self, spec):
        state, spec = plan_shard(spec, self._out, self._fp, self._force)
        if state == "done":
            self._skipped.inc()
            _LOG.info("shard %s already done with the same input and config; skipping", spec["shard"])
            yield beam.pvalue.TaggedOutput(DONE, spec["shard"])
        else:
            yield spec


class ReadShardRowsFn(beam.DoFn):
    """Wraps the shard readers: (shard, [rows]) elements, plus ``info`` and ``failed`` outputs."""

    def __init__(self, columns: ColumnNames):
        self._cols = columns
        self._rows = Metrics.counter("read", "rows")
        self._failed = Metrics.counter("read", "failed_shards")

    def process(self, spec):
        shard = spec["shard"]
        if "open_error" in spec:
            self._failed.inc()
            yield beam.pvalue.TaggedOutput(INFO, (shard, spec))
            yield beam.pvalue.TaggedOutput(FAILED, (shard, {"stage": "read", "error_class": "unreadable",
                                                            "message": spec["open_error"]}))
            return
        try:
            if spec.get("format") == "webdataset":
                meta, rows = wds_shards.read_shard(spec["path"], shard, self._cols)
                info = dict(spec, **meta)
            else:
                info = dict(spec, **parquet_shards.shard_metadata(spec["path"]))
                rows = parquet_shards.iter_rows(spec["path"], shard, self._cols)
            yield beam.pvalue.TaggedOutput(INFO, (shard, info))
            # batches of rows, not single rows: Beam's per-element cost is then paid once per batch
            batch: list[dict] = []
            for row in rows:
                batch.append(row)
                if len(batch) >= ROWS_PER_ELEMENT:
                    self._rows.inc(len(batch))
                    yield shard, batch
                    batch = []
            if batch:
                self._rows.inc(len(batch))
                yield shard, batch
        except Exception as exc:  # noqa: BLE001 - a corrupt shard is recorded, the run goes on
            self._failed.inc()
            _LOG.warning("shard %s cannot be read: %s: %s", shard, type(exc).__name__, str(exc)[:200])
            yield beam.pvalue.TaggedOutput(INFO, (shard, spec))
            yield beam.pvalue.TaggedOutput(FAILED, (shard, {
                "stage": "read", "error_class": type(exc).__name__, "message": str(exc)[:500]}))


class ReadShards(beam.PTransform):
    """Shard specs → {"rows", "info", "failed", "done"} PCollections."""

    def __init__(self, output_dir: str, config_fp: str, force: bool, columns: ColumnNames):
        super().__init__()
        self._out, self._fp, self._force, self._cols = output_dir, config_fp, force, columns

    def expand(self, specs):
        planned = specs | "Plan" >> beam.ParDo(
            PlanShardFn(self._out, self._fp, self._force)).with_outputs(DONE, main="todo")
        # Spread shards over workers before the heavy work (Create feeds one worker on Dataflow);
        # only small shard specs are shuffled, never image bytes.
        read = (planned.todo | "Spread" >> beam.Reshuffle()
                | "Rows" >> beam.ParDo(ReadShardRowsFn(self._cols)).with_outputs(INFO, FAILED, main="rows"))
        return {"rows": read.rows, "info": read[INFO], "failed": read[FAILED], "done": planned[DONE]}


def _emit(_, specs):
    yield from specs


class ShardSpecs(beam.PTransform):
    """The run's shard specs as a PCollection, with stable step names (``beam.Create`` names an
    internal step after a lambda's line number, which breaks Dataflow job updates)."""

    def __init__(self, specs: list[dict]):
        super().__init__()
        self._specs = list(specs)

    def expand(self, pbegin):
        return pbegin | "Impulse" >> beam.Impulse() | "Emit" >> beam.FlatMap(_emit, self._specs)
