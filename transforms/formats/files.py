"""img2dataset's ``files`` output: ``NNNNN/`` folders of ``key.jpg``, ``key.txt``, ``key.json`` beside
``NNNNN.parquet`` (one metadata row per input row, failed downloads included).

A shard is the metadata parquet whose folder exists beside it. Rows are the metadata rows in order,
then any image files the metadata lacks (every file is accounted), as for webdataset. File names are
untrusted too: only plain names inside the folder are read (no sub-folders, no links). The clean copy
is in the same layout: ``clean/NNNNN/`` with the kept keys' files, copied byte for byte, and
``clean/NNNNN.parquet``, the filtered metadata; the folder is recorded with a digest of its listing
(every file's name and sha256), which ``manifest verify`` recomputes.
"""
from __future__ import annotations

import hashlib
import posixpath

from apache_beam.io.filesystems import FileSystems

from shardguard.indexes import fileio
from shardguard.transforms.contracts import ColumnNames, ShardInfo, ShardSpec
from shardguard.transforms.formats import InputChanged, InputFormat
from shardguard.transforms.formats.webdataset import plan_rows, split_member

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")


def folder_of(meta: str) -> str:
    """The folder img2dataset writes beside a shard's metadata parquet."""
    return meta[: -len(".parquet")]


def has_files(folder: str) -> bool:
    """Whether ``folder`` holds a plain file directly inside: one listing request that stops at the
    first match (a shard's folder may hold a million images; claiming shards must not list them)."""
    return bool(FileSystems.match([folder.rstrip("/") + "/*"], limits=[1])[0].metadata_list)


def list_folder(folder: str) -> dict[str, str]:
    """name → path of the plain files directly inside ``folder``."""
    found = FileSystems.match([folder.rstrip("/") + "/*"])[0].metadata_list
    return {m.path.rsplit("/", 1)[-1]: m.path for m in found}


class _Index:
    """Files of a folder grouped by key, in the TarIndex shape ``plan_rows`` reads."""

    def __init__(self, folder: str):
        self.paths = list_folder(folder)
        self.by_key: dict[str, dict[str, str]] = {}
        self.order: list[str] = []
        self.bad: dict[str, tuple[str, str]] = {}
        for name in sorted(self.paths):
            parsed = split_member(name)
            if parsed is None or "/" in parsed[0]:
                continue  # not a key.ext file: never read
            key, ext = parsed
            if key not in self.by_key:
                self.order.append(key)
            if ext in self.by_key.setdefault(key, {}):
                self.bad[key] = ("duplicate_key", f"key {key[:80]!r} has two {ext!r} files")
            self.by_key[key][ext] = self.paths[name]


def tree_digest(files: dict[str, str]) -> str:
    """sha256 of a folder's listing: every file's name and sha256, sorted by name."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name} {files[name]}\n".encode())
    return h.hexdigest()


def _image(idx: _Index, key: str) -> str | None:
    exts = idx.by_key.get(key, {})
    return next((exts[e] for e in IMAGE_EXTS if e in exts), None)


class FilesFormat(InputFormat):
    """img2dataset ``output_format="files"`` shards."""

    name = "files"

    def claim(self, paths):  # noqa: D102
        metas = sorted(p for p in paths if p.endswith(".parquet") and has_files(folder_of(p)))
        folders = tuple(folder_of(m).rstrip("/") + "/" for m in metas)
        inside = {p for p in paths if p.startswith(folders)} if folders else set()
        return metas, set(metas) | inside

    def fingerprint(self, path):  # noqa: D102
        msha, size = fileio.sha256_file(path)
        files = {}
        for name, p in list_folder(folder_of(path)).items():
            files[name], n = fileio.sha256_file(p)
            size += n
        return hashlib.sha256(f"metadata:{msha} files:{tree_digest(files)}".encode()).hexdigest(), size

    def read_info(self, spec: ShardSpec, cols: ColumnNames) -> ShardInfo:  # noqa: D102
        sha, size = self.fingerprint(spec.path)
        n = len(plan_rows(spec.path, spec.shard, cols, _Index(folder_of(spec.path))))
        return ShardInfo(shard=spec.shard, path=spec.path, format=self.name, num_rows=n, sha256=sha, size=size)

    def iter_rows(self, info, cols):  # noqa: D102
        idx = _Index(folder_of(info.path))
        for r in plan_rows(info.path, info.shard, cols, idx):
            tk = r.pop("tar_key")
            path = _image(idx, tk) if tk not in idx.bad else None
            if tk in idx.bad:
                r["member_error"] = idx.bad[tk]
            r["image"] = fileio.read_bytes(path) if path else None
            if r["caption"] is None and "txt" in idx.by_key.get(tk, {}):
                r["caption"] = fileio.read_bytes(idx.by_key[tk]["txt"]).decode("utf-8", "replace")
            if r["status"] is None and path is not None:
                r["status"] = "success"
            yield r

    def clean_paths(self, layout, shard):  # noqa: D102
        return {"clean": fileio.join(layout.root, "clean", shard), "clean_metadata": layout.output("clean", shard)}

    def write_clean(self, info, keep, dst, cols, verify_sha256):  # noqa: D102
        from shardguard.transforms.formats.webdataset import write_metadata

        if self.fingerprint(info.path)[0] != info.sha256:
            raise InputChanged(f"input {info.path} (metadata or files) changed since it was scanned")
        idx = _Index(folder_of(info.path))
        rows = plan_rows(info.path, info.shard, cols, idx)
        keys = {r["tar_key"] for r in rows if r["row"] in keep and r["tar_key"] not in idx.bad}
        stale = list(list_folder(dst["clean"]).values())
        if stale:
            FileSystems.delete(stale)
        files = {}
        for key in sorted(keys):
            for ext, src in sorted(idx.by_key.get(key, {}).items()):
                name = f"{key}.{ext}"
                files[name] = fileio.write_atomic(posixpath.join(dst["clean"], name), fileio.read_bytes(src))
        return {"clean": {"sha256": tree_digest(files), "rows": sum(1 for r in rows if r["row"] in keep)},
                "clean_metadata": write_metadata(info.path, dst["clean_metadata"], keep, len(rows))}

    def write_example(self, directory, rows):  # noqa: D102
        import pyarrow as pa
        import pyarrow.parquet as pq

        folder = posixpath.join(directory, "00000")
        fileio.ensure_dir(folder)
        for key, data, _ in rows:
            if data is not None:
                fileio.write_atomic(posixpath.join(folder, f"{key}.jpg"), data)
                fileio.write_atomic(posixpath.join(folder, f"{key}.txt"), f"caption {key}".encode())
        meta = pa.table({"key": [k for k, _, _ in rows], "status": [s for _, _, s in rows]})
        pq.write_table(meta, folder + ".parquet")
        return folder + ".parquet"
