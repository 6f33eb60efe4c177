"""img2dataset webdataset shards: ``NNNNN.tar`` (``key.jpg``, ``key.txt``, ``key.json`` …) with the
``NNNNN.parquet`` metadata beside it (one row per input row, failed downloads included).

Member names are untrusted. A member is used only if it is a regular file whose name is relative,
has no ``..`` component, no NUL or backslash; anything else makes its key's row an error (never
extracted, never copied). A key with two image members is ambiguous and fails closed.
Rows are the metadata rows in order, then any tar keys the metadata lacks, in tar order; so every
image in the tar and every metadata row is accounted. The clean output is a tar of the kept keys'
members, in input order with their original headers and bytes, plus the filtered metadata parquet.
"""
from __future__ import annotations

import hashlib
import io
import posixpath
import tarfile
from dataclasses import dataclass, field
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from shardguard.indexes import fileio
from shardguard.transforms.parquet_shards import ColumnNames, derive_keys, open_parquet


def metadata_path(tar_path: str) -> str:
    """The metadata parquet img2dataset writes beside a tar."""
    return tar_path[: -len(".tar")] + ".parquet"


def split_member(name: str) -> tuple[str, str] | None:
    """(key, extension) of a safe member name, or None when the name is unsafe."""
    if not name or "\x00" in name or "\\" in name or name.startswith("/"):
        return None
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    base = parts[-1]
    if "." not in base.lstrip("."):
        return None
    stem, ext = base.split(".", 1) if not base.startswith(".") else (base, "")
    if not stem or not ext:
        return None
    return posixpath.join(*parts[:-1], stem) if len(parts) > 1 else stem, ext.lower()


@dataclass
class TarIndex:
    """Where each key's members are, and which keys are unusable and why."""

    members: list[tarfile.TarInfo] = field(default_factory=list)
    by_key: dict[str, dict[str, tarfile.TarInfo]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    bad: dict[str, tuple[str, str]] = field(default_factory=dict)  # key → (class, message)


def index_tar(tf: tarfile.TarFile, image_ext: str) -> TarIndex:
    """Read the headers (seeking over data) and classify every member."""
    idx = TarIndex()
    for m in tf.getmembers():
        parsed = split_member(m.name)
        key = parsed[0] if parsed else f"unsafe:{hashlib.sha1(m.name.encode('utf-8', 'replace')).hexdigest()[:16]}"
        if key not in idx.by_key and key not in idx.bad:
            idx.order.append(key)
        if parsed is None:
            idx.bad[key] = ("unsafe_member_name", f"member name {m.name[:80]!r} is not a safe relative path")
            continue
        if not m.isreg():
            idx.bad[key] = ("unsafe_member_type", f"member {m.name[:80]!r} is not a regular file")
            continue
        exts = idx.by_key.setdefault(key, {})
        if parsed[1] in exts:
            idx.bad[key] = ("duplicate_key", f"key {key[:80]!r} has two {parsed[1]!r} members")
            continue
        exts[parsed[1]] = m
        idx.members.append(m)
    return idx


def _open_tar(path: str):
    raw = FileSystems.open(path, compression_type="uncompressed")
    return raw, tarfile.open(fileobj=raw, mode="r:")


def read_metadata(tar_path: str, cols: ColumnNames) -> list[dict] | None:
    """Metadata rows (without any image column), or None when there is no metadata parquet."""
    meta = metadata_path(tar_path)
    if not fileio.exists(meta):
        return None
    with open_parquet(meta) as pf:
        names = [n for n in pf.schema_arrow.names if n != cols.image]
        return pf.read(columns=names).to_pylist()


def plan_rows(tar_path: str, shard: str, cols: ColumnNames, idx: TarIndex) -> list[dict]:
    """One row dict per input row (no image yet), with key, key_derived and the tar key it maps to."""
    meta = read_metadata(tar_path, cols)
    rows: list[dict] = []
    if meta is not None:
        keys = derive_keys([m.get(cols.key) for m in meta], shard)
        for i, (m, (key, derived)) in enumerate(zip(meta, keys)):
            raw = m.get(cols.key)
            rows.append({"row": i, "key": key, "key_derived": derived, "url": m.get(cols.url),
                         "caption": m.get(cols.caption), "status": m.get(cols.status),
                         "tar_key": None if derived else str(raw)})
            if cols.integrity:
                rows[-1]["integrity_ref"] = m.get(cols.integrity)
    known = {r["tar_key"] for r in rows}
    for k in idx.order:
        if k not in known:
            rows.append({"row": len(rows), "key": k if not k.startswith("unsafe:") else f"{shard}#{len(rows)}",
                         "key_derived": k.startswith("unsafe:"), "url": None, "caption": None,
                         "status": None, "tar_key": k})
    return rows


def read_shard(tar_path: str, shard: str, cols: ColumnNames) -> tuple[dict, Iterator[dict]]:
    """(shard info, rows) from one pass over the tar's headers and one read of its metadata; the
    rows generator then extracts each image (None when the tar has none for the row)."""
    raw, tf = _open_tar(tar_path)
    try:
        idx = index_tar(tf, cols.image)
        planned = plan_rows(tar_path, shard, cols, idx)
    except BaseException:
        tf.close()
        raw.close()
        raise
    meta = metadata_path(tar_path)
    info = {"num_rows": len(planned), "format": "webdataset", "compression": "snappy",
            "metadata_path": meta if fileio.exists(meta) else None}
    return info, _rows(raw, tf, idx, planned, cols)


def _rows(raw, tf, idx: TarIndex, planned: list[dict], cols: ColumnNames):
    try:
        for r in planned:
            tk = r.pop("tar_key")
            if tk in idx.bad:
                r["member_error"] = idx.bad[tk]
                r["image"] = None
            else:
                member = idx.by_key.get(tk, {}).get(cols.image)
                r["image"] = tf.extractfile(member).read() if member is not None else None
                if r["caption"] is None and "txt" in idx.by_key.get(tk, {}):
                    r["caption"] = tf.extractfile(idx.by_key[tk]["txt"]).read().decode("utf-8", "replace")
                if r["status"] is None and member is not None:
                    r["status"] = "success"
            yield r
    finally:
        tf.close()
        raw.close()


def write_filtered_copy(tar_path: str, shard: str, cols: ColumnNames, dst_tar: str,
                        keep_rows: set[int]) -> dict:
    """Clean tar (+ metadata parquet) holding only the kept rows; return output descriptions."""
    raw, tf = _open_tar(tar_path)
    out: dict = {}
    try:
        idx = index_tar(tf, cols.image)
        rows = plan_rows(tar_path, shard, cols, idx)
        keep_keys = {r["tar_key"] for r in rows if r["row"] in keep_rows and r["tar_key"] not in idx.bad}
        n_kept = sum(1 for r in rows if r["row"] in keep_rows)
        with fileio.atomic_writer(dst_tar) as f:
            sink = _HashingWriter(f)
            with tarfile.open(fileobj=sink, mode="w", format=tf.format or tarfile.PAX_FORMAT) as tw:
                for m in idx.members:
                    key = split_member(m.name)[0]
                    if key in keep_keys:
                        tw.addfile(m, tf.extractfile(m))
        out["clean"] = {"sha256": sink.sha.hexdigest(), "rows": n_kept}
    finally:
        tf.close()
        raw.close()
    meta = metadata_path(tar_path)
    if fileio.exists(meta):
        dst_meta = dst_tar[: -len(".tar")] + ".parquet"
        with open_parquet(meta) as pf:
            table = pf.read()
        n_meta = min(table.num_rows, len(rows))
        mask = pa.array([i in keep_rows for i in range(n_meta)])
        buf = io.BytesIO()
        pq.write_table(table.slice(0, n_meta).filter(mask), buf)
        out["clean_metadata"] = {"sha256": fileio.write_atomic(dst_meta, buf.getvalue()),
                                 "rows": int(pa.compute.sum(mask).as_py() or 0)}
    return out


class _HashingWriter:
    """Write-only file object for tarfile that hashes what it writes."""

    def __init__(self, f):
        self._f, self.sha = f, hashlib.sha256()

    def write(self, data):  # noqa: D102
        self.sha.update(data)
        self._f.write(data)
        return len(data)

    def tell(self):  # noqa: D102 - tarfile asks only to decide block padding it tracks itself
        return 0
