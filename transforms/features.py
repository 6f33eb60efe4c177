"""Per-row features: the stored-bytes hashes, perceptual hashes and image size.

``compute_row_features`` turns one input row into one features record (never carrying image bytes
onward). A row that cannot be hashed becomes an error record with stage, class and message; it is
never dropped. The record layout is ``FEATURE_SCHEMA``: what ``features/<shard>.parquet`` holds and
what a re-filter reads back.
"""
from __future__ import annotations

import pyarrow as pa

from shardguard.indexes.hashtypes import HASH_TYPES
from shardguard.transforms.decode import DecodeError, decode_image

CRYPTO_TYPES = tuple(n for n, t in HASH_TYPES.items() if not t.perceptual)

FEATURE_SCHEMA = pa.schema([
    ("row", pa.int64()), ("key", pa.string()), ("key_derived", pa.bool_()), ("url", pa.string()),
    ("status", pa.string()), ("input_status", pa.string()),
    ("error_stage", pa.string()), ("error_class", pa.string()), ("error_message", pa.string()),
    ("md5", pa.string()), ("sha1", pa.string()), ("sha256", pa.string()),
    ("phash", pa.string()), ("dhash", pa.string()), ("pdq", pa.string()), ("pdq_quality", pa.int32()),
    ("width", pa.int32()), ("height", pa.int32()), ("source_mode", pa.string()),
    ("integrity_ref", pa.string()),
])

OK, ERROR = "ok", "error"
_EMPTY_RECORD = dict.fromkeys(FEATURE_SCHEMA.names)


def feature_schema(embed_dim: int | None) -> pa.Schema:
    """The features schema; with a CLIP model, plus ``embedding`` (float16 x dim) and ``clip_score``."""
    if not embed_dim:
        return FEATURE_SCHEMA
    return (FEATURE_SCHEMA.append(pa.field("embedding", pa.list_(pa.float16(), embed_dim)))
            .append(pa.field("clip_score", pa.float32())))


def features_table(rows: list[dict], embed_dim: int | None) -> pa.Table:
    """Features records to a table; embeddings are packed from numpy (float16) directly."""
    # from_pylist takes the schema's fields from each dict and ignores other keys (embedding…)
    base = pa.Table.from_pylist(rows, schema=FEATURE_SCHEMA)
    if not embed_dim:
        return base
    import numpy as np

    # A row without an embedding stores the zero vector (real ones have norm 1): pyarrow 25 writes
    # null fixed-size-list entries to parquet but cannot read them back.
    flat = np.zeros((len(rows), embed_dim), dtype=np.float16)
    for i, r in enumerate(rows):
        if r.get("embedding") is not None:
            flat[i] = r["embedding"]
    emb = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), type=pa.float16()), embed_dim)
    score = pa.array([r.get("clip_score") for r in rows], type=pa.float32())
    return base.append_column(pa.field("embedding", pa.list_(pa.float16(), embed_dim)), emb) \
               .append_column(pa.field("clip_score", pa.float32()), score)


def base_record(row: dict) -> dict:
    """The identity part of a features record, every other field null."""
    rec = _EMPTY_RECORD.copy()  # a copy of a prepared dict: ~5× cheaper than building it per row
    rec.update(row=row["row"], key=row["key"], key_derived=row["key_derived"], url=row.get("url"),
               input_status=row.get("status"))
    ref = row.get("integrity_ref")
    if ref:
        rec["integrity_ref"] = str(ref).strip().lower()
    return rec


def error_record(row: dict, stage: str, error_class: str, message: str) -> dict:
    """A features record for a row that could not be processed."""
    rec = base_record(row)
    rec.update(status=ERROR, error_stage=stage, error_class=error_class, error_message=message[:500])
    return rec


def draft_size(hash_names, clip_size: int | None, exact: bool) -> int | None:
    """The JPEG draft size for a row: none in exact mode or when PDQ is computed (PDQ moves by up to
    20 bits on a 256-px draft, measured), else what the largest consumer needs."""
    if exact or "pdq" in hash_names:
        return None
    from shardguard.transforms.decode import DHASH_MIN_SIDE, HASH_MIN_SIDE

    return max(DHASH_MIN_SIDE if "dhash" in hash_names else HASH_MIN_SIDE, clip_size or 0)


BATCHED = ("phash", "dhash")  # hashed for a whole batch at once by finish_batch (bit-identical)


def compute_row_features(row: dict, hash_names: tuple[str, ...], max_pixels: int,
                         clip_size: int | None = None, exact: bool = True, defer: bool = False):
    """(features record, CLIP pixels or None) of one input row (see module doc).

    Never raises for bad image data. ``clip_size`` asks for the centre-cropped uint8 pixels the
    embedding stage needs, cut from the same decoded image as the hashes. With ``defer``, pHash and
    dHash are left as a grayscale array for ``finish_batch`` to resize and hash batch-wise.
    """
    if row.get("member_error"):
        cls, msg = row["member_error"]
        return error_record(row, "input", cls, msg), None
    status = row.get("status")
    if status is not None and status != "success":
        return error_record(row, "input", f"status_{status}", f"input status is {status!r}"), None
    data = row.get("image")
    if data is None:
        return error_record(row, "input", "null_image", "image column is null"), None
    rec = base_record(row)
    # Cryptographic hashes need only the bytes: computed even when decoding then fails, so a
    # known-bad file that is not a valid image is still caught by exact lists.
    for name in hash_names:
        if name in CRYPTO_TYPES:
            rec.update(HASH_TYPES[name].compute(_BytesOnly(data)))
    try:
        # luma only when nothing but pHash/dHash reads pixels (CLIP and PDQ need colour)
        luma = not clip_size and all(n in BATCHED or n in CRYPTO_TYPES for n in hash_names)
        img = decode_image(data, max_pixels, exact=exact, draft_size=draft_size(hash_names, clip_size, exact),
                           luma=luma)
    except DecodeError as exc:
        rec.update(status=ERROR, error_stage="decode", error_class=exc.error_class,
                   error_message=str(exc)[:500])
        return rec, None
    for name in hash_names:
        if defer and name in BATCHED:
            import numpy as np

            if "_gray" not in rec:  # one grayscale array serves both pHash and dHash
                rec["_gray"] = np.asarray(img.hash_gray)
                rec["_src"] = ((img.width, img.height), img.hash_block)
            rec.setdefault("_batched", []).append(name)
        elif name not in CRYPTO_TYPES:
            rec.update(HASH_TYPES[name].compute(img))
    rec.update(status=OK, width=img.width, height=img.height, source_mode=img.source_mode)
    pixels = None
    if clip_size:
        from shardguard.transforms.embed import clip_pixels

        pixels = clip_pixels(img.rgb, clip_size)
    return rec, pixels


def finish_batch(records: list[dict]) -> None:
    """Hash the deferred pHash/dHash inputs of a batch of records in place: same-sized grayscale
    images are resized together (``indexes/lanczos.py``) and hashed with one vectorised DCT;
    bit-identical to the per-image functions (tested)."""
    import numpy as np

    from shardguard.indexes import imagehashes, lanczos

    kernels = {"phash": ((32, 32), imagehashes.phash_batch), "dhash": ((9, 8), imagehashes.dhash_batch)}
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        if "_gray" in r:
            full, block = r["_src"]
            groups.setdefault((r["_gray"].shape, full if block > 1 else None, block), []).append(r)
    for (shape, full, block), todo in groups.items():
        grays = [r.pop("_gray") for r in todo]
        for name, ((w, h), kernel) in kernels.items():
            rows = [(r, g) for r, g in zip(todo, grays) if name in r["_batched"]]
            if not rows:
                continue
            if block > 1 or max(shape) <= lanczos.MAX_SIDE:
                small = lanczos.resize_batch(np.stack([g for _, g in rows]), w, h, full, block)
            else:  # large (exact-mode) images: Pillow's sparse resize beats a dense product
                small = np.stack([imagehashes.resize_gray(g, w, h) for _, g in rows])
            for (r, _), value in zip(rows, kernel(small)):
                r[name] = value
        for r in todo:
            del r["_batched"], r["_src"]


PACKED = "feature-columns/1"


def pack_records(records: list[dict]) -> tuple:
    """A batch of records as columns, for the trip through the shuffle: ``(PACKED, names, columns)``
    with all-null columns left out. Plain tuples, lists and scalars, so any runner's default coder
    encodes it, ~5× faster than one dict per row (every key encoded and decoded per row, and
    the local runner decodes and re-encodes each grouped value once more)."""
    names = list(dict.fromkeys(k for r in records for k in r))
    cols = [[r.get(n) for r in records] for n in names]
    kept = [(n, c) for n, c in zip(names, cols) if any(v is not None for v in c)]
    return PACKED, tuple(n for n, _ in kept), tuple(c for _, c in kept)


def unpack_records(item) -> list[dict]:
    """The records of a ``pack_records`` batch (every schema field present, absent ones null); a
    record or a list of records (CLIP rows, a re-filter's stored features) passes through."""
    if isinstance(item, dict):
        return [item]
    if isinstance(item, list):
        return item
    tag, names, cols = item
    if tag != PACKED:
        raise ValueError(f"not a packed features batch: {tag!r}")
    out = []
    for values in zip(*cols):
        r = _EMPTY_RECORD.copy()
        r.update(zip(names, values))
        out.append(r)
    return out


class _BytesOnly:
    """The ImageLike view a cryptographic hash needs: bytes, no pixels."""

    def __init__(self, data: bytes):
        self.data = data


def embeddings_from_table(table: pa.Table):
    """(float16 (n, dim) matrix, has-embedding mask) from a features table's ``embedding`` column."""
    import numpy as np

    col = table.column("embedding").combine_chunks()
    dim = col.type.list_size
    vals = col.values.to_numpy(zero_copy_only=False)[col.offset * dim:(col.offset + len(col)) * dim]
    flat = vals.astype(np.float16).reshape(-1, dim)
    return flat, np.any(flat != 0, axis=1)
