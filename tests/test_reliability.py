"""Faults: kill -9 and resume, IO errors on the output, hostile values, leaks, pins."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, run_scan
from helpers import tree_bytes

from shardguard.pipelines.sample_data import encode, make_image, shard_rows, variants, write_shard


def _dataset(d: Path, shards=6, rows=60) -> Path:
    for s in range(shards):
        items = [(f"c{s}-{i}", encode(make_image(s * 1000 + i, 320)), "success") for i in range(rows)]
        items.append(("bad", variants(make_image(42))["recompressed"], "success"))
        write_shard(str(d / "in" / f"{s:05d}.parquet"), shard_rows(items, f"{s:05d}"))
    from shardguard.indexes import imagehashes
    (d / "pdq.txt").write_text(imagehashes.pdq(make_image(42))[0] + "\n")
    return d


def _cmd(d: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "shardguard.pipelines.cli", "scan", "--input", str(d / "in" / "*.parquet"),
            "--output", str(out), "--hash-list", f"pdq={d / 'pdq.txt'}", "--direct_num_workers=1"]


def _complete_files_only(out: Path) -> None:
    """Every file under its final name is whole: parquet readable, JSON parseable."""
    for p in out.rglob("*"):
        if p.is_file() and not p.name.startswith(".tmp-"):
            if p.suffix == ".parquet":
                pq.read_metadata(p)
            elif p.suffix == ".json":
                json.loads(p.read_text())


@pytest.mark.timeout(300)
def test_kill_9_at_random_points_then_resume_gives_the_uninterrupted_tree(tmp_path):
    d = _dataset(tmp_path)
    ref = tmp_path / "ref"
    assert subprocess.run(_cmd(d, ref), capture_output=True).returncode == 0
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for delay in (2.5, 4.0, 5.5):  # start-up ~2 s, then decoding and writing shards
        proc = subprocess.Popen(_cmd(d, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.exists():
            _complete_files_only(out)
    assert subprocess.run(_cmd(d, out), capture_output=True).returncode == 0
    assert not [p for p in out.rglob(".tmp-*")]
    assert tree_bytes(out) == tree_bytes(ref)  # byte-identical; nothing counted twice


def test_output_under_a_file_is_one_clear_line(tmp_path, capsys):
    write_shard(str(tmp_path / "in" / "s.parquet"), shard_rows([("x", encode(make_image(1)), "success")], "k"))
    (tmp_path / "afile").write_text("x")
    assert run_scan(["--input", str(tmp_path / "in" / "*.parquet"), "--output", str(tmp_path / "afile" / "out"),
                     "--features-only"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write to output" in err[0]


def test_disk_full_inside_the_pipeline_is_one_clear_line(tmp_path, capsys, monkeypatch):
    from shardguard.indexes import fileio

    write_shard(str(tmp_path / "in" / "s.parquet"), shard_rows([("x", encode(make_image(1)), "success")], "k"))
    real = fileio.write_atomic

    def full(path, data):
        if "/removed/" in path:
            raise OSError(28, "No space left on device", path)
        return real(path, data)

    monkeypatch.setattr(fileio, "write_atomic", full)
    logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
    rc = run_scan(["--input", str(tmp_path / "in" / "*.parquet"), "--output", str(tmp_path / "out"),
                   "--direct_num_workers=1", "--features-only", "--quiet"])
    assert rc == 3
    msg = capsys.readouterr().err
    assert "[Errno 28] No space left on device" in msg and "Traceback" not in msg
    assert "/removed/s.parquet" in msg and len(msg.strip().splitlines()) == 1  # one line, naming the path
    assert not (tmp_path / "out" / "shards" / "s.json").exists()  # the shard is not marked done


def test_hostile_values_are_data_not_paths(tmp_path):
    img = make_image(3)
    exif = __import__("PIL.Image", fromlist=["Exif"]).Exif()
    exif[0x9286] = b"A" * 60000  # a huge EXIF user comment
    import io
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes())
    rows = shard_rows([("x" * 20000, encode(img), "success"), ("dup", encode(make_image(4)), "success"),
                       ("dup2", encode(make_image(5)), "success"), ("exif", buf.getvalue(), "success"),
                       ("nul", encode(make_image(6)), "success")], "h")
    rows[0]["key"], rows[1]["key"], rows[2]["key"], rows[4]["key"] = "../../etc/passwd", "same", "same", "a\x00b"
    for r, w in zip(rows, (float("nan"), -5, 0, 10**12, None)):
        r["width"] = w
    table = pa.Table.from_pylist(rows).set_column(5, "width", pa.array([r["width"] for r in rows], pa.float64()))
    (tmp_path / "in").mkdir()
    pq.write_table(table, tmp_path / "in" / "h.parquet")
    write_shard(str(tmp_path / "in" / "h2.parquet"), shard_rows([("other shard", encode(make_image(7)), "success")], "h"))
    out = tmp_path / "out"
    assert run_scan(["--input", str(tmp_path / "in" / "*.parquet"), "--output", str(out), "--features-only"]) == 0
    feats = pq.read_table(out / "features" / "h.parquet").to_pylist()
    assert [(f["key"], f["key_derived"]) for f in feats] == [
        ("../../etc/passwd", False), ("h#1", True), ("h#2", True), ("h0003", False), ("a\x00b", False)]
    assert sorted(p.name for p in (out / "clean").iterdir()) == ["h.parquet", "h2.parquet"]
    clean = pq.read_table(out / "clean" / "h.parquet")
    assert clean.drop_columns(["width"]).equals(table.drop_columns(["width"]))
    assert repr(clean.column("width").to_pylist()) == repr(table.column("width").to_pylist())  # NaN, -5 kept
    assert not (tmp_path / "etc").exists()


def test_removed_bytes_never_in_logs_or_error_messages(tmp_path, caplog):
    bad = variants(make_image(42))["recompressed"]
    truncated = bad[: len(bad) // 2]
    write_shard(str(tmp_path / "in" / "s.parquet"),
                shard_rows([("bad", bad, "success"), ("trunc", truncated, "success")], "k"))
    from shardguard.indexes import imagehashes
    (tmp_path / "l.txt").write_text(imagehashes.pdq(make_image(42))[0] + "\n")
    with caplog.at_level(logging.DEBUG):
        assert run_scan(["--input", str(tmp_path / "in" / "*.parquet"), "--output", str(tmp_path / "o"),
                         "--hash-list", f"pdq={tmp_path / 'l.txt'}", "--direct_num_workers=1"]) == 0
    text = caplog.text.encode("utf-8", "replace")
    import base64
    for frag in (bad[100:140], bad[100:140].hex().encode(), base64.b64encode(bad[99:150])[4:40]):
        assert frag not in text
    errs = pq.read_table(tmp_path / "o" / "errors" / "s.parquet").to_pylist()
    assert errs and all(bad[100:140].hex() not in (e["message"] or "") for e in errs)
    entry = (tmp_path / "l.txt").read_text().strip()
    assert entry not in caplog.text  # list entries never logged


def test_redacted_urls(sample, tmp_path):
    src, planted = sample
    out = tmp_path / "o"
    assert run_scan(["--input", str(src / "shards" / "*.parquet"), "--output", str(out), "--redact-urls",
                     "--hash-list", f"md5={src / 'lists' / 'known-bad-md5.txt'}"]) == 0
    recs = [r for p in (out / "removed").glob("*.parquet") for r in pq.read_table(p).to_pylist()]
    assert recs and all(r["url"].startswith("sha256:") and len(r["url"]) == 23 for r in recs)
    assert "example.invalid" not in (out / "removed" / "00000.parquet").read_bytes().decode("latin-1")


def test_pins_are_checked_before_any_work(sample, tmp_path, capsys):
    src, _ = sample
    base = ["--input", str(src / "shards" / "*.parquet"), "--output", str(tmp_path / "o")]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"lists:\n  - type: md5\n    path: {src / 'lists' / 'known-bad-md5.txt'}\n    fingerprint: '{'0' * 64}'\n")
    assert run_scan(base + ["--config", str(cfg)]) == 2
    assert "is not the pinned" in capsys.readouterr().err
    cfg.write_text(f"clip:\n  model: {ROOT / 'configs/models/tiny-clip.json'}\n  weights_sha256: '{'0' * 64}'\n")
    assert run_scan(base + ["--config", str(cfg)]) == 2
    assert "pinned" in capsys.readouterr().err
    assert not (tmp_path / "o" / "shards").exists()
    cfg.write_text("clip:\n  model: x.json\n  weights_sha256: 1234\n")
    assert run_scan(base + ["--config", str(cfg)]) == 2
    assert "a pin must be a quoted 64-hex-digit sha256" in capsys.readouterr().err


def test_an_atomic_write_replaces_a_file_with_one_rename_and_where_rename_refuses_deletes_first(tmp_path, monkeypatch):
    """Rename replaces a file already there (local disks atomically, object stores too): no
    existence check or delete per write. A filesystem whose rename refuses an existing target (as
    HDFS's does) gets it deleted first; either way the new bytes are in place and no temporary file
    is left."""
    from apache_beam.io.filesystem import BeamIOError
    from apache_beam.io.filesystems import FileSystems

    from shardguard.indexes import fileio

    target = tmp_path / "out.json"
    target.write_bytes(b"old")
    calls, real = [], {n: getattr(FileSystems, n) for n in ("exists", "delete", "rename")}
    for name in real:
        monkeypatch.setattr(FileSystems, name, staticmethod(
            lambda *a, _n=name, **k: calls.append(_n) or real[_n](*a, **k)))
    fileio.write_atomic(str(target), b"new")
    assert target.read_bytes() == b"new" and calls == ["rename"]

    def refusing(src, dst):
        if any(__import__("os").path.exists(d) for d in dst):
            raise BeamIOError("rename: target exists", {})
        real["rename"](src, dst)
    monkeypatch.setattr(FileSystems, "rename", staticmethod(refusing))
    fileio.write_atomic(str(target), b"newer")
    assert target.read_bytes() == b"newer" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
