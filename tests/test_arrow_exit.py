"""Exit 134 at interpreter exit (apache/arrow #33975, #34314), made deterministic.

Reading parquet from a Python object (``pq.read_table(io.BytesIO(...))``) left Arrow's thread pool
holding Python buffers; their release calls ``PyGILState_Ensure`` from an Arrow thread, and when that
happens during interpreter shutdown the process dies with "terminate called without an active
exception". A tiny LD_PRELOAD shim built here delays every non-main-thread ``PyGILState_Ensure`` by
2 ms, which made the old code abort every time (``manifest why`` 5 of 5, measured); shardguard now reads
through ``indexes/arrowio.py`` (native files or Arrow-owned buffers, no pre-buffering, no threads)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from conftest import run_scan, sample_list_flags

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <unistd.h>
#include <sys/syscall.h>
typedef int (*ensure_fn)(void);
int PyGILState_Ensure(void) {
    static ensure_fn real;
    if (!real) real = (ensure_fn)dlsym(RTLD_NEXT, "PyGILState_Ensure");
    if (syscall(SYS_gettid) != getpid()) usleep(2000);
    return real();
}
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None or sys.platform != "linux":
        pytest.skip("needs a C compiler on Linux to build the LD_PRELOAD shim")
    d = tmp_path_factory.mktemp("shim")
    (d / "shim.c").write_text(SHIM)
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(d / "shim.so"), str(d / "shim.c"), "-ldl"], check=True)
    return str(d / "shim.so")


def _cli(args, shim, cwd):
    env = dict(os.environ, LD_PRELOAD=shim, SHARDGUARD_LOG="WARNING")
    return subprocess.run([sys.executable, "-m", "shardguard.pipelines.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_refilter_and_manifest_why_exit_0_with_slow_gil_handoff(sample, tmp_path, shim):
    src, planted = sample
    run = tmp_path / "run"
    assert run_scan(["--input", str(src / "shards" / "*.parquet"), "--output", str(run), "--quiet"]
                    + sample_list_flags(src)[:2]) == 0
    key = pq.read_table(run / "removed" / "00000.parquet").column("key")[0].as_py()
    for _ in range(3):
        r = _cli(["manifest", "why", str(run), key], shim, tmp_path)
        assert r.returncode == 0, (r.returncode, r.stderr[-500:])
    r = _cli(["refilter", "--from", str(run), "--output", str(tmp_path / "child"), "--quiet",
              "--hash-list", f"md5={src / 'lists' / 'known-bad-md5.txt'}", "--direct_num_workers=1"], shim, tmp_path)
    assert r.returncode == 0, (r.returncode, r.stderr[-500:])
    r = _cli(["manifest", "diff", str(run), str(tmp_path / "child")], shim, tmp_path)
    assert r.returncode == 0, (r.returncode, r.stderr[-500:])
