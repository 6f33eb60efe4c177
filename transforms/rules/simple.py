"""Two small row rules: the minimum image-caption CLIP score, and the stored-bytes integrity check."""
from __future__ import annotations

import logging

from shardguard.transforms.contracts import MatchRecord
from shardguard.transforms.rules import Rule, column

_LOG = logging.getLogger(__name__)
INTEGRITY_SOURCE = "integrity-mismatch"


class ClipScoreRule(Rule):
    """``rule:min-clip-score``: rows whose image-caption cosine is below ``min_score``."""

    kinds = ("rule",)
    label = "score"

    def __init__(self, min_score: float, action: str):
        self.min_score, self.action = min_score, action

    @classmethod
    def example(cls, directory: str, table) -> "ClipScoreRule":  # noqa: D102
        return cls(0.5, "remove")

    @classmethod
    def build(cls, ctx) -> list[Rule]:  # noqa: D102
        clip = ctx.cfg.clip
        return [cls(clip.min_score, clip.min_score_action)] if clip.min_score is not None else []

    def reasons(self) -> dict[str, str]:  # noqa: D102
        return {"rule:min-clip-score": self.action}

    def requires(self) -> set[str]:  # noqa: D102
        return {"clip_score"}

    def fingerprint(self):  # noqa: D102
        return ["min-clip-score", self.min_score, self.action]

    def match(self, table) -> list[list[MatchRecord]]:  # noqa: D102
        return [[MatchRecord("min-clip-score", "rule", "clip_score", f"< {self.min_score}", round(float(s), 6))]
                if s is not None and s < self.min_score else [] for s in column(table, "clip_score")]


class IntegrityRule(Rule):
    """``integrity-mismatch``: the stored bytes hash differently from the row's reference hash
    (split-view poisoning: the URL now serves other content than when the dataset was collected)."""

    kinds = ("integrity",)

    def __init__(self, hash_type: str, action: str):
        self.hash_type, self.action = hash_type, action

    @classmethod
    def example(cls, directory: str, table) -> "IntegrityRule":  # noqa: D102
        return cls("sha256", "quarantine")

    @classmethod
    def build(cls, ctx) -> list[Rule]:  # noqa: D102
        integ = ctx.cfg.integrity
        return [cls(integ.type, integ.action)] if integ.column else []

    def reasons(self) -> dict[str, str]:  # noqa: D102
        return {INTEGRITY_SOURCE: self.action}

    def requires(self) -> set[str]:  # noqa: D102
        return {self.hash_type, "integrity_ref"}

    def fingerprint(self):  # noqa: D102
        return ["integrity", self.hash_type, self.action]

    def match(self, table) -> list[list[MatchRecord]]:  # noqa: D102
        out, checked, mismatched = [], 0, 0
        for ref, got in zip(column(table, "integrity_ref"), column(table, self.hash_type)):
            checked += bool(ref and got)
            if ref and got and ref != got:
                mismatched += 1
                out.append([MatchRecord(INTEGRITY_SOURCE, "integrity", self.hash_type, f"expected {ref[:16]}", 1.0)])
            else:
                out.append([])
        if checked >= 10 and mismatched > checked // 2:
            _LOG.warning("integrity: %d of %d checked rows of a shard do not match their reference %s; "
                         "if the shard was downloaded with re-encoding (img2dataset resizes and re-encodes "
                         "unless disable_all_reencoding=True), its sha256 column hashes the downloaded, "
                         "not the stored bytes", mismatched, checked, self.hash_type)
        return out
