"""Input formats: one small interface, one explicit registry.

A format knows which of the files an input pattern matched are its shards (and which are their
companions, such as a webdataset tar's metadata parquet), how to fingerprint and describe a shard,
how to stream its rows, and how to write the clean copy of the rows that were kept.

Adding a format is one module with a class implementing ``InputFormat`` plus one line in
``FORMATS`` below; ``tests/test_contracts.py`` runs the contract tests for every registered format.
Order matters: earlier formats claim files first (a tar's metadata parquet is not a shard of its own).
"""
from __future__ import annotations

from typing import Iterator

from shardguard.transforms.contracts import ColumnNames, RunLayout, ShardInfo, ShardSpec


class InputChanged(ValueError):  # noqa: N818 - it reads as what happened to the input
    """The input is not (any more) the file whose rows were scanned, or is gone."""


class InputFormat:
    """The interface every input format implements (see the module doc)."""

    name: str = ""

    def claim(self, paths: set[str]) -> tuple[list[str], set[str]]:
        """(shard paths this format takes, every path it consumes: shards and companions)."""
        raise NotImplementedError

    def fingerprint(self, path: str) -> tuple[str, int]:
        """(sha256, size) over everything of the shard that feeds the outputs (one streaming read)."""
        from shardguard.indexes import fileio

        return fileio.sha256_file(path)

    def read_info(self, spec: ShardSpec, cols: ColumnNames) -> ShardInfo:
        """Identity (sha256 and size over everything that feeds the outputs) and metadata."""
        raise NotImplementedError

    def iter_rows(self, info: ShardInfo, cols: ColumnNames) -> Iterator[dict]:
        """One dict per input row, in order: row, key, key_derived, url, caption, status, image
        (bytes or None), and optionally integrity_ref, member_error or missing_image_column."""
        raise NotImplementedError

    def clean_paths(self, layout: RunLayout, shard: str) -> dict[str, str]:
        """Output kind → path of the shard's clean file(s)."""
        return {"clean": layout.output("clean", shard)}

    def write_example(self, directory: str, rows: list[tuple[str, bytes | None, str]]) -> str:
        """Write a small shard of this format from (key, image bytes, img2dataset status) rows; return
        the path a scan's ``--input`` takes (the contract tests run every format on its own examples)."""
        raise NotImplementedError

    def write_clean(self, info: ShardInfo, keep: set[int], dst: dict[str, str], cols: ColumnNames,
                    verify_sha256: bool) -> dict[str, dict]:
        """Write the kept rows, schema and order intact; return ``{kind: {"sha256", "rows"}}``.
        Raise InputChanged (nothing published) when the input is not the one that was scanned;
        with ``verify_sha256`` the input's bytes must hash to ``info.sha256``."""
        raise NotImplementedError


def derive_keys(raw_keys: list, shard: str) -> list[tuple[str, bool]]:
    """(key, derived) per row: the input key when present and unique in the shard, else
    ``<shard>#<row>`` (marked derived), which cannot collide with another row's."""
    counts: dict = {}
    for k in raw_keys:
        if k is not None:
            counts[str(k)] = counts.get(str(k), 0) + 1
    out = []
    for i, k in enumerate(raw_keys):
        if k is not None and str(k) != "" and counts[str(k)] == 1 and "#" not in str(k):
            out.append((str(k), False))
        else:
            out.append((f"{shard}#{i}", True))
    return out


def resolve_columns(cols: ColumnNames, names) -> ColumnNames:
    """The configured column names as the shard spells them: an exact match, else the one column that
    matches ignoring case (LAION metadata says ``URL``, ``TEXT``); unmatched names stay as given."""
    import dataclasses

    lower: dict[str, list[str]] = {}
    for n in names:
        lower.setdefault(n.lower(), []).append(n)
    out = {}
    for f in dataclasses.fields(cols):
        want = getattr(cols, f.name)
        if want is None or want in names:
            out[f.name] = want
        else:
            cands = lower.get(want.lower(), [])
            out[f.name] = cands[0] if len(cands) == 1 else want
    return ColumnNames(**out)


def _registry() -> dict[str, InputFormat]:
    from shardguard.transforms.formats.files import FilesFormat
    from shardguard.transforms.formats.parquet import ParquetFormat
    from shardguard.transforms.formats.webdataset import WebdatasetFormat

    return {f.name: f for f in (WebdatasetFormat(), FilesFormat(), ParquetFormat())}


FORMATS: dict[str, InputFormat] = {}


def formats() -> dict[str, InputFormat]:
    """The registry (built on first use: no heavy imports at import time)."""
    if not FORMATS:
        FORMATS.update(_registry())
    return FORMATS


def get_format(name: str) -> InputFormat:
    """A registered format by name."""
    try:
        return formats()[name]
    except KeyError:
        raise ValueError(f"unknown input format {name!r}; known: {', '.join(formats())}") from None


def claim_shards(paths: list[str]) -> list[tuple[str, str]]:
    """(path, format name) of every shard among the matched files, sorted by path; files no format
    claims (``_stats.json``…) are ignored."""
    pool, out = set(paths), []
    for fmt in formats().values():
        shards, consumed = fmt.claim(pool)
        out += [(p, fmt.name) for p in shards]
        pool -= consumed
    return sorted(out)
