"""A scan's OK means what it says: what cannot be done is refused before any work (exit 2, one line),
whole-run failures are loud, every decision is recorded, and outputs never mix with other runs'."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_scan, sample_list_flags

from shardguard.pipelines.cli import main as cli
from shardguard.pipelines.refilter import run as refilter
from shardguard.pipelines.sample_data import encode, make_image, shard_rows, write_shard


def _base(src, out):
    return ["--input", str(src / "shards" / "*.parquet"), "--output", str(out), "--quiet"]


def _err(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("shardguard")]


@pytest.mark.parametrize("extra, needle", [
    (["--hash-lst", "pdq=x.csv"], "unknown option --hash-lst (did you mean --hash-list?)"),
    (["--json"], "unknown option --json"),
    (["--hash-list", "md5=a.txt", "b.parquet"], "unexpected argument 'b.parquet': an unquoted glob"),
    (["--hash-list", "md5=a.txt", "--runner", "Flinkk"], "--runner Flinkk: not supported"),
    (["--hash-list", "md5=a.txt", "--runner", "FlinkRunner"], "needs a running job server"),
    (["--hash-list", "md5=a.txt", "--dry_run=True"], "would run the whole scan"),
    (["--hash-list", "md5=a.txt", "--direct_num_workers=abc"], "Beam option"),
    (["--hash-list", "md5=a.txt", "--direct_num_workers=-1"], "--direct_num_workers -1: give 1 or more"),
])
def test_what_cannot_run_as_asked_is_refused_before_any_work(sample, tmp_path, capsys, extra, needle):
    src, _ = sample
    out = tmp_path / "out"
    assert run_scan(_base(src, out) + extra) == 2
    err = _err(capsys)
    assert len(err) == 1 and needle in err[0], err
    assert not out.exists()


def test_beam_options_of_every_runner_are_accepted():
    from shardguard.pipelines.options import split_args
    from shardguard.pipelines.scan import scan_parser

    args, beam = split_args(scan_parser(), ["--input", "x", "--project", "p", "--region", "r",
                                            "--worker_machine_type", "n1-standard-8", "--direct_num_workers=2",
                                            "--s3_endpoint_url", "http://x"])
    assert args.input == ["x"] and "--worker_machine_type" in beam


@pytest.mark.parametrize("cmd", [["refilter", "--from", "r", "--output", "o", "--hash-lsit", "x"],
                                 ["prefilter", "--input", "x", "--output", "o", "--url-lst", "y"],
                                 ["manifest", "show", "r", "--jsn"], ["lookup", "--run", "r", "a.jpg", "--clip", "1"],
                                 ["lists", "build", "--type", "md5", "--input", "a", "--output", "b", "--nmae", "x"]])
def test_every_command_refuses_unknown_options(cmd, capsys):
    assert cli(cmd) == 2
    assert "unknown option" in capsys.readouterr().err


def test_a_scan_that_checks_nothing_is_refused_unless_asked(sample, tmp_path, capsys):
    src, _ = sample
    assert run_scan(_base(src, tmp_path / "a")) == 2
    assert "nothing to check" in _err(capsys)[0] and not (tmp_path / "a").exists()
    assert run_scan(_base(src, tmp_path / "b") + ["--features-only"]) == 0


def test_a_shard_whose_rows_all_fail_makes_the_run_fail_loudly(sample, tmp_path, capsys):
    src, _ = sample
    out = tmp_path / "out"
    assert run_scan(_base(src, out) + sample_list_flags(src) + ["--image-column", "image"]) == 1
    m = json.loads((out / "manifest.json").read_text())
    assert not m["health"]["ok"] and len(m["health"]["problems"]) == 3
    assert "all 37 rows errored, nothing in it was checked: input/missing_column (37)" in m["health"]["problems"][0]
    assert "HEALTH CHECK FAILED" in capsys.readouterr().out


def test_a_rule_flagging_every_row_makes_the_run_fail_loudly(tmp_path):
    import hashlib

    img = encode(make_image(5))
    write_shard(str(tmp_path / "in" / "s.parquet"), shard_rows([(f"c{i}", img, "success") for i in range(12)], "k"))
    (tmp_path / "md5.txt").write_text(hashlib.md5(img).hexdigest() + "\n")
    out = tmp_path / "out"
    assert run_scan(["--input", str(tmp_path / "in" / "*.parquet"), "--output", str(out), "--quiet",
                     "--hash-list", f"md5={tmp_path / 'md5.txt'}"]) == 1
    m = json.loads((out / "manifest.json").read_text())
    assert m["health"]["problems"] == ["hashlist:md5 flagged all 12 checked rows of the run: a threshold or list "
                                       "that matches anything?"]


def test_tags_are_recorded_and_counted(sample, tmp_path, capsys):
    src, planted = sample
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"lists:\n  - {{type: md5, path: {src / 'lists' / 'known-bad-md5.txt'}, action: tag}}\n")
    out = tmp_path / "out"
    assert run_scan(_base(src, out) + ["--config", str(cfg)]) == 0
    m = json.loads((out / "manifest.json").read_text())
    tagged = [r for p in (out / "tagged").glob("*.parquet") for r in pq.read_table(p).to_pylist()]
    assert len(tagged) == 3 == m["totals"]["counts"]["tagged"] == m["totals"]["tags"]["hashlist:known-bad-md5"]
    assert m["totals"]["counts"]["removed"] == 0 and all(r["verdict"] == "keep" for r in tagged)
    capsys.readouterr()
    assert cli(["manifest", "why", str(out), tagged[0]["key"]]) == 0
    assert "keep — hashlist:known-bad-md5" in capsys.readouterr().out


def test_run_ids_are_unique(sample, tmp_path):
    src, _ = sample
    for d in ("a", "b"):
        assert run_scan(_base(src, tmp_path / d) + sample_list_flags(src)[:2]) == 0
    assert refilter(["--from", str(tmp_path / "a"), "--output", str(tmp_path / "c"), "--quiet"]) == 0
    ids = [json.loads((tmp_path / d / "manifest.json").read_text())["run"]["id"] for d in "abc"]
    content = [json.loads((tmp_path / d / "manifest.json").read_text())["content_id"] for d in "ab"]
    assert len(set(ids)) == 3 and content[0] == content[1]


def test_a_run_directory_is_self_contained_and_movable(sample, tmp_path, monkeypatch):
    src, _ = sample
    monkeypatch.chdir(tmp_path)
    assert run_scan(_base(src, "runs/scan1") + sample_list_flags(src)[:2]) == 0
    assert refilter(["--from", "runs/scan1", "--output", "runs/scan2", "--quiet",
                     "--hash-list", f"md5={src / 'lists' / 'known-bad-md5.txt'}"]) == 0
    assert cli(["manifest", "verify", "runs/scan2"]) == 0
    shutil.move("runs", "moved")
    assert cli(["manifest", "verify", "moved/scan2"]) == 0
    assert refilter(["--from", "moved/scan2", "--output", "moved/scan3", "--quiet"]) == 0
    assert cli(["manifest", "verify", "moved/scan3"]) == 0


def test_a_new_version_of_a_parent_list_replaces_it(sample, tmp_path):
    src, planted = sample
    L = src / "lists"
    assert run_scan(_base(src, tmp_path / "p") + ["--hash-list", f"partner@md5={L / 'known-bad-md5.txt'}"]) == 0
    lines = [x for x in (L / "known-bad-md5.txt").read_text().splitlines() if x and not x.startswith("#")]
    (tmp_path / "v2.txt").write_text("\n".join(lines[:1]) + "\n")  # the partner withdrew entries
    assert refilter(["--from", str(tmp_path / "p"), "--output", str(tmp_path / "c"), "--quiet",
                     "--hash-list", f"partner@md5={tmp_path / 'v2.txt'}"]) == 0
    m = json.loads((tmp_path / "c" / "manifest.json").read_text())
    (rep,) = m["parent"]["lists_replaced"]
    assert rep["name"] == "partner" and rep["before"] != rep["after"] and [x["name"] for x in m["lists"]] == ["partner"]
    assert m["parent"]["changes"]["restored_total"] >= 1 and m["parent"]["lists_added"] == []


def test_a_renamed_built_artifact_matches_under_its_new_name(sample, tmp_path):
    src, _ = sample
    art = tmp_path / "pdq.art"
    assert cli(["lists", "build", "--type", "pdq", "--input", str(src / "lists" / "known-bad-pdq.csv"),
                "--output", str(art)]) == 0
    out = tmp_path / "out"
    assert run_scan(_base(src, out) + ["--hash-list", f"partner@pdq={art}"]) == 0
    removed = [r for p in (out / "removed").glob("*.parquet") for r in pq.read_table(p).to_pylist()]
    assert removed and all(r["reasons"] == ["hashlist:partner"] for r in removed)
    assert cli(["manifest", "verify", str(out)]) == 0


def test_outputs_of_shards_not_in_the_run_are_refused_or_removed(sample, tmp_path, capsys):
    src, _ = sample
    ins = tmp_path / "in"
    shutil.copytree(src / "shards", ins)
    out = tmp_path / "out"
    base = ["--input", str(ins / "*.parquet"), "--output", str(out), "--quiet", *sample_list_flags(src)]
    assert run_scan(base) == 0
    (ins / "00000.parquet").rename(ins / "renamed.parquet")
    capsys.readouterr()
    assert run_scan(base) == 2
    assert "not in this run (00000)" in _err(capsys)[0]
    assert run_scan(base + ["--force"]) == 0
    assert not (out / "clean" / "00000.parquet").exists() and not (out / "shards" / "00000.json").exists()
    assert cli(["manifest", "verify", str(out)]) == 0
    (out / "clean" / "stray.parquet").write_bytes(b"x")
    capsys.readouterr()
    assert cli(["manifest", "verify", str(out)]) == 1
    assert "clean/stray.parquet: not part of this run" in capsys.readouterr().out


def test_an_output_of_other_files_is_refused_and_left_alone(sample, tmp_path, capsys):
    src, _ = sample
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / ".tmp-mine").write_text("also mine")
    (out / "manifest.json").write_text('{"not": "shardguard"}')
    assert run_scan(_base(src, out) + sample_list_flags(src)) == 2
    assert "is not a shardguard run" in _err(capsys)[0]
    assert sorted(p.name for p in out.iterdir()) == [".tmp-mine", "manifest.json", "notes.txt"]


def test_the_run_never_scans_its_own_outputs(sample, tmp_path, caplog):
    src, _ = sample
    data = tmp_path / "data"
    shutil.copytree(src / "shards", data)
    args = ["--input", str(data / "**.parquet"), "--output", str(data / "out"), "--quiet", *sample_list_flags(src)]
    assert run_scan(args) == 0
    assert run_scan(args) == 0  # the first run's clean/ and features/ parquet files match the pattern
    m = json.loads((data / "out" / "manifest.json").read_text())
    assert [s["shard"] for s in m["shards"]] == ["00000", "00001", "00002"]
    assert "inside the output directory" in caplog.text


def test_a_tampered_parent_clean_shard_fails_alone(sample, tmp_path):
    src, _ = sample
    assert run_scan(_base(src, tmp_path / "p") + sample_list_flags(src)) == 0
    clean = tmp_path / "p" / "clean" / "00001.parquet"
    clean.write_bytes(clean.read_bytes()[:-100] + b"x" * 100)
    assert refilter(["--from", str(tmp_path / "p"), "--output", str(tmp_path / "c"), "--quiet"]) == 1
    s = {x["shard"]: x for x in json.loads((tmp_path / "c" / "manifest.json").read_text())["shards"]}
    assert s["00001"]["status"] == "failed" and "parent clean file clean/00001.parquet" in s["00001"]["failure"]["message"]
    assert s["00000"]["status"] == s["00002"]["status"] == "ok"


def test_invalid_utf8_in_one_caption_errors_nothing_else(tmp_path):
    rows = shard_rows([(f"c{i}", encode(make_image(i)), "success") for i in range(3)], "k")
    table = pa.Table.from_pylist(rows)
    bad = pa.Array.from_buffers(pa.string(), 3, [None, pa.array([0, 2, 6, 8], pa.int32()).buffers()[1],
                                                  pa.py_buffer(b"okbad\xffok")])
    table = table.set_column(table.schema.get_field_index("caption"), "caption", bad)
    (tmp_path / "in").mkdir()
    pq.write_table(table, tmp_path / "in" / "s.parquet")
    out = tmp_path / "out"
    assert run_scan(["--input", str(tmp_path / "in" / "*.parquet"), "--output", str(out), "--quiet",
                     "--features-only"]) == 0
    c = json.loads((out / "manifest.json").read_text())["totals"]["counts"]
    assert (c["rows_in"], c["kept"], c["errored"]) == (3, 3, 0)
    assert (out / "clean" / "s.parquet").read_bytes() == (tmp_path / "in" / "s.parquet").read_bytes()


def test_cuda_without_a_gpu_and_unfetchable_models_stop_before_any_work(sample, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    src, _ = sample
    if not torch.cuda.is_available():
        assert run_scan(_base(src, tmp_path / "a") + sample_list_flags(src) + [
            "--clip-model", str(__import__("conftest").ROOT / "configs/models/tiny-clip.json"),
            "--device", "cuda"]) == 2
        assert "no CUDA device on this machine" in _err(capsys)[0] and not (tmp_path / "a").exists()
    import time

    t = time.monotonic()
    assert run_scan(_base(src, tmp_path / "b") + sample_list_flags(src) + ["--clip-model", "ViT-B-32:nonexistent_tag"]) == 2
    assert time.monotonic() - t < 30 and not (tmp_path / "b").exists()
    assert len(_err(capsys)) == 1


def test_summary_counts_rows_per_verdict_and_reasons_apart(sample, tmp_path, capsys):
    src, _ = sample
    assert run_scan(_base(src, tmp_path / "o") + sample_list_flags(src)) == 0
    text = capsys.readouterr().out
    assert "rows:   111 in = 90 kept + 15 removed + 0 quarantined + 6 errored" in text
    assert "rows removed or quarantined, per reason (a row can have several):" in text
    capsys.readouterr()
    assert cli(["manifest", "show", str(tmp_path / "o")]) == 0
    shown = capsys.readouterr().out
    assert "  shards:\n    00000: 37 in" in shown and "{" not in shown.split("  shards:")[1]


def test_cli_habits(sample, tmp_path, capsys):
    assert cli(["--version"]) == 0 and capsys.readouterr().out.startswith("shardguard ")
    assert cli(["scann"]) == 2 and "unknown command 'scann'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli(["scan", "--help"])
    assert e.value.code == 0
    helptext = capsys.readouterr().out
    assert "Scan image-text shards" in helptext and "run(argv" not in helptext
    from shardguard.pipelines import prefilter, scan
    from shardguard.pipelines import refilter as rf

    for parser in (scan.scan_parser(), rf.parser(), prefilter.parser()):
        for action in parser._actions:
            assert action.help, (parser.prog, action.option_strings)
    src, _ = sample
    assert run_scan(_base(src, tmp_path / "o") + sample_list_flags(src)) == 0
    r = subprocess.run(f"{sys.executable} -m shardguard.pipelines.cli manifest show {tmp_path / 'o'} | head -1",
                       shell=True, capture_output=True, text=True, env=dict(os.environ, SHARDGUARD_LOG="WARNING"))
    assert r.stdout.startswith("shardguard scan run") and "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr


def test_the_console_script_exits_with_mains_code_and_a_frozen_heap():
    """``shardguard`` is ``cli.console``: main's exit code, with the heap frozen so that the interpreter's
    shutdown does not cycle-collect every long-lived object again (README, garbage collection)."""
    from importlib.metadata import entry_points

    (ep,) = [e for e in entry_points(group="console_scripts") if e.name == "shardguard"]
    assert ep.value == "shardguard.pipelines.cli:console"
    code = ("import gc, sys; from shardguard.pipelines import cli; "
            "rc = cli.console(); print('result', rc, gc.get_freeze_count() > 0)")
    for args, want in ((["--version"], ["0", "True"]), (["no-such-command"], ["2", "True"])):
        r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
        assert r.stdout.split()[-3:] == ["result", *want], (r.stdout, r.stderr[-500:])
