"""Exact Euclidean distance transforms of boolean masks, on the device of the mask.

Ports what the numpy reference ops (tests/reference_ops) take from
scipy.ndimage.distance_transform_edt, with the separable scheme of Saito & Toriwaki /
Meijster et al.: the squared distance from pixel (x, y) to the nearest
True pixel is min over rows y' of (y - y')² + h(x, y')², where h is the distance to the nearest
True pixel within row y'. Phase 1 (h) is exact and O(N): the last True column at or left of x
is a running max of column indices (cummax), the first at or right of x a running min
(for small caps, 2 * cap shifted compares instead).

Phase 2 differs by what the caller needs, all exact integer arithmetic:

- `bounded_sq_distance`: only distances up to a small cap R matter (the matte's halo). Then
  only rows |y' - y| <= R and h <= R + 1 can matter: 2R whole-image minimum operations.
- `dilate`: a fixed radius r (up to 128). Row y' within r of the mask reaches the rows
  |y - y'| <= w = isqrt(r² - h²), an interval around y'. A pixel is covered iff some interval
  above it reaches down to it (running max of y' + w) or one below reaches up (running min of
  y' - w): O(N) for any r, no loop over the radius.
- `nearest_true`: unbounded nearest True pixel (for fill_transparent). The best row s(y) for
  query row y is monotone in y (lower envelope of parabolas of equal curvature, ties to the
  lower row), so it is found by divide and conquer on the queries: s at the midpoint of two
  known queries is the minimum over the rows between their answers. Each level is a few
  whole-image operations and one scatter-min, log2(height) levels, no host syncs. Only rows
  holding a True pixel are candidates (one size sync to compact them). On the CPU it runs
  per strip of columns, to stay in cache. Exact, but on the CPU not faster than scipy's C
  (each level is a pass over all candidates).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor


def _row_nearest(target: Tensor) -> tuple[Tensor, Tensor]:
    """Per pixel: column of the nearest True pixel in its row, and the distance to it (int32).

    Rows with no True pixel get distance `height + width` (more than any real distance).
    """
    height, width = target.shape
    far = height + width
    x = torch.arange(width, dtype=torch.int32, device=target.device)
    left = torch.where(target, x, -2 * far).cummax(dim=1).values
    right = torch.where(target, x, 3 * far).flip(1).cummin(dim=1).values.flip(1)
    to_left, to_right = x - left, right - x
    col = torch.where(to_left <= to_right, left, right)
    return col, torch.minimum(to_left, to_right).clamp_max_(far)


# Up to this cap the row distances come from 2 * cap shifted compares, not running max/min.
_SHIFT_CAP = 16


def _row_distance_capped(target: Tensor, cap: int, dtype: torch.dtype) -> Tensor:
    """min(cap + 1, distance to the nearest True pixel in the same row)."""
    width = target.shape[1]
    h = torch.full(target.shape, cap + 1, dtype=dtype, device=target.device)
    # Nearer candidates overwrite farther ones: largest shift first.
    for d in range(min(cap, width - 1), 0, -1):
        h[:, d:].masked_fill_(target[:, :-d], d)
        h[:, :-d].masked_fill_(target[:, d:], d)
    return h.masked_fill_(target, 0)


def bounded_sq_distance(target: Tensor, cap: int) -> Tensor:
    """Squared distance of each pixel to the nearest True pixel of `target`.

    Exact wherever it is <= cap²; elsewhere (or with no True pixel at all) some value > cap².
    True pixels get 0. Integer tensor (int16 for small caps, to halve the memory traffic).
    """
    height = target.shape[0]
    # A candidate with h > cap or |dy| > cap is farther than cap: clamping h to cap + 1 keeps
    # those candidates above cap² and every exact one unchanged.
    dtype = torch.int16 if 2 * (cap + 1) ** 2 < 2**15 else torch.int32
    if cap <= _SHIFT_CAP:
        h = _row_distance_capped(target, cap, dtype)
    else:
        h = _row_nearest(target)[1].clamp_max_(cap + 1).to(dtype)
    g2 = h * h
    out = g2.clone()
    shifted = torch.empty_like(g2)
    for dy in range(1, min(cap, height - 1) + 1):
        rows = height - dy
        # Candidates from dy rows above, then dy rows below.
        torch.add(g2[:rows], dy * dy, out=shifted[:rows])
        torch.minimum(out[dy:], shifted[:rows], out=out[dy:])
        torch.add(g2[dy:], dy * dy, out=shifted[:rows])
        torch.minimum(out[:rows], shifted[:rows], out=out[:rows])
    return out


def _isqrt(values: Tensor) -> Tensor:
    """floor(sqrt(v)) for int32 v >= 0 below 2**24 (float32 sqrt, then one exact correction)."""
    root = values.to(torch.float32).sqrt_().floor_().to(torch.int32)
    root = root - (root * root > values).to(torch.int32)
    return root + ((root + 1) * (root + 1) <= values).to(torch.int32)


def dilate(mask: Tensor, radius: int) -> Tensor:
    """Pixels within Euclidean distance <= radius of a True pixel of `mask` (exact, bool).

    Equals scipy.ndimage.distance_transform_edt(~mask) <= radius. The caller crops (see
    ops/regions.py); this works on the whole tensor.
    """
    if radius <= 0 or mask.shape[0] == 0:
        return mask.clone()
    height = mask.shape[0]
    _, h = _row_nearest(mask)
    h = h.clamp_max_(radius + 1)  # h > radius reaches no row; keeps h * h small
    reach = radius * radius - h * h
    # Rows that reach nothing get a half-width of -(height + 1): their interval is empty and
    # lies outside 0..height-1 on both scans below.
    half = torch.where(reach >= 0, _isqrt(reach.clamp_min(0)), -(height + 1))
    y = torch.arange(height, dtype=torch.int32, device=mask.device)[:, None]
    # Covered from above: the rows y' <= y reach down to y' + half; from below: rows y' >= y
    # reach up to y' - half.
    lowest_reached = (y + half).cummax(dim=0).values
    highest_reached = (y - half).flip(0).cummin(dim=0).values.flip(0)
    return (lowest_reached >= y) | (highest_reached <= y)


# Keys for the scatter-min: squared distance in the high bits, candidate index in the low
# bits, so one integer minimum gives the nearest candidate and, on ties, the lowest index.
_INDEX_BITS = 20


def _envelope_argmin(g2: Tensor, positions: Tensor, queries: int) -> Tensor:
    """For every column c and query row y < queries: the index v of the candidate row
    minimising (y - positions[v])² + g2[v, c] (the lowest such v on ties).

    g2 (candidates, columns) int64, positions (candidates,) int64 increasing. The minimiser is
    non-decreasing in y (lower envelope of equal parabolas), so with the answers s(a), s(b) at
    two queries a < b, the answer at their midpoint is among candidates s(a)..s(b). Level k
    finds the midpoints of 2^k blocks: every candidate is scored against the midpoint of the
    block whose range holds it, and a scatter-min per block picks the best.
    """
    count, columns = g2.shape
    device = g2.device
    levels = max(1, math.ceil(math.log2(max(queries - 1, 1))))
    span = 1 << levels  # queries 0..span; those >= `queries` are computed, then dropped
    index = torch.arange(count, dtype=torch.int64, device=device)[:, None]
    pos = positions[:, None]
    # key(y) = ((y - p)² + g2) << bits | v = base + (y² - 2 y p) << bits
    base = (pos * pos + g2) * (1 << _INDEX_BITS) + index
    two_pos = 2 * pos
    low_bits = (1 << _INDEX_BITS) - 1

    def key_at(y: Tensor, candidates: Tensor) -> Tensor:
        p = positions[candidates]
        return base.gather(0, candidates) + (y * (y - 2 * p)) * (1 << _INDEX_BITS)

    # Answers at queries 0 and `span`, by brute force over all candidates: (2, columns).
    known = torch.stack(
        [(base + (y * y - y * two_pos) * (1 << _INDEX_BITS)).amin(0) for y in (0, span)]
    )
    known &= low_bits
    # Block of each candidate: the one whose answer range [s(a), s(b)) holds it, or a spare
    # block (index = block count) for candidates outside every range.
    block = ((index < known[0]) | (index >= known[1])).to(torch.int64)
    mid = torch.empty_like(block)
    key = torch.empty_like(block)
    right = torch.empty_like(block, dtype=torch.bool)
    none = torch.tensor(torch.iinfo(torch.int64).max, device=device)
    for level in range(levels):
        blocks = 1 << level
        size = span >> level
        torch.mul(block, size, out=mid).add_(size // 2)
        torch.sub(mid, two_pos, out=key).mul_(mid).mul_(1 << _INDEX_BITS).add_(base)
        best = none.expand(blocks + 1, columns).clone()
        best.scatter_reduce_(0, block, key, reduce="amin")
        # The range's right end s(b) belongs to the next block; score it here too.
        centre = torch.arange(blocks, device=device)[:, None] * size + size // 2
        best = torch.minimum(best[:blocks], key_at(centre, known[1:])) & low_bits
        merged = torch.empty((2 * blocks + 1, columns), dtype=torch.int64, device=device)
        merged[0::2] = known
        merged[1::2] = best
        known = merged
        # Split each block at its new answer; the spare block stays spare (2 * blocks).
        split = torch.cat([best, best.new_full((1, columns), count)])
        torch.gather(split, 0, block, out=mid)
        torch.ge(index, mid, out=right)
        block.mul_(2).add_(right)
    return known[:queries]


# Working set per strip on the CPU (a few int64 arrays of candidates x columns): small
# enough to stay in cache and be recycled by the allocator rather than page-faulted in.
_STRIP_BYTES = 4 << 20


def nearest_strips(target: Tensor) -> Iterator[tuple[int, int, Tensor, Tensor]]:
    """(first column, end column, rows, cols) of a nearest True pixel, per column strip.

    Phase 1 runs only on rows holding a True pixel (the only candidates), in row strips;
    phase 2 per strip of columns (each column's search is independent). On a GPU, one strip.
    """
    height, width = target.shape
    # Candidate rows: those holding a True pixel (one size sync for the compaction).
    rows = target.any(dim=1).nonzero()[:, 0]
    count = rows.numel()
    if count >= 1 << _INDEX_BITS:
        raise ValueError(f"nearest_true supports up to {1 << _INDEX_BITS} rows")
    cpu = target.device.type == "cpu"
    col = torch.empty((count, width), dtype=torch.int64, device=target.device)
    g2 = torch.empty((count, width), dtype=torch.int64, device=target.device)
    row_strip = max(1, _STRIP_BYTES // (16 * width)) if cpu else count
    for r0 in range(0, count, row_strip):
        nearest, h = _row_nearest(target.index_select(0, rows[r0 : r0 + row_strip]))
        col[r0 : r0 + row_strip] = nearest
        torch.mul(h, h, out=g2[r0 : r0 + row_strip])
    col_strip = max(8, _STRIP_BYTES // (32 * count)) if cpu else width
    for c0 in range(0, width, col_strip):
        c1 = min(width, c0 + col_strip)
        best = _envelope_argmin(g2[:, c0:c1].contiguous(), rows, height)
        yield c0, c1, rows[best], col[:, c0:c1].gather(0, best)


def nearest_true(target: Tensor) -> tuple[Tensor, Tensor]:
    """(rows, cols) int64 of a True pixel at minimal Euclidean distance from each pixel.

    Exact distance; among equally near True pixels the choice may differ from scipy's. True
    pixels map to themselves. `target` must hold at least one True pixel.
    """
    nearest_rows = torch.empty(target.shape, dtype=torch.int64, device=target.device)
    nearest_cols = torch.empty_like(nearest_rows)
    for c0, c1, rows, cols in nearest_strips(target):
        nearest_rows[:, c0:c1] = rows
        nearest_cols[:, c0:c1] = cols
    return nearest_rows, nearest_cols
