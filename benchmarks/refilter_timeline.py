"""Where a re-filter's wall time goes: its phases on one timeline, Beam's fixed costs apart from the
per-shard work.

Builds the parent like ``bench_refilter.py`` (seeded 384-px shards, list A = md5 of 1% of rows, a
scan), then re-filters it with list B (pHash of 1% of the rows of 1 shard in 10) ``--repeat`` times
in this process, timing each phase by wrapping the functions that bound it (a measuring aid: the
wrappers only record the clock, and the re-filter is the product's). Prints, for the last run:
launch, graph construction, translation, runner start until the first shard, the verdicts (per
runner thread: first start, last end, busy), the stage's end (last shard to bundle done: Beam's
state sampler is joined there), runner close, lineage, manifest.
Run: ``.venv/bin/python benchmarks/refilter_timeline.py [--rows 20000] [--shard-rows 500]``.
"""
from __future__ import annotations

import argparse
import functools
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_refilter import make_lists  # noqa: E402
from common import machine, shard_set  # noqa: E402

EVENTS: list[tuple[str, int, float, float]] = []


def _wrap(owner, name: str, label: str) -> None:
    """Record (label, thread, start, end) of every call of ``owner.name``."""
    fn = getattr(owner, name)

    @functools.wraps(fn)
    def timed(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            EVENTS.append((label, threading.get_ident(), t, time.perf_counter()))
    setattr(owner, name, timed)


def instrument() -> None:
    """Wrap the functions whose calls bound the phases."""
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.worker import bundle_processor

    from shardguard.pipelines import launch, refilter
    from shardguard.transforms import verdict

    for owner, name, label in [(launch, "build_graph", "graph"), (beam.Pipeline, "to_runner_api", "translate"),
                               (fn_runner.FnApiRunner, "run_stages", "stages"),
                               (bundle_processor.BundleProcessor, "process_bundle", "bundle"),
                               (verdict, "verdict_shard", "shard"), (launch, "run_beam", "beam"),
                               (refilter, "diff_runs", "lineage"), (launch, "finish_manifest", "manifest")]:
        _wrap(owner, name, label)


def phases(t0: float, t_end: float) -> list[tuple[str, float]]:
    """The last run's phases, in seconds, from its events."""
    first = lambda label: min(e[2] for e in EVENTS if e[0] == label)  # noqa: E731
    last = lambda label: max(e[3] for e in EVENTS if e[0] == label)  # noqa: E731
    shards_end = last("shard")
    bundle_end = max(e[3] for e in EVENTS if e[0] == "bundle" and e[3] >= shards_end)
    return [("launch (parent, lists, output)", first("graph") - t0), ("graph construction", last("graph") - first("graph")),
            ("translation", last("translate") - first("translate")),
            ("runner start to first shard", first("shard") - last("translate")),
            ("verdicts, first shard to last", shards_end - first("shard")),
            ("stage end (state sampler join)", bundle_end - shards_end),
            ("runner close", last("beam") - bundle_end), ("lineage", last("lineage") - first("lineage")),
            ("manifest", last("manifest") - first("manifest")), ("other", t_end - last("manifest"))]


def per_thread() -> list[str]:
    """Verdict time per runner thread: first start, last end, busy (relative to the first shard)."""
    shards = [e for e in EVENTS if e[0] == "shard"]
    t0 = min(e[2] for e in shards)
    lines = []
    for th in sorted({e[1] for e in shards}):
        mine = [e for e in shards if e[1] == th]
        lines.append(f"  thread: {len(mine)} shards, {min(e[2] for e in mine) - t0:.3f}–{max(e[3] for e in mine) - t0:.3f} s, "
                     f"busy {sum(e[3] - e[2] for e in mine):.3f} s")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--shard-rows", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=4, help="re-filters in this process; the last is reported")
    a = ap.parse_args()
    import logging
    logging.getLogger("shardguard").setLevel(logging.WARNING)
    from shardguard.pipelines.refilter import run as refilter
    from shardguard.pipelines.scan import run as scan

    shards = shard_set(a.rows, shards=max(1, a.rows // a.shard_rows))
    work = Path(tempfile.mkdtemp(prefix="sg-timeline-"))
    try:
        la, lb = make_lists(shards, work, 10)
        assert scan(["--input", str(shards / "*.parquet"), "--output", str(work / "scan"), "--hash-list", la,
                     "--quiet"]) == 0
        instrument()
        walls = []
        for _ in range(a.repeat):
            shutil.rmtree(work / "ref", ignore_errors=True)
            EVENTS.clear()
            t0 = time.perf_counter()
            assert refilter(["--from", str(work / "scan"), "--output", str(work / "ref"), "--hash-list", lb,
                             "--quiet"]) == 0
            walls.append(time.perf_counter() - t0)
        print(f"# re-filter timeline, {a.rows} rows in shards of {a.shard_rows}, 1 in 10 changes; {machine()}")
        print("re-filters (s): " + ", ".join(f"{w:.3f}" for w in walls))
        for name, secs in phases(t0, t0 + walls[-1]):
            print(f"  {name:34s} {secs:6.3f} s")
        print("\n".join(per_thread()))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
