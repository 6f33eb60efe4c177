"""img2dataset-style parquet shards (``key, url, caption, status, …, jpg``): rows, identity, clean copy.

Shards are read through Beam's FileSystems (local, gs://, s3://) a record batch at a time, projecting
only the columns the features need, so memory is bounded by the batch and not by the shard. The
clean copy keeps the input's schema (with its metadata), column order and values; a shard whose rows
are all kept is copied byte for byte, and that copy proves (by its footer and sha256) that it is the
file whose rows were scanned.
"""
from __future__ import annotations

import hashlib
import io

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from shardguard.indexes import fileio
from shardguard.indexes.arrowio import open_parquet, to_pylist
from shardguard.transforms.contracts import ColumnNames, ShardInfo, ShardSpec
from shardguard.transforms.formats import InputChanged, InputFormat, derive_keys, resolve_columns

READ_BATCH_ROWS = 64  # image rows per record batch: ~64 images in memory per reading thread
ROW_GROUP_BYTES = 64 << 20  # clean shards: row groups of about this size (bounded memory)


def layout_digest(tail: bytes) -> str:
    """sha256 of a parquet file's footer bytes (row groups, column chunk offsets, sizes, statistics,
    then its length and magic): it changes when the file is rewritten, so a copy can prove it is the
    file whose rows were read. Raw bytes, never decoded (statistics may hold invalid UTF-8)."""
    return hashlib.sha256(tail).hexdigest()


def footer_tail(path: str, footer_size: int) -> bytes:
    """The last ``footer_size + 8`` bytes of a file: the footer, its length and ``PAR1``."""
    with FileSystems.open(path, compression_type="uncompressed") as f:
        f.seek(-(footer_size + 8), 2)
        return f.read()


def shard_metadata(path: str) -> dict:
    """Row count, column names, compression and footer digest of a shard (reads only the footer)."""
    with open_parquet(path) as pf:
        md = pf.metadata
        codec = md.row_group(0).column(0).compression.lower() if md.num_row_groups and md.num_columns else "snappy"
        meta = {"num_rows": md.num_rows, "columns": tuple(pf.schema_arrow.names), "compression": codec,
                "footer_size": md.serialized_size}
    meta["layout_sha256"] = layout_digest(footer_tail(path, meta["footer_size"]))
    return meta


def image_struct_columns(schema: pa.Schema) -> list[str]:
    """Columns holding Hugging Face ``Image`` values: a struct with a binary ``bytes`` field."""
    out = []
    for f in schema:
        i = f.type.get_field_index("bytes") if pa.types.is_struct(f.type) else -1
        if i >= 0 and (pa.types.is_binary(f.type.field(i).type) or pa.types.is_large_binary(f.type.field(i).type)):
            out.append(f.name)
    return out


def image_column(cols: ColumnNames, schema: pa.Schema) -> ColumnNames:
    """The image column as the shard has it: the configured one, else (Hugging Face datasets name it
    ``image``) the shard's one ``Image`` struct column."""
    import dataclasses

    structs = image_struct_columns(schema)
    if cols.image not in schema.names and len(structs) == 1:
        return dataclasses.replace(cols, image=structs[0])
    return cols


def _image_value(value):
    """Bytes of an image cell; a Hugging Face ``Image`` struct gives its ``bytes`` (a path alone cannot
    be scanned: the row errors, ``path_only``)."""
    if isinstance(value, dict):
        if value.get("bytes") is None and value.get("path"):
            return None, ("path_only", f"the image is only a path ({str(value['path'])[:80]!r}), not bytes in "
                                       "the shard; embed the images (datasets' embed_external_files) to scan them")
        return value.get("bytes"), None
    return value, None


def iter_rows(path: str, shard: str, cols: ColumnNames):
    """One dict per input row: row, key, key_derived, url, caption, status, image (see InputFormat)."""
    with open_parquet(path) as pf:
        names = set(pf.schema_arrow.names)
        cols = image_column(resolve_columns(cols, names), pf.schema_arrow)
        raw_keys = (to_pylist(pf.read(columns=[cols.key], use_threads=False).column(0)) if cols.key in names
                    else [None] * pf.metadata.num_rows)
        keys = derive_keys(raw_keys, shard)
        wanted = [c for c in (cols.image, cols.url, cols.caption, cols.status, cols.integrity) if c and c in names]
        if not wanted:  # nothing but (maybe) keys: still one record per row
            for row in range(pf.metadata.num_rows):
                yield _row(row, keys[row], {}, cols, names)
            return
        row = 0
        for batch in pf.iter_batches(batch_size=READ_BATCH_ROWS, columns=wanted, use_threads=False):
            data = {c: to_pylist(batch.column(c)) for c in batch.schema.names}
            for i in range(batch.num_rows):
                yield _row(row, keys[row], {c: data[c][i] for c in data}, cols, names)
                row += 1


def _row(row: int, key: tuple[str, bool], values: dict, cols: ColumnNames, names: set) -> dict:
    image, problem = _image_value(values.get(cols.image))
    out = {"row": row, "key": key[0], "key_derived": key[1], "url": values.get(cols.url),
           "caption": values.get(cols.caption), "status": values.get(cols.status), "image": image}
    if problem:
        out["member_error"] = problem
    if cols.integrity:
        out["integrity_ref"] = values.get(cols.integrity)
    if cols.image not in names:
        out["missing_image_column"] = f"{cols.image!r} (columns: {', '.join(sorted(names))[:300]})"
    return out


def copy_whole(src: str, dst: str, expected_sha256: str, layout_sha256: str | None = None,
               footer_size: int | None = None) -> str:
    """Copy a shard whose rows are all kept byte for byte (its clean shard is the input file); return
    the sha256. The copied bytes must hash to ``expected_sha256`` and, when given, the footer inside
    them must be the one seen when the rows were read; otherwise InputChanged is raised and nothing
    appears at ``dst``: a file rewritten mid-run is never published as clean unscanned."""
    digest, tail = hashlib.sha256(), b""
    keep = (footer_size or 0) + 8
    with FileSystems.open(src, compression_type="uncompressed") as f, fileio.atomic_writer(dst) as out:
        for chunk in fileio.read_chunks(f):
            digest.update(chunk)
            out.write(chunk)
            tail = (tail + chunk)[-keep:] if len(chunk) < keep else bytes(chunk[-keep:])  # the buffer is reused
        if layout_sha256 and not _footer_is(tail, layout_sha256):
            raise InputChanged(f"{src} changed after its rows were read (footer differs); not copied")
        if digest.hexdigest() != expected_sha256:
            raise InputChanged(f"input {src} changed since it was scanned (sha256 {digest.hexdigest()[:16]}…, "
                               f"recorded {expected_sha256[:16]}…); not copied")
    return digest.hexdigest()


def _footer_is(tail: bytes, layout_sha256: str) -> bool:
    return layout_digest(tail) == layout_sha256


def write_filtered_copy(src: str, dst: str, keep_rows: set[int], compression: str,
                        layout_sha256: str | None = None, before_publish=None) -> tuple[str, int]:
    """Copy the rows of ``src`` whose position is in ``keep_rows`` to ``dst`` atomically, with the
    input's schema (and its metadata), column order and values; return (sha256, rows written).
    With ``layout_sha256``, a file rewritten since its rows were read raises InputChanged before
    anything is written (rows are kept by position). ``before_publish()`` runs once the copy is
    complete and before it appears at ``dst``; what it raises leaves nothing there. Kept rows are
    buffered into row groups of about ``ROW_GROUP_BYTES`` (one per read batch would make thousands
    of tiny row groups)."""
    import numpy as np

    keep = np.array(sorted(keep_rows), dtype=np.int64)
    with open_parquet(src) as pf:
        if layout_sha256 and layout_digest(footer_tail(src, pf.metadata.serialized_size)) != layout_sha256:
            raise InputChanged(f"{src} changed after its rows were read (footer differs); not copied")
        return _copy_rows(pf, dst, keep, compression, before_publish)


def _copy_rows(pf: pq.ParquetFile, dst: str, keep, compression: str, before_publish=None) -> tuple[str, int]:
    import numpy as np

    written, start = 0, 0
    with fileio.atomic_writer(dst) as out:
        sink = fileio.HashingSink(out)
        buffered = io.BufferedWriter(sink, buffer_size=8 << 20)
        writer = pq.ParquetWriter(pa.PythonFile(buffered, mode="w"), pf.schema_arrow,
                                  compression=compression if compression != "uncompressed" else "none")
        pending, pending_bytes = [], 0
        for batch in pf.iter_batches(batch_size=READ_BATCH_ROWS, use_threads=False):
            idx = np.arange(start, start + batch.num_rows)
            kept = batch.filter(pa.array(np.isin(idx, keep)))
            start += batch.num_rows
            if kept.num_rows:
                pending.append(kept)
                pending_bytes += kept.nbytes
            if pending_bytes >= ROW_GROUP_BYTES:
                written += _flush(writer, pending)
                pending, pending_bytes = [], 0
        written += _flush(writer, pending)
        writer.close()
        buffered.flush()
        if before_publish is not None:
            before_publish()
    return sink.sha.hexdigest(), written


def _flush(writer, batches) -> int:
    if not batches:
        return 0
    table = pa.Table.from_batches(batches)
    writer.write_table(table, row_group_size=table.num_rows)
    return table.num_rows


def _verify_sha256(path: str, expected: str) -> None:
    try:
        sha, _ = fileio.sha256_file(path)
    except Exception as exc:  # noqa: BLE001 - gone or unreadable: the same failure
        raise InputChanged(f"input {path} cannot be read: {type(exc).__name__}: {exc}"[:500]) from None
    if sha != expected:
        raise InputChanged(f"input {path} changed since it was scanned (sha256 {sha[:16]}…, "
                           f"recorded {expected[:16]}…)")


class ParquetFormat(InputFormat):
    """img2dataset parquet shards (the image bytes in a binary column)."""

    name = "parquet"

    def claim(self, paths):  # noqa: D102
        shards = [p for p in paths if p.endswith(".parquet")]
        return shards, set(shards)

    def write_example(self, directory, rows):  # noqa: D102
        import posixpath

        table = pa.table({"key": [k for k, _, _ in rows], "caption": [f"caption {k}" for k, _, _ in rows],
                          "status": [s for _, _, s in rows], "jpg": pa.array([d for _, d, _ in rows], pa.binary())})
        path = posixpath.join(directory, "00000.parquet")
        pq.write_table(table, path)
        return path

    def read_info(self, spec: ShardSpec, cols: ColumnNames) -> ShardInfo:  # noqa: D102
        meta = shard_metadata(spec.path)
        sha, size = self.fingerprint(spec.path)
        return ShardInfo(shard=spec.shard, path=spec.path, format=self.name, sha256=sha, size=size, **meta)

    def iter_rows(self, info, cols):  # noqa: D102
        return iter_rows(info.path, info.shard, cols)

    def write_clean(self, info, keep, dst, cols, verify_sha256):  # noqa: D102
        if len(keep) == info.num_rows:
            sha = copy_whole(info.path, dst["clean"], info.sha256, info.layout_sha256, info.footer_size)
            return {"clean": {"sha256": sha, "rows": len(keep)}}
        if not verify_sha256:
            return {"clean": self._filtered(info, keep, dst)}
        # the input's sha256 is read on another thread while the rows are copied (it releases the
        # GIL); the copy is published only once it matched, and a changed or unreadable input is
        # the error reported, whatever else the copy ran into
        with fileio.in_background(_verify_sha256, info.path, info.sha256) as verified:
            try:
                return {"clean": self._filtered(info, keep, dst, verified)}
            except Exception:
                verified()
                raise

    @staticmethod
    def _filtered(info, keep, dst, before_publish=None) -> dict:
        compression = info.compression or shard_metadata(info.path)["compression"]
        csha, n = write_filtered_copy(info.path, dst["clean"], keep, compression, info.layout_sha256, before_publish)
        return {"sha256": csha, "rows": n}
