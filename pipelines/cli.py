"""The ``shardguard`` command: one entry point, a sub-command per task.

Every sub-command refuses arguments it does not know (exit 2, one line), prints errors as one line,
and survives a closed pipe (``shardguard manifest show RUN | head``).
"""
from __future__ import annotations

import gc
import json
import logging
import os
import sys

USAGE = """usage: shardguard <command> [options]   (shardguard <command> --help for its options)

commands:
  scan            scan shards against hash lists, concept indexes and rules (Beam options pass through)
  refilter        re-apply new lists/concepts/rules to a finished run, from its stored features
  prefilter       drop metadata rows (no images) by URL, URL-hash and domain lists, before download
  lists build     parse, validate and build a fingerprinted list artifact
  concepts build  build a CLIP concept index from prompts, exemplar images or embeddings
  manifest show|why|diff|verify   inspect and audit run directories (--json for scripts)
  lookup          is this image (or a near-copy) in a scanned run?
  sample          write a small synthetic dataset and lists (what `make demo` scans)

options:
  --version       print the version and exit
  -h, --help      this help
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


def _say(result, as_json: bool, render) -> None:
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(render(result))


def _manifest(argv) -> int:
    from shardguard.pipelines import manifest_tools as mt
    from shardguard.pipelines.options import StrictParser, configure_filesystems, pipeline_options, split_args

    p = StrictParser(prog="shardguard manifest", description="inspect and audit run directories")
    sub = p.add_subparsers(dest="action", required=True, parser_class=StrictParser)
    for name, helptext in (("show", "summary of a run"), ("verify", "recompute checksums and accounting; "
                                                                   "report files the manifest does not list")):
        sp = sub.add_parser(name, help=helptext, description=helptext)
        sp.add_argument("run_dir", help="run directory")
        sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp = sub.add_parser("why", help="why a row was removed, quarantined, tagged or kept")
    sp.add_argument("run_dir", help="run directory")
    sp.add_argument("key", help="the row's key")
    sp.add_argument("--shard", help="only this shard")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    sp = sub.add_parser("diff", help="rows flagged in one run and not the other")
    sp.add_argument("run_a", help="first run directory")
    sp.add_argument("run_b", help="second run directory")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    a, fs_args = split_args(p, argv)
    configure_filesystems(pipeline_options(fs_args))
    fn = {"show": lambda: dict(mt.show(a.run_dir), _dir=a.run_dir), "why": lambda: mt.why(a.run_dir, a.key, a.shard),
          "diff": lambda: mt.diff(a.run_a, a.run_b), "verify": lambda: mt.verify(a.run_dir)}[a.action]
    result = fn()
    _say({k: v for k, v in result.items() if k != "_dir"} if a.json else result, a.json,
         lambda r: mt.text(a.action, r))
    if a.action == "verify" and not result["ok"]:
        return 1
    return 1 if a.action == "why" and not result["found"] else 0


def _lookup(argv) -> int:
    from shardguard.pipelines.lookup import lookup, text
    from shardguard.pipelines.options import StrictParser, configure_filesystems, pipeline_options, split_args

    p = StrictParser(prog="shardguard lookup", description="is this image, or a near-copy, in a scanned run?")
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("images", nargs="+", help="image files to look up")
    p.add_argument("--clip-threshold", type=float, default=0.95, help="CLIP cosine for a near-copy (default 0.95)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    a, fs_args = split_args(p, argv)
    configure_filesystems(pipeline_options(fs_args))
    result = lookup(a.run, a.images, a.clip_threshold)
    _say(result, a.json, text)
    return 0 if all(r["found"] for r in result["results"]) else 1


def _commands():
    from shardguard.pipelines import builders

    def scan(rest):
        from shardguard.pipelines.scan import run
        return run(rest)

    def refilter(rest):
        from shardguard.pipelines.refilter import run
        return run(rest)

    def prefilter(rest):
        from shardguard.pipelines.prefilter import run
        return run(rest)

    def report(rest):
        from shardguard.pipelines.report import main
        return main(rest)

    def sample(rest):
        from shardguard.pipelines.sample_data import main
        return main(rest)

    return {"scan": scan, "refilter": refilter, "prefilter": prefilter, "manifest": _manifest,
            "lookup": _lookup, "sample": sample, "report": report,
            "lists build": builders.lists_build, "concepts build": builders.concepts_build}


def _dispatch(argv: list[str]) -> int:
    from shardguard.indexes.version import package_version

    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"shardguard {package_version()}")
        return 0
    commands = _commands()
    two = " ".join(argv[:2])
    if two in commands:
        return commands[two](argv[2:])
    if argv[0] in commands:
        return commands[argv[0]](argv[1:])
    known = sorted({c.split()[0] for c in commands})
    print(f"shardguard: error: unknown command {' '.join(argv[:2]) if argv[0] in ('lists', 'concepts') else argv[0]!r}"
          f" (commands: {', '.join(known)}; lists and concepts take 'build')", file=sys.stderr)
    return 2


def main(argv=None) -> int:
    """Entry point of the ``shardguard`` console script."""
    from shardguard.pipelines.manifest import ManifestError
    from shardguard.pipelines.options import UsageError

    argv = list(sys.argv[1:] if argv is None else argv)
    _setup_logging()
    try:
        return _dispatch(argv)
    except (UsageError, ManifestError, ValueError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            return _closed_pipe()
        print(f"shardguard: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return _closed_pipe()


def console() -> int:
    """The ``shardguard`` console script: ``main``, then the heap is frozen before the interpreter exits.

    A run leaves ~230k long-lived objects (Beam, pyarrow, pandas, the lists…), and the interpreter's
    shutdown collects cycles over all of them several times: 0.5-1.2 s of CPU after every run,
    measured (benchmarks/RESULTS.md). Nothing left is unfinished (every output was written, closed and
    renamed into place inside the run; atexit handlers, logging's flush among them, still run), so the
    collections at exit are skipped by freezing the heap. ``main(argv)`` called from another program
    leaves that program's collector alone."""
    rc = main()
    gc.freeze()
    return rc


def _closed_pipe() -> int:
    """The reader went away (``| head``): no traceback; stdout is pointed at /dev/null for exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(console())
