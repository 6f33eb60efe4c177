"""Hash expansion's seeds, per shard: which rows are seeds, and the hashes of each seed's views.

A seed's image is read again from the input only when its views were not hashed before: a run's
``seeds/<shard>.parquet`` (written before any verdict, recorded in the shard's outputs) is reused by
a restart and — checked against the recorded sha256 — by a re-filter, which then reads only new
seeds' images. Re-read bytes must still hash to what the features recorded.
"""
from __future__ import annotations

import hashlib

import pyarrow as pa

from shardguard.transforms.rules import column
from shardguard.transforms.rules.expansion import SeedsDoFn


def seed_rows(table, seed_rules) -> list[int]:
    """Rows a seed rule matched on the as-stored image (``type`` without a view)."""
    hit = set()
    for rule in seed_rules:
        for i, matches in enumerate(rule.match(table)):
            if any("@" not in m.type for m in matches):
                hit.add(i)
    return sorted(hit)


def view_hashes(img, full: bool) -> list[tuple[str, str, int, str]]:
    """(view, pdq, quality, phash) of a seed image's views (``seed_views``)."""
    from shardguard.indexes import imagehashes, views

    out = []
    for name, v in views.seed_views(img, full).items():
        pdq, quality = imagehashes.pdq(v)
        out.append((name, pdq, quality, imagehashes.phash(v.convert("L"))))
    return out


SEED_SCHEMA = pa.schema([("seed", pa.string()), ("view", pa.string()), ("pdq", pa.string()),
                         ("pdq_quality", pa.int32()), ("phash", pa.string())])


VIEW_CACHE = 1024  # seed images (by their bytes' sha256) whose views a worker keeps: ~10 KB each


class SeedViewsFn(SeedsDoFn):
    """A shard's seeds and their views' hashes. Views already hashed — by this run before a restart,
    or by the parent of a re-filter (``seeds/<shard>.parquet``, checked against its recorded sha256)
    — are reused; only new seeds' images are read again from the input, and identical seed images
    are hashed once per worker (the views are a function of the bytes)."""

    def setup(self):
        """The base set-up, and an empty cache of views by image bytes."""
        super().setup()
        self._by_bytes: dict[str, list] = {}

    def process(self, ref):
        """The list of (seed, view, pdq, quality, phash) of every seed of one shard (or of an error marker)."""
        table = self.features(ref)
        if table is None:
            return
        keys, pdq = column(table, "key"), column(table, "pdq")
        # rows without a PDQ (not decodable: an md5 list can match any bytes) have no views to hash
        seeds = {f"{ref.shard}/{keys[i]}": i for i in seed_rows(table, self._rule.seed_rules) if pdq[i]}
        path = self._layout.output("seeds", ref.shard)
        if not seeds:
            _remove(path)  # a stale file of an earlier run with other lists
            return
        known = self._known(ref, path) if self._rule.reuse else {}
        new = {i for seed, i in seeds.items() if seed not in known}
        try:
            known.update(self._views(ref, table, new) if new else {})
        except Exception as exc:  # noqa: BLE001 - the expansion would be incomplete: every shard says so
            yield [("error", ref.shard, _read_error(exc), 0, "")]
            return
        rows = [(seed, *v) for seed in sorted(seeds, key=seeds.get) for v in known.get(seed, ())]
        self._save(path, rows)
        yield rows

    def _known(self, ref, path: str) -> dict:
        """seed → its views' hashes, from this run's file or the parent's (same view set only)."""
        from shardguard.indexes import fileio

        parent = ref.spec.parent
        sources = [(path, None)]
        if parent is not None and "seeds" in parent.outputs:
            meta = parent.outputs["seeds"]
            sources.append((fileio.join(parent.run_dir, meta["path"]), meta["sha256"]))
        known: dict = {}
        for src, sha in sources:
            for seed, view, pdq, quality, phash in _load(src, sha, self._rule.view_set()):
                known.setdefault(seed, []).append((view, pdq, quality, phash))
        return known

    def _views(self, ref, table, rows: set[int]) -> dict:
        """seed → views' hashes of the images of ``rows``, read again from the input; their bytes
        must still hash to what the features recorded (an input changed since is refused)."""
        from shardguard.transforms.contracts import ColumnNames
        from shardguard.transforms.decode import decode_image
        from shardguard.transforms.formats import InputChanged, get_format

        check = next((c for c in ("sha256", "md5") if c in table.column_names), None)
        recorded = column(table, check) if check else None
        out = {}
        for row in get_format(ref.spec.format).iter_rows(ref.info, self._rule.columns or ColumnNames()):
            i = row["row"]
            if i not in rows or not row.get("image"):
                continue
            digest = hashlib.sha256(row["image"]).hexdigest()  # also the cache key (never md5: collisions)
            seen = digest if check == "sha256" else hashlib.new(check, row["image"]).hexdigest() if check else None
            if recorded is not None and recorded[i] and seen != recorded[i]:
                raise InputChanged(f"row {i}'s image bytes differ from those the features were computed from")
            if digest not in self._by_bytes:  # copies of one image (a dataset often holds many) hashed once
                if len(self._by_bytes) >= VIEW_CACHE:
                    self._by_bytes.pop(next(iter(self._by_bytes)))
                self._by_bytes[digest] = view_hashes(decode_image(row["image"]).rgb, self._rule.full)
            out[f"{ref.shard}/{row['key']}"] = self._by_bytes[digest]
        return out

    def _save(self, path: str, rows: list) -> None:
        """Write the shard's seeds file, unless it already holds exactly these bytes (a rerun of a
        done shard rewrites nothing)."""
        import io

        import pyarrow.parquet as pq

        from shardguard.indexes import fileio

        table = pa.Table.from_pylist([dict(zip(SEED_SCHEMA.names, r)) for r in rows], schema=SEED_SCHEMA)
        buf = io.BytesIO()
        pq.write_table(table.replace_schema_metadata({"view_set": self._rule.view_set()}), buf, compression="zstd")
        data = buf.getvalue()
        if not self._rule.reuse or not (fileio.exists(path) and fileio.read_bytes(path) == data):
            fileio.write_atomic(path, data)


def _read_error(exc: Exception) -> str:
    hint = " (if the inputs moved: --relocate OLD=NEW)" if isinstance(exc, (OSError, FileNotFoundError)) else ""
    return f"{type(exc).__name__}: {str(exc)[:200]}{hint}"


def _load(path: str, sha256: str | None, view_set: str) -> list[tuple]:
    """Rows of a seeds file, or none when it is absent, of another view set, or not the recorded bytes."""
    import io

    import pyarrow.parquet as pq

    from shardguard.indexes import fileio

    if not fileio.exists(path):
        return []
    data = fileio.read_bytes(path)
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        return []
    table = pq.read_table(io.BytesIO(data))
    if (table.schema.metadata or {}).get(b"view_set") != view_set.encode():
        return []
    return list(zip(*(table.column(n).to_pylist() for n in SEED_SCHEMA.names)))


def _remove(path: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    from shardguard.indexes import fileio

    if fileio.exists(path):
        FileSystems.delete([path])
