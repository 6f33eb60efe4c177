"""The scan without a Beam runner: the pipeline's own DoFns called in a plain loop (benchmarks only).

``scan_without_runner(argv)`` takes ``shardguard scan`` flags and does what the pipeline does —
plan, read each shard, decode and hash in 64-row batches, match, decide, write every output and
the summary, then the manifest — with the very same DoFn objects, one shard at a time in this
thread. Outputs are the same as a scan's (checked by ``bench_hash_stage.py``). Timing it next to
the real pipeline separates what Beam's runner costs (bundling, coders, the group by shard) from
the reading and writing a scan must do whatever runs it.
"""
from __future__ import annotations

import argparse
import time


def _value(out):
    """An output of a DoFn's ``process``: (tag or None, value)."""
    from apache_beam.pvalue import TaggedOutput

    return (out.tag, out.value) if isinstance(out, TaggedOutput) else (None, out)


def scan_without_runner(argv: list[str]) -> dict:
    """Run a scan's DoFns over every shard in a loop; return the manifest (see module doc)."""
    from shardguard.pipelines import scan as sc
    from shardguard.pipelines.plan import prepare
    from shardguard.pipelines.runutil import prepare_output
    from shardguard.transforms.hashing import ComputeFeaturesFn
    from shardguard.transforms.match import MatchShardFn
    from shardguard.transforms.parquet_shards import shard_ids
    from shardguard.transforms.read import PlanShardFn, ReadShardRowsFn
    from shardguard.transforms.write import WriteShardFn

    parser = argparse.ArgumentParser()
    sc.add_scan_flags(parser)
    cfg = sc.config_from_args(parser.parse_args(argv))
    started = sc._now()
    paths = sc.expand_inputs(cfg.inputs)
    prepare_output(cfg.output)
    plan = prepare(cfg)
    if plan.model_spec is not None:
        raise ValueError("scan_without_runner: hash-only scans (no CLIP model)")
    ids = shard_ids(paths)
    specs = [{"shard": ids[p], "path": p, "format": sc.shard_format(p)} for p in paths]
    plan_fn = PlanShardFn(cfg.output, plan.config_fp, cfg.force)
    read_fn = ReadShardRowsFn(plan.columns)
    feat_fn = ComputeFeaturesFn(plan.hashes, cfg.decode.max_pixels, None, cfg.decode.exact)
    match_fn = MatchShardFn(*sc.match_args(plan))
    match_fn.setup()
    write_fn = WriteShardFn(cfg.output, sc.write_settings(plan), len(specs), time.time())
    for spec in specs:
        for tag, todo in map(_value, plan_fn.process(spec)):
            if tag is not None:  # already done
                continue
            grouped = {"info": [], "features": [], "failed": []}
            for tag, (shard, value) in map(_value, read_fn.process(todo)):
                if tag is not None:  # info / failed
                    grouped[tag].append(value)
                    continue
                for _, (_, feats) in map(_value, feat_fn.process((shard, value))):
                    grouped["features"].append(feats)  # ok and dead-letter batches alike
            for bundle in match_fn.process((todo["shard"], grouped)):
                list(write_fn.process(bundle))
    return sc.finish_manifest(plan, specs, started)


def differing_outputs(a: str, b: str) -> list[str]:
    """Relative paths whose bytes differ between two local run directories (the manifest, which
    records times and the output path, excepted)."""
    from pathlib import Path

    files = lambda d: {p.relative_to(d).as_posix() for p in Path(d).rglob("*") if p.is_file()}  # noqa: E731
    names = (files(a) | files(b)) - {"manifest.json"}
    return sorted(n for n in names if not (Path(a, n).is_file() and Path(b, n).is_file()
                                           and Path(a, n).read_bytes() == Path(b, n).read_bytes()))
