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

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from shardguard.indexes import fileio
from shardguard.indexes.arrowio import read_table, to_pylist
from shardguard.transforms.contracts import ColumnNames, ShardInfo, ShardSpec
from shardguard.transforms.formats import InputChanged, InputFormat, derive_keys, resolve_columns


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


def index_tar(tf: tarfile.TarFile) -> TarIndex:
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


class _Tar:
    """A tar opened through Beam's FileSystems (closes both the tar and the raw file)."""

    def __init__(self, path: str):
        self.raw = FileSystems.open(path, compression_type="uncompressed")
        try:
            self.tf = tarfile.open(fileobj=self.raw, mode="r:")
        except BaseException:
            self.raw.close()
            raise

    def close(self) -> None:
        self.tf.close()
        self.raw.close()


def read_metadata(meta: str, cols: ColumnNames) -> list[dict] | None:
    """Metadata rows (without any image column), or None when there is no metadata parquet."""
    if not fileio.exists(meta):
        return None
    table = read_table(meta)
    values = {c: to_pylist(table.column(c)) for c in table.column_names if c != cols.image}
    if not values:
        return [{} for _ in range(table.num_rows)]
    return [dict(zip(values, row)) for row in zip(*values.values())]


def plan_rows(meta_path: str, shard: str, cols: ColumnNames, idx) -> list[dict]:
    """One row dict per input row (no image yet), with key, key_derived and the member key it maps
    to: the metadata's rows, then keys of ``idx`` (a TarIndex, or a folder's) the metadata lacks."""
    meta = read_metadata(meta_path, cols)
    rows: list[dict] = []
    if meta:
        cols = resolve_columns(cols, list(meta[0]))
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


def fingerprint(tar_path: str) -> tuple[str, int]:
    """(sha256, size) over the tar and its metadata parquet together, since both feed the outputs."""
    sha, size = fileio.sha256_file(tar_path)
    meta = metadata_path(tar_path)
    if fileio.exists(meta):
        msha, msize = fileio.sha256_file(meta)
        return hashlib.sha256(f"tar:{sha} metadata:{msha}".encode()).hexdigest(), size + msize
    return sha, size


def _rows(tar: _Tar, idx: TarIndex, planned: list[dict], cols: ColumnNames):
    try:
        for r in planned:
            tk = r.pop("tar_key")
            if tk in idx.bad:
                r["member_error"] = idx.bad[tk]
                r["image"] = None
            else:
                member = idx.by_key.get(tk, {}).get(cols.image)
                r["image"] = tar.tf.extractfile(member).read() if member is not None else None
                if r["caption"] is None and "txt" in idx.by_key.get(tk, {}):
                    r["caption"] = tar.tf.extractfile(idx.by_key[tk]["txt"]).read().decode("utf-8", "replace")
                if r["status"] is None and member is not None:
                    r["status"] = "success"
            yield r
    finally:
        tar.close()


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


def _write_tar(tar: _Tar, idx: TarIndex, keep_keys: set[str], dst: str, verify) -> str:
    with fileio.atomic_writer(dst) as f:
        sink = _HashingWriter(f)
        with tarfile.open(fileobj=sink, mode="w", format=tar.tf.format or tarfile.PAX_FORMAT) as tw:
            for m in idx.members:
                if split_member(m.name)[0] in keep_keys:
                    tw.addfile(m, tar.tf.extractfile(m))
        verify()  # before the copy is published: a tar rewritten mid-run never reaches clean/
    return sink.sha.hexdigest()


def write_metadata(src: str, dst: str, keep_rows: set[int], n_rows: int) -> dict:
    """The metadata parquet's kept rows (schema and values as they are), written atomically."""
    table = read_table(src)
    n_meta = min(table.num_rows, n_rows)
    mask = pa.array([i in keep_rows for i in range(n_meta)])
    buf = io.BytesIO()
    pq.write_table(table.slice(0, n_meta).filter(mask), buf)
    return {"sha256": fileio.write_atomic(dst, buf.getvalue()), "rows": int(pa.compute.sum(mask).as_py() or 0)}


class WebdatasetFormat(InputFormat):
    """img2dataset webdataset shards: a tar plus its metadata parquet."""

    name = "webdataset"

    def claim(self, paths):  # noqa: D102
        tars = sorted(p for p in paths if p.endswith(".tar"))
        metas = {metadata_path(t) for t in tars}
        # a parquet beside a tar is its metadata even when the pattern matched only the parquet
        for p in paths:
            if p.endswith(".parquet") and p not in metas and fileio.exists(p[: -len(".parquet")] + ".tar"):
                metas.add(p)
        return tars, set(tars) | metas

    def fingerprint(self, path: str) -> tuple[str, int]:  # noqa: D102
        return fingerprint(path)

    def write_example(self, directory, rows):  # noqa: D102
        import posixpath

        path = posixpath.join(directory, "00000.tar")
        with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
            for key, data, _ in rows:
                for ext, payload in (("jpg", data), ("txt", f"caption {key}".encode())):
                    if payload is not None:
                        info = tarfile.TarInfo(f"{key}.{ext}")
                        info.size, info.mtime = len(payload), 1700000000
                        tf.addfile(info, io.BytesIO(payload))
        meta = pa.table({"key": [k for k, _, _ in rows], "status": [s for _, _, s in rows]})
        pq.write_table(meta, metadata_path(path))
        return path

    def read_info(self, spec: ShardSpec, cols: ColumnNames) -> ShardInfo:  # noqa: D102
        sha, size = fingerprint(spec.path)
        tar = _Tar(spec.path)
        try:
            n = len(plan_rows(metadata_path(spec.path), spec.shard, cols, index_tar(tar.tf)))
        finally:
            tar.close()
        return ShardInfo(shard=spec.shard, path=spec.path, format=self.name, num_rows=n, sha256=sha, size=size)

    def iter_rows(self, info, cols):  # noqa: D102
        tar = _Tar(info.path)
        try:
            idx = index_tar(tar.tf)
            planned = plan_rows(metadata_path(info.path), info.shard, cols, idx)
        except BaseException:
            tar.close()
            raise
        return _rows(tar, idx, planned, cols)

    def clean_paths(self, layout, shard):  # noqa: D102
        return {"clean": layout.output("clean", shard, "tar"), "clean_metadata": layout.output("clean", shard)}

    def write_clean(self, info, keep, dst, cols, verify_sha256):  # noqa: D102
        def verify():
            try:
                sha = self.fingerprint(info.path)[0]
            except Exception as exc:  # noqa: BLE001 - gone or unreadable
                raise InputChanged(f"input {info.path} cannot be read: {type(exc).__name__}: {exc}"[:500]) from None
            if sha != info.sha256:
                raise InputChanged(f"input {info.path} changed since it was scanned (sha256 differs)")

        tar = _Tar(info.path)
        try:
            idx = index_tar(tar.tf)
            rows = plan_rows(metadata_path(info.path), info.shard, cols, idx)
            keep_keys = {r["tar_key"] for r in rows if r["row"] in keep and r["tar_key"] not in idx.bad}
            # the input is hashed on another thread while the kept members are copied
            with fileio.in_background(verify) as verified:
                sha = _write_tar(tar, idx, keep_keys, dst["clean"], verified)
            out = {"clean": {"sha256": sha, "rows": sum(1 for r in rows if r["row"] in keep)}}
        finally:
            tar.close()
        if fileio.exists(metadata_path(info.path)):
            out["clean_metadata"] = write_metadata(metadata_path(info.path), dst["clean_metadata"], keep, len(rows))
        return out
