"""Bundles of the local runner end without waiting out a long state-sampler sleep
(``pipelines/sampler.py``)."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.runners.worker import statesampler
from apache_beam.testing.util import assert_that, equal_to

from shardguard.pipelines.options import pipeline_options
from shardguard.pipelines.runutil import run_beam
from shardguard.pipelines.sampler import SAMPLING_PERIOD_MS, short_sampler_period


def _periods(p):
    """The sampling period of the sampler that tracks the bundle, as seen from inside a DoFn."""
    return (p | beam.Create(range(8)) | beam.Map(lambda i: (i % 2, i)) | beam.GroupByKey()
            | beam.Map(lambda kv: statesampler.get_current_tracker().sampling_period_ms)
            | beam.Distinct())


def test_a_run_samples_with_a_short_period_and_puts_beams_back():
    """Through ``run_beam`` the bundles' samplers sleep at most ``SAMPLING_PERIOD_MS``; plain Beam,
    and anything after the run, keep Beam's default (the check can fail)."""
    default = statesampler.DEFAULT_SAMPLING_PERIOD_MS
    assert SAMPLING_PERIOD_MS < default
    with beam.Pipeline(options=pipeline_options([])) as p:
        assert_that(_periods(p), equal_to([default]))
    run_beam(lambda p: assert_that(_periods(p), equal_to([SAMPLING_PERIOD_MS])), pipeline_options([]))
    assert statesampler.StateSampler("x", None).sampling_period_ms == default


def test_a_sampler_that_takes_its_period_otherwise_is_left_alone(monkeypatch):
    """A Beam whose sampler no longer has the period as its one default is not patched."""
    def init(self, prefix, counter_factory, sampling_period_ms=123, extra=None):
        self.sampling_period_ms = sampling_period_ms

    monkeypatch.setattr(statesampler.StateSampler, "__init__", init)
    with short_sampler_period():
        assert statesampler.StateSampler.__init__.__defaults__ == (123, None)
