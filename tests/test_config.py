"""Config: YAML and flags through one validation path, list flag syntax, shard ids, derived keys."""
from __future__ import annotations

import argparse

import pytest

from shardguard.pipelines.config import ConfigError
from shardguard.pipelines.configload import build, from_data, load_yaml
from shardguard.pipelines.flags import add_scan_flags, config_from_args, parse_list_flag
from shardguard.pipelines.inputs import shard_ids
from shardguard.transforms.formats import derive_keys


def _cfg(argv, tmp_path=None, yaml_text=None):
    p = argparse.ArgumentParser()
    add_scan_flags(p)
    if yaml_text is not None:
        (tmp_path / "c.yaml").write_text(yaml_text)
        argv = argv + ["--config", str(tmp_path / "c.yaml")]
    return config_from_args(p.parse_args(argv))


def test_list_flag_syntax():
    s = parse_list_flag("partner@pdq=gs://bucket/lists/x.csv:20")
    assert (s.name, s.type, s.path, s.max_distance) == ("partner", "pdq", "gs://bucket/lists/x.csv", 20)
    s = parse_list_flag("md5=/tmp/a:b.txt")
    assert (s.name, s.path, s.max_distance) == ("", "/tmp/a:b.txt", None)
    with pytest.raises(ConfigError):
        parse_list_flag("blake3=/x")
    with pytest.raises(ConfigError):
        parse_list_flag("just-a-path")


def test_shipped_example_config_is_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    for name in ("local.yaml", "demo.yaml", "dataflow.yaml"):
        cfg = from_data(load_yaml(str(root / "configs" / name)), name)
        assert cfg.inputs and cfg.output and cfg.lists


def test_flags_override_yaml_and_inputs_required(tmp_path):
    cfg = _cfg(["--force"], tmp_path, "inputs: [a]\noutput: o\nforce: false\n")
    assert cfg.force is True and cfg.inputs == ("a",)
    with pytest.raises(ConfigError, match="no inputs"):
        _cfg([], tmp_path, "output: o\n")


@pytest.mark.parametrize("argv, where", [
    (["--max-pixels", "-5"], "--max-pixels"), (["--max-pixels", "0"], "--max-pixels"),
    (["--expand-threshold", "-1"], "--expand-threshold"), (["--expand-threshold", "2"], "--expand-threshold"),
    (["--min-clip-score", "2"], "--min-clip-score"), (["--batch-size", "0"], "--batch-size"),
    (["--device", "foo"], "--device"), (["--hash-list", "md5=x.txt:5"], "--hash-list"),
    (["--hash-list", "pdq=x.txt:300"], "--hash-list"), (["--hash-list", "phash=x.txt:40"], "--hash-list"),
    (["--hashes", "md5,blake3"], "--hashes"),
])
def test_out_of_range_flags_are_refused_naming_the_flag(argv, where):
    with pytest.raises(ConfigError) as e:
        _cfg(["--input", "x", "--output", "o", *argv])
    assert str(e.value).startswith(where), str(e.value)


@pytest.mark.parametrize("text, key", [
    ("decode: {max_pixels: -5}", "max_pixels"), ("expand: {threshold: 1.5}", "threshold"),
    ("hashes: 5", "hashes"), ("lists: [{type: pdq, path: x, max_distance: 300}]", "max_distance"),
    ("lists: [{type: pdq, path: x, min_quality: 500}]", "min_quality"),
    ("lists: [{type: md5, path: x, max_distance: 5}]", "max_distance"),
    ("clip: {batch_size: 0}", "batch_size"), ("clip: {device: foo}", "device"), ("bogus: 1", "bogus"),
])
def test_yaml_errors_name_file_and_line(tmp_path, text, key):
    (tmp_path / "c.yaml").write_text("inputs: [a]\noutput: o\n" + text + "\n")
    with pytest.raises(ConfigError) as e:
        from_data(load_yaml(str(tmp_path / "c.yaml")), str(tmp_path / "c.yaml"))
    assert "c.yaml:3: " in str(e.value) and key in str(e.value), str(e.value)


def test_threshold_messages_say_the_usual_value():
    with pytest.raises(ConfigError, match=r"pdq max_distance must be in 0..64 \(usual: 31\)"):
        parse_list_flag("pdq=x.csv:300")
    with pytest.raises(ConfigError, match="exact hash: max_distance must be 0"):
        parse_list_flag("md5=x.txt:5")


def test_shard_ids_are_stable_relative_paths(tmp_path):
    ids = shard_ids(["/a/00000.parquet", "/a/00001.parquet"], ["/a/*.parquet"])
    assert ids == {"/a/00000.parquet": "00000", "/a/00001.parquet": "00001"}
    both = shard_ids(["/d/a/00000.parquet", "/d/b/00000.parquet"], ["/d/a/*.parquet", "/d/b/*.parquet"])
    assert both == {"/d/a/00000.parquet": "a__00000", "/d/b/00000.parquet": "b__00000"}
    # an id depends on the path and the patterns only, never on which other files exist
    assert shard_ids(["/d/a/00000.parquet"], ["/d/a/*.parquet", "/d/b/*.parquet"]) == {"/d/a/00000.parquet": "a__00000"}
    with pytest.raises(ConfigError, match="both be shard"):
        shard_ids(["/a/x.v1.parquet", "/a/x.v2.parquet"], ["/a/*.parquet"])


def test_derived_keys_for_missing_and_duplicate_keys():
    got = derive_keys(["a", None, "b", "a", "", "c#1"], "s")
    assert got == [("s#0", True), ("s#1", True), ("b", False), ("s#3", True), ("s#4", True), ("s#5", True)]


def test_column_flags_reach_the_config():
    cfg = _cfg(["--input", "x", "--output", "o", "--image-column", "image", "--caption-column", "TEXT",
                "--status-column", "st", "--clip-model", "m.json", "--expand-threshold", "0.9"])
    assert (cfg.columns.image, cfg.columns.caption, cfg.columns.status) == ("image", "TEXT", "st")
    assert cfg.clip.model == "m.json" and cfg.expand.threshold == 0.9


def test_sections_validate_themselves():
    from shardguard.pipelines.config import ClipConfig, DecodeConfig, ExpandConfig

    assert build(DecodeConfig, {"max_pixels": 10}, "x").max_pixels == 10
    for cls, data in ((DecodeConfig, {"on_error": "ignore"}), (ClipConfig, {"min_score": -0.5}),
                      (ExpandConfig, {"max_seeds": 0})):
        with pytest.raises(ConfigError):
            build(cls, data, "x")
