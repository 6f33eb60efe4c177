"""``shardguard prefilter``: drop rows of LAION-style metadata (URL, TEXT, …; no images) whose URL is on
a URL list, a URL-hash list or a domain list, before anything is downloaded.

``shardguard prefilter --input 'meta/*.parquet' --output DIR [--url-list F] [--url-hash-list md5=F]
[--domain-list F] [--url-column URL]`` is the scan's pipeline with a metadata-only features stage
(no image is read: a row's URL is checked to be usable) and URL rules in the same verdict stage, so
it writes ``clean/<shard>.parquet`` with the input's schema (what img2dataset consumes), removal
records, per-shard summaries and a manifest exactly as a scan does. Rows without a usable URL are
errored and not kept (they could not be checked).
"""
from __future__ import annotations

import posixpath

from shardguard.indexes import fileio
from shardguard.pipelines import configload
from shardguard.pipelines.config import ConfigError, ScanConfig
from shardguard.pipelines.inputs import expand_inputs
from shardguard.pipelines.launch import Launch, claim_and_install, execute, now, staging_dir
from shardguard.pipelines.options import (
    StrictParser,
    UsageError,
    configure_filesystems,
    is_dry_run,
    pipeline_options,
    split_args,
)
from shardguard.pipelines.plan import prepare
from shardguard.pipelines.runutil import error_exit
from shardguard.transforms.contracts import RunLayout
from shardguard.transforms.rules.urls import UrlListSpec, load_url_list

DESCRIPTION = """Filter LAION-style metadata (no images) by URL, URL-hash and domain lists before
anything is downloaded; writes clean metadata with the input's schema, records and a manifest.
Beam pipeline options are accepted beside these flags; exit codes as for scan."""


def parser() -> StrictParser:
    """prefilter's own flags."""
    p = StrictParser(prog="shardguard prefilter", description=DESCRIPTION)
    p.add_argument("--input", action="append", required=True, help="metadata parquet path or glob (repeatable)")
    p.add_argument("--output", required=True, help="output run directory")
    p.add_argument("--url-list", action="append", default=[], help="URLs, one per line (repeatable)")
    p.add_argument("--url-hash-list", action="append", default=[], metavar="TYPE=PATH",
                   help="md5/sha1/sha256 digests of URLs (repeatable)")
    p.add_argument("--domain-list", action="append", default=[], help="domains, one per line (repeatable)")
    p.add_argument("--url-column", default="url", help="URL column (default url; matched case-insensitively "
                                                       "when there is exactly one such column)")
    p.add_argument("--key-column", default="key", help="key column (default key)")
    p.add_argument("--force", action="store_true", help="redo every shard; accept an output with another config")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def _stem(path: str) -> str:
    return posixpath.basename(path).split(".", 1)[0]


def url_specs(a) -> list[UrlListSpec]:
    """The URL lists, each parsed once at launch (a bad entry stops the run naming file:line)."""
    out = [UrlListSpec("url", p, _stem(p)) for p in a.url_list]
    out += [UrlListSpec("domain", p, _stem(p)) for p in a.domain_list]
    for v in a.url_hash_list:
        t, _, p = v.partition("=")
        if t not in ("md5", "sha1", "sha256") or not p:
            raise ConfigError(f"--url-hash-list {v!r}: expected md5|sha1|sha256=PATH")
        out.append(UrlListSpec("urlhash", p, _stem(p), hash_type=t))
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"two lists share a name in {names}; rename a file")
    if not out:
        raise ConfigError("give at least one --url-list, --url-hash-list or --domain-list")
    checked = []
    for s in out:
        entries = load_url_list(s)
        checked.append((UrlListSpec(s.kind, s.path, s.name, s.hash_type, s.action, fileio.sha256_file(s.path)[0]),
                        len(entries)))
    return checked


def sidecar(spec: UrlListSpec, entries: int, layout: RunLayout) -> dict:
    """What the manifest records about a URL list (never its entries)."""
    fname = posixpath.basename(spec.path)
    return {"name": spec.name, "type": spec.hash_type or spec.kind, "kind": spec.kind, "entries": entries,
            "source": {"path": spec.path, "sha256": spec.sha256}, "action": spec.action, "max_distance": 0,
            "fingerprint": spec.sha256, "files": {fname: spec.sha256}, "path": layout.rel(layout.list_dir(spec.name))}


def run(argv=None) -> int:
    """Run a metadata pre-filter; exit codes as for scan."""
    try:
        a, beam_args = split_args(parser(), argv)
        options = pipeline_options(beam_args)
        configure_filesystems(options)
        lists = url_specs(a)
        cfg = configload.build(ScanConfig, {"inputs": a.input, "output": a.output, "force": a.force,
                                            "columns": {"url": a.url_column, "key": a.key_column}}, "prefilter flags")
        config = {"kind": "prefilter", "inputs": a.input, "output": a.output, "url_column": a.url_column,
                  "key_column": a.key_column, "lists": [dict(vars(s)) for s, _ in lists]}
        launch = Launch(kind="prefilter", plan=None, specs=expand_inputs(a.input, a.output), options=options,
                        started=now(), config=config, quiet=a.quiet)
        with staging_dir() as staging:
            layout = RunLayout(cfg.output)
            launch.plan = prepare(cfg, layout, staging, url_lists=[s for s, _ in lists], metadata_only=True)
            launch.plan.url_sidecars = [sidecar(s, n, layout) for s, n in lists]
            if is_dry_run(options):
                return execute(launch)
            claim_and_install(launch)
    except (UsageError, ValueError, OSError) as exc:  # config, list or output errors
        return error_exit(exc)
    return execute(launch)
