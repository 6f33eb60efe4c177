"""The Beam wiring of one dedup kind (``rules/dedup.py``): nodes → candidate pairs → components by
hash-to-min → each component's members joined with their row metadata (key, caption digest) and
closest distance → per-row records keyed by shard. Every step is a plain function from
``dedupgraph`` applied to one bucket, cluster, node or component; the loop of the iterative join is
unrolled (``ROUNDS``)."""
from __future__ import annotations

import apache_beam as beam

from shardguard.transforms import dedupgraph as dg
from shardguard.transforms.contracts import DatasetMatches
from shardguard.transforms.rules import dedup as d


def _pairs(rule, nodes):
    s = rule.s
    if s.kind == "exact":
        return nodes | "ByDigest" >> beam.Map(lambda nv: (nv[1], nv[0])) | "GroupDigest" >> beam.GroupByKey() \
            | "Star" >> beam.FlatMap(d.exact_pairs, s)
    if s.kind == "perceptual":
        return (nodes | "Substrings" >> beam.FlatMap(d.bucket_keys, s) | "GroupBucket" >> beam.GroupByKey()
                | "Verify" >> beam.FlatMap(d.bucket_pairs, s))
    count = nodes | "Count" >> beam.combiners.Count.Globally()
    sample = nodes | "Sample" >> beam.combiners.Top.Of(d.SAMPLE, key=d.sample_key, reverse=True)
    cent = sample | "KMeans" >> beam.Map(d.centroids, beam.pvalue.AsSingleton(count), s)
    return (nodes | "Assign" >> beam.Map(d.assign, beam.pvalue.AsSingleton(cent))
            | "GroupCluster" >> beam.GroupByKey() | "Compare" >> beam.FlatMap(d.cluster_pairs, s))


def _edge_key(e):
    return (e[0], e[1]), e[2]


def _best(values, semantic: bool):
    return max(values) if semantic else min(values)


def _ends(kv):
    (u, v), dist = kv
    return [(u, dist), (v, dist)]


def _neighbours(kv):
    (u, v), _ = kv
    return [(u, v), (v, u)]


def _cluster(kv):
    node, others = kv
    return node, {node, *others}


def _union(kv):
    node, sets = kv
    return node, set().union(*sets)


def _components(edges):
    clusters = (edges | "Neighbours" >> beam.FlatMap(_neighbours) | "Adjacency" >> beam.GroupByKey()
                | "Initial" >> beam.Map(_cluster))
    for r in range(d.ROUNDS):
        clusters = (clusters | f"Send{r:02d}" >> beam.FlatMap(lambda kv: dg.hash_to_min_messages(*kv))
                    | f"Collect{r:02d}" >> beam.GroupByKey() | f"Union{r:02d}" >> beam.Map(_union))
    return clusters


def _belongs(kv):
    """(member, minimum) for every member of a finished component (sent by its minimum)."""
    node, cluster = kv
    m = min(cluster)
    return [(u, m) for u in cluster] if node == m else []


def _to_component(kv):
    """A component member's (minimum, (node, Meta, closest)), once its metadata has joined."""
    node, grouped = kv
    if grouped["rep"]:
        closest = grouped["closest"][0] if grouped["closest"] else 0.0
        yield grouped["rep"][0], (node, grouped["meta"][0] if grouped["meta"] else None, closest)


def _records(kv, s):
    rep, members = kv
    for shard, row, match in dg.component_records(rep, list(members), s.kind, s.column, bool(s.conflicts)):
        yield shard, (row, match)


def _unconverged(kv) -> bool:
    return not dg.converged(*kv)


def _problem(overflow: list, unconverged: int) -> str:
    parts = []
    if overflow:
        parts.append(f"{len(overflow)} bucket(s) or cluster(s) of more than the compared maximum "
                     f"(largest {max(overflow)} rows; dedup.max_group)")
    if unconverged:
        parts.append(f"components did not converge in {d.ROUNDS} rounds ({unconverged} nodes)")
    return "; ".join(parts)


def _shard_matches(kv):
    shard, items = kv
    return shard, DatasetMatches(rows=tuple(sorted(items, key=lambda x: (x[0], x[1].sort_key()))))


def _nodes(refs, s, ctx):
    """(nodes, meta): each checked row's (node, value) and (node, Meta)."""
    out = refs | "Nodes" >> beam.ParDo(d.NodesFn(s, ctx)).with_outputs(d.NodesFn.META, main="nodes")
    return out.nodes, out[d.NodesFn.META]


def dedup_matches(rule, refs, ctx):
    """(shard, DatasetMatches) of one dedup kind over every shard's features (module doc)."""
    s = rule.s
    nodes, meta = _nodes(refs, s, ctx)
    raw = _pairs(rule, nodes)
    overflow = raw | "Overflow" >> beam.Filter(d.is_overflow) | "Sizes" >> beam.Map(lambda x: x[1])
    edges = (raw | "Edges" >> beam.Filter(lambda x: not d.is_overflow(x)) | "EdgeKey" >> beam.Map(_edge_key)
             | "Distinct" >> beam.CombinePerKey(lambda v: _best(list(v), s.kind == "semantic")))
    closest = edges | "Ends" >> beam.FlatMap(_ends) | "Closest" >> beam.CombinePerKey(
        lambda v: _best(list(v), s.kind == "semantic"))
    clusters = _components(edges)
    bad = clusters | "Unconverged" >> beam.Filter(_unconverged) | "CountBad" >> beam.combiners.Count.Globally()
    members = ({"rep": clusters | "Belongs" >> beam.FlatMap(_belongs), "meta": meta, "closest": closest}
               | "JoinMeta" >> beam.CoGroupByKey() | "ToComponent" >> beam.FlatMap(_to_component))
    keyed = (members | "ByComponent" >> beam.GroupByKey() | "Records" >> beam.FlatMap(_records, s)
             | "ByShard" >> beam.GroupByKey() | "Matches" >> beam.Map(_shard_matches))
    problem = (overflow | "AllOverflow" >> beam.combiners.ToList()
               | "Problem" >> beam.Map(_problem, beam.pvalue.AsSingleton(bad)))
    failed = refs | "Fail" >> beam.FlatMap(lambda ref, p: d.failure_matches(ref, p, s), beam.pvalue.AsSingleton(problem))
    return (keyed, failed) | "WithFailures" >> beam.Flatten()
