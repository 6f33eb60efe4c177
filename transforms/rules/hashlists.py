"""Known-bad hash lists: exact lookups (cryptographic types) or Hamming range search (perceptual)."""
from __future__ import annotations

from shardguard.indexes.hashtypes import get_hash_type
from shardguard.transforms.contracts import MatchRecord
from shardguard.transforms.rules import Rule, column


class HashListRule(Rule):
    """One list artifact, matched on its hash type's feature column (and its quality floor)."""

    kinds = ("hashlist",)

    def __init__(self, name: str, art_dir: str, fingerprint: str, hash_type: str, action: str):
        self.name, self.art_dir, self.fp = name, art_dir, fingerprint
        self.hash_type, self.action = hash_type, action
        self._matcher = None

    def __getstate__(self):
        return dict(self.__dict__, _matcher=None)

    @classmethod
    def example(cls, directory: str, table) -> "HashListRule":  # noqa: D102
        from shardguard.indexes.artifacts import ListSettings, build_artifact
        from shardguard.indexes.listformats import parse_list

        hashes = [h for h in column(table, "md5") if h][:2]
        src = f"{directory}/md5.txt"
        with open(src, "w") as f:
            f.write("\n".join(hashes) + "\n")
        sc = build_artifact(parse_list(src, get_hash_type("md5")), ListSettings("ex", "md5", 0, 0), f"{directory}/ex", src)
        return cls("ex", f"{directory}/ex", sc["fingerprint"], "md5", "remove")

    @classmethod
    def build(cls, ctx) -> list[Rule]:  # noqa: D102
        return [cls(r.name, r.art_dir, r.fingerprint, r.sidecar["type"], r.sidecar["action"]) for r in ctx.lists]

    def reasons(self) -> dict[str, str]:  # noqa: D102
        return {f"hashlist:{self.name}": self.action}

    def requires(self) -> set[str]:  # noqa: D102
        ht = get_hash_type(self.hash_type)
        return {ht.name} | ({ht.quality_column} if ht.quality_column else set())

    def fingerprint(self):  # noqa: D102
        return ["hashlist", self.name, self.fp, self.action]

    def setup(self, shared) -> None:  # noqa: D102
        from shardguard.indexes.matcher import ListMatcher

        self._matcher = shared.acquire(f"list|{self.fp}", lambda: ListMatcher.load(self.art_dir, self.fp))

    def match(self, table) -> list[list[MatchRecord]]:  # noqa: D102
        from shardguard.indexes.hexcolumn import hex_codes, int_column

        ht = get_hash_type(self.hash_type)
        out: list[list[MatchRecord]] = [[] for _ in range(table.num_rows)]
        hashes = _col(table, ht.name)
        if hashes is not None:  # a table without the column: no row has that hash
            codes, present = hex_codes(hashes, ht.nbytes)
            quals = int_column(_col(table, ht.quality_column), table.num_rows) if ht.quality_column else None
            for i, m in self._matcher.match_codes(codes, present, quals):
                out[i].append(MatchRecord(self.name, "hashlist", m.type, m.entry, float(m.distance)))
        if ht.name == "pdq":  # views match PDQ lists only, at PDQ's quality floor (the stricter rule)
            self._match_views(table, out)
        return out

    def _match_views(self, table, out) -> None:
        """Matches of each row's views, recorded with the view (``pdq@mirror``); an entry the row's
        as-stored image matched already is not repeated."""
        from shardguard.transforms.extractors.views import view_hashes

        per_row = view_hashes(table, "pdq", self._matcher.min_quality)
        queries = [(i, view, h) for i, views in enumerate(per_row) for view, h in views]
        if not queries:
            return
        hits = self._matcher.match_batch([h for _, _, h in queries], [100] * len(queries))
        for (i, view, _), found in zip(queries, hits):
            have = {m.entry for m in out[i]}
            for m in found:
                if m.entry not in have:
                    out[i].append(MatchRecord(self.name, "hashlist", f"{m.type}@{view}", m.entry, float(m.distance)))
                    have.add(m.entry)


def _col(table, name: str | None):
    """A features column, or None when the table lacks it (rows without that hash)."""
    return table.column(name) if name and name in table.column_names else None
