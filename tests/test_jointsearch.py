"""Hash expansion's joint PDQ + pHash search: the multi-index (compiled and numpy), FAISS's flat
search and brute force agree exactly."""
import numpy as np
import pytest

from shardguard.indexes.jointsearch import JointIndex, best_chunks, even_chunks, phash_u64
from shardguard.indexes.mih import _compiled

needs_c = pytest.mark.skipif(_compiled() is None, reason="C extension not built (no compiler at install)")
# (chunks, compiled): the flat search; multi-indexes of several layouts, compiled and numpy
PATHS = [pytest.param(False, None, id="flat"),
         pytest.param(even_chunks(7), True, id="mih7-c", marks=needs_c),
         pytest.param(even_chunks(4), True, id="mih4-c", marks=needs_c),
         pytest.param(even_chunks(8), False, id="mih8-numpy"),
         pytest.param(None, None, id="auto")]


def _flip(rng, codes: np.ndarray, most: int) -> np.ndarray:
    """Each row of (n, k) uint8 codes with up to ``most`` random bits flipped."""
    out = codes.copy()
    for row in out:
        for b in rng.choice(row.size * 8, rng.integers(0, most + 1), replace=False):
            row[b // 8] ^= 1 << (b % 8)
    return out


def _data(seed: int, n: int = 300, nq: int = 500):
    """Entries with copies and a cluster; queries near entries in both hashes, in one only, or random."""
    rng = np.random.default_rng(seed)
    pdq = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    ph = rng.integers(0, 256, (n, 8), dtype=np.uint8)
    pdq[10:20], ph[10:20] = pdq[5], ph[5]  # copies of one view
    pdq[20:60] = _flip(rng, np.repeat(pdq[:1], 40, axis=0), 20)  # a cluster around entry 0
    ph[20:60] = _flip(rng, np.repeat(ph[:1], 40, axis=0), 8)
    base = rng.integers(0, n, nq)
    qpdq, qph = _flip(rng, pdq[base], 40), _flip(rng, ph[base], 18)
    qpdq[:50] = rng.integers(0, 256, (50, 32), dtype=np.uint8)  # far in PDQ, near in pHash
    qph[50:100] = rng.integers(0, 256, (50, 8), dtype=np.uint8)  # near in PDQ, far in pHash
    return pdq, phash_u64(ph), qpdq, phash_u64(qph)


def _brute(pdq, ph, qpdq, qph, r_pdq, r_ph):
    d = np.bitwise_count(qpdq[:, None, :] ^ pdq[None, :, :]).sum(axis=2)
    dh = np.bitwise_count(qph[:, None] ^ ph[None, :])
    q, e = np.nonzero((d <= r_pdq) & (dh <= r_ph))  # row-major: sorted by query, then entry
    return q.astype(np.int64), e.astype(np.int64), d[q, e].astype(np.int64)


@pytest.mark.parametrize("chunks,compiled", PATHS)
@pytest.mark.parametrize("r_pdq,r_ph,built", [(31, 12, 12), (31, 8, 12), (0, 0, 0), (40, 16, 16), (256, 3, 3)])
def test_search_equals_brute_force(chunks, compiled, r_pdq, r_ph, built):
    pdq, ph, qpdq, qph = _data(r_pdq * 100 + r_ph)
    want = _brute(pdq, ph, qpdq, qph, r_pdq, r_ph)
    got = JointIndex(pdq, ph, built, chunks, compiled).search(qpdq, qph, r_pdq, r_ph)
    assert all(np.array_equal(g, w) for g, w in zip(got, want))
    assert len(want[0]) > (0 if r_ph == 0 else 20)  # exact copies only at distance 0


@pytest.mark.parametrize("chunks,compiled", PATHS)
def test_no_entries_or_no_queries_give_no_pairs(chunks, compiled):
    pdq, ph, qpdq, qph = _data(1)
    assert all(len(a) == 0 for a in JointIndex(pdq[:0], ph[:0], 12, chunks, compiled).search(qpdq, qph, 31, 12))
    assert all(len(a) == 0 for a in JointIndex(pdq, ph, 12, chunks, compiled).search(qpdq[:0], qph[:0], 31, 12))


def test_a_radius_above_the_built_one_is_refused():
    pdq, ph, qpdq, qph = _data(2)
    with pytest.raises(ValueError, match="built for pHash distance 8"):
        JointIndex(pdq, ph, 8).search(qpdq, qph, 31, 12)


def test_the_cost_model_uses_the_flat_search_for_few_views_and_a_multi_index_for_many():
    """A handful of seed views: comparing every pair is cheaper; tens of thousands (the benchmark's
    44,000 at pHash distance 12 picked 7 substrings, the fastest layout measured): the multi-index,
    where its compiled loop is built."""
    assert best_chunks(50, 12) is None
    assert best_chunks(44_000, 12) == even_chunks(7)
    assert best_chunks(1_000_000, 16) is not None
    assert sum(b for _, b in even_chunks(7)) == 64 and even_chunks(7)[-1] == (55, 9)
    pdq, ph, _, _ = _data(3, n=20_000, nq=100)
    many = "mih" if _compiled() is not None else "flat"  # the numpy loop is not worth it: flat
    assert JointIndex(pdq, ph, 12).kind == many and JointIndex(pdq[:50], ph[:50], 12).kind == "flat"


def test_queries_searched_in_blocks_give_the_same_pairs(monkeypatch):
    from shardguard.indexes import jointsearch

    pdq, ph, qpdq, qph = _data(4)
    want = _brute(pdq, ph, qpdq, qph, 31, 12)
    monkeypatch.setattr(jointsearch, "QUERY_BLOCK", 64)
    got = JointIndex(pdq, ph, 12, even_chunks(7)).search(qpdq, qph, 31, 12)
    assert all(np.array_equal(g, w) for g, w in zip(got, want)) and len(want[0]) > 20
