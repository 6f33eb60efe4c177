"""Features stage: one shard at a time, read → decode once → extract → ``features/<shard>.parquet``.

Rows never leave the worker that read them: a shard is read, featurized in 64-row batches and
written as one features file in a single DoFn call, and only a small ``ShardRef`` (where the file
is, or why there is none) crosses to the verdict stage. So no row can go missing between stages,
and a worker's memory holds one batch of image bytes and one shard's features, whatever the size
of the dataset. The file's sidecar ``features/<shard>.json`` (written last) is the stage's "done"
marker: a rerun reuses the features when the input's sha256 and the features fingerprint match.

A re-filter's features stage adopts the parent's features file instead (copied, checked against
the sha256 the parent recorded): it never decodes an image or runs a model.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics

from shardguard.indexes import fileio
from shardguard.transforms.contracts import ColumnNames, FailureRecord, RunLayout, ShardInfo, ShardRef, ShardSpec
from shardguard.transforms.features import ERROR, FeatureRunner, MetadataRunner, features_table
from shardguard.transforms.formats import get_format, resolve_columns
from shardguard.transforms.records import write_table
from shardguard.transforms.threads import limit_blas

_LOG = logging.getLogger(__name__)
MARKER_FORMAT = "shardguard-features/1"
BATCH_ROWS = 64  # rows decoded and hashed together (the batched pHash/dHash kernels' unit)


@dataclass(frozen=True)
class FeatureSettings:
    """What the features stage needs from the plan (extractors are not set up yet)."""

    extractors: tuple
    max_pixels: int
    exact: bool
    columns: ColumnNames
    fingerprint: str
    force: bool = False
    metadata_only: bool = False  # a pre-filter: rows are URLs, no image is read
    blas_threads: int = 1  # per worker process (decode.blas_threads)


def read_marker(layout: RunLayout, shard: str, strict: bool = False) -> dict | None:
    """A shard's features marker, or None when absent or unreadable (``strict``: an unreadable one
    raises — a re-filter's parent marker, whose loss fails the shard)."""
    path = layout.features_marker(shard)
    try:
        return fileio.read_json(path) if fileio.exists(path) else None
    except (ValueError, OSError):
        if strict:
            raise
        return None


def _publish(layout: RunLayout, info: ShardInfo, table, fp: str) -> dict:
    path = layout.output("features", info.shard)
    file = dict(write_table(path, table), path=layout.rel(path))
    marker = {"format": MARKER_FORMAT, "shard": info.shard, "fingerprint": fp, "info": info.as_dict(), "file": file}
    fileio.write_atomic(layout.features_marker(info.shard), fileio.canonical_json(marker))
    return file


def compute_features(spec: ShardSpec, settings: FeatureSettings, runner: FeatureRunner) -> tuple[ShardInfo, list]:
    """(input info, every row's features record sorted by row) for one shard; raises when the shard
    cannot be read (the caller records that as the shard's failure)."""
    fmt = get_format(spec.format)
    info = fmt.read_info(spec, settings.columns)
    if settings.metadata_only and resolve_columns(settings.columns, info.columns).url not in info.columns:
        raise ValueError(f"metadata has no url column {settings.columns.url!r} (columns: {list(info.columns)[:12]})")
    recs, batch = [], []
    for row in fmt.iter_rows(info, settings.columns):
        batch.append(row)
        if len(batch) >= BATCH_ROWS:
            recs += runner.compute(batch, final=False)
            batch = []
    recs += runner.compute(batch, final=True)
    recs.sort(key=lambda r: r["row"])
    return info, recs


def _count(recs) -> None:
    ok = 0
    for r in recs:
        if r.get("status") == ERROR:
            Metrics.counter(r["error_stage"], f"failed_{r['error_class']}").inc()
        else:
            ok += 1
    Metrics.counter("features", "rows_ok").inc(ok)


def _reuse(spec: ShardSpec, layout: RunLayout, settings: FeatureSettings) -> ShardRef | None:
    """The shard's existing features, when its marker matches this input and fingerprint."""
    marker = read_marker(layout, spec.shard)
    if settings.force or not marker or marker.get("fingerprint") != settings.fingerprint:
        return None
    info = ShardInfo.from_dict(marker["info"])
    if info.path != spec.path or info.format != spec.format:
        return None
    sha, _ = get_format(spec.format).fingerprint(spec.path)
    if sha != info.sha256 or not fileio.exists(layout.abs(marker["file"]["path"])):
        return None
    Metrics.counter("shards", "features_reused").inc()
    return ShardRef(spec, info, marker["file"])


def ensure_features(spec: ShardSpec, layout: RunLayout, settings: FeatureSettings, runner) -> ShardRef:
    """The ShardRef of one shard: its features reused, computed and written, or its failure."""
    try:
        ref = _reuse(spec, layout, settings)
        if ref is not None:
            return ref
        info, recs = compute_features(spec, settings, runner)
    except Exception as exc:  # noqa: BLE001 - an unreadable shard is recorded, the run goes on
        _LOG.warning("shard %s cannot be read: %s: %s", spec.shard, type(exc).__name__, str(exc)[:200])
        return ShardRef(spec, None, None, FailureRecord.of("read", exc))
    if [r["row"] for r in recs] != list(range(info.num_rows)):
        return ShardRef(spec, info, None, FailureRecord(
            "accounting", "row_count_mismatch", f"expected rows 0..{info.num_rows}, got {len(recs)}"))
    _count(recs)
    table = features_table(recs, settings.extractors)
    return ShardRef(spec, info, _publish(layout, info, table, settings.fingerprint))


def adopt_parent(spec: ShardSpec, layout: RunLayout) -> ShardRef:
    """A re-filter's features: the parent's file, copied into this run and checked against the sha256
    the parent recorded (with its marker, read here by the worker rather than one by one at launch,
    so this run is self-contained)."""
    parent = spec.parent
    try:
        if parent.status != "ok":
            raise ValueError(f"parent shard failed: {(parent.failure or {}).get('message', '')}")
        src = parent.outputs["features"]
        dst = layout.output("features", spec.shard)
        marker = read_marker(RunLayout(parent.run_dir), spec.shard, strict=True) or {}
        old = ShardInfo.from_dict(marker["info"]) if marker.get("info") else None
        # the input may have moved (--relocate): the parent's sha256 still says which bytes it must be
        info = ShardInfo(shard=spec.shard, path=spec.path, format=spec.format, num_rows=src["rows"],
                         sha256=parent.input_sha256, size=parent.input_size,
                         compression=old.compression if old else None,
                         layout_sha256=old.layout_sha256 if old else None,
                         footer_size=old.footer_size if old else None, columns=old.columns if old else ())
        sha = fileio.copy_verified(fileio.join(parent.run_dir, src["path"]), dst, src["sha256"], link=True)
        seeds = parent.outputs.get("seeds") if parent.adopt_seeds else None
        if seeds:  # the parent's seed set is taken: its per-shard seeds files come along (seedset.py)
            fileio.copy_verified(fileio.join(parent.run_dir, seeds["path"]), layout.output("seeds", spec.shard),
                                 seeds["sha256"], link=True)
    except Exception as exc:  # noqa: BLE001 - recorded as a failed shard; the run goes on
        return ShardRef(spec, None, None, FailureRecord.of("refilter-read", exc))
    file = {"path": layout.rel(dst), "sha256": sha, "rows": src["rows"]}
    marker.update(format=MARKER_FORMAT, shard=spec.shard, info=info.as_dict(), file=file,
                  fingerprint=marker.get("fingerprint"))
    fileio.write_atomic(layout.features_marker(spec.shard), fileio.canonical_json(marker))
    return ShardRef(spec, info, file)


class FeaturesFn(beam.DoFn):
    """Wraps ``ensure_features`` (or ``adopt_parent`` in a re-filter): ShardSpec → ShardRef."""

    def __init__(self, layout: RunLayout, settings: FeatureSettings | None, shared):
        self._layout, self._settings, self._shared = layout, settings, shared
        self._runner = None

    def setup(self):
        """Load the extractors' heavy objects once per worker process."""
        if self._settings is not None:
            limit_blas(self._settings.blas_threads)
            for e in self._settings.extractors:
                e.setup(self._shared)
            s = self._settings
            runner = MetadataRunner if s.metadata_only else FeatureRunner
            self._runner = runner(s.extractors, s.max_pixels, s.exact)

    def process(self, spec: ShardSpec):
        """One shard: compute, reuse or adopt its features."""
        if spec.parent is not None:
            yield adopt_parent(spec, self._layout)
        else:
            yield ensure_features(spec, self._layout, self._settings, self._runner)


def _emit(_, specs):
    yield from specs


class ShardSpecs(beam.PTransform):
    """The run's shard specs as a PCollection, with stable step names (``beam.Create`` names an
    internal step after a lambda's line number, which breaks Dataflow job updates)."""

    def __init__(self, specs: list[ShardSpec]):
        super().__init__()
        self._specs = list(specs)

    def expand(self, pbegin):
        """Impulse, then one element per shard spec."""
        return pbegin | "Impulse" >> beam.Impulse() | "Emit" >> beam.FlatMap(_emit, self._specs)


def _by_shard(spec: ShardSpec):
    return spec.shard, spec


def _ungroup(kv):
    yield from kv[1]


class Spread(beam.PTransform):
    """ShardSpecs spread over workers: grouped by shard name (a fusion break, so each shard can run on
    another worker), then handed on one by one. ``beam.Reshuffle`` does the same with random keys and
    two more steps that keep timestamps and windows (a bounded run in the global window has none to
    keep); a steady key also splits the shards over a local runner's threads the same way every run."""

    def expand(self, specs):
        """Key by shard, group, ungroup."""
        return specs | "ByShard" >> beam.Map(_by_shard) | "Group" >> beam.GroupByKey() | "Ungroup" >> beam.FlatMap(_ungroup)


class FeaturesStage(beam.PTransform):
    """ShardSpecs → ShardRefs: shards spread over workers (only small specs are shuffled, never
    image bytes), then one ``FeaturesFn`` call per shard."""

    def __init__(self, layout: RunLayout, settings: FeatureSettings | None, shared):
        super().__init__()
        self._fn = FeaturesFn(layout, settings, shared)

    def expand(self, specs):
        """Spread the specs, then one features call per shard."""
        return specs | "Spread" >> Spread() | "ComputeFeatures" >> beam.ParDo(self._fn)
