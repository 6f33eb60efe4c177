"""Beam pipeline options: the user's flags pass through, with a local default that never downloads.

Beam 2.77's default ``DirectRunner`` first tries to fetch a Prism binary from the internet; shardguard
therefore picks the in-process ``FnApiRunner`` when no ``--runner`` is given. ``--runner`` (Dataflow,
Flink, Spark, Prism...) and ``--direct_running_mode``/``--direct_num_workers`` still work as usual.
"""
from __future__ import annotations

import os

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

DEFAULT_LOCAL_RUNNER = "FnApiRunner"


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """PipelineOptions from the leftover argv, defaulting the runner to the in-process one.

    With no runner options at all, the local run uses one thread per core
    (``multi_threading``): Pillow, hashlib and FAISS release the GIL in their heavy loops, so threads
    scale without the start-up cost of worker processes.
    """
    opts = PipelineOptions(beam_args)
    std, direct = opts.view_as(StandardOptions), opts.view_as(DirectOptions)
    if not std.runner:
        std.runner = DEFAULT_LOCAL_RUNNER
        if not any(a.startswith("--direct_") for a in beam_args):
            direct.direct_running_mode = "multi_threading"
            direct.direct_num_workers = max(1, os.cpu_count() or 1)
    return opts
