/* Compiled inner loop of the 64-bit multi-index Hamming search (see mih.py for the algorithm).
 *
 * Python builds the tables with numpy (one per substring: bucket starts, the codes sorted by that
 * substring, and the permutation back to entry indexes) and passes them as buffers; this file only
 * probes and verifies, with the GIL released so worker threads search in parallel. It has no
 * numpy build dependency: every array crosses as a plain contiguous buffer.
 *
 * A pair reachable through two substrings is reported once: a candidate met through table t is
 * skipped when an earlier table would already have probed it (its substring there is within that
 * table's sub-radius), which is exactly when the earlier table met it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>

#define MAX_TABLES 8

typedef struct {
    int shift, bits, sub_radius;
    uint64_t mask;
    Py_buffer starts, codes, order, flips;
} table_t;

typedef struct {
    int64_t *data;
    size_t len, cap; /* in triples */
} out_t;

static int out_push(out_t *o, int64_t q, int64_t e, int64_t d) {
    if (o->len == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 1024;
        int64_t *p = realloc(o->data, cap * 3 * sizeof(int64_t));
        if (!p) return -1;
        o->data = p;
        o->cap = cap;
    }
    o->data[3 * o->len] = q;
    o->data[3 * o->len + 1] = e;
    o->data[3 * o->len + 2] = d;
    o->len++;
    return 0;
}

static int check_table(table_t *t, Py_ssize_t n_entries) {
    Py_ssize_t nb = ((Py_ssize_t)1 << t->bits) + 1;
    if (t->bits < 1 || t->bits > 30 || t->shift < 0 || t->shift + t->bits > 64) {
        PyErr_SetString(PyExc_ValueError, "bad substring layout");
        return -1;
    }
    if (t->starts.len != nb * (Py_ssize_t)sizeof(uint32_t) ||
        t->codes.len != n_entries * (Py_ssize_t)sizeof(uint64_t) ||
        t->order.len != n_entries * (Py_ssize_t)sizeof(uint32_t) ||
        t->flips.len % (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "table buffers have the wrong sizes");
        return -1;
    }
    t->mask = ((uint64_t)1 << t->bits) - 1;
    const int64_t *flips = t->flips.buf;
    for (Py_ssize_t i = 0; i < t->flips.len / (Py_ssize_t)sizeof(int64_t); i++)
        if (flips[i] < 0 || (uint64_t)flips[i] > t->mask) { /* would probe outside the bucket table */
            PyErr_SetString(PyExc_ValueError, "flip mask wider than its substring");
            return -1;
        }
    return 0;
}

typedef struct {
    uint32_t lo, hi;
    int32_t query, table;
} probe_t;

/* Check one bucket's candidates against the query; report those within radius, once. */
static int verify(const probe_t *p, const uint64_t *queries, int radius, const table_t *tabs, out_t *out) {
    const table_t *tb = &tabs[p->table];
    const uint64_t *codes = tb->codes.buf;
    const uint32_t *order = tb->order.buf;
    const uint64_t qv = queries[p->query];
    for (uint32_t j = p->lo; j < p->hi; j++) {
        const uint64_t x = qv ^ codes[j];
        const int d = __builtin_popcountll(x);
        if (d > radius) continue;
        int seen = 0;
        for (int k = 0; k < p->table && !seen; k++)
            seen = __builtin_popcountll((x >> tabs[k].shift) & tabs[k].mask) <= tabs[k].sub_radius;
        if (!seen && out_push(out, p->query, order[j], d)) return -1;
    }
    return 0;
}

/* The probe-and-verify loop; no Python API calls (it runs without the GIL). The tables are far
 * larger than the caches, so the loop is bound by memory latency; two things hide it (measured on a
 * 10M list: 38k lookups/s probing query by query, 52k with look-ahead prefetch alone, 62-82k with
 * both, rising with batch size):
 * - radix-partition every probe of a table by the high bits of its bucket key and answer one
 *   partition at a time: a partition's slice of the bucket table and of the sorted codes fits in
 *   L2, so it comes from memory about once per batch instead of once per probe;
 * - prefetch a bucket's bounds LOOK_BOUNDS probes ahead and its codes LOOK_CODES probes ahead. */
#define PART_WINDOW_BITS 12 /* buckets per partition: 4096 (16 KiB of starts, ~80 KiB of codes at 10M) */
#define LOOK_BOUNDS 32
#define LOOK_CODES 16

static int search_all(const uint64_t *queries, Py_ssize_t nq, int radius, table_t *tabs, int nt, out_t *out) {
    int rc = 0;
    for (int t = 0; t < nt && !rc; t++) {
        const table_t *tb = &tabs[t];
        const uint32_t *starts = tb->starts.buf;
        const int64_t *flips = tb->flips.buf;
        const Py_ssize_t nf = tb->flips.len / (Py_ssize_t)sizeof(int64_t);
        const int pbits = tb->bits > PART_WINDOW_BITS ? tb->bits - PART_WINDOW_BITS : 0;
        const int shift = tb->bits - pbits;
        const size_t nparts = (size_t)1 << pbits, nprobes = (size_t)nq * (size_t)nf;
        if (!nprobes) continue;
        size_t *fill = calloc(nparts + 1, sizeof(size_t));
        uint64_t *probes = malloc(nprobes * sizeof(uint64_t)); /* key << 32 | query */
        if (!fill || !probes) {
            free(fill);
            free(probes);
            return -1;
        }
        for (Py_ssize_t q = 0; q < nq; q++) { /* pass 1: partition sizes */
            const uint64_t key = (queries[q] >> tb->shift) & tb->mask;
            for (Py_ssize_t f = 0; f < nf; f++) fill[((key ^ (uint64_t)flips[f]) >> shift) + 1]++;
        }
        for (size_t p = 0; p < nparts; p++) fill[p + 1] += fill[p];
        for (Py_ssize_t q = 0; q < nq; q++) { /* pass 2: scatter (fill[p] ends as partition p's end) */
            const uint64_t key = (queries[q] >> tb->shift) & tb->mask;
            for (Py_ssize_t f = 0; f < nf; f++) {
                const uint64_t b = key ^ (uint64_t)flips[f];
                probes[fill[b >> shift]++] = b << 32 | (uint64_t)q;
            }
        }
        for (size_t i = 0; i < nprobes && !rc; i++) { /* pass 3: partitions in order */
            if (i + LOOK_BOUNDS < nprobes) __builtin_prefetch(&starts[probes[i + LOOK_BOUNDS] >> 32]);
            if (i + LOOK_CODES < nprobes)
                __builtin_prefetch(&((const uint64_t *)tb->codes.buf)[starts[probes[i + LOOK_CODES] >> 32]]);
            probe_t p;
            const uint64_t b = probes[i] >> 32;
            p.lo = starts[b];
            p.hi = starts[b + 1];
            p.query = (int32_t)(probes[i] & 0xffffffffu);
            p.table = t;
            if (p.hi > p.lo) rc = verify(&p, queries, radius, tabs, out);
        }
        free(fill);
        free(probes);
    }
    return rc;
}

PyDoc_STRVAR(search_doc,
"search(queries, radius, n_entries, tables) -> bytes\n\n"
"Every (query, entry, distance) with distance <= radius, as packed native int64 triples in no\n"
"particular order. queries: uint64 buffer. tables: sequence of (shift, bits, sub_radius,\n"
"starts uint32[2**bits + 1], codes uint64[n], order uint32[n], flips int64[k]). At most 2**31\n"
"queries per call; memory: 8 bytes per probe of one table.");

static PyObject *search(PyObject *self, PyObject *args) {
    Py_buffer qbuf;
    int radius;
    Py_ssize_t n_entries;
    PyObject *seq;
    table_t tabs[MAX_TABLES];
    int nt = 0, ok = 0;
    out_t out = {NULL, 0, 0};
    PyObject *result = NULL;

    if (!PyArg_ParseTuple(args, "y*inO", &qbuf, &radius, &n_entries, &seq)) return NULL;
    PyObject *fast = PySequence_Fast(seq, "tables must be a sequence");
    if (!fast) goto done;
    if (PySequence_Fast_GET_SIZE(fast) > MAX_TABLES || qbuf.len % (Py_ssize_t)sizeof(uint64_t) ||
        qbuf.len / (Py_ssize_t)sizeof(uint64_t) >= ((Py_ssize_t)1 << 31)) {
        PyErr_SetString(PyExc_ValueError, "too many tables or queries, or a ragged query buffer");
        goto done;
    }
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(fast); i++) {
        table_t *t = &tabs[nt];
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "iiiy*y*y*y*", &t->shift, &t->bits,
                              &t->sub_radius, &t->starts, &t->codes, &t->order, &t->flips))
            goto done;
        nt++;
        if (check_table(t, n_entries)) goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    ok = search_all(qbuf.buf, qbuf.len / (Py_ssize_t)sizeof(uint64_t), radius, tabs, nt, &out) == 0;
    Py_END_ALLOW_THREADS
    if (!ok) {
        PyErr_NoMemory();
        goto done;
    }
    result = PyBytes_FromStringAndSize((const char *)out.data, (Py_ssize_t)(out.len * 3 * sizeof(int64_t)));
done:
    free(out.data);
    for (int i = 0; i < nt; i++) {
        PyBuffer_Release(&tabs[i].starts);
        PyBuffer_Release(&tabs[i].codes);
        PyBuffer_Release(&tabs[i].order);
        PyBuffer_Release(&tabs[i].flips);
    }
    Py_XDECREF(fast);
    PyBuffer_Release(&qbuf);
    return result;
}

static PyMethodDef methods[] = {
    {"search", search, METH_VARARGS, search_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_mihext", "Compiled multi-index Hamming search (see mih.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__mihext(void) { return PyModule_Create(&module); }
