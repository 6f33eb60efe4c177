"""Command lines and Beam pipeline options: every argument is known, every runner mode supported.

shardguard's own flags are parsed first; what is left must be flags that Beam's PipelineOptions
actually define (all of them, Dataflow's included). Anything else — a mistyped flag, an unquoted
glob the shell expanded into extra arguments — is refused before any work (``UsageError``, exit 2),
because Beam alone would only warn and the run would check less than it was asked to.

Runners: with no ``--runner``, the in-process ``FnApiRunner`` with one thread per core (Beam 2.77's
``DirectRunner`` would first download a Prism binary; ``--runner DirectRunner`` is read as the same
in-process runner). ``DataflowRunner`` works (``--dry_run=True`` translates the job offline).
Portable, Flink, Spark and Prism need a job server: they are accepted with ``--job_endpoint`` of one
that runs; without it they would try to download one, so they are refused. Other runners are refused.
"""
from __future__ import annotations

import argparse
import difflib
import os

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    PortableOptions,
    StandardOptions,
    TestOptions,
    _BeamArgumentParser,
)

DEFAULT_LOCAL_RUNNER = "FnApiRunner"
_LOCAL = {"fnapirunner", "directrunner", "switchingdirectrunner", "testdirectrunner"}
_DATAFLOW = {"dataflowrunner", "testdataflowrunner"}
_JOB_SERVER = {"portablerunner", "flinkrunner", "sparkrunner", "prismrunner"}


class UsageError(ValueError):
    """A command line that cannot be run as given (one line for the user; exit code 2)."""


class StrictParser(argparse.ArgumentParser):
    """An ArgumentParser that never abbreviates and raises UsageError instead of exiting."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):  # noqa: D102
        raise UsageError(f"{self.prog}: {message}")


class _BeamParser(_BeamArgumentParser):
    def error(self, message):  # noqa: D102
        raise UsageError(f"Beam option: {message}")


def beam_parser() -> argparse.ArgumentParser:
    """A parser that knows every option Beam's PipelineOptions classes define."""
    parser = _BeamParser(allow_abbrev=False, add_help=False)
    seen = {}
    for cls in PipelineOptions.__subclasses__():
        seen.setdefault(str(cls), cls)
    for cls in seen.values():
        cls._add_argparse_args(parser)  # noqa: SLF001 - how Beam itself collects its options
    return parser


def _flag_names(*parsers) -> list[str]:
    return [s for p in parsers for a in p._actions for s in a.option_strings]  # noqa: SLF001


def split_args(parser: argparse.ArgumentParser, argv) -> tuple[argparse.Namespace, list[str]]:
    """(shardguard's args, Beam's args); raise UsageError for anything neither knows."""
    args, rest = parser.parse_known_args(list(argv or []))
    beam = beam_parser()
    _, unknown = beam.parse_known_args(rest)
    if unknown:
        bad = unknown[0]
        if not bad.startswith("-"):
            raise UsageError(f"{parser.prog}: unexpected argument {bad!r}: an unquoted glob that the shell "
                             f"expanded? quote it, e.g. --input 'data/*.parquet'")
        name = bad.split("=", 1)[0]
        close = difflib.get_close_matches(name, _flag_names(parser, beam), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UsageError(f"{parser.prog}: unknown option {name}{hint}; neither shardguard nor Beam defines it")
    return args, rest


def _runner_key(name: str) -> str:
    key = name.rsplit(".", 1)[-1].lower()
    return key if key.endswith("runner") else key + "runner"


def check_runner(opts: PipelineOptions) -> None:
    """Refuse runner modes that cannot run here as asked (see module doc)."""
    std, test = opts.view_as(StandardOptions), opts.view_as(TestOptions)
    key = _runner_key(std.runner or DEFAULT_LOCAL_RUNNER)
    if key not in _LOCAL | _DATAFLOW | _JOB_SERVER:
        raise UsageError(f"--runner {std.runner}: not supported; use the default local runner, DataflowRunner, "
                         "or PortableRunner/FlinkRunner/SparkRunner/PrismRunner with --job_endpoint")
    if key in _JOB_SERVER and not opts.view_as(PortableOptions).job_endpoint:
        raise UsageError(f"--runner {std.runner} needs a running job server (--job_endpoint HOST:PORT); "
                         "without one Beam would download it, which this run cannot rely on")
    if test.dry_run and key not in _DATAFLOW:
        raise UsageError("--dry_run=True translates a Dataflow job without running it; on a local runner it "
                         "would run the whole scan, so it is refused (add --runner DataflowRunner …)")
    direct = opts.view_as(DirectOptions)
    if direct.direct_running_mode not in ("in_memory", "multi_threading", "multi_processing"):
        raise UsageError(f"--direct_running_mode {direct.direct_running_mode}: use in_memory, multi_threading "
                         "or multi_processing")
    if direct.direct_num_workers is not None and direct.direct_num_workers < 0:
        # Beam would split each stage into no parts and fail mid-run with an IndexError
        raise UsageError(f"--direct_num_workers {direct.direct_num_workers}: give 1 or more (0: one per core)")


class RunOptions(PipelineOptions):
    """PipelineOptions that make each view once. Beam makes a view (``view_as``) by parsing the
    argv again (~0.4 ms) and asks for ~100 of them while it builds, translates and starts one graph
    (~45 ms of a 1-second re-filter). A view holds no state of its own — every view reads and writes
    the options' one shared value store — so handing out the same view again changes nothing.
    Adds no flag; pickles as plain options (the views are left out)."""

    def view_as(self, cls):  # noqa: D102
        views = self.__dict__.setdefault("_views", {})
        if cls not in views:
            views[cls] = super().view_as(cls)
        return views[cls]

    def __getstate__(self):  # noqa: D105
        state = dict(super().__getstate__())
        state.pop("_views", None)
        return state


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """PipelineOptions from the remaining argv, checked, with the local default runner filled in.

    With no runner options at all, the local run uses one thread per core: Pillow, hashlib and FAISS
    release the GIL in their heavy loops, so threads scale without the start-up cost of worker
    processes. The threads are Beam's ``in_memory`` mode with one worker per core — its runner
    splits each stage's input over the workers and runs the parts on threads (``fn_runner``'s
    ``ParallelBundleManager``), handing elements over in memory — rather than ``multi_threading``,
    which does the same through in-process gRPC servers: no timed data-plane flush to guard
    (``dataplane.py``), and 4% off a 20k-row scan, 6% off its re-filter (benchmarks/RESULTS.md)."""
    opts = RunOptions(beam_args)
    # Beam 2.77 parses --dry_run as a string, so "--dry_run=False" would be truthy: make it a bool.
    test = opts.view_as(TestOptions)
    test.dry_run = str(test.dry_run).strip().lower() in ("true", "1", "yes")
    check_runner(opts)
    std, direct = opts.view_as(StandardOptions), opts.view_as(DirectOptions)
    if not std.runner or _runner_key(std.runner) in _LOCAL:
        std.runner = DEFAULT_LOCAL_RUNNER
        if not any(a.startswith("--direct_") for a in beam_args):
            direct.direct_running_mode = "in_memory"
            direct.direct_num_workers = max(1, os.cpu_count() or 1)
    return opts


def is_dry_run(opts: PipelineOptions) -> bool:
    """True for ``--dry_run=True``: translate the job graph, submit nothing, write nothing."""
    return bool(opts.view_as(TestOptions).dry_run)


def is_local(opts: PipelineOptions) -> bool:
    """True when the pipeline runs in this process (or its local workers)."""
    return _runner_key(opts.view_as(StandardOptions).runner or DEFAULT_LOCAL_RUNNER) in _LOCAL


def configure_filesystems(opts: PipelineOptions) -> None:
    """Give Beam's FileSystems the user's options (S3 endpoint and keys, GCS project…) for the
    launcher's own IO (listing inputs, lists, manifest). This is Beam's own mechanism: workers do the
    same from the pipeline's options when they start."""
    FileSystems.set_options(opts)


def graph_names(result) -> list[str]:
    """Unique names of the transforms of a translated job (a dry run's ``result.job``)."""
    job = getattr(result, "job", None)
    proto = getattr(job, "proto_pipeline", None)
    if proto is None:
        return []
    return sorted(t.unique_name for t in proto.components.transforms.values())
