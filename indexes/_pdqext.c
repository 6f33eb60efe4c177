/* PDQ (Meta's 256-bit perceptual hash) from RGB pixels, bit-identical to the pdqhash package.
 *
 * pdqhash computes luma in numpy (float64, then float32) and then runs the reference C++ steps:
 * two passes of Jarosz box filters along rows and columns, decimation to 64×64, a quality
 * score from gradients, a 16×16 DCT and a threshold at the median. Those steps are one serial
 * dependency chain per row or column (sum += a; sum -= b; out = sum / n), ~8 cycles per pixel
 * per pass, and with the numpy luma they cost ~5 ms on a 512×512 image. This file performs the same
 * float operations in the same order for each row and column, but advances many rows (or columns)
 * in lockstep, so the independent chains overlap (and, for columns, vectorise): every value
 * is the same float, only the schedule differs. Built with -ffp-contract=off so that no
 * multiply-add is fused. Tested bit for bit against pdqhash (hash, quality and the 16×16 floats).
 * Fast mode asks for `pdq_sampled` instead: the filter evaluated only at the 64×64 sample points
 * (3–4× faster; the same values up to float rounding, not bit-identical; see there). Its sums run
 * in an order numpy can replay: indexes/pdq_sampled.py is its bit-identical twin (the fallback).
 * No numpy headers: pixels arrive as a plain contiguous buffer.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define LANES 64 /* rows or columns advanced together */

/* Box filter of width `window` along axis p of `count` vectors of length `len`: element (v, p) is
 * at v*vstride + p*pstride. The operation order per vector is the reference's four phases. */
static void box_multi(const float *in, float *out, int count, int len, Py_ssize_t vstride,
                      Py_ssize_t pstride, int window) {
    int half = (window + 2) / 2;
    int n1 = half - 1, n2 = window - half + 1, n3 = len - window, n4 = half - 1;
    float sum[LANES];
    for (int v0 = 0; v0 < count; v0 += LANES) {
        int nv = count - v0 < LANES ? count - v0 : LANES;
        const float *base = in + v0 * vstride;
        float *obase = out + v0 * vstride;
        Py_ssize_t ri = 0, li = 0, oi = 0;
        int width = 0;
        for (int v = 0; v < nv; v++) sum[v] = 0.0f;
        for (int i = 0; i < n1; i++, ri += pstride) {
            for (int v = 0; v < nv; v++) sum[v] += base[v * vstride + ri];
            width++;
        }
        for (int i = 0; i < n2; i++, ri += pstride, oi += pstride) {
            width++;
            for (int v = 0; v < nv; v++) {
                sum[v] += base[v * vstride + ri];
                obase[v * vstride + oi] = sum[v] / (float)width;
            }
        }
        for (int i = 0; i < n3; i++, ri += pstride, li += pstride, oi += pstride) {
            for (int v = 0; v < nv; v++) {
                sum[v] += base[v * vstride + ri];
                sum[v] -= base[v * vstride + li];
                obase[v * vstride + oi] = sum[v] / (float)width;
            }
        }
        for (int i = 0; i < n4; i++, li += pstride, oi += pstride) {
            width--;
            for (int v = 0; v < nv; v++) {
                sum[v] -= base[v * vstride + li];
                obase[v * vstride + oi] = sum[v] / (float)width;
            }
        }
    }
}

static int jarosz_window(int old_dim, int new_dim) { return (old_dim + 2 * new_dim - 1) / (2 * new_dim); }

/* Quality 0..100: the sum of quantised vertical and horizontal gradients of the 64×64 image. */
static int quality_of(float a[64][64]) {
    int sum = 0;
    for (int i = 0; i < 63; i++)
        for (int j = 0; j < 64; j++) {
            int d = (int)(((a[i][j] - a[i + 1][j]) * 100.0f) / 255.0f);
            sum += abs(d);
        }
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < 63; j++) {
            int d = (int)(((a[i][j] - a[i][j + 1]) * 100.0f) / 255.0f);
            sum += abs(d);
        }
    int q = sum / 90;
    return q > 100 ? 100 : q;
}

static float dct_matrix[16][64];
static float dct_transposed[64][16]; /* dct_transposed[k][j] = dct_matrix[j][k] */
/* Each channel's float64 product for every byte value: the same doubles numpy's `x * 0.299`
 * gives, looked up instead of converted and multiplied per pixel (the luma loop was ~40%). */
static double luma_r[256], luma_g[256], luma_b[256];

static void init_tables(void) {
    for (int v = 0; v < 256; v++) {
        luma_r[v] = (double)v * 0.299;
        luma_g[v] = (double)v * 0.587;
        luma_b[v] = (double)v * 0.114;
    }
    const float scale = (float)sqrt(2.0 / 64.0);
    for (int i = 0; i < 16; i++)
        for (int j = 0; j < 64; j++)
            dct_transposed[j][i] = dct_matrix[i][j] = (float)(scale * cos((M_PI / 2.0 / 64.0) * (i + 1) * (2 * j + 1)));
}

/* B = D A Dᵀ for the 16 lowest non-DC frequencies, each sum taken in index order (k ascending, from
 * 0.0f: the reference's floats). The loops run k outside j so that the j loop, whose sums are
 * independent, vectorises; every sum still adds its terms in the same order. */
static void dct64to16(float a[64][64], float b[16][16]) {
    static __thread float t[16][64];
    for (int i = 0; i < 16; i++) {
        for (int j = 0; j < 64; j++) t[i][j] = 0.0f;
        for (int k = 0; k < 64; k++) {
            float d = dct_matrix[i][k];
            for (int j = 0; j < 64; j++) t[i][j] += d * a[k][j];
        }
    }
    for (int i = 0; i < 16; i++) {
        for (int j = 0; j < 16; j++) b[i][j] = 0.0f;
        for (int k = 0; k < 64; k++) {
            float x = t[i][k];
            for (int j = 0; j < 16; j++) b[i][j] += x * dct_transposed[k][j];
        }
    }
}

static int cmp_float(const void *x, const void *y) {
    float a = *(const float *)x, b = *(const float *)y;
    return (a > b) - (a < b);
}

/* The hash as 32 big-endian bytes (bit i*16+j set when B[i][j] exceeds the median, which is the
 * 128th smallest of the 256 values, as Torben's selection returns for an even count). */
static void bits_of(float b[16][16], unsigned char out[32]) {
    float sorted[256];
    memcpy(sorted, b, sizeof(sorted));
    qsort(sorted, 256, sizeof(float), cmp_float);
    float median = sorted[127];
    memset(out, 0, 32);
    for (int k = 0; k < 256; k++)
        if (b[k / 16][k % 16] > median) out[31 - k / 8] |= (unsigned char)(1u << (k % 8));
}

/* Row stride of the scratch buffers: a row length of a multiple of 1 KiB would put the 64 rows
 * advanced together into two L1 cache sets (a 512-px image ran 10× slower per pixel than 256). */
static Py_ssize_t padded(int cols) { return (Py_ssize_t)cols + 16; }

/* The whole hash of rows×cols RGB pixels, `step` bytes apart (3, or 4 for Pillow's own RGBX
 * layout; 1: the pixels are luma already, e.g. a JPEG's Y plane); `luma` and `tmp` are
 * rows*padded(cols) scratch floats. */
/* Where the mirrored image's filtered value at sample position `pos` lies in the original's filtered
 * buffer: an odd box window is centred, so mirroring maps x to dim-1-x; an even one sits half a pixel
 * off centre, in each of two passes, so the mirror's samples lie 2 px before that (edges clamped).
 * Measured against hashing the mirrored image (tests/test_robust.py): 0-2 bits typical, ≤16 worst
 * (the box filter's edge handling is not symmetric). */
static int mirrored(int pos, int dim, int even_window) {
    int x = dim - 1 - pos - 2 * even_window;
    return x < 0 ? 0 : (x >= dim ? dim - 1 : x);
}

/* The 16×16 DCTs of the mirrored, flipped and rotated-180° image (in that order) from the
 * original's filtered luma: only the 64×64 decimation differs, the filtering is shared. */
static void flipped_dcts(const float *luma, Py_ssize_t stride, int rows, int cols, int filtered, int mask,
                         float out[3][16][16]) {
    static __thread float m[64][64];
    int si[64], sj[64], mi[64], mj[64];
    int er = filtered && jarosz_window(rows, 64) % 2 == 0, ec = filtered && jarosz_window(cols, 64) % 2 == 0;
    for (int k = 0; k < 64; k++) {
        si[k] = filtered ? (int)(((k + 0.5) * rows) / 64) : k;
        sj[k] = filtered ? (int)(((k + 0.5) * cols) / 64) : k;
        mi[k] = mirrored(si[k], rows, er);
        mj[k] = mirrored(sj[k], cols, ec);
    }
    for (int v = 0; v < 3; v++) {
        if (!(mask & (1 << v))) continue; /* each DCT costs as much as the hash's own */
        const int *ri = v == 0 ? si : mi, *ci = v == 1 ? sj : mj;
        for (int i = 0; i < 64; i++)
            for (int j = 0; j < 64; j++) m[i][j] = luma[ri[i] * stride + ci[j]];
        dct64to16(m, out[v]);
    }
}

static void pdq_rgb(const unsigned char *rgb, int rows, int cols, int step, float *luma, float *tmp,
                    float b[16][16], int *quality, int mask, float (*flips)[16][16]) {
    static __thread float a[64][64];
    Py_ssize_t stride = padded(cols);
    for (int r = 0; r < rows; r++) { /* as numpy: float64 products summed left to right */
        const unsigned char *p = rgb + (Py_ssize_t)r * cols * step;
        float *out = luma + r * stride;
        if (step == 1) /* luma given: the same floats as R = G = B = Y (the sum is Y exactly; tested) */
            for (int c = 0; c < cols; c++) out[c] = (float)p[c];
        else
            for (int c = 0; c < cols; c++, p += step)
                out[c] = (float)((luma_r[p[0]] + luma_g[p[1]]) + luma_b[p[2]]);
    }
    if (rows == 64 && cols == 64) {
        for (int i = 0; i < 64; i++) memcpy(a[i], luma + i * stride, sizeof(a[i]));
    } else {
        int wr = jarosz_window(cols, 64), wc = jarosz_window(rows, 64);
        for (int rep = 0; rep < 2; rep++) {
            box_multi(luma, tmp, rows, cols, stride, 1, wr); /* along rows: rows advance together */
            box_multi(tmp, luma, cols, rows, 1, stride, wc); /* along columns: contiguous lanes */
        }
        for (int i = 0; i < 64; i++) {
            int si = (int)(((i + 0.5) * rows) / 64);
            for (int j = 0; j < 64; j++) a[i][j] = luma[si * stride + (int)(((j + 0.5) * cols) / 64)];
        }
    }
    *quality = quality_of(a);
    dct64to16(a, b);
    if (mask) flipped_dcts(luma, stride, rows, cols, !(rows == 64 && cols == 64), mask, flips);
}

/* Fast mode (not --exact-decode): the decimated Jarosz filter evaluated only where it is sampled.
 * Both box passes along an axis and the 64-point decimation are one linear map per axis, so the
 * 64×64 values PDQ reads are P·X·Qᵀ, P (samples × rows) and Q (samples × cols) each the box filter
 * applied twice, kept at the sample rows. Each sampled value is computed from its own band of
 * pixels, in double: ~1 multiply-add per pixel instead of four filtering passes over every pixel.
 * Mathematically the reference's values; numerically they differ by float rounding (the reference
 * keeps float running sums), so a hash bit can differ only where a DCT coefficient lies within
 * rounding of the median (measured: benchmarks/bench_pdq_luma.py, tests/test_pdq_sampled.py). */
typedef struct {
    int n;        /* distinct sample positions, ascending */
    int pos[128]; /* their positions */
    int lo[128], hi[128];
    double *w;    /* n × band weights: position k's taps for pixels lo[k] .. hi[k]-1 */
    int band;
} taps_t;

/* The box filter's range at output o: the reference's running sum covers [o - (window - half),
 * o + half - 1], clipped to the axis, divided by the count of pixels inside. */
static void box_range(int o, int len, int window, int *a, int *b) {
    int half = (window + 2) / 2;
    *a = o - (window - half) < 0 ? 0 : o - (window - half);
    *b = o + half - 1 > len - 1 ? len - 1 : o + half - 1;
}

/* Taps of the twice-applied box filter at each distinct position of `want` (n_want, any order), into
 * t->w (room for n_want × (2 window - 1) doubles). */
static void make_taps(taps_t *t, int len, int window, const int *want, int n_want) {
    int seen_n = 0;
    for (int k = 0; k < n_want; k++) { /* insertion into the sorted distinct set (≤ 128) */
        int p = want[k], i = 0;
        while (i < seen_n && t->pos[i] < p) i++;
        if (i < seen_n && t->pos[i] == p) continue;
        memmove(t->pos + i + 1, t->pos + i, sizeof(int) * (seen_n - i));
        t->pos[i] = p;
        seen_n++;
    }
    t->n = seen_n;
    t->band = 2 * window - 1;
    memset(t->w, 0, sizeof(double) * (size_t)seen_n * t->band);
    for (int k = 0; k < seen_n; k++) {
        int a, b;
        box_range(t->pos[k], len, window, &a, &b);
        int lo = len, hi = 0;
        for (int q = a; q <= b; q++) {
            int c, d;
            box_range(q, len, window, &c, &d);
            if (c < lo) lo = c;
            if (d + 1 > hi) hi = d + 1;
        }
        t->lo[k] = lo;
        t->hi[k] = hi;
        double *w = t->w + (size_t)k * t->band;
        double outer = 1.0 / (b - a + 1);
        for (int q = a; q <= b; q++) {
            int c, d;
            box_range(q, len, window, &c, &d);
            double inner = outer / (d - c + 1);
            for (int x = c; x <= d; x++) w[x - lo] += inner;
        }
    }
}

static int tap_index(const taps_t *t, int p) {
    int a = 0, b = t->n - 1;
    while (a < b) {
        int m = (a + b) / 2;
        if (t->pos[m] < p) a = m + 1; else b = m;
    }
    return a;
}

/* One row's sampled column values: t[c] = Σ_k w_c[k] · row[lo_c + k], each sum k ascending from 0.0
 * (imagehashes.pdq_sampled_reference replays that order in numpy). Four columns at a time when their
 * bands are as long: four independent chains instead of one latency-bound one. */
static void row_samples(const double *row, const taps_t *C, double *t) {
    int c = 0;
    for (; c + 4 <= C->n; c += 4) {
        int n = C->hi[c] - C->lo[c];
        if (C->hi[c + 1] - C->lo[c + 1] != n || C->hi[c + 2] - C->lo[c + 2] != n || C->hi[c + 3] - C->lo[c + 3] != n)
            break;
        const double *x0 = row + C->lo[c], *x1 = row + C->lo[c + 1], *x2 = row + C->lo[c + 2], *x3 = row + C->lo[c + 3];
        const double *w0 = C->w + (size_t)c * C->band, *w1 = w0 + C->band, *w2 = w1 + C->band, *w3 = w2 + C->band;
        double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
        for (int k = 0; k < n; k++) {
            s0 += w0[k] * x0[k];
            s1 += w1[k] * x1[k];
            s2 += w2[k] * x2[k];
            s3 += w3[k] * x3[k];
        }
        t[c] = s0;
        t[c + 1] = s1;
        t[c + 2] = s2;
        t[c + 3] = s3;
    }
    for (; c < C->n; c++) {
        const double *x = row + C->lo[c], *w = C->w + (size_t)c * C->band;
        double s = 0.0;
        for (int k = 0, n = C->hi[c] - C->lo[c]; k < n; k++) s += w[k] * x[k];
        t[c] = s;
    }
}

/* acc (R.n × C.n) = P·X·Qᵀ at the sampled positions, streaming rows (a row no sample row's band
 * covers is never read); a sample row's sums add rows in ascending order. `rowbuf`: cols doubles,
 * the row's luma (as float, then double: the reference's values). */
static void sampled_filter(const unsigned char *px, int rows, int cols, int step, const taps_t *R,
                           const taps_t *C, double *acc, double *t, double *rowbuf) {
    int first = 0;
    for (int r = 0; r < rows; r++) {
        while (first < R->n && R->hi[first] <= r) first++;
        if (first == R->n) break;
        if (R->lo[first] > r) continue;
        const unsigned char *p = px + (Py_ssize_t)r * cols * step;
        if (step == 1) /* luma given */
            for (int c = 0; c < cols; c++) rowbuf[c] = (double)p[c];
        else /* PDQ's luma, rounded to float as the reference stores it */
            for (int c = 0; c < cols; c++, p += step)
                rowbuf[c] = (double)(float)((luma_r[p[0]] + luma_g[p[1]]) + luma_b[p[2]]);
        row_samples(rowbuf, C, t);
        for (int i = first; i < R->n && R->lo[i] <= r; i++) {
            if (r >= R->hi[i]) continue;
            double wr = R->w[(size_t)i * R->band + (r - R->lo[i])];
            double *row = acc + (size_t)i * C->n;
            for (int c = 0; c < C->n; c++) row[c] += wr * t[c];
        }
    }
}

static float *scratch(size_t floats);

/* The fast hash: as pdq_rgb, with the filtered values computed only at the sample positions (and,
 * for the views in `mask`, at their mirrored positions, as flipped_dcts reads them: the mirror needs
 * the mirrored columns, the flip the mirrored rows, the 180° rotation both). Buffers: the thread's
 * scratch. */
static int pdq_sampled(const unsigned char *px, int rows, int cols, int step, float b[16][16], int *quality,
                       int mask, float (*flips)[16][16]) {
    static __thread float a[64][64];
    int si[128], sj[128];
    int wr = jarosz_window(rows, 64), wc = jarosz_window(cols, 64);
    int filtered = !(rows == 64 && cols == 64);
    int er = filtered && wr % 2 == 0, ec = filtered && wc % 2 == 0;
    for (int k = 0; k < 64; k++) {
        si[k] = (int)(((k + 0.5) * rows) / 64);
        sj[k] = (int)(((k + 0.5) * cols) / 64);
        si[64 + k] = mirrored(si[k], rows, er);
        sj[64 + k] = mirrored(sj[k], cols, ec);
    }
    int nr = mask & 6 ? 128 : 64, nc = mask & 5 ? 128 : 64;
    int br = 2 * (filtered ? wr : 1) - 1, bc = 2 * (filtered ? wc : 1) - 1;
    size_t doubles = (size_t)nr * br + (size_t)nc * bc + (size_t)nr * nc + (size_t)nc + (size_t)cols;
    double *buf = (double *)scratch(2 * doubles);
    if (!buf) return -1;
    taps_t R = {.w = buf}, C = {.w = buf + (size_t)nr * br};
    make_taps(&R, rows, filtered ? wr : 1, si, nr);
    make_taps(&C, cols, filtered ? wc : 1, sj, nc);
    double *acc = C.w + (size_t)nc * bc, *t = acc + (size_t)nr * nc;
    memset(acc, 0, sizeof(double) * (size_t)R.n * C.n);
    sampled_filter(px, rows, cols, step, &R, &C, acc, t, t + nc);
    int ri[128], ci[128];
    for (int k = 0; k < nr; k++) ri[k] = tap_index(&R, si[k]);
    for (int k = 0; k < nc; k++) ci[k] = tap_index(&C, sj[k]);
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < 64; j++) a[i][j] = (float)acc[(size_t)ri[i] * C.n + ci[j]];
    *quality = quality_of(a);
    dct64to16(a, b);
    for (int v = 0; v < 3; v++) {
        if (!(mask & (1 << v))) continue;
        const int *rr = v == 0 ? ri : ri + 64, *cc = v == 1 ? ci : ci + 64;
        for (int i = 0; i < 64; i++)
            for (int j = 0; j < 64; j++) a[i][j] = (float)acc[(size_t)rr[i] * C.n + cc[j]];
        dct64to16(a, flips[v]);
    }
    return 0;
}

/* Per-thread scratch, kept between calls up to KEEP_FLOATS: a fresh 2 MB allocation per image
 * is served by mmap and costs ~1 ms of page faults at 512 px, as much as the hash itself. */
#define KEEP_FLOATS ((size_t)8 << 20) /* 32 MiB: two buffers of a 2,000 × 2,000 image */
static __thread float *scratch_buf;
static __thread size_t scratch_cap;
static pthread_key_t scratch_key; /* its destructor frees a thread's scratch when the thread ends */
static long live_buffers;         /* scratch buffers allocated and not yet freed, all threads */

static void drop(void *p) {
    if (p) {
        free(p);
        __atomic_fetch_sub(&live_buffers, 1, __ATOMIC_RELAXED);
    }
}

static float *scratch(size_t floats) {
    if (floats > scratch_cap) {
        drop(scratch_buf);
        scratch_buf = malloc(floats * sizeof(float));
        scratch_cap = scratch_buf ? floats : 0;
        if (scratch_buf) __atomic_fetch_add(&live_buffers, 1, __ATOMIC_RELAXED);
        pthread_setspecific(scratch_key, scratch_buf);
    }
    return scratch_buf;
}

static void release_scratch(void) { /* a rare huge image's buffers are not kept */
    if (scratch_cap > KEEP_FLOATS) {
        drop(scratch_buf);
        scratch_buf = NULL;
        scratch_cap = 0;
        pthread_setspecific(scratch_key, NULL);
    }
}

static PyObject *scratch_buffers(PyObject *self, PyObject *unused) {
    return PyLong_FromLong(__atomic_load_n(&live_buffers, __ATOMIC_RELAXED));
}

PyDoc_STRVAR(hash_doc,
"hash(rgb, rows, cols, with_floats=False, step=3, flips=0, sampled=False)\n"
"    -> (32-byte hash, quality[, 1024-byte float32 16x16[, 3072 bytes: mirror, flip, rot180 DCTs]])\n\n"
"PDQ of a contiguous rows x cols x step uint8 buffer (R, G, B first in each pixel; step 3 or 4;\n"
"step 1: luma values), bit-identical to pdqhash.compute on the RGB pixels (for step 1: on R = G = B). `flips` (a mask: 1 mirror, 2 flip, 4 rot180)\n"
"adds the 16x16 DCTs of those views, decimated from the same filtered luma (see flipped_dcts);\n"
"views not asked for are zeros. `sampled`: fast mode's filter evaluated only where it is sampled\n"
"(pdq_sampled): the same values up to float rounding, not bit-identical.");

static PyObject *hash(PyObject *self, PyObject *args) {
    Py_buffer px;
    int rows, cols, with_floats = 0, step = 3, want_flips = 0, sampled = 0;
    if (!PyArg_ParseTuple(args, "y*ii|piip", &px, &rows, &cols, &with_floats, &step, &want_flips, &sampled))
        return NULL;
    if (want_flips < 0 || want_flips > 7) {
        PyBuffer_Release(&px);
        PyErr_SetString(PyExc_ValueError, "flips is a mask: 1 mirror, 2 flip, 4 rot180");
        return NULL;
    }
    if (rows < 0 || cols < 0 || (step != 1 && step != 3 && step != 4) || px.len != (Py_ssize_t)rows * cols * step) {
        PyBuffer_Release(&px);
        PyErr_SetString(PyExc_ValueError, "buffer is not rows x cols x step bytes (step 1, 3 or 4)");
        return NULL;
    }
    unsigned char bits[32] = {0};
    float b[16][16] = {{0}};
    static __thread float flips[3][16][16];
    memset(flips, 0, sizeof(flips));
    int quality = 0;
    if (rows >= 5 && cols >= 5 && sampled) {
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = pdq_sampled(px.buf, rows, cols, step, b, &quality, want_flips, flips);
        if (rc == 0) bits_of(b, bits);
        Py_END_ALLOW_THREADS
        release_scratch();
        if (rc != 0) {
            PyBuffer_Release(&px);
            return PyErr_NoMemory();
        }
    } else if (rows >= 5 && cols >= 5) { /* smaller: the reference's all-zero hash, quality 0 */
        size_t n = (size_t)rows * padded(cols);
        float *luma = scratch(2 * n);
        if (!luma) {
            PyBuffer_Release(&px);
            return PyErr_NoMemory();
        }
        Py_BEGIN_ALLOW_THREADS
        pdq_rgb(px.buf, rows, cols, step, luma, luma + n, b, &quality, want_flips, flips);
        bits_of(b, bits);
        Py_END_ALLOW_THREADS
        release_scratch();
    }
    PyBuffer_Release(&px);
    if (with_floats && want_flips)
        return Py_BuildValue("y#iy#y#", bits, (Py_ssize_t)32, quality, (const char *)b, (Py_ssize_t)sizeof(b),
                             (const char *)flips, (Py_ssize_t)sizeof(flips));
    if (with_floats)
        return Py_BuildValue("y#iy#", bits, (Py_ssize_t)32, quality, (const char *)b, (Py_ssize_t)sizeof(b));
    return Py_BuildValue("y#i", bits, (Py_ssize_t)32, quality);
}

/* Pillow's LANCZOS resize of one uint8 grayscale image, given lanczos.py's fixed-point coefficient
 * matrices (out × in, float64 holding integers). Every product and sum is an integer below 2**31, so
 * exact in double whatever the order: the result equals lanczos.resize_batch bit for bit, but needs
 * no batch of same-shaped images (real photos rarely share a shape) and skips the zero coefficients
 * (each output reads only its band). Horizontal pass first, each pass rounded and clipped like
 * Pillow's 22-bit fixed point. */
static double clip8(double acc) {
    acc = floor((acc + 2097152.0) * (1.0 / 4194304.0));
    return acc < 0.0 ? 0.0 : (acc > 255.0 ? 255.0 : acc);
}

#ifdef __SSE2__
static inline double hsum2(__m128d v) { return _mm_cvtsd_f64(_mm_add_sd(v, _mm_unpackhi_pd(v, v))); }
#endif

static void band(const double *m, int outs, int ins, int *lo, int *hi) {
    for (int o = 0; o < outs; o++) {
        const double *row = m + (Py_ssize_t)o * ins;
        int a = 0, b = ins;
        while (a < ins && row[a] == 0.0) a++;
        while (b > a && row[b - 1] == 0.0) b--;
        lo[o] = a;
        hi[o] = b;
    }
}

static void lanczos_passes(const unsigned char *src, int h, int w, const double *cx, const double *cy, int out_w,
                           int out_h, int do_x, int do_y, double *tmp, int *lo, int *hi, unsigned char *dst) {
    int ow = do_x ? out_w : w, oh = do_y ? out_h : h;
    if (do_x) {
        band(cx, out_w, w, lo, hi);
        /* four rows at a time: four independent sums per tap (one sum is a latency-bound chain);
         * exact in any order (integers), so the same result */
        int r = 0;
        double *rows4 = tmp + (Py_ssize_t)h * ow + ow; /* 4 rows as doubles, converted once */
        for (; r + 4 <= h; r += 4) {
            for (Py_ssize_t i = 0; i < 4 * (Py_ssize_t)w; i++) rows4[i] = (double)src[(Py_ssize_t)r * w + i];
            const double *r0 = rows4, *r1 = r0 + w, *r2 = r1 + w, *r3 = r2 + w;
            for (int o = 0; o < out_w; o++) {
                const double *c = cx + (Py_ssize_t)o * w;
                double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
                int k = lo[o];
#ifdef __SSE2__
                /* two taps per packed multiply-add (exact integers: any order gives the same sum) */
                __m128d a0 = _mm_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
                for (; k + 2 <= hi[o]; k += 2) {
                    const __m128d ck = _mm_loadu_pd(c + k);
                    a0 = _mm_add_pd(a0, _mm_mul_pd(_mm_loadu_pd(r0 + k), ck));
                    a1 = _mm_add_pd(a1, _mm_mul_pd(_mm_loadu_pd(r1 + k), ck));
                    a2 = _mm_add_pd(a2, _mm_mul_pd(_mm_loadu_pd(r2 + k), ck));
                    a3 = _mm_add_pd(a3, _mm_mul_pd(_mm_loadu_pd(r3 + k), ck));
                }
                s0 = hsum2(a0), s1 = hsum2(a1), s2 = hsum2(a2), s3 = hsum2(a3);
#endif
                for (; k < hi[o]; k++) {
                    s0 += r0[k] * c[k];
                    s1 += r1[k] * c[k];
                    s2 += r2[k] * c[k];
                    s3 += r3[k] * c[k];
                }
                tmp[(Py_ssize_t)r * ow + o] = clip8(s0);
                tmp[(Py_ssize_t)(r + 1) * ow + o] = clip8(s1);
                tmp[(Py_ssize_t)(r + 2) * ow + o] = clip8(s2);
                tmp[(Py_ssize_t)(r + 3) * ow + o] = clip8(s3);
            }
        }
        for (; r < h; r++) {
            const unsigned char *row = src + (Py_ssize_t)r * w;
            for (int o = 0; o < out_w; o++) {
                const double *c = cx + (Py_ssize_t)o * w;
                double s = 0.0;
                for (int k = lo[o]; k < hi[o]; k++) s += (double)row[k] * c[k];
                tmp[(Py_ssize_t)r * ow + o] = clip8(s);
            }
        }
    } else {
        for (Py_ssize_t i = 0; i < (Py_ssize_t)h * w; i++) tmp[i] = (double)src[i];
    }
    if (do_y) {
        band(cy, out_h, h, lo, hi);
        double *acc = tmp + (Py_ssize_t)h * ow;
        for (int o = 0; o < out_h; o++) {
            const double *c = cy + (Py_ssize_t)o * h;
            for (int j = 0; j < ow; j++) acc[j] = 0.0;
            for (int k = lo[o]; k < hi[o]; k++) {
                const double *row = tmp + (Py_ssize_t)k * ow;
                for (int j = 0; j < ow; j++) acc[j] += row[j] * c[k];
            }
            for (int j = 0; j < ow; j++) dst[(Py_ssize_t)o * ow + j] = (unsigned char)clip8(acc[j]);
        }
    } else {
        for (Py_ssize_t i = 0; i < (Py_ssize_t)oh * ow; i++) dst[i] = (unsigned char)tmp[i];
    }
}

PyDoc_STRVAR(lanczos_doc,
"lanczos(gray, h, w, cx, cy, out_w, out_h, do_x, do_y) -> bytes\n\n"
"One h x w uint8 image resized by coefficient matrices cx (out_w x w) and cy (out_h x h), float64;\n"
"a pass not asked for (do_x / do_y false) leaves that axis as it is. Equals lanczos.resize_batch.");

static PyObject *lanczos(PyObject *self, PyObject *args) {
    Py_buffer src, cx, cy;
    int h, w, out_w, out_h, do_x, do_y;
    if (!PyArg_ParseTuple(args, "y*iiy*y*iipp", &src, &h, &w, &cx, &cy, &out_w, &out_h, &do_x, &do_y)) return NULL;
    PyObject *result = NULL;
    int ow = do_x ? out_w : w, oh = do_y ? out_h : h;
    if (h <= 0 || w <= 0 || out_w <= 0 || out_h <= 0 || src.len != (Py_ssize_t)h * w ||
        cx.len != (Py_ssize_t)out_w * w * 8 || cy.len != (Py_ssize_t)out_h * h * 8) {
        PyErr_SetString(PyExc_ValueError, "lanczos: buffer sizes do not match h, w, out_w, out_h");
        goto done;
    }
    int side = (h > w ? h : w) + out_w + out_h;
    double *tmp = PyMem_RawMalloc(sizeof(double) * ((size_t)h * ow + (size_t)ow + 4 * (size_t)w));
    int *lims = PyMem_RawMalloc(sizeof(int) * 2 * (size_t)side);
    result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)oh * ow);
    if (!tmp || !lims || !result) {
        Py_CLEAR(result);
        PyErr_NoMemory();
    } else {
        unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(result);
        Py_BEGIN_ALLOW_THREADS
        lanczos_passes(src.buf, h, w, cx.buf, cy.buf, out_w, out_h, do_x, do_y, tmp, lims, lims + side, dst);
        Py_END_ALLOW_THREADS
    }
    PyMem_RawFree(tmp);
    PyMem_RawFree(lims);
done:
    PyBuffer_Release(&src);
    PyBuffer_Release(&cx);
    PyBuffer_Release(&cy);
    return result;
}

/* Pillow's LANCZOS weights for resizing `full` pixels to `outs` (Resample.c's precompute_coeffs and
 * normalize_coeffs_8bpc, the same double operations in the same order: the integers Pillow uses),
 * each output's taps then summed over blocks of `block` input pixels (an image reduced by `block`:
 * lanczos.block_coefficients). Per output only its band of taps is evaluated. */
static double sinc(double x) {
    if (x == 0.0) return 1.0;
    x = x * M_PI;
    return sin(x) / x;
}

static double lanczos3(double x) { return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3.0) : 0.0; }

static void pillow_block_weights(int full, int block, int outs, double *k, double *m) {
    int cols = (full + block - 1) / block;
    double scale = (double)full / outs, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 3.0 * filterscale, ss = 1.0 / filterscale;
    for (int xx = 0; xx < outs; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0;
        int xmin = (int)(center - support + 0.5), xmax;
        if (xmin < 0) xmin = 0;
        xmax = (int)(center + support + 0.5);
        if (xmax > full) xmax = full;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            k[x] = lanczos3((x + xmin - center + 0.5) * ss);
            ww += k[x];
        }
        double *row = m + (Py_ssize_t)xx * cols;
        for (int j = 0; j < cols; j++) row[j] = 0.0;
        for (int x = 0; x < xmax; x++) {
            double w = ww != 0.0 ? k[x] / ww : k[x];
            double fixed = w < 0 ? (double)(int)(-0.5 + w * 4194304.0) : (double)(int)(0.5 + w * 4194304.0);
            row[(x + xmin) / block] += fixed;
        }
    }
}

PyDoc_STRVAR(block_weights_doc,
"block_weights(full, block, out) -> bytes\n\n"
"out x ceil(full / block) float64 matrix: Pillow's fixed-point LANCZOS weights for resizing full\n"
"pixels to out (bit-identical integers), summed over blocks of `block` input pixels.");

static PyObject *block_weights(PyObject *self, PyObject *args) {
    int full, block, outs;
    if (!PyArg_ParseTuple(args, "iii", &full, &block, &outs)) return NULL;
    if (full <= 0 || block <= 0 || outs <= 0) {
        PyErr_SetString(PyExc_ValueError, "block_weights: full, block and out must be positive");
        return NULL;
    }
    int cols = (full + block - 1) / block;
    PyObject *result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)outs * cols * (Py_ssize_t)sizeof(double));
    double *k = PyMem_RawMalloc(sizeof(double) * ((size_t)full + 1));
    if (!result || !k) {
        Py_XDECREF(result);
        PyMem_RawFree(k);
        return PyErr_NoMemory();
    }
    double *m = (double *)PyBytes_AS_STRING(result);
    Py_BEGIN_ALLOW_THREADS
    pillow_block_weights(full, block, outs, k, m);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(k);
    return result;
}

static PyMethodDef methods[] = {
    {"hash", hash, METH_VARARGS, hash_doc},
    {"lanczos", lanczos, METH_VARARGS, lanczos_doc},
    {"block_weights", block_weights, METH_VARARGS, block_weights_doc},
    {"scratch_buffers", scratch_buffers, METH_NOARGS, "Scratch buffers held, all threads (tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pdqext", "PDQ hashing, bit-identical to pdqhash (see the file's comment).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__pdqext(void) {
    init_tables();
    if (pthread_key_create(&scratch_key, drop) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "pthread_key_create failed");
        return NULL;
    }
    return PyModule_Create(&module);
}
