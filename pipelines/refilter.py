"""``shardguard refilter``: re-apply a new set of lists, concepts and rules to a finished run, from its
stored features only.

``shardguard refilter --from RUN_DIR --output NEW_DIR [--hash-list …] [--concepts …]
[--retire-list NAME …] [--retire-concepts PATH …]`` reads the parent manifest and ``features/``, never
decodes an image or runs a model, and writes a complete, self-contained run directory (the parent's
features and every list and concept index it applies are copied in) whose outputs equal a fresh scan
with the same lists: the verdict stage is the scan's own. A ``--hash-list`` whose name is one of the
parent's lists replaces it (a partner's new version of the same list); the lineage records both
fingerprints and the rows newly flagged and restored.
"""
from __future__ import annotations

from shardguard.indexes import fileio
from shardguard.pipelines import configload
from shardguard.pipelines import manifest as mf
from shardguard.pipelines.config import ConfigError, HashListSpec, ScanConfig
from shardguard.pipelines.flags import list_flag_data
from shardguard.pipelines.launch import Launch, claim_and_install, execute, now, staging_dir
from shardguard.pipelines.lineage import diff_runs, lineage
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
from shardguard.transforms.contracts import ParentShard, RunLayout, ShardSpec

DESCRIPTION = """Re-apply lists, concept indexes and rules to a finished run from its stored features
(no image is decoded, no model runs). The new run directory is complete and self-contained.
Beam pipeline options are accepted beside these flags; exit codes as for scan."""


class RefilterError(ValueError):
    """A re-filter that cannot run (missing features, unusable parent)."""


def parser() -> StrictParser:
    """refilter's own flags (Beam's options are accepted beside them)."""
    p = StrictParser(prog="shardguard refilter", description=DESCRIPTION)
    p.add_argument("--from", dest="parent", required=True, help="parent run directory")
    p.add_argument("--output", required=True, help="new run directory")
    p.add_argument("--hash-list", action="append", default=[], metavar="[NAME@]TYPE=PATH[:MAXDIST]",
                   help="list to add; one named like a parent list replaces it (repeatable)")
    p.add_argument("--concepts", action="append", default=[], help="concept index to add (repeatable)")
    p.add_argument("--retire-list", action="append", default=[], metavar="NAME", help="parent list to stop applying")
    p.add_argument("--retire-concepts", action="append", default=[], metavar="PATH",
                   help="parent concept index to stop applying (its path as the parent recorded it, or its name)")
    p.add_argument("--expand-threshold", type=float, help="kNN expansion cosine threshold, in (0, 1]")
    p.add_argument("--min-clip-score", type=float, help="flag rows whose image-caption cosine is below this")
    p.add_argument("--dedup", help="dedup kinds to apply now: comma-separated exact, perceptual, semantic, "
                                   "or none (default: the parent's)")
    p.add_argument("--relocate", action="append", default=[], metavar="OLD=NEW",
                   help="inputs moved: replace the path prefix OLD with NEW (the sha256 check still applies)")
    p.add_argument("--force", action="store_true", help="redo every shard; accept an output with another config")
    p.add_argument("--features-only", action="store_true",
                   help="allow a re-filter that applies no list or rule at all (every row kept)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return p


def _relocate(path: str, rules: list[str]) -> str:
    for rule in rules:
        old, _, new = rule.partition("=")
        if old and path.startswith(old):
            return new + path[len(old):]
    return path


def _lists(parent: dict, parent_dir: str, args) -> list:
    """The parent's lists (their copies in the parent run), minus retired, replaced by same-named new ones."""
    layout = RunLayout(parent_dir)
    known = {x["name"] for x in parent["lists"]}
    unknown = [n for n in args.retire_list if n not in known]
    if unknown:
        raise RefilterError(f"--retire-list {unknown}: the parent has lists {sorted(known)}")
    added = [list_flag_data(v) for v in args.hash_list]
    for a in added:  # a flag's list is named after its file unless NAME@ is given
        a["name"] = a["name"] or _default_name(a)
    replaced = {a["name"] for a in added}
    kept = [{"type": x["type"], "path": layout.abs(x["path"]), "name": x["name"], "action": x["action"],
             "fingerprint": x["fingerprint"]}
            for x in parent["lists"] if x["name"] not in args.retire_list and x["name"] not in replaced]
    return kept + added


def _default_name(data: dict) -> str:
    from shardguard.pipelines.lists import default_name

    return default_name(configload.build(HashListSpec, dict(data), "--hash-list"))


def _concepts(parent: dict, parent_dir: str, args) -> list[str]:
    layout = RunLayout(parent_dir)
    keep = []
    for c in parent.get("concepts") or []:
        names = {c.get("path"), layout.abs(c.get("path") or ""), (c.get("path") or "").rstrip("/").rsplit("/", 1)[-1]}
        if not names & set(args.retire_concepts):
            keep.append(f"{layout.abs(c['path'])}#{c['fingerprint']}")
    return keep + list(args.concepts)


_DROPPED = {"clip": ("min_batch_size",)}  # keys earlier versions recorded that no longer mean anything


def child_config(parent: dict, args):
    """The parent's config with the list and concept changes, the new output and the rule flags."""
    config = {k: ({kk: vv for kk, vv in v.items() if kk not in _DROPPED.get(k, ())} if isinstance(v, dict) else v)
              for k, v in parent["config"].items()}
    data = dict(config, output=args.output, lists=_lists(parent, args.parent, args),
                concepts=_concepts(parent, args.parent, args), force=bool(args.force),
                features_only=bool(args.features_only))
    if args.expand_threshold is not None:
        data["expand"] = dict(data.get("expand") or {}, threshold=args.expand_threshold)
    if args.min_clip_score is not None:
        data["clip"] = dict(data.get("clip") or {}, min_score=args.min_clip_score)
    if args.dedup is not None:
        kinds = [k.strip() for k in args.dedup.split(",") if k.strip() and k.strip() != "none"]
        data["dedup"] = dict(data.get("dedup") or {}, kinds=kinds)
    return configload.build(ScanConfig, data, "refilter flags")


def shard_specs(parent: dict, parent_dir: str, relocate: list[str]) -> list[ShardSpec]:
    """One spec per parent shard: its input (maybe relocated) and everything the parent recorded."""
    specs = []
    for s in sorted(parent["shards"], key=lambda s: s["shard"]):
        ps = ParentShard(run_dir=parent_dir, input_sha256=s["input"].get("sha256"), input_size=s["input"].get("size"),
                         status=s["status"], outputs=s.get("outputs") or {}, failure=s.get("failure"))
        specs.append(ShardSpec(s["shard"], _relocate(s["input"]["path"], relocate),
                               s["input"].get("format", "parquet"), ps))
    return specs


def check_parent(parent: dict, parent_dir: str, output: str) -> None:
    """The parent's features exist (one listing of its features folder, not a request per shard),
    and the output is not the parent itself."""
    from shardguard.transforms.formats.files import list_folder

    if RunLayout(output).abs("x").rstrip("x") == RunLayout(parent_dir).abs("x").rstrip("x"):
        raise RefilterError("--output is the parent run; give a new directory")
    try:
        listed = set(list_folder(fileio.join(parent_dir, "features")))
    except Exception:  # noqa: BLE001 - no folder (or a store that lists nothing): every file is missing
        listed = set()
    for s in parent["shards"]:
        rel = s["outputs"]["features"]["path"] if s["status"] == "ok" else None
        if rel is None or (rel.startswith("features/") and rel[len("features/"):] in listed):
            continue
        if not fileio.exists(fileio.join(parent_dir, rel)):
            raise RefilterError(f"shard {s['shard']}: feature file {rel} is missing from {parent_dir}")


def _hint(parent: dict, parent_dir: str):
    ok = [s["shard"] for s in parent["shards"] if s["status"] == "ok"]
    names = ", ".join(ok[:5]) + (f" and {len(ok) - 5} more" if len(ok) > 5 else "")

    def hint(feature: str) -> str:
        fix = "rescan with --clip-model" if feature in ("embedding", "clip_score") else "rescan with it in 'hashes'"
        return f"which run {parent_dir} did not compute (shards: {names}); {fix}"
    return hint


def take_parent_seed_sets(launch: Launch, parent: dict, parent_dir: str, force: bool, link: bool) -> None:
    """Each hash expansion takes the parent's seed set when it would compute the same one
    (``transforms/rules/seedset.py``): no second pass over every shard's features before the verdicts.
    The shards' workers then adopt their seeds files with their features; with ``link`` (not in a
    dry run) the taken sets' files are linked into the new run now."""
    import dataclasses

    from shardguard.transforms.rules import seedset

    taken = False
    for rule in seedset.expansions(launch.plan.rules):
        rule.parent_set = seedset.parent_seed_set(rule, parent, parent_dir, force)
        taken = taken or rule.parent_set is not None
        if rule.parent_set is not None and link:
            seedset.link_parent_set(rule.parent_set, launch.plan.layout, seedset.seed_set_key(rule))
    if taken:
        launch.specs = [dataclasses.replace(s, parent=dataclasses.replace(s.parent, adopt_seeds=True))
                        for s in launch.specs]


def run(argv=None) -> int:
    """Run a re-filter; exit codes as for scan."""
    try:
        args, beam_args = split_args(parser(), argv)
        options = pipeline_options(beam_args)
        configure_filesystems(options)
        parent = mf.read_manifest(args.parent)
        check_parent(parent, args.parent, args.output)
        cfg = child_config(parent, args)
        launch = Launch(kind="refilter", plan=None, specs=shard_specs(parent, args.parent, args.relocate),
                        options=options, started=now(), adopt_parent=True, quiet=args.quiet)
        with staging_dir() as staging:
            launch.plan = prepare(cfg, RunLayout(cfg.output), staging, parent_features=parent["features"],
                                  missing_hint=_hint(parent, args.parent))
            if is_dry_run(options):
                take_parent_seed_sets(launch, parent, args.parent, cfg.force, link=False)
                return execute(launch)
            claim_and_install(launch)
            take_parent_seed_sets(launch, parent, args.parent, cfg.force, link=True)
    except (UsageError, ValueError, OSError) as exc:  # config, list, pin, parent or output errors
        return error_exit(exc)

    def after(launch: Launch) -> None:
        changes = diff_runs(args.parent, cfg.output, new_manifest_shards=[s.shard for s in launch.specs])
        launch.extra["parent"] = dict(lineage(parent, args.parent, launch.plan), changes=changes)

    rc = execute(launch, after=after)
    if "parent" in launch.extra:
        c = launch.extra["parent"]["changes"]
        print(f"  vs parent: {c['newly_flagged_total']} newly removed/quarantined, {c['restored_total']} restored")
    return rc


__all__ = ["ConfigError", "RefilterError", "run"]
