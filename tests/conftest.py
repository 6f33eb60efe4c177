"""Shared fixtures: the real reference data in ../shared/testdata, seeded samples, a scan runner."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def testdata_dir() -> Path | None:
    """``$SHARDGUARD_TESTDATA`` or ``../shared/testdata`` beside the project, when present."""
    env = os.environ.get("SHARDGUARD_TESTDATA")
    for cand in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "testdata"]:
        if cand.is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def testdata() -> Path:
    """Root of the shared reference data; skips the test with the reason when it is absent."""
    d = testdata_dir()
    if d is None:
        pytest.skip("reference data not found: set SHARDGUARD_TESTDATA or put shared/testdata "
                    "beside the project (see shared/testdata/SOURCES.md)")
    return d


@pytest.fixture(scope="session")
def sample(tmp_path_factory):
    """The seeded sample dataset (3 shards, lists) that `make demo` also scans."""
    from shardguard.pipelines.sample_data import build_sample

    out = tmp_path_factory.mktemp("sample")
    planted = build_sample(str(out))
    return out, planted


def run_scan(argv: list[str]) -> int:
    """Run the scan CLI in-process and return its exit code."""
    from shardguard.pipelines.scan import run

    return run(argv)


def sample_list_flags(sample_dir: Path) -> list[str]:
    """--hash-list flags for the sample's three lists."""
    lists = sample_dir / "lists"
    return ["--hash-list", f"pdq={lists / 'known-bad-pdq.csv'}",
            "--hash-list", f"phash={lists / 'known-bad-phash.txt'}",
            "--hash-list", f"md5={lists / 'known-bad-md5.txt'}"]


def beam_test_pipeline():
    """A TestPipeline on the in-process runner (the default DirectRunner would fetch Prism)."""
    from apache_beam.testing.test_pipeline import TestPipeline

    return TestPipeline(runner="FnApiRunner")
