"""``shardguard report``: one self-contained HTML page (no script, font or request leaves it), checked
as text and rendered in a real headless Chromium (skipped with the reason where it is absent)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time

import pytest
from conftest import run_scan, sample_list_flags

from shardguard.pipelines.cli import main as cli
from shardguard.pipelines.refilter import run as refilter

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def report(sample, tmp_path_factory):
    src, planted = sample
    d = tmp_path_factory.mktemp("report")
    L = src / "lists"
    assert run_scan(["--input", str(src / "shards" / "*.parquet"), "--output", str(d / "p"), "--quiet",
                     "--hash-list", f"md5={L / 'known-bad-md5.txt'}"]) == 0
    assert refilter(["--from", str(d / "p"), "--output", str(d / "c"), "--quiet",
                     "--hash-list", f"pdq={L / 'known-bad-pdq.csv'}"]) == 0
    assert cli(["report", str(d / "c"), "--output", str(d / "r.html")]) == 0
    return d, (d / "r.html").read_text(), json.loads((d / "c" / "manifest.json").read_text())


def test_report_is_self_contained_and_shows_the_run(report):
    d, page, m = report
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:|//)', page) and "<script" not in page
    assert m["run"]["id"] in page and "OK: " in page and "health check OK" in page
    t = m["totals"]["counts"]
    assert f"<td class=\"num\">{t['rows_in']:,}</td><td class=\"num\">{t['kept']:,}</td>" in page
    assert "hashlist:known-bad-pdq" in page and "threshold 31" in page  # distance histogram with its threshold
    assert "Lineage (newest first)" in page and "known-bad-pdq" in page
    assert "https://" not in page.split("<h2>Config</h2>")[0]  # no URL outside the recorded config


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install chromium); .ci/run installs it")
def test_report_renders_in_headless_chromium_without_console_errors(report, tmp_path):
    d, page, m = report
    res = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
                          "--v=0", "--dump-dom", f"file://{d / 'r.html'}"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-1000:]
    assert m["run"]["id"] in res.stdout and "<svg" in res.stdout
    assert not [x for x in res.stderr.splitlines() if "CONSOLE" in x and ("rror" in x or "Uncaught" in x)]
    shot = tmp_path / "r.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", f"--screenshot={shot}",
                    "--window-size=1200,2400", f"file://{d / 'r.html'}"], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000


def test_report_of_ten_thousand_shards_stays_fast_and_small(tmp_path):
    from shardguard.pipelines import manifest as mf
    from shardguard.pipelines.report import render

    shards = [{"shard": f"{i:05d}", "status": "ok", "input": {"path": f"/d/{i:05d}.parquet", "sha256": "0" * 64},
               "counts": {"rows_in": 1000, "kept": 990, "removed": 0, "quarantined": 0, "errored": 10,
                          "unchecked_kept": 0, "tagged": 0}, "reasons": {}, "tags": {},
               "errors": {"decode/truncated": 10}, "outputs": {}} for i in range(10_000)]
    m = mf.build_manifest(config={"inputs": ["/d/*.parquet"]}, config_fp="x", lists=[], shards=shards,
                          started="2026-01-01T00:00:00Z", finished="2026-01-01T01:00:00Z")
    (tmp_path / "run").mkdir()
    mf.write_manifest(str(tmp_path / "run"), m)
    t = time.monotonic()
    page = render(str(tmp_path / "run"))
    assert time.monotonic() - t < 30 and len(page) < 400_000
    assert "10,000,000" in page and page.count("<rect") < 500  # 40 groups of shards, not 10,000 bars


@pytest.mark.parametrize("extra", [[], ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]])
def test_progress_lines_on_stderr_under_every_local_runner(sample, tmp_path, capfd, monkeypatch, extra):
    src, _ = sample
    monkeypatch.setenv("SHARDGUARD_PROGRESS_SECONDS", "0.2")
    base = ["--input", str(src / "shards" / "*.parquet"), *sample_list_flags(src), *extra]
    assert run_scan(base + ["--output", str(tmp_path / "a")]) == 0
    err = capfd.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("[shardguard] shards")]
    assert lines and lines[-1].startswith("[shardguard] shards 3/3 done (3 with features), 111 rows")
    assert "15 removed or quarantined" in lines[-1]
    assert run_scan(base + ["--output", str(tmp_path / "b"), "--quiet"]) == 0
    assert "[shardguard] shards" not in capfd.readouterr().err
