"""The ``shardguard`` command: scan, lists build, manifest show, sample (demo data)."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

USAGE = """usage: shardguard <command> [options]

commands:
  scan            scan parquet shards against hash lists (Beam pipeline options pass through)
  prefilter       drop metadata rows (no images) by URL, URL-hash and domain lists, before download
  refilter        re-apply a new set of lists/concepts to a finished run, from its stored features
  lists build     parse, validate and build a fingerprinted list artifact
  concepts build  build a CLIP concept index from prompts, exemplar images or embeddings
  manifest show|why|diff|verify   inspect and audit run directories (--json for scripts)
  lookup          is this image (or a near-copy) in a scanned run?
  sample          write a small synthetic dataset and lists (what `make demo` scans)
"""


class _DropNoise(logging.Filter):
    """Beam warns at import that GCP clients are absent; irrelevant unless the user runs on GCP."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102
        return "apitools not found" not in record.getMessage()


def _setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for h in logging.getLogger().handlers:
        h.addFilter(_DropNoise())
    logging.getLogger("shardguard").setLevel(os.environ.get("SHARDGUARD_LOG", "INFO"))


def _filesystem_flags(rest: list[str]) -> None:
    """Beam filesystem flags (``--s3_endpoint_url``…) for commands that only read run directories."""
    from shardguard.pipelines.options import configure_filesystems, pipeline_options

    configure_filesystems(pipeline_options(rest))


def _lists_build(argv) -> int:
    from shardguard.indexes.artifacts import build_artifact
    from shardguard.indexes.hashtypes import get_hash_type
    from shardguard.indexes.listformats import ListOptions, parse_list
    from shardguard.pipelines.config import HashListSpec
    from shardguard.pipelines.lists import default_name, settings_for

    p = argparse.ArgumentParser(prog="shardguard lists build")
    p.add_argument("--type", required=True)
    p.add_argument("--input", required=True, help="list file (plain, typed, csv, jsonl)")
    p.add_argument("--output", required=True, help="artifact directory to create")
    p.add_argument("--name")
    p.add_argument("--max-distance", type=int)
    p.add_argument("--min-quality", type=int)
    p.add_argument("--action", default="remove", choices=("remove", "quarantine", "tag"))
    p.add_argument("--format", default="auto")
    p.add_argument("--hash-column")
    p.add_argument("--id-column")
    p.add_argument("--type-column")
    p.add_argument("--other-types", default="error", choices=("error", "skip"))
    a = p.parse_args(argv)
    spec = HashListSpec(type=a.type, path=a.input, name=a.name or "", max_distance=a.max_distance,
                        min_quality=a.min_quality, action=a.action, format=a.format)
    try:
        parsed = parse_list(a.input, get_hash_type(a.type), ListOptions(
            fmt=a.format, hash_column=a.hash_column, id_column=a.id_column, type_column=a.type_column,
            other_types=a.other_types))
        sidecar = build_artifact(parsed, settings_for(spec, default_name(spec)), a.output, a.input)
    except ValueError as exc:
        print(f"shardguard: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: sidecar[k] for k in ("name", "type", "entries", "max_distance", "min_quality",
                                              "fingerprint")}, indent=2))
    return 0


def _concepts_build(argv) -> int:
    from shardguard.indexes import concept_sources as cs
    from shardguard.indexes.concepts import build_concept_index
    from shardguard.indexes.models import parse_spec
    from shardguard.transforms.embed import LoadedClip

    p = argparse.ArgumentParser(prog="shardguard concepts build")
    p.add_argument("--model", required=True, help="CLIP model spec (the scan must use the same)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompts", help="YAML: concepts: [{name, prompts, threshold, action}]")
    src.add_argument("--exemplars", help="folder with one sub-folder of images per concept")
    src.add_argument("--embeddings", help=".npy (n, dim) array of embeddings for one concept")
    p.add_argument("--name", help="concept name (--embeddings)")
    p.add_argument("--threshold", type=float, help="cosine threshold (--exemplars, --embeddings)")
    p.add_argument("--action", default="quarantine", choices=("remove", "quarantine", "tag"))
    p.add_argument("--device", default="auto")
    p.add_argument("--output", required=True)
    a = p.parse_args(argv)
    try:
        spec = parse_spec(a.model)
        model = LoadedClip(spec, a.device, 32)
        if a.prompts:
            concepts = cs.from_prompts(a.prompts, model)
        else:
            if a.threshold is None:
                p.error("--threshold is required with --exemplars/--embeddings")
            if a.exemplars:
                concepts = cs.from_exemplars(a.exemplars, model, a.threshold, a.action)
            else:
                if not a.name:
                    p.error("--name is required with --embeddings")
                concepts = cs.from_embeddings(a.embeddings, a.name, a.threshold, a.action)
        sidecar = build_concept_index(concepts, model.info, a.output)
    except ValueError as exc:
        print(f"shardguard: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"concepts": sidecar["concepts"], "dim": sidecar["dim"],
                      "fingerprint": sidecar["fingerprint"]}, indent=2))
    return 0


def _manifest(argv) -> int:
    from shardguard.pipelines import manifest_tools as mt
    from shardguard.pipelines.manifest import ManifestError

    p = argparse.ArgumentParser(prog="shardguard manifest")
    sub = p.add_subparsers(dest="action", required=True)
    for name, helptext in (("show", "summary of a run"), ("verify", "recompute checksums and accounting")):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("run_dir")
        sp.add_argument("--json", action="store_true")
    sp = sub.add_parser("why", help="why a row was removed, quarantined or kept")
    sp.add_argument("run_dir")
    sp.add_argument("key")
    sp.add_argument("--shard")
    sp.add_argument("--json", action="store_true")
    sp = sub.add_parser("diff", help="rows flagged in one run and not the other")
    sp.add_argument("run_a")
    sp.add_argument("run_b")
    sp.add_argument("--json", action="store_true")
    a, fs_args = p.parse_known_args(argv)
    _filesystem_flags(fs_args)
    try:
        if a.action == "show":
            result = dict(mt.show(a.run_dir), _dir=a.run_dir)
        elif a.action == "why":
            result = mt.why(a.run_dir, a.key, a.shard)
        elif a.action == "diff":
            result = mt.diff(a.run_a, a.run_b)
        else:
            result = mt.verify(a.run_dir)
    except (ManifestError, OSError, ValueError) as exc:
        print(f"shardguard: error: {exc}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps({k: v for k, v in result.items() if k != "_dir"}, indent=2, default=str))
    else:
        print(mt.text(a.action, result))
    if a.action == "verify" and not result["ok"]:
        return 1
    if a.action == "why" and not result["found"]:
        return 1
    return 0


def _lookup(argv) -> int:
    from shardguard.pipelines.lookup import lookup
    from shardguard.pipelines.manifest import ManifestError

    p = argparse.ArgumentParser(prog="shardguard lookup")
    p.add_argument("--run", required=True)
    p.add_argument("images", nargs="+")
    p.add_argument("--clip-threshold", type=float, default=0.95)
    p.add_argument("--json", action="store_true")
    a, fs_args = p.parse_known_args(argv)
    _filesystem_flags(fs_args)
    try:
        result = lookup(a.run, a.images, a.clip_threshold)
    except (ManifestError, OSError, ValueError) as exc:
        print(f"shardguard: error: {exc}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        if result["note"]:
            print(f"note: {result['note']}")
        for r in result["results"]:
            status = "FOUND" if r["found"] else "not found"
            print(f"{r['image']}: {status}" + ("" if r["decoded"] else f" (query not decodable: {r['error']})"))
            for h in r["matches"]:
                d = ", ".join(f"{k} {v}" for k, v in h["distances"].items())
                c = f", clip {h['clip_similarity']}" if "clip_similarity" in h else ""
                print(f"    {h['shard']}/{h['key']} (row {h['row']}): {d}{c}")
    return 0 if all(r["found"] for r in result["results"]) else 1


def main(argv=None) -> int:
    """Entry point of the ``shardguard`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _setup_logging()
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "scan":
        from shardguard.pipelines.scan import run

        return run(rest)
    if cmd == "prefilter":
        from shardguard.pipelines.prefilter import run as prefilter_run

        return prefilter_run(rest)
    if cmd == "refilter":
        from shardguard.pipelines.refilter import run as refilter_run

        return refilter_run(rest)
    if cmd == "lists" and rest[:1] == ["build"]:
        return _lists_build(rest[1:])
    if cmd == "concepts" and rest[:1] == ["build"]:
        return _concepts_build(rest[1:])
    if cmd == "manifest":
        return _manifest(rest)
    if cmd == "lookup":
        return _lookup(rest)
    if cmd == "sample":
        from shardguard.pipelines.sample_data import main as sample_main

        return sample_main(rest)
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
