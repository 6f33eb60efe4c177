"""The scan without a Beam runner: the pipeline's own DoFns called in a plain loop (benchmarks only).

``scan_without_runner(argv)`` takes ``shardguard scan`` flags and does what the pipeline does —
plan, read each shard, decode and hash in 64-row batches, write its features, match, decide, write
every output and the summary, then the manifest — with the very same stage functions the DoFns
call, one shard at a time in this thread. Outputs are the same as a scan's (checked by
``bench_hash_stage.py``). Timing it next to the real pipeline separates what Beam's runner costs
(bundling, coders, the shuffle of shard specs) from the reading and writing a scan must do.
"""
from __future__ import annotations


def scan_without_runner(argv: list[str]) -> dict:
    """Run a scan's two stages over every shard in a loop; return the manifest (see module doc)."""
    from shardguard.pipelines.launch import claim_and_install, finish_manifest, staging_dir
    from shardguard.pipelines.plan import prepare
    from shardguard.pipelines.scan import plan_scan
    from shardguard.transforms.contracts import RunLayout
    from shardguard.transforms.features import FeatureRunner
    from shardguard.transforms.featurestage import ensure_features
    from shardguard.transforms.shared import SharedHandles
    from shardguard.transforms.verdict import verdict_shard

    launch, cfg = plan_scan(argv)
    with staging_dir() as staging:
        launch.plan = prepare(cfg, RunLayout(cfg.output), staging)
        claim_and_install(launch)
    plan, shared = launch.plan, SharedHandles()
    fs, vs = plan.feature_settings(), plan.verdict_settings()
    if vs.dataset_rules or plan.model_spec is not None:
        raise ValueError("scan_without_runner: hash-only scans (no CLIP model, no dataset rules)")
    for e in fs.extractors:
        e.setup(shared)
    for r in vs.rules:
        r.setup(shared)
    runner = FeatureRunner(fs.extractors, fs.max_pixels, fs.exact)
    for spec in launch.specs:
        verdict_shard(ensure_features(spec, plan.layout, fs, runner), [], plan.layout, vs, vs.rules)
    return finish_manifest(launch)


def differing_outputs(a: str, b: str) -> list[str]:
    """Relative paths whose bytes differ between two local run directories (the manifest, which
    records times and the output path, excepted)."""
    from pathlib import Path

    files = lambda d: {p.relative_to(d).as_posix() for p in Path(d).rglob("*") if p.is_file()}  # noqa: E731
    names = (files(a) | files(b)) - {"manifest.json"}
    return sorted(n for n in names if not (Path(a, n).is_file() and Path(b, n).is_file()
                                           and Path(a, n).read_bytes() == Path(b, n).read_bytes()))
