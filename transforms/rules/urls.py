"""URL, URL-hash and domain lists (metadata pre-filtering, before anything is downloaded)."""
from __future__ import annotations

from dataclasses import dataclass

from shardguard.transforms import urls
from shardguard.transforms.contracts import MatchRecord
from shardguard.transforms.rules import Rule, column


@dataclass(frozen=True)
class UrlListSpec:
    """One URL, URL-hash or domain list."""

    kind: str  # "url" | "urlhash" | "domain"
    path: str
    name: str
    hash_type: str | None = None
    action: str = "remove"
    sha256: str = ""  # of the list file, recorded at launch: workers load exactly that file


def load_url_list(spec: UrlListSpec) -> set[str]:
    """Parse and validate one list (errors name file:line)."""
    if spec.kind == "url":
        return urls.read_url_list(spec.path)
    if spec.kind == "domain":
        return urls.read_domain_list(spec.path)
    from shardguard.indexes.hashtypes import get_hash_type
    from shardguard.indexes.listformats import ListOptions, parse_list

    parsed = parse_list(spec.path, get_hash_type(spec.hash_type), ListOptions(url_hashes=True))
    n = parsed.hash_type.nbytes
    return {bytes(parsed.codes[i:i + n]).hex() for i in range(0, len(parsed.codes), n)}


class UrlListRule(Rule):
    """``url:<list>``, ``urlhash:<list>``, ``domain:<list>``: the row's URL is listed."""

    kinds = ("url", "urlhash", "domain")

    def __init__(self, spec: UrlListSpec):
        self.spec = spec
        self._entries = None

    def __getstate__(self):
        return dict(self.__dict__, _entries=None)

    @classmethod
    def example(cls, directory: str, table) -> "UrlListRule":  # noqa: D102
        from shardguard.indexes import fileio

        urls_ = [u for u in column(table, "url") if u][:1] or ["https://example.com/x.jpg"]
        path = f"{directory}/urls.txt"
        with open(path, "w") as f:
            f.write("\n".join(urls_) + "\n")
        return cls(UrlListSpec("url", path, "ex", sha256=fileio.sha256_file(path)[0]))

    @classmethod
    def build(cls, ctx) -> list[Rule]:  # noqa: D102
        return [cls(s) for s in ctx.url_lists]

    def reasons(self) -> dict[str, str]:  # noqa: D102
        return {f"{self.spec.kind}:{self.spec.name}": self.spec.action}

    def requires(self) -> set[str]:  # noqa: D102
        return {"url"}

    def fingerprint(self):  # noqa: D102
        return [self.spec.kind, self.spec.name, self.spec.hash_type, self.spec.sha256, self.spec.action]

    def setup(self, shared) -> None:  # noqa: D102
        self._entries = shared.acquire(f"urls|{self.spec.kind}|{self.spec.sha256}|{self.spec.path}",
                                       lambda: load_url_list(self.spec))

    def match(self, table) -> list[list[MatchRecord]]:  # noqa: D102
        out = []
        for url, status in zip(column(table, "url"), column(table, "status")):
            out.append(self._one(url) if status == "ok" and isinstance(url, str) else [])
        return out

    def _one(self, url: str) -> list[MatchRecord]:
        s, entries = self.spec, self._entries
        if s.kind == "url" and urls.normalize_url(url) in entries:
            return [MatchRecord(s.name, "url", "url", "normalised url", 0.0)]
        if s.kind == "domain":
            host = urls.host_of(url)
            d = urls.domain_matches(host, entries) if host else None
            return [MatchRecord(s.name, "domain", "domain", d, 0.0)] if d else []
        if s.kind == "urlhash" and urls.url_digests(url, s.hash_type) & entries:
            return [MatchRecord(s.name, "urlhash", s.hash_type, "url digest", 0.0)]
        return []
