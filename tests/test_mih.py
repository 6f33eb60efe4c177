"""The 64-bit multi-index: compiled loop, numpy loop and brute force agree exactly."""
import numpy as np
import pytest

from shardguard.indexes.mih import Mih64, _compiled


def _brute(codes, queries, radius):
    d = np.bitwise_count(queries[:, None] ^ codes[None, :])
    q, i = np.nonzero(d <= radius)
    dist = d[q, i].astype(np.int64)
    order = np.lexsort((i, dist, q))
    return q[order], i[order], dist[order]


def _data(seed, n=4000, nq=600, flips=10):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    # skew: a heavy bucket (many near-identical entries), exact duplicates and the extreme codes
    codes[:300] = codes[0] ^ (np.uint64(1) << rng.integers(40, 64, 300).astype(np.uint64))
    codes[300:310] = codes[310]
    codes[311], codes[312] = 0, np.uint64(2**64 - 1)
    base = codes[rng.integers(0, n, nq)]
    noise = np.zeros(nq, dtype=np.uint64)
    for j in range(nq):
        for b in rng.choice(64, rng.integers(0, flips + 1), replace=False):
            noise[j] |= np.uint64(1) << np.uint64(b)
    queries = np.concatenate([base ^ noise, rng.integers(0, 2**63, 50, dtype=np.uint64),
                              np.array([0, 2**64 - 1], dtype=np.uint64)])
    return codes, queries


needs_c = pytest.mark.skipif(_compiled() is None, reason="C extension not built (no compiler at install)")


@pytest.mark.parametrize("compiled", [pytest.param(True, marks=needs_c), False])
@pytest.mark.parametrize("build_radius,radius", [(8, 8), (8, 3), (10, 10), (0, 0), (5, 5)])
def test_range_search_equals_brute_force(compiled, build_radius, radius):
    codes, queries = _data(build_radius * 31 + radius)
    idx = Mih64(codes, build_radius, compiled=compiled)
    assert idx.backend == ("c" if compiled else "numpy")
    got = idx.range_search(queries, radius)
    want = _brute(codes, queries, radius)
    assert len(want[0]) > (100 if radius == 0 else 300)  # real hits, heavy buckets included
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@needs_c
def test_compiled_handles_big_batches_and_empty_input():
    codes, queries = _data(7, n=2000, nq=100)
    idx = Mih64(codes, 8, compiled=True)
    many = np.tile(queries, 200)  # > one compiled block (16,384 queries)
    q, i, d = idx.range_search(many, 8)
    q1, i1, d1 = idx.range_search(queries, 8)
    assert len(q) == 200 * len(q1)
    np.testing.assert_array_equal(q[: len(q1)], q1)
    np.testing.assert_array_equal(q[-len(q1):] - 199 * len(queries), q1)
    np.testing.assert_array_equal(i[-len(i1):], i1)
    empty = idx.range_search(np.zeros(0, dtype=np.uint64), 8)
    assert all(len(a) == 0 for a in empty)


@needs_c
def test_compiled_rejects_inconsistent_tables():
    codes, _ = _data(3, n=500, nq=2)
    idx = Mih64(codes, 8, compiled=True)
    shift, bits, sub, starts, sorted_codes, order, flips = idx.tables[0]
    search = _compiled()
    with pytest.raises(ValueError, match="wrong sizes"):
        search(codes, 8, len(codes), [(shift, bits, sub, starts[:-1], sorted_codes, order, flips)])
    with pytest.raises(ValueError, match="wider than its substring"):
        search(codes, 8, len(codes), [(shift, bits, sub, starts, sorted_codes, order, flips | (1 << 40))])


def test_radius_above_build_radius_is_refused():
    codes, queries = _data(1, n=400, nq=5)
    with pytest.raises(ValueError, match="built for distance 4"):
        Mih64(codes, 4).range_search(queries, 5)
