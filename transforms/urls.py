"""URL and domain lists for metadata-only pre-filtering: parsing, normalisation, matching.

Normalisation (applied to list entries and to the metadata's URLs alike): surrounding whitespace
removed, scheme and host lower-cased, a trailing dot on the host dropped, default ports (80 for
http, 443 for https) dropped, the fragment dropped, an empty path made ``/``. Path and query are
kept as they are (they are case-sensitive on most servers). A domain entry ``example.com`` (or
``*.example.com``, or a URL whose host is used) matches that host and every subdomain of it.
URL-hash lists are hex digests (md5/sha1/sha256) of the URL string; both the URL as written in the
metadata and its normalised form are checked, as partner lists hash one or the other.
"""
from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit, urlunsplit

from shardguard.indexes import fileio

_HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class UrlListError(ValueError):
    """A URL or domain list entry that cannot be used; the message starts with ``file:line:``."""


def normalize_url(url: str) -> str | None:
    """The normalised URL, or None when it is not an absolute http(s)/ftp URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in ("http", "https", "ftp") or not host:
        return None
    netloc = host if port is None or _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    if parts.username:
        netloc = f"{parts.username}{':' + parts.password if parts.password else ''}@{netloc}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def host_of(url: str) -> str | None:
    """Lower-case host of a URL (None when it has none)."""
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return None
    return host.rstrip(".").lower() if host else None


def domain_matches(host: str, domains: set[str]) -> str | None:
    """The listed domain that ``host`` equals or is a subdomain of, if any (most specific first)."""
    labels = host.split(".")
    for i in range(len(labels)):
        cand = ".".join(labels[i:])
        if cand in domains:
            return cand
    return None


def _lines(path: str):
    text = fileio.read_bytes(path).decode("utf-8-sig", errors="strict")
    for no, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s and not s.startswith("#"):
            yield no, s


def read_url_list(path: str) -> set[str]:
    """Normalised URLs, one per line; a line that is not a URL stops with file:line."""
    out = set()
    try:
        for no, s in _lines(path):
            norm = normalize_url(s)
            if norm is None:
                raise UrlListError(f"{path}:{no}: not an absolute http(s)/ftp URL: {s[:80]!r}")
            out.add(norm)
    except UnicodeDecodeError:
        raise UrlListError(f"{path}:0: not valid UTF-8 text") from None
    return out


def read_domain_list(path: str) -> set[str]:
    """Domains, one per line (``example.com``, ``*.example.com`` or a URL)."""
    out = set()
    try:
        for no, s in _lines(path):
            d = host_of(s) if "://" in s else s.lower().removeprefix("*.").rstrip(".")
            if not d or not _HOST.match(d):
                raise UrlListError(f"{path}:{no}: not a domain name: {s[:80]!r}")
            out.add(d)
    except UnicodeDecodeError:
        raise UrlListError(f"{path}:0: not valid UTF-8 text") from None
    return out


def url_digests(url: str, hash_type: str) -> set[str]:
    """Digests of the URL as written and of its normalised form."""
    forms = {url, url.strip()}
    norm = normalize_url(url)
    if norm:
        forms.add(norm)
    return {hashlib.new(hash_type, f.encode("utf-8")).hexdigest() for f in forms}
