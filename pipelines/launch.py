"""Run a planned pipeline and finish it: the one path scan, refilter and prefilter share.

The graph is always the same two stages: ``Shards`` → ``Features`` (compute, reuse, or adopt a
parent's) → ``Verdict`` (rules, dataset rules, decide, write). After the run the manifest is built
from the per-shard summaries in one way for every kind of run, checked (accounting, health), and
written; the exit code says whether every shard finished and the run is healthy.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

from shardguard.indexes import fileio
from shardguard.pipelines import manifest as mf
from shardguard.pipelines import outputdir
from shardguard.pipelines.options import graph_names, is_dry_run, is_local
from shardguard.pipelines.runutil import error_exit, run_beam
from shardguard.transforms.contracts import ShardSpec
from shardguard.transforms.featurestage import FeaturesStage, ShardSpecs
from shardguard.transforms.rules import seedset
from shardguard.transforms.shared import SharedHandles
from shardguard.transforms.verdict import VerdictStage


def now() -> str:
    """UTC time, as the manifest records it."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@contextmanager
def staging_dir():
    """A local scratch directory for list artifacts built at launch; removed when the launch ends."""
    path = tempfile.mkdtemp(prefix="shardguard-staging-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Launch:
    """A planned run: what ``execute`` needs."""

    kind: str
    plan: object  # plan.RunPlan
    specs: list[ShardSpec]
    options: object  # PipelineOptions
    started: str
    adopt_parent: bool = False  # a re-filter: features come from the parent run
    config: dict | None = None  # recorded config (default: the plan's)
    extra: dict = field(default_factory=dict)
    quiet: bool = False


def build_graph(p, launch: Launch):
    """Wire the two stages onto ``p``; returns the shard summaries."""
    plan = launch.plan
    shared = SharedHandles()
    settings = None if launch.adopt_parent else plan.feature_settings()
    refs = (p | "Shards" >> ShardSpecs(launch.specs)
            | "Features" >> FeaturesStage(plan.layout, settings, shared))
    return refs | "Verdict" >> VerdictStage(plan.layout, plan.verdict_settings(), shared)


def claim_and_install(launch: Launch) -> None:
    """Before any work: the output is ours and writable, and the run's artifacts are in it."""
    plan = launch.plan
    outputdir.prepare(plan.layout)
    outputdir.claim(plan.layout, launch.kind, plan.config_fp, {s.shard for s in launch.specs}, plan.cfg.force)
    plan.install()


def _dry_run(launch: Launch) -> int:
    result = run_beam(lambda p: build_graph(p, launch), launch.options)
    names = graph_names(result)
    print(f"dry run: job graph translated ({len(names)} transforms), nothing submitted or written")
    for n in names:
        print(f"  {n}")
    return 0


def dedup_summary(layout, shards: list[dict], kinds) -> dict:
    """Rows flagged and clusters (distinct representatives) per dedup kind, from the records of the
    shards that flagged rows."""
    from shardguard.indexes.arrowio import read_table

    reps: dict[str, set] = {k: set() for k in kinds}
    rows = {k: sum((s.get("reasons") or {}).get(f"dedup:{k}", 0) + (s.get("tags") or {}).get(f"dedup:{k}", 0)
                   for s in shards if s["status"] == "ok") for k in kinds}
    for s in shards:
        if s["status"] != "ok" or not any(r.startswith("dedup:") for r in s.get("reasons") or {}):
            continue
        for kind in ("removed", "review", "tagged"):
            for matches in read_table(layout.abs(s["outputs"][kind]["path"]), columns=["matches"]).column(0).to_pylist():
                for x in matches or []:
                    if x["kind"] == "dedup" and x["source"] in reps:
                        reps[x["source"]].add(x["entry"])
    return {"kinds": list(kinds), "per_kind": {k: {"rows": rows[k], "clusters": len(reps[k])} for k in kinds}}


def finish_manifest(launch: Launch) -> dict:
    """Combine this run's shard summaries into the manifest; check the accounting; write it."""
    plan, layout = launch.plan, launch.plan.layout
    shards = []
    for spec in launch.specs:
        path = layout.summary(spec.shard)
        if not fileio.exists(path):
            raise mf.ManifestError(f"shard {spec.shard} has no summary after the run ({path})")
        shards.append(fileio.read_json(path))
    lists = plan.list_records()
    if plan.cfg.dedup.kinds:
        launch.extra["dedup"] = dedup_summary(layout, shards, plan.cfg.dedup.kinds)
    sets = seedset.records(plan.rules, layout, shards)
    extra = dict(plan.manifest_extra(), **({"seed_sets": sets} if sets else {}), **launch.extra)
    manifest = mf.build_manifest(config=launch.config or plan.cfg.to_dict(), config_fp=plan.config_fp,
                                 lists=lists, shards=shards, started=launch.started, finished=now(),
                                 kind=launch.kind, extra=extra)
    problems = mf.check_accounting(manifest)
    if problems:
        raise mf.ManifestError("accounting check failed: " + "; ".join(problems))
    mf.write_manifest(layout.root, manifest)
    return manifest


def execute(launch: Launch, after=None) -> int:
    """Run the pipeline and finish the manifest; the exit code (``runutil`` module doc).
    ``after(launch)`` runs between the pipeline and the manifest (a re-filter's lineage)."""
    if is_dry_run(launch.options):
        return _dry_run(launch)
    from shardguard.pipelines.progress import Progress

    try:
        with Progress(launch.plan.layout, [s.shard for s in launch.specs], enabled=is_local(launch.options)
                      and not launch.quiet):
            run_beam(lambda p: build_graph(p, launch), launch.options)
        if after is not None:
            after(launch)
        manifest = finish_manifest(launch)
    except (OSError, mf.ManifestError) as exc:
        return error_exit(exc) if isinstance(exc, OSError) else _manifest_failed(exc)
    print(mf.summary_text(manifest))
    failed = manifest["totals"]["counts"]["shards_failed"] or not manifest["health"]["ok"]
    return 1 if failed else 0


def _manifest_failed(exc) -> int:
    print(f"shardguard: error: {exc}", file=sys.stderr)
    return 1
