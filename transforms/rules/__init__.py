"""Rules: one small interface, one explicit registry.

A rule turns features into matches (``MatchRecord``), each carrying a reason with an action
(remove, quarantine or tag). A rule declares its reasons and their actions, the feature columns it
needs (a re-filter refuses a parent that lacks one), what decides its verdicts (its fingerprint),
and its scope: ``row`` rules see one shard's features table; ``dataset`` rules see every shard's
features — done shards included, on a fresh run and on resume alike — and hand each shard the
matches they found for its rows (kNN and hash expansion around seeds, dedup).

Adding a rule is one module with a class implementing ``Rule`` (and ``build`` from the resolved
config) plus one line in ``_registry`` below; ``tests/test_contracts.py`` runs the contract tests for
every registered rule. Plan, decide, refilter and the manifest tools iterate the rules.
"""
from __future__ import annotations

import pyarrow as pa

from shardguard.transforms.contracts import MatchRecord

ROW, DATASET = "row", "dataset"
SIDE, KEYED = "side", "keyed"
SIDE_DEFAULT = "side_default"  # with SIDE: the side value when its PCollection is empty
PRESET = "preset"  # instead of SIDE: a side value settled before the run, which each worker loads


class Rule:
    """The interface every rule implements (instances are small and picklable until ``setup``)."""

    kinds: tuple[str, ...] = ()  # the match kinds it produces
    scope: str = ROW
    label: str = "distance"  # what a match's number is, for people: "distance" or "score"

    @classmethod
    def example(cls, directory: str, table: pa.Table) -> "Rule":
        """An instance for the contract tests, made to match some rows of ``table`` (an example
        shard's features: hashes, url, and a 32-d ``embedding``); ``directory`` is scratch space."""
        raise NotImplementedError

    @classmethod
    def build(cls, ctx) -> list["Rule"]:
        """The rules of this class a run's resolved config asks for (``ctx``: a ``plan.RuleContext``)."""
        raise NotImplementedError

    def reasons(self) -> dict[str, str]:
        """Every reason this rule can give, with its action."""
        raise NotImplementedError

    def requires(self) -> set[str]:
        """Feature columns this rule reads."""
        return set()

    def fingerprint(self):
        """What decides this rule's matches (plain data; enters the verdict fingerprint)."""
        raise NotImplementedError

    def setup(self, shared) -> None:
        """Load heavy objects once per worker process (``shared``: ``transforms.shared.SharedHandles``)."""

    def match(self, table: pa.Table) -> list[list[MatchRecord]]:
        """Row scope: the matches of each row of one shard's features table."""
        raise NotImplementedError

    def expand(self, refs, ctx) -> dict:
        """Dataset scope: wiring from the ``ShardRef``s of every shard to what each shard's verdict
        needs from the whole dataset, as ``{"side": PCollection}`` (one value every shard sees, e.g. the
        seed set: nothing per row crosses a shuffle; with ``"side_default"``, the value when that
        PCollection is empty) and/or ``{"keyed": PCollection}`` of
        ``(shard, DatasetMatches)`` (e.g. dedup's decisions, joined to their shards). A side value
        settled before the run (a re-filter's parent seed set) is ``{"preset": loader}`` instead: a
        small picklable object with ``tag`` and ``load()``, loaded once per worker process, so no
        stage of the pipeline computes it and no verdict waits for one."""
        raise NotImplementedError

    def shard_matches(self, table: pa.Table, ref, side):
        """Dataset scope with a side value: this shard's ``DatasetMatches`` given it."""
        raise NotImplementedError


def _registry() -> list[type]:
    from shardguard.transforms.rules.concepts import ConceptRule
    from shardguard.transforms.rules.dedup import DedupRule
    from shardguard.transforms.rules.expansion import KnnExpansion
    from shardguard.transforms.rules.hashexpand import HashExpansion
    from shardguard.transforms.rules.hashlists import HashListRule
    from shardguard.transforms.rules.simple import ClipScoreRule, IntegrityRule
    from shardguard.transforms.rules.urls import UrlListRule

    return [HashListRule, ConceptRule, ClipScoreRule, IntegrityRule, UrlListRule, KnnExpansion, HashExpansion,
            DedupRule]


REGISTRY: list[type] = []


def registry() -> list[type]:
    """The rule classes, in the order their rules are built and applied."""
    if not REGISTRY:
        REGISTRY.extend(_registry())
    return REGISTRY


def label_of(kind: str) -> str:
    """How a match of ``kind`` names its number ("distance" or "score")."""
    for cls in registry():
        if kind in cls.kinds:
            return cls.label
    return "distance"


def column(table: pa.Table, name: str) -> list:
    """A features column as Python values (all null when the table lacks it)."""
    if name not in table.column_names:
        return [None] * table.num_rows
    from shardguard.indexes.arrowio import to_pylist

    return to_pylist(table.column(name))
