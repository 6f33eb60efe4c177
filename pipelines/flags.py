"""The scan's command-line flags, and their translation into config data.

Each flag names the config key it sets (``FLAGS``); given flags become the same nested data a YAML
file holds, laid over the file's, and the one validation path in ``configload.build`` checks both
(a flag's error names the flag). ``--hash-list`` values replace the file's ``lists``; every other
flag replaces one key.
"""
from __future__ import annotations

import argparse
import re

from shardguard.pipelines import configload
from shardguard.pipelines.config import ConfigError, HashListSpec, ScanConfig

# (flag, config path, help); argparse options are in ``add_scan_flags``.
FLAGS = (
    ("--input", ("inputs",), "input shard path or glob, local or gs:// / s3:// (repeatable; quote globs)"),
    ("--output", ("output",), "output run directory (local, gs://, s3://)"),
    ("--hash-list", ("lists",), "known-bad list [NAME@]TYPE=PATH[:MAXDIST]: a raw list file or a "
                                "'lists build' artifact directory (repeatable)"),
    ("--hashes", ("hashes",), "comma-separated hash types to compute (default md5,sha256,phash,dhash,pdq)"),
    ("--on-error", ("decode", "on_error"), "undecodable rows: drop (default, fail closed) or keep-and-flag"),
    ("--max-pixels", ("decode", "max_pixels"), "decompression-bomb limit in pixels (default 89478485)"),
    ("--blas-threads", ("decode", "blas_threads"), "BLAS threads per worker process (default 1; 0: BLAS's own "
                                                   "default, for one worker per machine)"),
    ("--exact-decode", ("decode", "exact"), "decode in full: pHash/dHash bit-identical to imagehash (slower)"),
    ("--image-column", ("columns", "image"), "image bytes column (default jpg)"),
    ("--key-column", ("columns", "key"), "key column (default key)"),
    ("--url-column", ("columns", "url"), "URL column (default url)"),
    ("--caption-column", ("columns", "caption"), "caption column (default caption)"),
    ("--status-column", ("columns", "status"), "img2dataset status column (default status)"),
    ("--force", ("force",), "redo every shard, and accept an output whose earlier run had another config"),
    ("--redact-urls", ("redact_urls",), "records carry sha256:<16 hex> of the URL instead of the URL"),
    ("--clip-model", ("clip", "model"), "CLIP model: NAME:TAG, NAME@WEIGHTS or CONFIG.json"),
    ("--device", ("clip", "device"), "CLIP device: auto (default), cpu, cuda or cuda:N"),
    ("--batch-size", ("clip", "batch_size"), "CLIP batch size: the model always runs on this many rows"),
    ("--concepts", ("concepts",), "concept index directory, optionally PATH#FINGERPRINT (repeatable)"),
    ("--expand-threshold", ("expand", "threshold"), "kNN expansion: cosine to a confirmed match, in (0, 1]"),
    ("--min-clip-score", ("clip", "min_score"), "flag rows whose image-caption cosine is below this, in [0, 1)"),
    ("--integrity-column", ("integrity", "column"), "column with a reference content hash of the stored bytes"),
    ("--integrity-type", ("integrity", "type"), "that column's hash type: md5, sha1 or sha256 (default)"),
    ("--features-only", ("features_only",), "compute and store features with no list or rule (else refused)"),
    ("--embeddings", ("embeddings", "files"), "embeddings you already have: 'img_emb/*.npy' (clip-retrieval) "
                                              "or parquet files with a vector column, instead of a CLIP model"),
    ("--embeddings-metadata", ("embeddings", "metadata"), "metadata parquet files row-aligned with the .npy files"),
    ("--embeddings-model", ("embeddings", "model"), "the model that made the supplied embeddings (recorded)"),
    ("--embeddings-key-column", ("embeddings", "key_column"), "column joining embeddings to rows (default key)"),
    ("--dedup", ("dedup", "kinds"), "dedup inside the dataset: comma-separated exact, perceptual, semantic"),
    ("--robust", ("robust", "views"), "modified copies: off, default (mirror and trimmed-border views, hash "
                                      "expansion around confirmed matches) or full (more views)"),
)
_BOOL = {"--exact-decode", "--force", "--redact-urls", "--features-only"}
_REPEAT = {"--input", "--hash-list", "--concepts"}
_INT = {"--max-pixels", "--batch-size", "--blas-threads"}
_FLOAT = {"--expand-threshold", "--min-clip-score"}


def add_scan_flags(p: argparse.ArgumentParser) -> None:
    """shardguard's own scan flags (Beam's options are accepted beside them)."""
    p.add_argument("--config", help="YAML config file; flags override its keys")
    for flag, _, helptext in FLAGS:
        if flag in _BOOL:
            p.add_argument(flag, action="store_true", default=None, help=helptext)
        elif flag in _REPEAT:
            p.add_argument(flag, action="append", default=None, help=helptext)
        else:
            p.add_argument(flag, type=int if flag in _INT else float if flag in _FLOAT else str, help=helptext)


_LIST_FLAG = re.compile(r"^(?:(?P<name>[A-Za-z0-9_.-]+)@)?(?P<type>[a-z0-9]+)=(?P<path>.+?)(?::(?P<dist>\d+))?$")


def list_flag_data(value: str) -> dict:
    """``[NAME@]TYPE=PATH[:MAXDIST]`` as a YAML-shaped list entry (PATH may itself contain ':')."""
    m = _LIST_FLAG.match(value.strip())
    if not m:
        raise ConfigError(f"--hash-list {value!r}: expected [NAME@]TYPE=PATH[:MAXDIST]")
    data = {"type": m["type"], "path": m["path"], "name": m["name"] or ""}
    if m["dist"]:
        data["max_distance"] = int(m["dist"])
    data["__lines__"] = dict.fromkeys(data, f"--hash-list {value!r}")
    return data


def parse_list_flag(value: str) -> HashListSpec:
    """``[NAME@]TYPE=PATH[:MAXDIST]`` to a validated HashListSpec."""
    return configload.build(HashListSpec, list_flag_data(value), f"--hash-list {value!r}")


def _set(data: dict, path: tuple, value, flag: str) -> None:
    for key in path[:-1]:
        parent = data
        data = data.setdefault(key, {"__lines__": {}})
        parent["__lines__"].setdefault(key, flag)
    data[path[-1]] = value
    data["__lines__"][path[-1]] = flag


def overlay(args: argparse.Namespace) -> dict:
    """The given flags as YAML-shaped config data (each value remembers its flag)."""
    data: dict = {"__lines__": {}}
    for flag, path, _ in FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is None:
            continue
        if flag == "--hash-list":
            value = [list_flag_data(v) for v in value]
        elif flag in ("--hashes", "--dedup"):
            value = [h.strip() for h in value.split(",") if h.strip() and h.strip() != "none"]
        _set(data, path, value, flag)
        if flag == "--robust" and value == "off":
            _set(data, ("robust", "expansion"), False, flag)
    return data


def config_from_args(args: argparse.Namespace) -> ScanConfig:
    """YAML (if any) with the flags laid over it, built and validated once; inputs and output required."""
    raw = configload.load_yaml(args.config) if args.config else {}
    src = args.config or "command line"
    cfg = configload.build(ScanConfig, configload.merge(raw, overlay(args)), src)
    if not cfg.inputs:
        raise ConfigError(f"{src}: no inputs (give --input or 'inputs:')")
    if not cfg.output:
        raise ConfigError(f"{src}: no output (give --output or 'output:')")
    return cfg
