"""Verdict stage: every rule over a shard's stored features, then decide and write.

Row rules (hash lists, concepts, clip score, integrity, URL lists) read the shard's features file;
dataset rules (expansion, dedup) have already seen every shard's features and hand this shard the
matches they found for its rows. The same code serves a scan, a re-filter (whose features are the
parent's) and a pre-filter, so a re-filter equals a fresh scan by construction.

A shard whose summary already records this input, these features, this config and these dataset
matches is not rewritten (a resumed run skips finished work, and gives the uninterrupted run's bytes).
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics

from shardguard.indexes import fileio
from shardguard.indexes.arrowio import read_table
from shardguard.transforms.contracts import (
    ColumnNames,
    DatasetMatches,
    FailureRecord,
    RunLayout,
    ShardRef,
    ShardVerdicts,
)
from shardguard.transforms.decide import KEEP, decide
from shardguard.transforms.formats import InputChanged
from shardguard.transforms.rules import DATASET, KEYED, PRESET, SIDE, SIDE_DEFAULT, column
from shardguard.transforms.write import (
    count_verdicts,
    seed_output,
    summary_base,
    write_clean,
    write_failed,
    write_records,
)

_LOG = logging.getLogger(__name__)
_ROW_FIELDS = ("row", "key", "url", "sha256", "status", "error_stage", "error_class", "error_message")


@dataclass(frozen=True)
class VerdictSettings:
    """What the verdict stage needs from the plan (rules are not set up yet)."""

    rules: tuple
    actions: dict
    on_error: str
    redact_urls: bool
    columns: ColumnNames
    config_fingerprint: str
    force: bool = False

    @property
    def dataset_rules(self) -> list:
        """The dataset-scope rules, in order (their names key the co-grouped matches)."""
        return [r for r in self.rules if r.scope == DATASET]


def dataset_fingerprint(found: list[DatasetMatches]) -> str:
    """sha256 of the dataset-rule matches a shard received (its verdicts depend on nothing else)."""
    h = hashlib.sha256()
    for dm in found:
        for row, m in sorted(dm.rows, key=lambda x: (x[0], x[1].sort_key())):
            h.update(repr((row, m.as_row())).encode())
    return h.hexdigest()


def already_done(layout: RunLayout, ref: ShardRef, settings: VerdictSettings, dfp: str) -> dict | None:
    """The shard's summary when it records exactly this input, features, config and dataset matches."""
    path = layout.summary(ref.shard)
    if settings.force or not fileio.exists(path):
        return None
    try:
        prev = fileio.read_json(path)
    except (ValueError, OSError):
        return None
    same = (prev.get("status") == "ok" and prev.get("config_fingerprint") == settings.config_fingerprint
            and prev.get("dataset_fingerprint") == dfp and prev["input"].get("sha256") == ref.info.sha256
            and prev["outputs"].get("features", {}).get("sha256") == ref.features["sha256"])
    return prev if same else None


def _rows(table) -> list[dict]:
    cols = {name: column(table, name) for name in _ROW_FIELDS}
    return [dict(zip(cols, vals)) for vals in zip(*cols.values())]


def judge(table, rules, dataset: list[DatasetMatches], settings: VerdictSettings) -> ShardVerdicts:
    """One shard's decisions from its features table: every row rule's matches plus the dataset
    rules' matches, decided for each row that matched something or was not fully checked (the
    others are kept with no reason: ``ShardVerdicts``)."""
    hits: dict[int, list] = {}
    for rule in rules:
        if rule.scope != DATASET:
            for i, found in enumerate(rule.match(table)):
                if found:  # most rows match nothing
                    hits.setdefault(i, []).extend(found)
    for dm in dataset:
        for row, m in dm.rows:
            hits.setdefault(row, []).append(m)
    unchecked = (i for i, s in enumerate(column(table, "status")) if s != "ok")
    positions = sorted(set(hits).union(unchecked))
    fields = _rows(table.take(positions)) if positions else []
    records = [decide(r, hits.get(i, []), settings.actions, settings.on_error) for i, r in zip(positions, fields)]
    return ShardVerdicts(table.num_rows, tuple(column(table, "row")), tuple(positions), tuple(fields), tuple(records))


def error_records(rows, verdicts) -> list[dict]:
    """Error records (key, stage, class, message, kept) for rows that could not be checked."""
    return [{"row": r["row"], "key": r["key"], "stage": r["error_stage"], "error_class": r["error_class"],
             "message": r["error_message"], "kept": v["verdict"] == KEEP}
            for r, v in zip(rows, verdicts) if r["status"] != "ok"]


def verdict_shard(ref: ShardRef, dataset: list[DatasetMatches], layout: RunLayout, settings: VerdictSettings,
                  rules, sides=()) -> dict:
    """Decide and write one shard; return its summary (see module doc). ``sides`` are (rule, value)
    of dataset rules that match each shard against one dataset-wide value (the seed set)."""
    base = summary_base(ref, settings.config_fingerprint)
    if ref.failure is not None:
        return write_failed(layout, base, ref.failure)
    table = read_table(layout.abs(ref.features["path"]))
    dataset = list(dataset) + [rule.shard_matches(table, ref, value) for rule, value in sides]
    failure = next((d.failure for d in dataset if d.failure is not None), None)
    if failure is not None:
        return write_failed(layout, base, failure)
    dfp = dataset_fingerprint(dataset)
    done = already_done(layout, ref, settings, dfp)
    if done is not None:
        Metrics.counter("shards", "skipped_done").inc()
        return done
    if table.num_rows != ref.info.num_rows:
        return write_failed(layout, base, FailureRecord("accounting", "row_count_mismatch",
                                                        f"features hold {table.num_rows} rows, input {ref.info.num_rows}"))
    sv = judge(table, rules, dataset, settings)
    out = write_records(layout, ref.shard, sv.records, error_records(sv.fields, sv.records), settings.redact_urls)
    out = {k: dict(path=layout.rel(layout.output(k, ref.shard)), **v) for k, v in out.items()}
    out["features"] = dict(ref.features)
    out.update(seed_output(layout, ref.shard))
    try:
        out.update(write_clean(ref, sv.kept_rows(), layout, settings.columns))
    except InputChanged as exc:
        return write_failed(layout, base, FailureRecord("write-clean", "InputChanged", str(exc)))
    stats = count_verdicts(sv.records, [r["status"] for r in sv.fields],
                           [f"{r['error_stage']}/{r['error_class']}" for r in sv.fields],
                           plain_kept=sv.num_rows - len(sv.records))
    summary = dict(base, status="ok", dataset_fingerprint=dfp, outputs=dict(sorted(out.items())), **stats)
    fileio.write_atomic(layout.summary(ref.shard), fileio.canonical_json(summary))
    return summary


class VerdictFn(beam.DoFn):
    """Wraps ``verdict_shard``: a ShardRef (or, with dataset rules, the shard's co-grouped ref and
    dataset matches) → the shard's summary; counts verdicts."""

    def __init__(self, layout: RunLayout, settings: VerdictSettings, shared, presets: dict | None = None):
        self._layout, self._settings, self._shared = layout, settings, shared
        self._presets = dict(presets or {})  # side name → loader of a side value settled before the run
        self._preset_values: dict = {}

    def __getstate__(self):
        return dict(self.__dict__, _preset_values={})

    def setup(self):
        """Load the row rules' matchers once per worker process; dataset rules keep the shared
        handles for what they build from their side values (hash expansion's seed index). Side
        values settled before the run are read here, once per process."""
        for r in self._settings.rules:
            r.setup(self._shared)
        self._preset_values = {k: self._shared.acquire(p.tag, p.load) for k, p in self._presets.items()}

    def process(self, element, **sides):
        """Decide and write one shard (its co-grouped dataset matches and side values included)."""
        if isinstance(element, ShardRef):
            ref, dataset = element, []
        else:
            _, grouped = element
            ref = grouped["ref"][0]
            dataset = [dm for name in sorted(grouped) if name != "ref" for dm in grouped[name]]
        rules = self._settings.dataset_rules
        with_side = [(rules[int(k[1:])], v) for k, v in sorted(dict(sides, **self._preset_values).items())]
        summary = verdict_shard(ref, dataset, self._layout, self._settings, self._settings.rules, with_side)
        self._count(summary)
        yield summary

    def _count(self, summary: dict) -> None:
        if summary["status"] == "ok":
            for k, v in summary["counts"].items():
                Metrics.counter("verdict", k).inc(v)
        else:
            Metrics.counter("shards", "failed").inc()
            _LOG.warning("shard %s FAILED at %s: %s", summary["shard"], summary["failure"]["stage"],
                         summary["failure"]["message"][:200])


@dataclass(frozen=True)
class DatasetContext:
    """What a dataset rule's wiring needs: where features are, the worker's shared handles, and the
    verdict settings (dedup asks the row rules which rows they remove)."""

    layout: RunLayout
    shared: object
    settings: object = None


def _key_by_shard(ref: ShardRef):
    return ref.shard, ref


class _RuleExpand(beam.PTransform):
    """One dataset rule's own wiring, under its own name."""

    def __init__(self, rule, ctx: DatasetContext):
        super().__init__()
        self._rule, self._ctx = rule, ctx

    def expand(self, refs):
        return self._rule.expand(refs, self._ctx)  # {"side": …} and/or {"keyed": …}


class VerdictStage(beam.PTransform):
    """ShardRefs → summaries. Without dataset rules each shard is decided and written as soon as its
    features exist (fused with the features stage: no barrier); with them, after every shard's
    features have been seen by the dataset rules (their side values, e.g. the seed set, reach every
    shard's verdict; keyed matches are joined to their shard)."""

    def __init__(self, layout: RunLayout, settings: VerdictSettings, shared):
        super().__init__()
        self._layout, self._settings, self._shared = layout, settings, shared

    def expand(self, refs):
        """Wire the dataset rules (if any), then decide and write each shard."""
        ctx = DatasetContext(self._layout, self._shared, self._settings)
        sides, keyed, presets = {}, {}, {}
        for i, rule in enumerate(self._settings.dataset_rules):
            out = refs | f"Dataset-{rule.kinds[0]}-{i}" >> _RuleExpand(rule, ctx)
            if PRESET in out:
                presets[f"r{i}"] = out[PRESET]
            if SIDE in out:
                extra = {"default_value": out[SIDE_DEFAULT]} if SIDE_DEFAULT in out else {}
                sides[f"r{i}"] = beam.pvalue.AsSingleton(out[SIDE], **extra)
            if KEYED in out:
                keyed[f"{i:02d}-{rule.kinds[0]}"] = out[KEYED]
        fn = VerdictFn(self._layout, self._settings, self._shared, presets)
        if not keyed:
            return refs | "DecideAndWrite" >> beam.ParDo(fn, **sides)
        parts = dict(keyed, ref=refs | "KeyByShard" >> beam.Map(_key_by_shard))
        return parts | "GroupByShard" >> beam.CoGroupByKey() | "DecideAndWrite" >> beam.ParDo(fn, **sides)
