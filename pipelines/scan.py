"""The scan pipeline: shards → features (decode once, hash) → verdicts (lists) → outputs + manifest.

``run(argv)`` parses shardguard's own flags with ``parse_known_args`` and hands every other flag to
Beam's PipelineOptions, so ``--runner DataflowRunner --project … --region …`` work unchanged.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import tempfile
import time
from datetime import datetime, timezone

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from shardguard.indexes import fileio
from shardguard.pipelines import config as cfgmod
from shardguard.pipelines import manifest as mf
from shardguard.pipelines.plan import RunPlan, prepare
from shardguard.pipelines.runutil import OutputError, error_exit, prepare_output, run_beam
from shardguard.pipelines.options import configure_filesystems, graph_names, is_dry_run, pipeline_options
from shardguard.transforms.hashing import ComputeFeatures
from shardguard.transforms.match import MatchShards
from shardguard.transforms.parquet_shards import shard_ids
from shardguard.transforms.read import ReadShards, ShardSpecs, summary_path
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
    p.add_argument("--exact-decode", action="store_true", default=None,
                   help="full decode: hashes bit-identical to imagehash/pdqhash (slower)")
    p.add_argument("--image-column", help="image column (default jpg)")
    p.add_argument("--key-column", help="key column (default key)")
    p.add_argument("--url-column", help="url column (default url)")
    p.add_argument("--caption-column", help="caption column (default caption)")
    p.add_argument("--status-column", help="img2dataset status column (default status)")
    p.add_argument("--force", action="store_true", default=None, help="redo shards already done")
    p.add_argument("--redact-urls", action="store_true", default=None,
                   help="removal/review records carry sha256:<16 hex> of the URL instead of the URL")
    p.add_argument("--clip-model", help="CLIP model spec: NAME:TAG, NAME@WEIGHTS, CONFIG.json")
    p.add_argument("--device", help="auto (default), cpu, cuda[:N]")
    p.add_argument("--batch-size", type=int, help="CLIP batch size (fixed model batch)")
    p.add_argument("--concepts", action="append", default=[], help="concept index dir (repeatable)")
    p.add_argument("--expand-threshold", type=float, help="kNN expansion cosine threshold")
    p.add_argument("--min-clip-score", type=float, help="flag rows whose image-caption cosine is below")
    p.add_argument("--integrity-column", help="column with a reference content hash of the stored bytes")
    p.add_argument("--integrity-type", choices=("md5", "sha1", "sha256"), help="its hash type (default sha256)")


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
    if args.redact_urls:
        over["redact_urls"] = True
    if args.on_error or args.max_pixels or args.exact_decode:
        over["decode"] = dataclasses.replace(base.decode, on_error=args.on_error or base.decode.on_error,
                                             max_pixels=args.max_pixels or base.decode.max_pixels,
                                             exact=bool(args.exact_decode) or base.decode.exact)
    clip = {k: v for k, v in (("model", args.clip_model), ("device", args.device),
                              ("batch_size", args.batch_size), ("min_score", args.min_clip_score)) if v is not None}
    if clip:
        over["clip"] = dataclasses.replace(base.clip, **clip)
    if args.concepts:
        over["concepts"] = tuple(args.concepts)
    if args.integrity_column or args.integrity_type:
        over["integrity"] = dataclasses.replace(base.integrity, column=args.integrity_column or base.integrity.column,
                                                type=args.integrity_type or base.integrity.type)
    if args.expand_threshold is not None:
        over["expand"] = dataclasses.replace(base.expand, threshold=args.expand_threshold)
    cols = {k: v for k, v in (("image", args.image_column), ("key", args.key_column),
                              ("url", args.url_column), ("caption", args.caption_column),
                              ("status", args.status_column)) if v}
    if cols:
        over["columns"] = dataclasses.replace(base.columns, **cols)
    return cfgmod.with_overrides(base, over, src)


def expand_inputs(patterns) -> list[str]:
    """Every shard matching the input paths/globs, sorted; a pattern matching nothing is an error.

    ``.tar`` files are webdataset shards; a ``.parquet`` beside a ``.tar`` of the same stem is that
    shard's metadata, not a shard of its own. Other files (``_stats.json``…) are ignored.
    """
    paths: list[str] = []
    for pattern, result in zip(patterns, FileSystems.match(list(patterns))):
        found = sorted(m.path for m in result.metadata_list)
        if not found:
            raise cfgmod.ConfigError(f"--input {pattern!r} matches no file")
        paths += found
    tars = {p[: -len(".tar")] for p in paths if p.endswith(".tar")}
    return sorted({p for p in paths if p.endswith(".tar")
                   or (p.endswith(".parquet") and p[: -len(".parquet")] not in tars
                       and not fileio.exists(p[: -len(".parquet")] + ".tar"))})


def shard_format(path: str) -> str:
    """``webdataset`` for ``.tar`` shards, else ``parquet``."""
    return "webdataset" if path.endswith(".tar") else "parquet"


def build_pipeline(p: beam.Pipeline, specs: list[dict], plan: RunPlan):
    """Wire the scan graph onto ``p``: features stage then verdict stage; returns shard summaries."""
    cfg = plan.cfg
    handler = None
    if plan.model_spec is not None:
        from shardguard.transforms.embed import ClipModelHandler

        handler = ClipModelHandler(plan.model_spec, cfg.clip.device, cfg.clip.min_batch_size,
                                   cfg.clip.batch_size, cfg.clip.large_model)
    shards = p | "Shards" >> ShardSpecs(specs)
    read = shards | "Read" >> ReadShards(cfg.output, plan.config_fp, cfg.force, plan.columns)
    feats = read["rows"] | "Features" >> ComputeFeatures(plan.hashes, cfg.decode.max_pixels, handler,
                                                         plan.clip_size, cfg.decode.exact)
    parts = {"info": read["info"], "features": feats, "failed": read["failed"]}
    return verdict_stage(parts, plan, len(specs))


def write_settings(plan: RunPlan) -> dict:
    """What the write stage needs from the plan (``write.write_shard``'s ``settings``)."""
    cfg = plan.cfg
    return {"config_fingerprint": plan.config_fp, "on_error": cfg.decode.on_error, "columns": plan.columns,
            "redact_urls": cfg.redact_urls, "actions": plan.actions, "embed_dim": plan.embed_dim}


def match_args(plan: RunPlan) -> tuple:
    """``MatchShardFn``'s arguments: list and concept references, CLIP score floor, integrity type."""
    cfg = plan.cfg
    return ([(r.art_dir, r.fingerprint) for r in plan.lists],
            [(path, sc["fingerprint"]) for path, sc in plan.concepts],
            cfg.clip.min_score, cfg.integrity.type if cfg.integrity.column else None)


def verdict_stage(parts: dict, plan: RunPlan, total_shards: int):
    """Match, expand, decide and write: shared by scan and refilter (equal results by construction)."""
    cfg = plan.cfg
    lists, concepts, min_score, integrity = match_args(plan)
    bundles = parts | "Verdict" >> MatchShards(lists, concepts, min_score, cfg.expand.threshold,
                                              plan.seed_sources, integrity)
    return bundles | "Write" >> WriteShards(cfg.output, write_settings(plan), total_shards, time.time())


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rel(path: str, root: str) -> str:
    """``path`` relative to the run directory when inside it (so a run directory can move)."""
    prefix = root.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else path


def finish_manifest(plan: RunPlan, specs, started: str, kind="scan", extra=None) -> dict:
    """Combine the per-shard summaries of this run's shards into the manifest; check it."""
    cfg = plan.cfg
    shards = []
    for spec in specs:
        path = summary_path(cfg.output, spec["shard"])
        if not fileio.exists(path):
            raise mf.ManifestError(f"shard {spec['shard']} has no summary after the run ({path})")
        shards.append(fileio.read_json(path))
    manifest = mf.build_manifest(config=cfg.to_dict(), config_fp=plan.config_fp,
                                 lists=[dict(r.sidecar, path=_rel(r.art_dir, cfg.output), name=r.name) for r in plan.lists], shards=shards, started=started,
                                 finished=_now(), kind=kind, extra=dict(plan.manifest_extra(), **(extra or {})))
    problems = mf.check_accounting(manifest)
    if problems:
        raise mf.ManifestError("accounting check failed:\n  " + "\n  ".join(problems))
    mf.write_manifest(cfg.output, manifest)
    return manifest


def run(argv=None) -> int:
    """Run a scan; return the exit code: 0 ok, 1 some shard failed, 2 bad config or list, 3 the
    output cannot be written (permissions, disk full)."""
    parser = argparse.ArgumentParser(prog="shardguard scan", description=__doc__)
    add_scan_flags(parser)
    args, beam_args = parser.parse_known_args(argv)
    started = _now()
    options = pipeline_options(beam_args)
    configure_filesystems(options)
    dry = is_dry_run(options)
    try:
        cfg = config_from_args(args)
        paths = expand_inputs(cfg.inputs)
        if not dry:
            prepare_output(cfg.output)
        # a dry run writes nothing to the output: list artifacts are built in a local scratch dir
        plan = prepare(cfg, list_dir=tempfile.mkdtemp(prefix="shardguard-dry-") if dry else None)
    except (ValueError, OSError) as exc:  # config, list, model, pin or output errors
        return error_exit(exc)
    ids = shard_ids(paths)
    specs = [{"shard": ids[p], "path": p, "format": shard_format(p)} for p in paths]
    try:
        result = run_beam(lambda p: build_pipeline(p, specs, plan), options)
        if dry:
            names = graph_names(result)
            print(f"dry run: job graph translated ({len(names)} transforms), nothing submitted or written")
            for n in names:
                print(f"  {n}")
            return 0
        manifest = finish_manifest(plan, specs, started)
    except OutputError as exc:
        return error_exit(exc)
    print(mf.summary_text(manifest))
    return 1 if manifest["totals"]["counts"]["shards_failed"] else 0
