"""Metadata-only pre-filtering: drop rows of LAION-style metadata (URL, TEXT, …; no images) whose URL
is on a URL list, a URL-hash list or a domain list, before anything is downloaded.

``shardguard prefilter --input 'meta/*.parquet' --output DIR [--url-list F] [--url-hash-list md5=F]
[--domain-list F] [--url-column URL]`` writes ``clean/<shard>.parquet`` with the input's schema (what
img2dataset consumes), removal records, per-shard summaries and a manifest, exactly as a scan does.
Rows without a usable URL are errored and not kept (they could not be checked).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import posixpath
import sys
import time

import apache_beam as beam
from apache_beam.utils.shared import Shared

from shardguard.indexes import fileio
from shardguard.indexes.hashtypes import get_hash_type
from shardguard.indexes.listformats import parse_list
from shardguard.pipelines import config as cfgmod
from shardguard.pipelines import manifest as mf
from shardguard.pipelines.options import configure_filesystems, pipeline_options
from shardguard.pipelines.runutil import OutputError, error_exit, prepare_output, run_beam
from shardguard.transforms import urls
from shardguard.transforms.features import base_record, error_record
from shardguard.transforms.parquet_shards import ColumnNames, derive_keys, open_parquet, shard_ids
from shardguard.transforms.read import DONE, PlanShardFn, ShardSpecs, summary_path
from shardguard.transforms.write import WriteShards


@dataclasses.dataclass(frozen=True)
class UrlListSpec:
    """One URL, URL-hash or domain list."""

    kind: str  # "url" | "urlhash" | "domain"
    path: str
    name: str
    hash_type: str | None = None
    action: str = "remove"


class LoadedUrlLists:
    """Parsed lists for one worker process (shared across its threads)."""

    def __init__(self, specs):
        self.lists = [(s, load_list(s)) for s in specs]


def load_list(spec: UrlListSpec) -> set[str]:
    """Parse and validate one list (errors name file:line)."""
    if spec.kind == "url":
        return urls.read_url_list(spec.path)
    if spec.kind == "domain":
        return urls.read_domain_list(spec.path)
    parsed = parse_list(spec.path, get_hash_type(spec.hash_type))
    return {bytes(parsed.codes[i:i + parsed.hash_type.nbytes]).hex()
            for i in range(0, len(parsed.codes), parsed.hash_type.nbytes)}


def match_url(url: str, lists) -> list[dict]:
    """Every list hit for one URL."""
    hits = []
    norm, host = urls.normalize_url(url), urls.host_of(url)
    for spec, entries in lists:
        if spec.kind == "url" and norm in entries:
            hits.append({"source": spec.name, "kind": "url", "type": "url", "entry": "normalised url",
                         "distance": 0.0})
        elif spec.kind == "domain" and host:
            d = urls.domain_matches(host, entries)
            if d:
                hits.append({"source": spec.name, "kind": "domain", "type": "domain", "entry": d,
                             "distance": 0.0})
        elif spec.kind == "urlhash" and urls.url_digests(url, spec.hash_type) & entries:
            hits.append({"source": spec.name, "kind": "urlhash", "type": spec.hash_type,
                         "entry": "url digest", "distance": 0.0})
    return hits


def shard_bundle(spec: dict, cols: ColumnNames, lists) -> dict:
    """The verdict-stage bundle for one metadata shard (what WriteShards consumes)."""
    with open_parquet(spec["path"]) as pf:
        names = pf.schema_arrow.names
        if cols.url not in names:
            raise ValueError(f"metadata has no url column {cols.url!r} (columns: {names[:12]})")
        table = pf.read(columns=[c for c in (cols.url, cols.key) if c in names])
        codec = pf.metadata.row_group(0).column(0).compression.lower() if pf.metadata.num_row_groups else "snappy"
    url_col = table.column(cols.url).to_pylist()
    raw_keys = table.column(cols.key).to_pylist() if cols.key in table.column_names else [None] * len(url_col)
    feats, matches = [], []
    for i, (url, (key, derived)) in enumerate(zip(url_col, derive_keys(raw_keys, spec["shard"]))):
        row = {"row": i, "key": key, "key_derived": derived, "url": url}
        if not isinstance(url, str) or urls.normalize_url(url) is None:
            feats.append(error_record(row, "input", "bad_url", f"not a usable URL: {str(url)[:80]!r}"))
            matches.append([])
            continue
        rec = base_record(row)
        rec["status"] = "ok"
        feats.append(rec)
        matches.append(match_url(url, lists))
    info = dict(spec, num_rows=len(url_col), compression=codec, format="parquet")
    return {"shard": spec["shard"], "info": info, "features": feats, "matches": matches, "failure": None}


class PrefilterShardFn(beam.DoFn):
    """Shard spec → bundle of verdict inputs (or a failed bundle)."""

    def __init__(self, specs, cols: ColumnNames):
        self._specs, self._cols = tuple(specs), cols
        self._shared = Shared()
        self._lists = None

    def setup(self):
        tag = "|".join(f"{s.kind}:{s.path}" for s in self._specs)
        self._lists = self._shared.acquire(lambda: LoadedUrlLists(self._specs), tag=tag)

    def process(self, spec):
        try:
            if "open_error" in spec:
                raise ValueError(spec["open_error"])
            yield shard_bundle(spec, self._cols, self._lists.lists)
        except Exception as exc:  # noqa: BLE001 - a bad shard is recorded, the run goes on
            yield {"shard": spec["shard"], "info": spec, "features": [], "matches": [],
                   "failure": {"stage": "read", "error_class": type(exc).__name__, "message": str(exc)[:500]}}


def _specs_from_args(a) -> list[UrlListSpec]:
    out = []
    stem = lambda p: posixpath.basename(p).split(".", 1)[0]  # noqa: E731
    out += [UrlListSpec("url", p, stem(p)) for p in a.url_list]
    out += [UrlListSpec("domain", p, stem(p)) for p in a.domain_list]
    for v in a.url_hash_list:
        t, _, p = v.partition("=")
        if t not in ("md5", "sha1", "sha256") or not p:
            raise cfgmod.ConfigError(f"--url-hash-list {v!r}: expected md5|sha1|sha256=PATH")
        out.append(UrlListSpec("urlhash", p, stem(p), hash_type=t))
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise cfgmod.ConfigError(f"two lists share a name in {names}; rename a file")
    return out


def run(argv=None) -> int:
    """Run a metadata pre-filter; exit codes as for scan."""
    from shardguard.pipelines.scan import _now, expand_inputs

    p = argparse.ArgumentParser(prog="shardguard prefilter", description=__doc__)
    p.add_argument("--input", action="append", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--url-list", action="append", default=[])
    p.add_argument("--url-hash-list", action="append", default=[], metavar="TYPE=PATH")
    p.add_argument("--domain-list", action="append", default=[])
    p.add_argument("--url-column", default="url")
    p.add_argument("--key-column", default="key")
    p.add_argument("--force", action="store_true")
    a, beam_args = p.parse_known_args(argv)
    started = _now()
    options = pipeline_options(beam_args)
    configure_filesystems(options)
    try:
        specs = _specs_from_args(a)
        if not specs:
            raise cfgmod.ConfigError("give at least one --url-list, --url-hash-list or --domain-list")
        sidecars = []
        for s in specs:  # parse everything once at launch: a bad entry stops the run before any work
            entries = load_list(s)
            sha, _ = fileio.sha256_file(s.path)
            sidecars.append({"name": s.name, "type": s.hash_type or s.kind, "kind": s.kind, "entries": len(entries),
                             "source": {"path": s.path, "sha256": sha}, "action": s.action, "max_distance": 0,
                             "fingerprint": hashlib.sha256(f"{s.kind}:{s.hash_type}:{sha}".encode()).hexdigest(),
                             "files": {}, "path": s.path})
        paths = expand_inputs(a.input)
        prepare_output(a.output)
    except (ValueError, OSError) as exc:  # config, list, model, pin or output errors
        return error_exit(exc)
    cols = ColumnNames(url=a.url_column, key=a.key_column)
    config = {"kind": "prefilter", "inputs": a.input, "output": a.output, "url_column": a.url_column,
              "lists": [dataclasses.asdict(s) for s in specs]}
    config_fp = hashlib.sha256(fileio.canonical_json(
        {"cols": dataclasses.asdict(cols), "lists": [s["fingerprint"] for s in sidecars]})).hexdigest()
    ids = shard_ids(paths)
    shard_specs = [{"shard": ids[x], "path": x, "format": "parquet"} for x in paths]
    settings = {"config_fingerprint": config_fp, "on_error": "drop", "columns": cols, "embed_dim": None,
                "actions": {f"{s.kind}:{s.name}": s.action for s in specs}}
    def build(pipe):
        planned = (pipe | "Shards" >> ShardSpecs(shard_specs)
                   | "Plan" >> beam.ParDo(PlanShardFn(a.output, config_fp, a.force)).with_outputs(DONE, main="todo"))
        (planned.todo | "Spread" >> beam.Reshuffle()
         | "MatchUrls" >> beam.ParDo(PrefilterShardFn(specs, cols))
         | "Write" >> WriteShards(a.output, settings, len(shard_specs), time.time()))

    try:
        run_beam(build, options)
    except OutputError as exc:
        return error_exit(exc)
    shards = [fileio.read_json(summary_path(a.output, s["shard"])) for s in shard_specs]
    manifest = mf.build_manifest(config=config, config_fp=config_fp, lists=sidecars, shards=shards,
                                 started=started, finished=_now(), kind="prefilter",
                                 extra={"features": {"hashes": [], "model": None, "fingerprint": None}})
    problems = mf.check_accounting(manifest)
    if problems:
        print("shardguard: error: accounting check failed:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    mf.write_manifest(a.output, manifest)
    print(mf.summary_text(manifest))
    return 1 if manifest["totals"]["counts"]["shards_failed"] else 0
