"""Config: YAML + flags, list flag syntax, shard ids and derived keys."""
from __future__ import annotations

import pytest

from shardguard.pipelines.config import ConfigError, from_data, load_yaml, parse_list_flag, with_overrides
from shardguard.transforms.parquet_shards import derive_keys, shard_ids


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
    for name in ("local.yaml", "demo.yaml"):
        cfg = from_data(load_yaml(str(root / "configs" / name)), name)
        assert cfg.inputs and cfg.output and cfg.lists


def test_flags_override_yaml_and_inputs_required():
    cfg = from_data({"inputs": ["a"], "output": "o", "force": False}, "c.yaml")
    assert with_overrides(cfg, {"force": True}, "c.yaml").force is True
    with pytest.raises(ConfigError, match="no inputs"):
        with_overrides(from_data({"output": "o"}, "c.yaml"), {}, "c.yaml")


def test_shard_ids_disambiguate_equal_stems():
    ids = shard_ids(["/a/00000.parquet", "/b/00000.parquet", "/a/00001.parquet"])
    assert ids["/a/00001.parquet"] == "00001"
    assert ids["/a/00000.parquet"] != ids["/b/00000.parquet"] and ids["/a/00000.parquet"].startswith("00000-")


def test_derived_keys_for_missing_and_duplicate_keys():
    got = derive_keys(["a", None, "b", "a", "", "c#1"], "s")
    assert got == [("s#0", True), ("s#1", True), ("b", False), ("s#3", True), ("s#4", True), ("s#5", True)]


def test_column_flags_reach_the_config():
    import argparse

    from shardguard.pipelines.scan import add_scan_flags, config_from_args

    p = argparse.ArgumentParser()
    add_scan_flags(p)
    args = p.parse_args(["--input", "x", "--output", "o", "--image-column", "image", "--caption-column", "TEXT",
                         "--status-column", "st", "--clip-model", "m.json", "--expand-threshold", "0.9"])
    cfg = config_from_args(args)
    assert (cfg.columns.image, cfg.columns.caption, cfg.columns.status) == ("image", "TEXT", "st")
    assert cfg.clip.model == "m.json" and cfg.expand.threshold == 0.9
