"""Readers for known-bad hash lists in the formats they are really delivered in.

Formats (``fmt``), chosen by ``auto`` from the first entry line unless given:

* ``plain``  one hex hash per line (``needles.txt``; most exports).
* ``typed``  ``<type> <hash>`` per line (python-threatexchange's file format).
* ``csv``    comma/tab separated, with or without a header (ThreatExchange "simple" exports,
             HMA sample CSVs, ``pdq_samples.csv``); the hash column and an optional entry-id and
             type column are found by header name, or are columns 0 and 1 without a header.
* ``jsonl``  one JSON object per line with a hash field (and optionally a type and id field).

Rules, the same for every format: a UTF-8 BOM is ignored; blank lines and ``#`` comment lines (plain
and typed formats) are skipped; hex is case-insensitive; an entry of another type than the list's is
an error unless ``other_types="skip"``; the first malformed entry stops the read with
``ListFormatError("<file>:<line>: <reason>")``; duplicates are counted and kept once.
Reading streams the file, so memory grows with the number of distinct entries only.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from array import array
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems

from shardguard.indexes.hashtypes import HASH_TYPES, HashFormatError, HashType

FORMATS = ("auto", "plain", "typed", "csv", "jsonl")
_HASH_HEADERS = ("hash", "signal_str", "indicator", "signal_value", "value", "pdq_hash", "md5_hash",
                 "sha256_hash", "hash_value")
_ID_HEADERS = ("id", "entry_id", "indicator_id", "first_descriptor_id", "descriptor_id")
_TYPE_HEADERS = ("type", "signal_type", "hash_type", "indicator_type")


class ListFormatError(ValueError):
    """A hash list that cannot be read; the message starts with ``file:line:``."""


@dataclass(frozen=True)
class ListOptions:
    """How to read one list file (everything has a sensible default)."""

    fmt: str = "auto"
    hash_column: str | None = None
    id_column: str | None = None
    type_column: str | None = None
    other_types: str = "error"  # or "skip"
    url_hashes: bool = False  # a URL-hash list: url_md5 entries are its entries


_ID_CHUNK = 1 << 20


@dataclass
class ParsedList:
    """The distinct entries of one list file, in file order, plus how the file was read.

    Memory stays close to the entries' own size: codes accumulate in one bytearray, line numbers
    in an int64 array, ids (when the format has them) in Arrow string chunks; duplicates are found
    once, at the end, with a sort (``finish``) rather than a per-entry Python set. 10M PDQ entries
    take about 0.9 GB at peak (documented in the README)."""

    hash_type: HashType
    codes: bytearray = field(default_factory=bytearray)
    lines: "array" = field(default_factory=lambda: array("q"))
    stats: dict = field(default_factory=lambda: {
        "lines": 0, "entries": 0, "duplicates": 0, "skipped_blank_or_comment": 0,
        "skipped_other_type": 0})  # "skipped_other_signal" appears when a file has some (fingerprints of
    # lists without any stay what they were)
    fmt: str = ""
    source_sha256: str = ""
    _id_chunks: list = field(default_factory=list, repr=False)
    _ids: list = field(default_factory=list, repr=False)
    _finished: bool = False

    def add(self, value: str, line: int, entry_id: str | None) -> None:
        """Add one validated hex hash (duplicates are removed by ``finish``)."""
        self.codes += bytes.fromhex(value)
        self.lines.append(line)
        if entry_id and not self._ids and not self._id_chunks and len(self.lines) > 1:
            self._ids = [""] * (len(self.lines) - 1)  # first id seen late: back-fill the earlier rows
        if entry_id or self._ids or self._id_chunks:
            self._ids.append(entry_id or "")
            if len(self._ids) >= _ID_CHUNK:
                self._id_chunks.append(pa.array(self._ids, pa.large_string()))
                self._ids = []

    def finish(self) -> None:
        """Drop duplicate hashes, keeping each first occurrence in file order; count them."""
        if self._finished:
            return
        self._finished = True
        if self._ids:
            self._id_chunks.append(pa.array(self._ids, pa.large_string()))
            self._ids = []
        n, width = len(self.lines), self.hash_type.nbytes
        keep = np.zeros(0, dtype=np.int64)
        if n:
            # one fixed-width void value per entry: a memcmp sort, no per-entry Python objects
            view = np.frombuffer(self.codes, dtype=np.dtype((np.void, width)))
            _, first = np.unique(view, return_index=True)
            keep = np.sort(first)
            del view
        ids = pa.chunked_array(self._id_chunks, pa.large_string()) if self._id_chunks else None
        if len(keep) != n:
            self.codes = bytearray(np.frombuffer(self.codes, dtype=np.uint8).reshape(n, width)[keep].tobytes())
            self.lines = array("q", np.frombuffer(self.lines, dtype=np.int64)[keep].tobytes())
            if ids is not None:
                ids = ids.take(pa.array(keep))
        self._id_chunks = [ids.combine_chunks()] if ids is not None and len(ids) else []
        self.stats["entries"] = len(keep)
        self.stats["duplicates"] = n - len(keep)

    @property
    def ids(self) -> list[str]:
        """Entry ids ('' where the format has none), aligned with ``lines``."""
        return self.id_array().to_pylist()

    def id_array(self) -> pa.Array:
        """Entry ids as one Arrow array ('' where there is none; no Python strings kept)."""
        self.finish()
        if self._id_chunks:
            return self._id_chunks[0]
        return pa.nulls(len(self.lines), pa.large_string()).fill_null("")

    def code_array(self) -> np.ndarray:
        """Distinct entries as an ``(n, nbytes)`` uint8 array."""
        self.finish()
        return np.frombuffer(bytes(self.codes), dtype=np.uint8).reshape(-1, self.hash_type.nbytes)


class _HashingReader(io.RawIOBase):
    """Wraps a binary stream and sha256-hashes every byte read, so the file is read once."""

    def __init__(self, raw):
        self._raw, self.sha = raw, hashlib.sha256()

    def readable(self):  # noqa: D102
        return True

    def readinto(self, buf):  # noqa: D102
        data = self._raw.read(len(buf))
        self.sha.update(data)
        buf[: len(data)] = data
        return len(data)


# python-threatexchange signal type names (and ThreatExchange indicator types) → shardguard's hash
# types: image hashes are applied to lists of that type ...
SIGNAL_TYPES = {"pdq": "pdq", "photo_md5": "md5", "md5": "md5", "hash_pdq": "pdq", "hash_md5": "md5",
                "hash_sha1": "sha1", "hash_sha256": "sha256", "sha1": "sha1", "sha256": "sha256",
                "phash": "phash", "dhash": "dhash"}
# ... signals of other media (video, text, URLs) can never match an image: skipped and counted
OTHER_SIGNALS = frozenset({"video_md5", "video_tmk_pdqf", "vpdq", "tmk", "hash_tmk", "url", "uri", "url_md5",
                           "raw_text", "trend_query", "text_tlsh", "tlsh", "hash_tlsh", "domain", "photodna",
                           "hash_photodna", "video_pdq"})
URL_SIGNALS = {"url_md5": "md5", "url_sha256": "sha256", "url_sha1": "sha1"}


def _sniff(first: str) -> str:
    stripped = first.strip()
    if stripped.startswith("{"):
        return "jsonl"
    if "," in stripped or "\t" in stripped:
        return "csv"
    parts = stripped.split()
    name = parts[0].lower() if parts else ""
    if len(parts) == 2 and (name in HASH_TYPES or name in SIGNAL_TYPES or name in OTHER_SIGNALS or name in URL_SIGNALS):
        return "typed"
    return "plain"


def _check_type(declared: HashType, given: str, opts: ListOptions, out: ParsedList) -> bool:
    """True when the entry is of the list's type; False to skip it (counted); raise on a mismatch.
    An entry of another image hash type follows ``other_types``; a signal of other media (video,
    text, URLs: python-threatexchange's ``video_md5``, ``url_md5``…) is always skipped and counted."""
    name = given.strip().lower()
    url_list = opts.url_hashes and URL_SIGNALS.get(name) == declared.name
    if url_list or (not opts.url_hashes and SIGNAL_TYPES.get(name, name) == declared.name):
        return True
    if name in OTHER_SIGNALS or name in URL_SIGNALS:
        out.stats["skipped_other_signal"] = out.stats.get("skipped_other_signal", 0) + 1
        return False
    if opts.other_types == "skip":
        out.stats["skipped_other_type"] += 1
        return False
    raise HashFormatError(f"entry type {given!r} does not match list type {declared.name!r} "
                          "(split the file per type, or set other_types: skip)")


def _read_plain(lines, ht, opts, out):
    for no, text in lines:
        s = text.strip()
        if not s or s.startswith("#"):
            out.stats["skipped_blank_or_comment"] += 1
            continue
        yield no, s, None


def _read_typed(lines, ht, opts, out):
    for no, text in lines:
        s = text.strip()
        if not s or s.startswith("#"):
            out.stats["skipped_blank_or_comment"] += 1
            continue
        parts = s.split()
        if len(parts) != 2:
            raise HashFormatError(f"expected '<type> <hash>', got {len(parts)} fields")
        if _check_type(ht, parts[0], opts, out):
            yield no, parts[1], None


def _pick(header: list[str], wanted: str | None, defaults, what: str) -> int | None:
    lowered = [h.strip().lower() for h in header]
    if wanted is not None:
        if wanted.isdigit():
            return int(wanted)
        if wanted.lower() not in lowered:
            raise HashFormatError(f"no {what} column {wanted!r} in header {header}")
        return lowered.index(wanted.lower())
    for name in defaults:
        if name in lowered:
            return lowered.index(name)
    return None


def _read_csv(lines, ht, opts, out):
    lines = iter(lines)
    first = next(lines, None)
    if first is None:
        return
    delim = "\t" if "\t" in first[1] and "," not in first[1] else ","
    row0 = next(csv.reader([first[1]], delimiter=delim))
    hash_col = int(opts.hash_column) if (opts.hash_column or "").isdigit() else 0
    is_header = opts.hash_column is not None and not opts.hash_column.isdigit()
    if not is_header:
        try:
            ht.parse(row0[hash_col] if hash_col < len(row0) else "")
        except HashFormatError:
            is_header = True
    if is_header:
        hash_col = _pick(row0, opts.hash_column, _HASH_HEADERS + (ht.name,), "hash")
        if hash_col is None:
            raise HashFormatError(f"header {row0} has no hash column; set hash_column")
        id_col = _pick(row0, opts.id_column, _ID_HEADERS, "id")
        type_col = _pick(row0, opts.type_column, _TYPE_HEADERS, "type")
        data = lines
    else:
        id_col = int(opts.id_column) if (opts.id_column or "").isdigit() else (1 if len(row0) > 1 else None)
        type_col = int(opts.type_column) if (opts.type_column or "").isdigit() else None
        data = _chain(first, lines)
    for no, text in data:
        if not text.strip():
            out.stats["skipped_blank_or_comment"] += 1
            continue
        row = next(csv.reader([text], delimiter=delim))
        if hash_col >= len(row):
            raise HashFormatError(f"row has {len(row)} columns, hash column is {hash_col}")
        if type_col is not None and type_col < len(row) and not _check_type(ht, row[type_col], opts, out):
            continue
        entry_id = row[id_col].strip() if id_col is not None and id_col < len(row) else None
        yield no, row[hash_col], entry_id


def _chain(first, rest):
    yield first
    yield from rest


def _read_jsonl(lines, ht, opts, out):
    hkey, ikey, tkey = opts.hash_column or "hash", opts.id_column or "id", opts.type_column or "type"
    for no, text in lines:
        if not text.strip():
            out.stats["skipped_blank_or_comment"] += 1
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise HashFormatError(f"invalid JSON: {exc.msg}") from None
        if not isinstance(obj, dict) or hkey not in obj:
            raise HashFormatError(f"JSON line has no {hkey!r} field")
        if tkey in obj and not _check_type(ht, str(obj[tkey]), opts, out):
            continue
        entry_id = obj.get(ikey)
        yield no, str(obj[hkey]), None if entry_id is None else str(entry_id)


_READERS = {"plain": _read_plain, "typed": _read_typed, "csv": _read_csv, "jsonl": _read_jsonl}


def _numbered_lines(text_stream, counter: dict):
    for no, line in enumerate(text_stream, start=1):
        if no == 1 and line.startswith("\ufeff"):
            line = line[1:]
        counter["lines"] = no
        yield no, line.rstrip("\r\n")


def _first_entry_line(path: str) -> str:
    with FileSystems.open(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace")
        for line in text:
            s = line.lstrip("\ufeff").strip()
            if s and not s.startswith("#"):
                return s
    return ""


def parse_list(path: str, hash_type: HashType, opts: ListOptions = ListOptions()) -> ParsedList:
    """Read and validate every entry of one list file; raise ListFormatError naming file:line."""
    if opts.fmt not in FORMATS:
        raise ListFormatError(f"{path}:0: unknown list format {opts.fmt!r}; one of {FORMATS}")
    try:
        fmt = _sniff(_first_entry_line(path)) if opts.fmt == "auto" else opts.fmt
    except (OSError, FileNotFoundError) as exc:
        raise ListFormatError(f"{path}:0: cannot open list: {exc}") from None
    out = ParsedList(hash_type=hash_type, fmt=fmt)
    no = 0
    with FileSystems.open(path) as raw:
        hashing = _HashingReader(raw)
        text = io.TextIOWrapper(io.BufferedReader(hashing), encoding="utf-8", newline="")
        try:
            for no, value, entry_id in _READERS[fmt](_numbered_lines(text, out.stats), hash_type, opts, out):
                out.add(hash_type.parse(value), no, entry_id)
        except HashFormatError as exc:
            raise ListFormatError(f"{path}:{out.stats['lines']}: {exc}") from None
        except UnicodeDecodeError:
            raise ListFormatError(f"{path}:{out.stats['lines'] + 1}: not valid UTF-8 text") from None
        except csv.Error as exc:
            raise ListFormatError(f"{path}:{out.stats['lines']}: CSV error: {exc}") from None
    out.source_sha256 = hashing.sha.hexdigest()
    out.finish()
    if out.stats["entries"] == 0:
        raise ListFormatError(f"{path}:{out.stats['lines']}: list has no {hash_type.name} entries")
    return out
