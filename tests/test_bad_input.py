"""Bad input ends accounted: every hostile row kept, removed or errored with a reason; a corrupt
shard fails alone; malformed configs and lists stop the run before any work, naming file:line."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_scan
from hostile import EXPECTED, hostile_images

from shardguard.pipelines.sample_data import encode, make_image, shard_rows, write_shard
from shardguard.transforms.decode import DecodeError, decode_image


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_decode_outcome(name):
    data = hostile_images()[name]
    if EXPECTED[name] == "ok":
        img = decode_image(data)
        assert img.rgb.mode == "RGB" and img.width >= 1
    else:
        with pytest.raises(DecodeError) as err:
            decode_image(data)
        assert err.value.error_class == EXPECTED[name]


def test_exif_orientation_applied():
    img = decode_image(hostile_images()["exif_rotated"])
    assert (img.width, img.height) == (256, 256) and img.source_mode == "RGB"
    rot = decode_image(encode(make_image(42).rotate(-90)))
    diff = sum(abs(a - b) for a, b in zip(img.gray.resize((8, 8)).tobytes(), rot.gray.resize((8, 8)).tobytes()))
    assert diff < 8 * 64  # the displayed orientation, not the stored one


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    imgs = hostile_images()
    items = [(name, data, "success") for name, data in sorted(imgs.items())]
    write_shard(str(d / "in" / "a_hostile.parquet"), shard_rows(items, "h"))
    write_shard(str(d / "in" / "b_good.parquet"), shard_rows([("fine", encode(make_image(5)), "success")], "g"))
    (d / "in" / "c_corrupt.parquet").write_bytes(b"PAR1" + b"\x00garbage" * 50)
    no_image = pa.table({"key": ["n0", "n1"], "url": ["u0", "u1"]})
    pq.write_table(no_image, d / "in" / "d_noimage.parquet")
    out = d / "out"
    rc = run_scan(["--input", str(d / "in" / "*.parquet"), "--output", str(out), "--features-only"])
    return d, out, rc, json.loads((out / "manifest.json").read_text())


def test_hostile_rows_all_accounted(hostile_run):
    d, out, rc, m = hostile_run
    shards = {s["shard"]: s for s in m["shards"]}
    h = shards["a_hostile"]
    assert h["status"] == "ok"
    c = h["counts"]
    assert c["rows_in"] == len(EXPECTED) == c["kept"] + c["removed"] + c["quarantined"] + c["errored"]
    errors = {r["key"]: r for r in pq.read_table(out / "errors" / "a_hostile.parquet").to_pylist()}
    clean = set(pq.read_table(out / "clean" / "a_hostile.parquet").column("key").to_pylist())
    rows = pq.read_table(d / "in" / "a_hostile.parquet", columns=["key", "caption"]).to_pylist()
    for r in rows:
        want = EXPECTED[r["caption"]]
        if want == "ok":
            assert r["key"] in clean, r
        else:
            assert errors[r["key"]]["error_class"] == want and r["key"] not in clean, r


def test_corrupt_shard_fails_alone_and_exit_code_is_nonzero(hostile_run):
    d, out, rc, m = hostile_run
    shards = {s["shard"]: s for s in m["shards"]}
    assert rc == 1
    assert shards["c_corrupt"]["status"] == "failed" and shards["c_corrupt"]["failure"]["stage"] == "read"
    assert shards["b_good"]["status"] == "ok" and shards["b_good"]["counts"]["kept"] == 1
    assert not (out / "clean" / "c_corrupt.parquet").exists()
    assert m["totals"]["counts"]["shards_failed"] == 1


def test_missing_image_column_errors_every_row(hostile_run):
    d, out, rc, m = hostile_run
    s = {s["shard"]: s for s in m["shards"]}["d_noimage"]
    assert s["counts"]["errored"] == 2 and s["errors"] == {"input/missing_column": 2}


def test_keep_and_flag_keeps_undecodable_rows(tmp_path):
    items = [("bad", b"<html>", "success"), ("ok", encode(make_image(1)), "success")]
    write_shard(str(tmp_path / "in" / "s.parquet"), shard_rows(items, "k"))
    out = tmp_path / "out"
    assert run_scan(["--input", str(tmp_path / "in" / "*.parquet"), "--output", str(out),
                     "--on-error", "keep-and-flag", "--features-only"]) == 0
    c = json.loads((out / "manifest.json").read_text())["totals"]["counts"]
    assert (c["kept"], c["errored"], c["unchecked_kept"]) == (2, 0, 1)
    errs = pq.read_table(out / "errors" / "s.parquet").to_pylist()
    assert errs[0]["kept"] is True and errs[0]["error_class"] == "unidentified"


def test_exact_list_catches_undecodable_known_bad_bytes(tmp_path):
    import hashlib

    junk = b"not an image but known bad"
    write_shard(str(tmp_path / "in" / "s.parquet"), shard_rows([("x", junk, "success")], "j"))
    (tmp_path / "md5.txt").write_text(hashlib.md5(junk).hexdigest() + "\n")
    out = tmp_path / "out"
    assert run_scan(["--input", str(tmp_path / "in" / "s.parquet"), "--output", str(out),
                     "--hash-list", f"md5={tmp_path / 'md5.txt'}"]) == 0
    assert json.loads((out / "manifest.json").read_text())["totals"]["counts"]["removed"] == 1


@pytest.mark.parametrize("yaml_text,needle", [
    ("inputs: [x]\noutput: o\nbogus: 1\n", ":3: unknown key 'bogus'"),
    ("inputs: [x]\noutput: o\ndecode:\n  on_error: maybe\n", ":4: on_error must be one of"),
    ("inputs: [x]\noutput: o\nlists:\n  - type: pdq\n    path: l.txt\n    action: nuke\n", ":6: action must be"),
    ("inputs: [x\n", ":2: invalid YAML"),
])
def test_bad_config_names_file_and_line(tmp_path, capsys, yaml_text, needle):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    assert run_scan(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"{cfg}{needle}" in err, err


def test_malformed_list_stops_before_any_work(tmp_path, capsys):
    write_shard(str(tmp_path / "in" / "s.parquet"), shard_rows([("ok", encode(make_image(1)), "success")], "k"))
    bad = tmp_path / "bad.txt"
    bad.write_text("0" * 16 + "\nzz" + "0" * 14 + "\n")
    out = tmp_path / "out"
    assert run_scan(["--input", str(tmp_path / "in" / "*.parquet"), "--output", str(out),
                     "--hash-list", f"phash={bad}"]) == 2
    assert f"{bad}:2: phash hash has non-hex character 'z'" in capsys.readouterr().err
    assert not (out / "shards").exists() and not (out / "clean").exists()


def test_input_glob_matching_nothing_is_an_error(tmp_path, capsys):
    assert run_scan(["--input", str(tmp_path / "none" / "*.parquet"), "--output", str(tmp_path / "o")]) == 2
    assert "matches no file" in capsys.readouterr().err
