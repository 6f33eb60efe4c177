"""Re-filter a finished run with a new set of lists and concept indexes, from stored features only.

``shardguard refilter --from RUN_DIR --output NEW_DIR [--hash-list …] [--concepts …]
[--retire-list NAME …] [--retire-concept NAME …]`` reads the parent manifest and ``features/``, never
decodes an image or runs a model, and writes a complete run directory whose outputs equal a fresh
scan with the same lists: the verdict stage is the scan's own (``scan.verdict_stage``).
"""
from __future__ import annotations

import argparse
import dataclasses


from shardguard.indexes import fileio
from shardguard.pipelines import config as cfgmod
from shardguard.pipelines import manifest as mf
from shardguard.pipelines.lineage import diff_runs, lineage
from shardguard.pipelines.options import configure_filesystems, pipeline_options
from shardguard.pipelines.plan import RunPlan, prepare
from shardguard.pipelines.runutil import OutputError, error_exit, prepare_output, run_beam
from shardguard.transforms.read import ShardSpecs
from shardguard.transforms.read_features import ReadStoredFeatures


class RefilterError(ValueError):
    """A re-filter that cannot run (missing features, unusable parent)."""


def add_flags(p: argparse.ArgumentParser) -> None:
    """refilter's own flags; everything else goes to Beam."""
    p.add_argument("--from", dest="parent", required=True, help="parent run directory")
    p.add_argument("--output", required=True)
    p.add_argument("--hash-list", action="append", default=[], metavar="[NAME@]TYPE=PATH[:MAXDIST]")
    p.add_argument("--concepts", action="append", default=[])
    p.add_argument("--retire-list", action="append", default=[], metavar="NAME")
    p.add_argument("--retire-concepts", action="append", default=[], metavar="PATH",
                   help="concept index (as recorded in the parent) to stop applying")
    p.add_argument("--expand-threshold", type=float)
    p.add_argument("--min-clip-score", type=float)
    p.add_argument("--relocate", action="append", default=[], metavar="OLD=NEW",
                   help="inputs moved: replace the path prefix OLD with NEW")
    p.add_argument("--force", action="store_true")


def _relocate(path: str, rules: list[str]) -> str:
    for rule in rules:
        old, _, new = rule.partition("=")
        if old and path.startswith(old):
            return new + path[len(old):]
    return path


def artifact_path(run_dir: str, path: str) -> str:
    """A list artifact path from a manifest: relative ones live inside the run directory."""
    return path if path.startswith("/") or "://" in path else fileio.join(run_dir, path)


def child_config(parent: dict, args) -> cfgmod.ScanConfig:
    """The parent's config with the list changes and the new output applied."""
    base = cfgmod.from_data(parent["config"], f"{args.parent}/manifest.json")
    known = {l["name"] for l in parent["lists"]}
    unknown = [n for n in args.retire_list if n not in known]
    if unknown:
        raise RefilterError(f"--retire-list {unknown}: the parent has lists {sorted(known)}")
    kept = [cfgmod.HashListSpec(type=l["type"], path=artifact_path(args.parent, l["path"]), name=l["name"],
                                action=l["action"],
                                fingerprint=l["fingerprint"])
            for l in parent["lists"] if l["name"] not in args.retire_list]
    added = [cfgmod.parse_list_flag(v) for v in args.hash_list]
    concepts = tuple(c for c in base.concepts if c not in args.retire_concepts) + tuple(args.concepts)
    over = {"output": args.output, "lists": tuple(kept + added), "concepts": concepts, "force": args.force}
    if args.expand_threshold is not None:
        over["expand"] = dataclasses.replace(base.expand, threshold=args.expand_threshold)
    if args.min_clip_score is not None:
        over["clip"] = dataclasses.replace(base.clip, min_score=args.min_clip_score)
    return cfgmod.with_overrides(base, over, "refilter flags")


def _ok_shard_names(parent: dict) -> str:
    ok = [s["shard"] for s in parent["shards"] if s["status"] == "ok"]
    return ", ".join(ok[:5]) + (f" and {len(ok) - 5} more" if len(ok) > 5 else "")


def check_embeddings(cfg: cfgmod.ScanConfig, parent: dict, parent_dir: str) -> None:
    """Concepts, expansion and the clip-score rule need stored embeddings."""
    needs = cfg.concepts or cfg.expand.threshold is not None or cfg.clip.min_score is not None
    if needs and not parent["features"].get("model"):
        raise RefilterError(f"concepts, kNN expansion and min_clip_score need feature 'embedding', which "
                            f"run {parent_dir} did not compute (shards: {_ok_shard_names(parent)}); "
                            "rescan with --clip-model")


def check_features(plan: RunPlan, parent: dict, parent_dir: str) -> None:
    """Stop with a clear error when a list or concept needs a feature the parent did not compute."""
    have = set(parent["features"]["hashes"])
    names = _ok_shard_names(parent)
    for r in plan.lists:
        if r.sidecar["type"] not in have:
            raise RefilterError(f"list {r.name} needs feature {r.sidecar['type']!r}, which run {parent_dir} "
                                f"did not compute (shards: {names}); rescan with it in 'hashes'")
    for s in parent["shards"]:
        if s["status"] == "ok" and not fileio.exists(fileio.join(parent_dir, s["outputs"]["features"]["path"])):
            raise RefilterError(f"shard {s['shard']}: feature file {s['outputs']['features']['path']} "
                                f"is missing from {parent_dir}")


def shard_specs(parent: dict, parent_dir: str, relocate: list[str]) -> list[dict]:
    """One spec per parent shard: input (maybe relocated), features file and their fingerprints."""
    specs = []
    for s in sorted(parent["shards"], key=lambda s: s["shard"]):
        spec = {"shard": s["shard"], "path": _relocate(s["input"]["path"], relocate),
                "parent_sha256": s["input"]["sha256"], "parent_size": s["input"]["size"],
                "format": s["input"].get("format", "parquet")}
        if s["status"] == "ok":
            spec.update(features_path=fileio.join(parent_dir, s["outputs"]["features"]["path"]),
                        features_sha256=s["outputs"]["features"]["sha256"], parent_dir=parent_dir,
                        parent_outputs=s["outputs"])
        else:
            spec.update(features_path="", open_error=f"parent shard failed: {s['failure']['message']}")
        specs.append(spec)
    return specs


def run(argv=None) -> int:
    """Run a re-filter; exit code as for scan."""
    from shardguard.pipelines.scan import _now, finish_manifest, verdict_stage

    parser = argparse.ArgumentParser(prog="shardguard refilter", description=__doc__)
    add_flags(parser)
    args, beam_args = parser.parse_known_args(argv)
    started = _now()
    options = pipeline_options(beam_args)
    configure_filesystems(options)
    try:
        prepare_output(args.output)
        parent = mf.read_manifest(args.parent)
        cfg = child_config(parent, args)
        check_embeddings(cfg, parent, args.parent)
        plan = prepare(cfg, list_dir=args.output, parent_features=parent["features"])
        check_features(plan, parent, args.parent)
    except (ValueError, OSError) as exc:  # config, list, model, pin or output errors
        return error_exit(exc)
    specs = shard_specs(parent, args.parent, args.relocate)

    def build(p):
        parts = (p | "Shards" >> ShardSpecs(specs)
                 | "Read" >> ReadStoredFeatures(cfg.output, plan.config_fp, cfg.force))
        verdict_stage({k: parts[k] for k in ("info", "features", "failed")}, plan, len(specs))

    try:
        run_beam(build, options)
        changes = diff_runs(args.parent, cfg.output, new_manifest_shards=specs)
        extra = {"parent": dict(lineage(parent, args.parent, plan), changes=changes)}
        manifest = finish_manifest(plan, specs, started, kind="refilter", extra=extra)
    except OutputError as exc:
        return error_exit(exc)
    print(mf.summary_text(manifest))
    print(f"  vs parent: {changes['newly_flagged_total']} newly removed/quarantined, "
          f"{changes['restored_total']} restored")
    return 1 if manifest["totals"]["counts"]["shards_failed"] else 0
