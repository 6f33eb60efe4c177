"""Fast mode's PDQ in numpy: the filter evaluated only where PDQ samples it, replaying the compiled
kernel's operations in the same order (``_pdqext.c``: ``pdq_sampled``, ``row_samples``,
``sampled_filter``, ``dct64to16``), so a worker without the compiled extension gives the same bits,
quality and DCT floats (tested bit for bit), only slower (~50× here). Every sum is built one term at
a time with numpy's elementwise float64/float32 operations (no fused multiply-add, like the C build),
in the C loops' order.
"""
from __future__ import annotations

import functools
import math

import numpy as np

_LUMA = (np.arange(256, dtype=np.float64) * 0.299, np.arange(256, dtype=np.float64) * 0.587,
         np.arange(256, dtype=np.float64) * 0.114)


@functools.lru_cache(maxsize=1)
def _dct_matrix() -> np.ndarray:
    """The kernel's 16×64 float32 DCT matrix (a constant: computed once, 1,024 cosines)."""
    scale = float(np.float32(math.sqrt(2.0 / 64.0)))
    d = np.array([[np.float32(scale * math.cos((math.pi / 2.0 / 64.0) * (i + 1) * (2 * j + 1)))
                   for j in range(64)] for i in range(16)], dtype=np.float32)
    d.setflags(write=False)
    return d


def _jarosz_window(dim: int) -> int:
    return (dim + 2 * 64 - 1) // (2 * 64)


def _box_range(o: int, length: int, window: int) -> tuple[int, int]:
    half = (window + 2) // 2
    return max(0, o - (window - half)), min(length - 1, o + half - 1)


def _mirrored(pos: int, dim: int, even: int) -> int:
    return min(max(dim - 1 - pos - 2 * even, 0), dim - 1)


def _taps(length: int, window: int, want: list[int]) -> tuple[list[int], list[int], list[np.ndarray]]:
    """(distinct positions ascending, their first pixel, their weights): the box filter applied twice."""
    pos = sorted(set(want))
    lows, weights = [], []
    for p in pos:
        a, b = _box_range(p, length, window)
        lo = _box_range(a, length, window)[0]
        w = [0.0] * (_box_range(b, length, window)[1] + 1 - lo)
        outer = 1.0 / (b - a + 1)
        for q in range(a, b + 1):
            c, d = _box_range(q, length, window)
            inner = outer / (d - c + 1)
            for x in range(c, d + 1):
                w[x - lo] += inner
        lows.append(lo)
        weights.append(np.array(w))
    return pos, lows, weights


def _luma(pixels: np.ndarray) -> np.ndarray:
    """float64 luma as the kernel reads it: L as is; RGB through PDQ's float64 products, as float32."""
    if pixels.ndim == 2:
        return pixels.astype(np.float64)
    r, g, b = (pixels[:, :, k] for k in range(3))
    return ((_LUMA[0][r] + _LUMA[1][g]) + _LUMA[2][b]).astype(np.float32).astype(np.float64)


def _filtered(x: np.ndarray, rows_want: list[int], cols_want: list[int], wr: int, wc: int):
    """The kernel's acc: every wanted (row, column) sample's filtered value, and the index maps."""
    rpos, rlo, rw = _taps(x.shape[0], wr, rows_want)
    cpos, clo, cw = _taps(x.shape[1], wc, cols_want)
    t = np.zeros((x.shape[0], len(cpos)))
    for c, (lo, w) in enumerate(zip(clo, cw)):
        col = np.zeros(x.shape[0])
        for k in range(len(w)):
            col += w[k] * x[:, lo + k]
        t[:, c] = col
    acc = np.zeros((len(rpos), len(cpos)))
    for i, (lo, w) in enumerate(zip(rlo, rw)):
        for k in range(len(w)):
            acc[i] += w[k] * t[lo + k]
    return acc, {p: i for i, p in enumerate(rpos)}, {p: i for i, p in enumerate(cpos)}


def _quality(a: np.ndarray) -> int:
    hundred, full = np.float32(100.0), np.float32(255.0)
    v = ((a[:-1, :] - a[1:, :]) * hundred / full).astype(np.int32)
    h = ((a[:, :-1] - a[:, 1:]) * hundred / full).astype(np.int32)
    return min(100, int(np.abs(v).sum() + np.abs(h).sum()) // 90)


def dct64to16(a: np.ndarray, d: np.ndarray) -> np.ndarray:
    """D A Dᵀ in float32, every sum k ascending from 0 (the kernel's order)."""
    t = np.zeros((16, 64), np.float32)
    for k in range(64):
        t += d[:, k:k + 1] * a[k][None, :]
    b = np.zeros((16, 16), np.float32)
    for k in range(64):
        b += t[:, k:k + 1] * d[:, k][None, :]
    return b


def bits_of(b: np.ndarray) -> bytes:
    """32 bytes: bit k (byte 31 - k // 8, bit k % 8) set when coefficient k is above the median."""
    flat = b.reshape(256)
    above = flat > np.sort(flat)[127]
    out = bytearray(32)
    for k in np.flatnonzero(above):
        out[31 - k // 8] |= 1 << (k % 8)
    return bytes(out)


def pdq_sampled(pixels: np.ndarray, flips: int = 0) -> tuple[bytes, int, np.ndarray, np.ndarray]:
    """(hash bytes, quality, 16×16 DCT, 3×16×16 DCTs of the mirror / flip / 180° views in ``flips``)
    of a (rows, cols) luma or (rows, cols, 3) RGB uint8 array: ``_pdqext.hash(..., sampled=True)``."""
    rows, cols = pixels.shape[:2]
    views = np.zeros((3, 16, 16), np.float32)
    if rows < 5 or cols < 5:
        return bytes(32), 0, np.zeros((16, 16), np.float32), views
    filtered = not (rows == 64 and cols == 64)
    wr, wc = (_jarosz_window(rows), _jarosz_window(cols)) if filtered else (1, 1)
    si = [int(((k + 0.5) * rows) / 64) for k in range(64)]
    sj = [int(((k + 0.5) * cols) / 64) for k in range(64)]
    mi = [_mirrored(p, rows, int(filtered and wr % 2 == 0)) for p in si]
    mj = [_mirrored(p, cols, int(filtered and wc % 2 == 0)) for p in sj]
    acc, ri, ci = _filtered(_luma(pixels), si + (mi if flips & 6 else []), sj + (mj if flips & 5 else []), wr, wc)
    d = _dct_matrix()

    def grid(r: list[int], c: list[int]) -> np.ndarray:
        return acc[np.ix_([ri[p] for p in r], [ci[p] for p in c])].astype(np.float32)

    a = grid(si, sj)
    b = dct64to16(a, d)
    for v, (r, c) in enumerate(((si, mj), (mi, sj), (mi, mj))):
        if flips & (1 << v):
            views[v] = dct64to16(grid(r, c), d)
    return bits_of(b), _quality(a), b, views
