"""The scan pipeline: shards → features (decode once, hash) → verdicts (lists) → outputs + manifest.

``run(argv)`` parses shardguard's own flags with ``parse_known_args`` and hands every other flag to
Beam's PipelineOptions, so ``--runner DataflowRunner --project … --region …`` work unchanged.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import sys
import time
from datetime import datetime, timezone

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from shardguard.indexes import fileio
from shardguard.pipelines import config as cfgmod
from shardguard.pipelines import manifest as mf
from shardguard.pipelines.lists import ResolvedList, resolve_lists
from shardguard.pipelines.options import pipeline_options
from shardguard.transforms.hashing import ComputeFeatures
from shardguard.transforms.match import MatchShards
from shardguard.transforms.parquet_shards import ColumnNames, shard_ids
from shardguard.transforms.read import ReadShards, summary_path
from shardguard.transforms.write import WriteShards

_LOG = logging.getLogger(__name__)


def add_scan_flags(p: argparse.ArgumentParser) -> None:
    """shardguard's own scan flags (everything else goes to Beam)."""
    p.add_argument("--input", action="append", default=[], help="parquet shard path or glob (repeatable)")
    p.add_argument("--output", help="output directory (local, gs://, s3://)")
    p.add_argument("--hash-list", action="append", default=[], metavar="[NAME@]TYPE=PATH[:MAXDIST]",
                   help="known-bad list: raw list file or artifact dir (repeatable)")
    p.add_argument("--config", help="YAML config; flags override it")
    p.add_argument("--hashes", help="comma-separated hash types to compute (default: md5,sha256,phash,dhash,pdq)")
    p.add_argument("--on-error", choices=("drop", "keep-and-flag"), help="undecodable rows (default drop)")
    p.add_argument("--max-pixels", type=int, help="decompression-bomb limit in pixels")
    p.add_argument("--image-column", help="image column (default jpg)")
    p.add_argument("--key-column", help="key column (default key)")
    p.add_argument("--url-column", help="url column (default url)")
    p.add_argument("--force", action="store_true", default=None, help="redo shards already done")


def config_from_args(args) -> cfgmod.ScanConfig:
    """Load YAML (if any), apply flag overrides, validate once."""
    raw = cfgmod.load_yaml(args.config) if args.config else {}
    src = args.config or "command line"
    base = cfgmod.from_data(raw, src)
    over: dict = {}
    if args.input:
        over["inputs"] = tuple(args.input)
    if args.output:
        over["output"] = args.output
    if args.hash_list:
        over["lists"] = tuple(cfgmod.parse_list_flag(v) for v in args.hash_list)
    if args.hashes:
        over["hashes"] = tuple(h.strip() for h in args.hashes.split(",") if h.strip())
    if args.force:
        over["force"] = True
    if args.on_error or args.max_pixels:
        over["decode"] = dataclasses.replace(base.decode, on_error=args.on_error or base.decode.on_error,
                                             max_pixels=args.max_pixels or base.decode.max_pixels)
    cols = {k: v for k, v in (("image", args.image_column), ("key", args.key_column),
                              ("url", args.url_column)) if v}
    if cols:
        over["columns"] = dataclasses.replace(base.columns, **cols)
    return cfgmod.with_overrides(base, over, src)


def expand_inputs(patterns) -> list[str]:
    """Every file matching the input paths/globs, sorted; a pattern matching nothing is an error."""
    paths: list[str] = []
    for pattern, result in zip(patterns, FileSystems.match(list(patterns))):
        found = sorted(m.path for m in result.metadata_list)
        if not found:
            raise cfgmod.ConfigError(f"--input {pattern!r} matches no file")
        paths += found
    return sorted(set(paths))


def config_fingerprint(cfg: cfgmod.ScanConfig, hashes: tuple[str, ...], lists: list[ResolvedList]) -> str:
    """sha256 of everything that decides a shard's outputs (not paths, not --force)."""
    pinned = {"columns": dataclasses.asdict(cfg.columns), "hashes": list(hashes),
              "decode": dataclasses.asdict(cfg.decode),
              "lists": [[r.name, r.fingerprint, r.sidecar["action"]] for r in lists]}
    return hashlib.sha256(fileio.canonical_json(pinned)).hexdigest()


def hashes_needed(cfg: cfgmod.ScanConfig, lists: list[ResolvedList]) -> tuple[str, ...]:
    """Configured hash types plus any type a list needs, in a stable order."""
    from shardguard.indexes.hashtypes import HASH_TYPES

    wanted = set(cfg.hashes) | {r.sidecar["type"] for r in lists}
    return tuple(n for n in HASH_TYPES if n in wanted)


def build_pipeline(p: beam.Pipeline, specs: list[dict], cfg, hashes, lists, config_fp: str):
    """Wire the scan graph onto ``p``; returns the PCollection of shard summaries."""
    settings = {"config_fingerprint": config_fp, "on_error": cfg.decode.on_error,
                "actions": {r.name: r.sidecar["action"] for r in lists}}
    refs = tuple((r.art_dir, r.fingerprint) for r in lists)
    shards = p | "Shards" >> beam.Create(specs)
    read = shards | "Read" >> ReadShards(cfg.output, config_fp, cfg.force, cfg.columns)
    feats = read["rows"] | "Features" >> ComputeFeatures(hashes, cfg.decode.max_pixels)
    bundles = {"info": read["info"], "features": feats, "failed": read["failed"]} | "Verdict" >> MatchShards(refs)
    return bundles | "Write" >> WriteShards(cfg.output, settings, len(specs), time.time())


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def finish_manifest(cfg, config_fp: str, lists, specs, started: str, kind="scan", extra=None) -> dict:
    """Combine the per-shard summaries of this run's shards into the manifest; check it."""
    shards = []
    for spec in specs:
        path = summary_path(cfg.output, spec["shard"])
        if not fileio.exists(path):
            raise mf.ManifestError(f"shard {spec['shard']} has no summary after the run ({path})")
        shards.append(fileio.read_json(path))
    manifest = mf.build_manifest(config=cfg.to_dict(), config_fp=config_fp,
                                 lists=[r.sidecar for r in lists], shards=shards, started=started,
                                 finished=_now(), kind=kind, extra=extra)
    problems = mf.check_accounting(manifest)
    if problems:
        raise mf.ManifestError("accounting check failed:\n  " + "\n  ".join(problems))
    mf.write_manifest(cfg.output, manifest)
    return manifest


def run(argv=None) -> int:
    """Run a scan; return the process exit code (0 ok, 1 shard failures, 2 bad config/lists)."""
    parser = argparse.ArgumentParser(prog="shardguard scan", description=__doc__)
    add_scan_flags(parser)
    args, beam_args = parser.parse_known_args(argv)
    started = _now()
    try:
        cfg = config_from_args(args)
        paths = expand_inputs(cfg.inputs)
        lists = resolve_lists(cfg.lists, cfg.output)
    except (ValueError, OSError) as exc:  # ConfigError, ListFormatError, ArtifactError
        print(f"shardguard: error: {exc}", file=sys.stderr)
        return 2
    hashes = hashes_needed(cfg, lists)
    config_fp = config_fingerprint(cfg, hashes, lists)
    ids = shard_ids(paths)
    specs = [{"shard": ids[p], "path": p} for p in paths]
    with beam.Pipeline(options=pipeline_options(beam_args)) as p:
        build_pipeline(p, specs, cfg, hashes, lists, config_fp)
    manifest = finish_manifest(cfg, config_fp, lists, specs, started,
                               extra={"features": {"hashes": list(hashes)}})
    print(mf.summary_text(manifest))
    return 1 if manifest["totals"]["counts"]["shards_failed"] else 0
