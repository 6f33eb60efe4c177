"""Helpers for pipeline tests: output-tree comparison and searching outputs for image bytes."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def tree_bytes(root: Path, skip_manifest_run: bool = True) -> dict[str, bytes]:
    """Relative path → content for every file under root (the manifest's run block removed)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if skip_manifest_run and p.name == "manifest.json":
                m = json.loads(data)
                m.pop("run")  # run id/times and where the run wrote are run-specific by design
                m["config"].pop("output")
                data = json.dumps(m, sort_keys=True).encode()
            out[str(p.relative_to(root))] = data
    return out


def binary_values(path: Path):
    """Every binary/string cell value of a parquet file, as bytes."""
    table = pq.read_table(path)
    for col in table.columns:
        if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type) or pa.types.is_string(col.type):
            for v in col.to_pylist():
                if v is not None:
                    yield v.encode() if isinstance(v, str) else v


def assert_bytes_nowhere(root: Path, forbidden: list[bytes]) -> None:
    """No file under root contains any forbidden byte string raw, nor as a parquet cell value."""
    forbidden = [f for f in forbidden if f]
    for p in root.rglob("*"):
        if not p.is_file():
            continue
        raw = p.read_bytes()
        for f in forbidden:
            assert f[:4096] not in raw, f"{p} contains removed image bytes"
        if p.suffix == ".parquet":
            cells = set(binary_values(p))
            for f in forbidden:
                assert f not in cells, f"{p} holds a removed image in a column"
