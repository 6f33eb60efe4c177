"""manifest show / why / diff / verify, and lookup."""
from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest
from conftest import run_scan, sample_list_flags

from shardguard.pipelines.cli import main as cli
from shardguard.pipelines.sample_data import encode, make_image


@pytest.fixture(scope="module")
def run_dir(sample, tmp_path_factory):
    src, planted = sample
    out = tmp_path_factory.mktemp("tools") / "run"
    assert run_scan(["--input", str(src / "shards" / "*.parquet"), "--output", str(out), "--robust", "off"]
                    + sample_list_flags(src)) == 0
    return src, planted, out


def _json(capsys, argv):
    rc = cli(argv)
    return rc, json.loads(capsys.readouterr().out)


def test_show_json(run_dir, capsys):
    _, planted, out = run_dir
    rc, r = _json(capsys, ["manifest", "show", str(out), "--json"])
    assert rc == 0 and r["totals"]["counts"]["removed"] == len(planted["bad_keys"])
    assert {l["name"] for l in r["lists"]} == {"known-bad-pdq", "known-bad-phash", "known-bad-md5"}
    assert all(len(l["fingerprint"]) == 64 for l in r["lists"]) and len(r["shards"]) == 3


def test_why_removed_kept_and_errored(run_dir, capsys):
    _, planted, out = run_dir
    rc, r = _json(capsys, ["manifest", "why", str(out), planted["bad_keys"][0], "--json"])
    (o,) = r["occurrences"]
    assert rc == 0 and o["verdict"] == "remove" and o["matches"]
    assert all({"source", "type", "entry", "distance"} <= set(m) for m in o["matches"])
    rc, r = _json(capsys, ["manifest", "why", str(out), planted["distractor_keys"][0], "--json"])
    assert r["occurrences"][0]["verdict"] == "keep" and r["occurrences"][0]["matches"] == []
    rc, r = _json(capsys, ["manifest", "why", str(out), planted["error_keys"][0], "--json"])
    assert r["occurrences"][0]["verdict"] == "error" and r["occurrences"][0]["error"]["error_class"]
    rc, r = _json(capsys, ["manifest", "why", str(out), "no-such-key", "--json"])
    assert rc == 1 and not r["found"]


def test_diff(run_dir, tmp_path, capsys):
    src, planted, out = run_dir
    other = tmp_path / "other"
    assert run_scan(["--input", str(src / "shards" / "*.parquet"), "--output", str(other), "--robust", "off",
                     "--hash-list", f"md5={src / 'lists' / 'known-bad-md5.txt'}"]) == 0
    capsys.readouterr()
    rc, r = _json(capsys, ["manifest", "diff", str(other), str(out), "--json"])
    assert r["only_in_a"] == 0 and r["only_in_b"] == len(planted["bad_keys"]) - 3
    assert set(r["only_in_b_by_reason"]) == {"hashlist:known-bad-pdq", "hashlist:known-bad-phash"}


@pytest.mark.parametrize("tamper", ["flip_byte", "delete_row", "missing_file"])
def test_verify_catches_tampering(run_dir, tmp_path, capsys, tamper):
    _, _, out = run_dir
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    assert cli(["manifest", "verify", str(copy)]) == 0
    target = copy / "clean" / "00001.parquet"
    if tamper == "flip_byte":
        data = bytearray(target.read_bytes())
        data[len(data) // 3] ^= 0x01
        target.write_bytes(bytes(data))
    elif tamper == "delete_row":
        t = pq.read_table(target)
        pq.write_table(t.slice(1), target)
    else:
        target.unlink()
    capsys.readouterr()
    assert cli(["manifest", "verify", str(copy)]) == 1
    msg = capsys.readouterr().out
    assert "clean/00001.parquet" in msg and ("missing" in msg if tamper == "missing_file" else "sha256" in msg)


def test_lookup_finds_near_copies_not_unrelated(sample, tmp_path, capsys):
    src, planted = sample
    shards = sorted((src / "shards").glob("*.parquet"))
    row = next(r for r in pq.read_table(shards[0]).to_pylist() if r["key"] in planted["distractor_keys"])
    from shardguard.transforms.decode import decode_image
    img = decode_image(row["jpg"]).rgb
    (tmp_path / "reenc.jpg").write_bytes(encode(img, quality=40))
    (tmp_path / "resized.png").write_bytes(encode(img.resize((180, 180)), "PNG"))
    (tmp_path / "unrelated.jpg").write_bytes(encode(make_image(123456)))
    out = tmp_path / "run"
    assert run_scan(["--input", str(src / "shards" / "*.parquet"), "--output", str(out),
                     "--clip-model", str(__import__("conftest").ROOT / "configs/models/tiny-clip.json"),
                     "--features-only"]) == 0
    capsys.readouterr()
    rc, r = _json(capsys, ["lookup", "--run", str(out), str(tmp_path / "reenc.jpg"),
                           str(tmp_path / "resized.png"), str(tmp_path / "unrelated.jpg"), "--json"])
    res = {x["image"].rsplit("/", 1)[1]: x for x in r["results"]}
    for name in ("reenc.jpg", "resized.png"):
        keys = {m["key"] for m in res[name]["matches"]}
        assert row["key"] in keys, name
        best = next(m for m in res[name]["matches"] if m["key"] == row["key"])
        assert best["distances"].get("phash", 99) <= 8 and best.get("clip_similarity", 0) >= 0.95
    assert not res["unrelated.jpg"]["found"] and rc == 1


def test_library_versions_are_the_installed_distributions():
    """The manifest's library versions (read from the metadata headers alone) are what
    ``importlib.metadata`` reports, and None for a library that is not installed."""
    from importlib import metadata

    from shardguard.pipelines import manifest

    got = manifest.library_versions()
    for name in manifest._LIBS:
        try:
            want = metadata.version(name)
        except metadata.PackageNotFoundError:
            want = None
        assert got[name] == want, name
    assert sum(v is not None for v in got.values()) >= 5
