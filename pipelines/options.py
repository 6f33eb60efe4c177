"""Beam pipeline options: the user's flags pass through, with a local default that never downloads.

Beam 2.77's default ``DirectRunner`` first tries to fetch a Prism binary from the internet; shardguard
therefore picks the in-process ``FnApiRunner`` when no ``--runner`` is given. ``--runner`` (Dataflow,
Flink, Spark, Prism...) and ``--direct_running_mode``/``--direct_num_workers`` still work as usual.
"""
from __future__ import annotations

import os

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions, TestOptions

DEFAULT_LOCAL_RUNNER = "FnApiRunner"


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """PipelineOptions from the leftover argv, defaulting the runner to the in-process one.

    With no runner options at all, the local run uses one thread per core
    (``multi_threading``): Pillow, hashlib and FAISS release the GIL in their heavy loops, so threads
    scale without the start-up cost of worker processes.
    """
    opts = PipelineOptions(beam_args)
    # Beam 2.77 parses --dry_run as a string, so "--dry_run=False" would be truthy: make it a bool.
    test = opts.view_as(TestOptions)
    test.dry_run = str(test.dry_run).strip().lower() in ("true", "1", "yes")
    std, direct = opts.view_as(StandardOptions), opts.view_as(DirectOptions)
    if not std.runner:
        std.runner = DEFAULT_LOCAL_RUNNER
        if not any(a.startswith("--direct_") for a in beam_args):
            direct.direct_running_mode = "multi_threading"
            direct.direct_num_workers = max(1, os.cpu_count() or 1)
    return opts


def is_dry_run(opts: PipelineOptions) -> bool:
    """True for ``--dry_run=True``: translate the job graph, submit nothing, write nothing."""
    return bool(opts.view_as(TestOptions).dry_run)


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
