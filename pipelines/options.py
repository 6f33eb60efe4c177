"""Beam pipeline options: the user's flags pass through, with a local default that never downloads.

Beam 2.77's default ``DirectRunner`` first tries to fetch a Prism binary from the internet; shardguard
therefore picks the in-process ``FnApiRunner`` when no ``--runner`` is given. ``--runner`` (Dataflow,
Flink, Spark, Prism...) and ``--direct_running_mode``/``--direct_num_workers`` still work as usual.
"""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

DEFAULT_LOCAL_RUNNER = "FnApiRunner"


def pipeline_options(beam_args: list[str]) -> PipelineOptions:
    """PipelineOptions from the leftover argv, defaulting the runner to the in-process one."""
    opts = PipelineOptions(beam_args)
    if not opts.view_as(StandardOptions).runner:
        opts.view_as(StandardOptions).runner = DEFAULT_LOCAL_RUNNER
    return opts
