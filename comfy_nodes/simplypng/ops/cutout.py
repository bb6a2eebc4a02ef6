"""Cutout in torch (numpy reference: tests/reference_ops/cutout.py).

Speck removal, crop to the alpha box with padding, canvas rules.

Everything runs on the input tensor's device; only sizes, counts and the alpha box cross to
the host (scalar syncs). The numpy version labels with scipy and gives every non-solid pixel
the component of its nearest solid pixel (a full feature transform); here:

- components are labelled on horizontal runs of solid pixels (union-find on run ids by
  min-label hooking and pointer jumping), so the iterative part works on runs, not pixels;
- "nearest solid pixel's component" is reduced to what the result needs, one bit: is that
  pixel in a dropped component? An exact separable distance transform carries the bit of the
  winning solid pixel instead of its coordinates (`_nearest_is_dropped`).

Ties: among equally near solid pixels scipy's feature transform takes the one with the smallest
column, then the smallest row. The transform here breaks ties the same way, so decisions match
the numpy reference exactly, ties included.

Cost: the union-find syncs once per round (rounds grow like log of the run count); the
transform's envelope runs a Python loop of 64 steps over all rows and segments at once (a sync
per round of stack pops), then log2(width / 64) merge rounds of a log2(width)-step binary
search. No per-pixel Python loop; nothing of this runs unless some part is dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .alpha import alpha_bbox
from .errors import NoSubjectError

__all__ = [
    "SOLID_ALPHA",
    "Canvas",
    "PaddingUnit",
    "cutout",
    "cutout_canvas",
    "extract",
    "remove_specks",
]

PaddingUnit = Literal["px", "percent"]
# A pixel is "solid" subject at this alpha; specks are counted on solid pixels.
SOLID_ALPHA = 0.5


@dataclass(frozen=True)
class Canvas:
    """Where the output canvas lies in source coordinates: (x0, y0) and its size."""

    x0: int
    y0: int
    width: int
    height: int


def cutout_canvas(
    box: tuple[int, int, int, int],
    padding: float,
    unit: PaddingUnit,
    square: bool,
    min_size: int,
) -> Canvas:
    """Canvas for a subject box (x0, y0, x1, y1): padded, optionally square, at least min_size.

    Percent padding is a percentage of the subject's longer side, the same on all four sides.
    min_size grows the canvas (never scales the subject) so its long side is min_size, keeping
    its aspect ratio, with the content centred.
    """
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0)
    pad = round(padding) if unit == "px" else round(side * padding / 100.0)
    x0, y0, x1, y1 = x0 - pad, y0 - pad, x1 + pad, y1 + pad
    width, height = x1 - x0, y1 - y0
    if square and width != height:
        size = max(width, height)
        x0 -= (size - width) // 2
        y0 -= (size - height) // 2
        width = height = size
    long_side = max(width, height)
    if min_size > long_side:
        scale = min_size / long_side
        new_w = min_size if width == long_side else max(width, round(width * scale))
        new_h = min_size if height == long_side else max(height, round(height * scale))
        x0 -= (new_w - width) // 2
        y0 -= (new_h - height) // 2
        width, height = new_w, new_h
    return Canvas(x0, y0, width, height)


# The 8-neighbourhood of a run start in the rows above and below: column offsets.
_NEIGHBOUR_DX = (-1, 0, 1)
# Sites per segment of the distance transform's envelope stage (see `_envelope_bits`): the
# scan loops this many times, the merge runs log2(width / this) rounds.
_SEGMENT_SITES = 64


def _runs(solid: Tensor) -> tuple[Tensor, Tensor]:
    """Flat start index and length of every horizontal run of solid pixels, in raster order."""
    starts = solid.clone()
    starts[:, 1:] &= ~solid[:, :-1]
    ends = solid.clone()
    ends[:, :-1] &= ~solid[:, 1:]
    # nonzero syncs once for its size: the number of runs.
    first = starts.reshape(-1).nonzero().squeeze(1)
    last = ends.reshape(-1).nonzero().squeeze(1)
    return first, last - first + 1


def _run_edges(solid: Tensor, first: Tensor) -> tuple[Tensor, Tensor]:
    """Pairs of run ids that touch (8-connectivity), as two equal-length id tensors.

    Two runs in neighbouring rows touch iff the start pixel of one of them has a pixel of the
    other among its three neighbours in that row: the run that starts further right sees the
    other one diagonally or straight above/below its start. So checking the 6 neighbours of every
    run start finds every touching pair, without a per-pixel pass.
    """
    height, width = solid.shape
    y, x = first // width, first % width
    own = torch.arange(first.numel(), device=first.device)
    sources, targets = [], []
    for dy in (-1, 1):
        for dx in _NEIGHBOUR_DX:
            ny, nx = y + dy, x + dx
            inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
            flat = ny.clamp(0, height - 1) * width + nx.clamp(0, width - 1)
            hit = inside & solid.reshape(-1)[flat]
            # The run holding a solid pixel is the last run starting at or before it.
            run = torch.searchsorted(first, flat, right=True) - 1
            sources.append(own)
            targets.append(torch.where(hit, run, own))  # no neighbour: a harmless self-edge
    return torch.cat(sources), torch.cat(targets)


def _components(count: int, u: Tensor, v: Tensor) -> Tensor:
    """Per run, the smallest run id of its connected component (exact union-find).

    Each round hooks every edge's two roots to the smaller one (scatter amin) and halves the
    pointer paths twice. Labels only ever decrease and always name a run of the same component,
    so a round that changes nothing means every edge joins equal labels: each component then
    carries one label, which can only be its smallest run id.
    """
    comp = torch.arange(count, device=u.device)
    while True:
        before = comp
        cu, cv = comp[u], comp[v]
        low = torch.minimum(cu, cv)
        comp = comp.scatter_reduce(0, cu, low, "amin").scatter_reduce(0, cv, low, "amin")
        comp = comp[comp]
        comp = comp[comp]
        if torch.equal(comp, before):  # a scalar sync per round; rounds grow like log(runs)
            return comp


def _dropped_pixels(solid: Tensor, min_region: int) -> Tensor | None:
    """Solid pixels of the parts to drop, or None when every part is kept.

    Parts are the 8-connected components of `solid`; a part is kept when its area is at least
    `min_region` or it is the largest (the first one in raster order among equally large ones,
    as numpy's argmax over scipy's labels picks it).
    """
    first, length = _runs(solid)
    if first.numel() == 0:
        return None
    u, v = _run_edges(solid, first)
    comp = _components(first.numel(), u, v)
    area = torch.zeros_like(length).scatter_add_(0, comp, length)
    keep = area >= min_region
    keep[area.argmax()] = True  # argmax returns the first maximum: the earliest component
    dropped_run = ~keep[comp]
    if not bool(dropped_run.any()):  # scalar sync: most mattes have nothing to drop
        return None
    # Mark the dropped runs' pixels: +1 at their starts, -1 past their ends, running sum.
    count = solid.numel()
    delta = torch.zeros(count + 1, dtype=torch.int32, device=solid.device)
    ones = dropped_run.to(torch.int32)
    delta.scatter_add_(0, first, ones).scatter_add_(0, first + length, -ones)
    return (delta.cumsum(0, dtype=torch.int32)[:count] > 0).reshape(solid.shape)


def _column_nearest(
    solid_t: Tensor, dropped_t: Tensor, inf: int, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Per pixel, dy**2 to its nearest solid pixel in the same image column, and its bit.

    Works on transposed masks (image column x is row x here, so the scans run along memory)
    and returns (width, height) `dtype` costs (`inf` where a column has no solid pixel) and bool
    dropped bits. The nearest solid pixel on each side comes from a running max/min whose key
    carries its dropped bit (key = 2 * y + bit), so no gather is needed. On equal distances
    above and below the upper one wins, as in scipy.
    """
    height = solid_t.shape[1]
    ys = torch.arange(height, device=solid_t.device, dtype=torch.int32)
    key = 2 * ys + dropped_t.to(torch.int32)
    above = torch.where(solid_t, key, -1).cummax(1).values
    below = torch.where(solid_t, key, 2 * height).flip(1).cummin(1).values.flip(1)
    up = torch.where(above >= 0, ys - (above >> 1), height)
    down = torch.where(below < 2 * height, (below >> 1) - ys, height)
    take_up = up <= down
    dy = torch.where(take_up, up, down).to(dtype)
    bit = (torch.where(take_up, above, below) & 1).bool()
    return torch.where(dy < height, dy * dy, inf), bit


def _pop(
    f: Tensor, start: Tensor, prev: Tensor, alive: Tensor, state: list[Tensor], u: int
) -> None:
    """Pop, per lane, every stack top that site u beats where it starts to win.

    state is [top, f(top), start(top)] per lane, updated in place. Works on the popping lanes
    only (fewer every round); the syncs are for their number and for "any left".
    """
    top, top_f, top_start = state
    lanes = top.shape[0]
    active = (top_f - f[u] > 2 * top_start * (top - u)).nonzero().squeeze(1)
    if active.numel() == 0:
        return
    site, fu = top[active], f[u][active]
    while True:
        alive.view(-1)[site * lanes + active] = False
        site = prev.view(-1)[site.clamp(min=0) * lanes + active]
        at = site.clamp(min=0) * lanes + active
        site_f, site_start = f.view(-1)[at], start.view(-1)[at]
        more = (site >= 0) & (site_f - fu > 2 * site_start * (site - u))
        done = active[~more]
        top[done], top_f[done], top_start[done] = site[~more], site_f[~more], site_start[~more]
        if not bool(more.any()):
            return
        active, site, fu = active[more], site[more], fu[more]


def _scan(f: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """Meijster's forward scan, every lane at once: which sites end on each lane's stack.

    f is (count, lanes) with site s costing (x - s)**2 + cost(s) = x**2 - 2 * x * s + f(s) at
    x. Returns (alive, start), both (count, lanes): whether site s is on the final stack (its
    lower envelope), and from which x it wins. Stacks are kept as links from each pushed site
    to the one below it, so a push is a row write. On equal costs the smaller site wins
    (strict pops, floor division), which is scipy's rule. A Python loop over the sites,
    vectors over lanes.
    """
    count = f.shape[0]
    start = torch.zeros_like(f)
    prev = torch.full_like(f, -1)  # the site below on the stack; -1 for the bottom
    alive = torch.zeros(f.shape, dtype=torch.bool, device=f.device)
    alive[0] = True
    state = [torch.zeros_like(f[0]), f[0].clone(), torch.zeros_like(f[0])]
    for u in range(1, count):
        _pop(f, start, prev, alive, state, u)
        top, top_f, top_start = state
        # First x where u beats the top site (from 0 on an emptied stack); pushed if in the row.
        begin = torch.div(f[u] - top_f, 2 * (u - top), rounding_mode="floor") + 1
        begin = torch.where(top < 0, 0, begin)
        write = begin < width
        prev[u], start[u], alive[u] = top, begin, write
        state = [
            torch.where(write, u, top),
            torch.where(write, f[u], top_f),
            torch.where(write, begin, top_start),
        ]
    return alive, start


@dataclass(frozen=True)
class _Segments:
    """Lower envelopes of segments of sites, per lane (segment k: sites [k*n, (k+1)*n)).

    Tensors are (lanes, sites), indexed by site. `f` and `bit` are the sites' own;
    `key` is k * (width + 1) + (the x where the site starts to win) for the sites on their
    segment's envelope, and for the others the key of the next such site, so keys never
    decrease along a row and the last key <= k * (width + 1) + x is that of segment k's site
    winning at x.
    """

    f: Tensor
    bit: Tensor
    key: Tensor
    alive: Tensor
    count: int  # segments, a power of two
    size: int  # sites per segment
    width: int


def _segments(f: Tensor, bit: Tensor, width: int, size: int) -> _Segments:
    """Envelopes of every segment of `size` sites of f (sites, lanes), all scanned at once."""
    sites, lanes = f.shape
    count = sites // size
    # Lane k * lanes + j of the scan is row j's segment k.
    by_segment = f.view(count, size, lanes).permute(1, 0, 2).reshape(size, count * lanes)
    alive, start = _scan(by_segment, width)

    def by_lane(t: Tensor) -> Tensor:  # (size, count * lanes) -> (lanes, sites)
        return t.view(size, count, lanes).permute(2, 1, 0).reshape(lanes, sites)

    alive = by_lane(alive)
    offset = torch.arange(sites, device=f.device, dtype=f.dtype) // size * (width + 1)
    key = torch.where(alive, by_lane(start) + offset, torch.iinfo(f.dtype).max)
    key = key.flip(1).cummin(1).values.flip(1)  # the others take the next one's key
    return _Segments(f.T.contiguous(), bit.T.contiguous(), key, alive, count, size, width)


def _group_values(seg: _Segments, ends: Tensor, x: Tensor, group: int) -> Tensor:
    """Envelope values (less x**2) at x of both groups of each pair: (lanes, pairs, 2).

    Groups of `group` segments are paired (0 with 1, 2 with 3, ...); x is (lanes, pairs). In
    each group, the segment winning at x is the first whose interval end (`ends`) is past x;
    that segment's site winning at x then comes from a search of the keys.
    """
    lanes, pairs = x.shape
    both = x.repeat_interleave(2, dim=1)  # (lanes, groups): the left, then the right group
    first = torch.arange(2 * pairs, device=x.device, dtype=x.dtype) * group
    if group == 1:
        segment = first.expand(lanes, 2 * pairs)
    else:
        group_ends = ends.view(lanes, 2 * pairs, group)
        inside = torch.searchsorted(group_ends, both[..., None], right=True, out_int32=True)
        segment = first + inside[..., 0].clamp(max=group - 1)
    site = torch.searchsorted(seg.key, segment * (seg.width + 1) + both, right=True) - 1
    return (seg.f.gather(1, site) - 2 * both * site).view(lanes, pairs, 2)


def _winning_intervals(seg: _Segments) -> tuple[Tensor, Tensor]:
    """Per lane and segment, the x interval [lo, hi) where that segment's envelope wins.

    Merges neighbouring groups of segments pairwise, log2(segments) rounds. All sites of the
    left group precede those of the right one, so the right group wins exactly on a half-line
    [c, width) (ties go left, to the smaller site); c comes from a binary search on x and
    clips both groups' intervals, which keep tiling [0, width) in segment order.
    """
    lanes = seg.f.shape[0]
    device, dtype = seg.f.device, seg.f.dtype
    lo = torch.zeros((lanes, seg.count), device=device, dtype=dtype)
    hi = torch.full((lanes, seg.count), seg.width, device=device, dtype=dtype)
    group = 1
    while group < seg.count:
        pairs = seg.count // (2 * group)
        left = torch.zeros((lanes, pairs), device=device, dtype=dtype)
        right = torch.full((lanes, pairs), seg.width, device=device, dtype=dtype)
        for _ in range(seg.width.bit_length()):  # c is one of width + 1 values
            mid = torch.div(left + right, 2, rounding_mode="floor")
            probe = mid.clamp(max=seg.width - 1)
            values = _group_values(seg, hi, probe, group)
            wins = values[..., 1] < values[..., 0]
            searching = left < right
            right = torch.where(searching & wins, mid, right)
            left = torch.where(searching & ~wins, mid + 1, left)
        cut = left.repeat_interleave(2 * group, dim=1)
        is_left = (torch.arange(seg.count, device=device) // group) % 2 == 0
        lo = torch.where(is_left, torch.minimum(lo, cut), torch.maximum(lo, cut))
        hi = torch.where(is_left, torch.minimum(hi, cut), torch.maximum(hi, cut))
        group *= 2
    return lo, hi


def _envelope_bits(cost: Tensor, bit: Tensor, inf: int, size: int) -> Tensor:
    """Bit of the site winning min over x' of (x - x')**2 + cost[x'], as (lanes, x) bools.

    cost and bit are (sites, lanes); `inf` marks sites that never win. Exact lower envelope
    of parabolas in two stages: Meijster stacks for segments of `size` sites, all segments
    and lanes scanned together, then a pairwise merge of segments (`_winning_intervals`).
    """
    width, lanes = cost.shape
    size = max(1, min(size, width))
    count = 1 << max(0, math.ceil(math.log2(math.ceil(width / size))))
    sites = torch.arange(count * size, device=cost.device, dtype=cost.dtype)
    padding = count * size - width  # sites past the row, never winning
    f = sites[:, None] ** 2 + torch.cat((cost, cost.new_full((padding, lanes), inf)))
    seg = _segments(f, torch.cat((bit, bit.new_zeros((padding, lanes)))), width, size)
    lo, hi = _winning_intervals(seg)
    # A site on its segment's envelope wins from its start to the next one's, clipped to the
    # segment's interval. Only dropped sites are painted, +1 at the first x, -1 past the last.
    offset = torch.arange(count * size, device=cost.device, dtype=cost.dtype) // size
    offset = offset * (width + 1)
    begin = seg.key - offset
    end = (seg.key.roll(-1, dims=1) - offset).clamp(max=width)
    end[:, -1] = width
    first = torch.maximum(begin.view(lanes, count, size), lo[:, :, None])
    last = torch.minimum(end.view(lanes, count, size), hi[:, :, None])
    paint = (seg.bit == 1) & seg.alive
    lane, segment, site = (paint.view(lanes, count, size) & (first < last)).nonzero(as_tuple=True)
    marks = torch.zeros(lanes * (width + 1), device=cost.device, dtype=torch.int32)
    row = lane * (width + 1)
    ones = torch.ones_like(row, dtype=torch.int32)
    marks.index_add_(0, row + first[lane, segment, site], ones)
    marks.index_add_(0, row + last[lane, segment, site], -ones)
    return marks.view(lanes, width + 1)[:, :width].cumsum(1, dtype=torch.int32) > 0


def _nearest_is_dropped(solid: Tensor, dropped: Tensor) -> Tensor:
    """Whether each pixel's nearest solid pixel is a dropped one, with scipy's tie rule.

    scipy's feature transform (numpy reference) picks, among the nearest solid pixels, the one
    with the smallest column, then the smallest row: the lexicographic minimum of
    (d**2, x, y). This is the same exact separable transform: along columns (upper pixel on
    ties), then a parabola envelope along rows (smaller column on ties), carrying the
    winner's dropped bit. `solid` must have at least one pixel.
    """
    height, width = solid.shape
    inf = height * height + width * width  # > any real d**2
    # The envelope's values stay below 6 * (side + _SEGMENT_SITES)**2 (sites run to about
    # 2 * width + _SEGMENT_SITES): int32 up to about 18k px, int64 beyond.
    small = 6 * (max(height, width) + _SEGMENT_SITES) ** 2 < 2**31
    dtype = torch.int32 if small else torch.int64
    cost, bit = _column_nearest(solid.T.contiguous(), dropped.T.contiguous(), inf, dtype)
    return _envelope_bits(cost, bit.to(dtype), inf, _SEGMENT_SITES)


def remove_specks(alpha: Tensor, min_region: int) -> Tensor:
    """Drop disconnected parts whose solid area is below `min_region` px (float32, same device).

    Parts are the 8-connected components of the solid pixels (alpha >= SOLID_ALPHA); every
    other pixel goes with its nearest solid pixel's part (ties: with a kept part). The largest
    part is always kept so that a small subject never vanishes.
    """
    alpha = alpha.to(torch.float32)
    if min_region <= 0:
        return alpha.clone()
    solid = alpha >= SOLID_ALPHA
    dropped = _dropped_pixels(solid, min_region)
    if dropped is None:
        return alpha.clone()
    return torch.where(_nearest_is_dropped(solid, dropped), 0.0, alpha)


def extract(rgba: Tensor, canvas: Canvas) -> Tensor:
    """The canvas region of an HxWxC image; parts outside the image are transparent."""
    out = torch.zeros(
        (canvas.height, canvas.width, rgba.shape[2]), dtype=torch.float32, device=rgba.device
    )
    height, width = rgba.shape[:2]
    sx0, sy0 = max(0, canvas.x0), max(0, canvas.y0)
    sx1 = min(width, canvas.x0 + canvas.width)
    sy1 = min(height, canvas.y0 + canvas.height)
    if sx0 < sx1 and sy0 < sy1:
        out[sy0 - canvas.y0 : sy1 - canvas.y0, sx0 - canvas.x0 : sx1 - canvas.x0] = rgba[
            sy0:sy1, sx0:sx1
        ]
    return out


def cutout(
    rgba: Tensor,
    padding: float,
    unit: PaddingUnit,
    square: bool,
    min_size: int,
    min_region: int,
) -> Tensor:
    """Subject cropped tight (after speck removal) onto a transparent canvas (HxWx4 float32)."""
    alpha = remove_specks(rgba[..., 3], min_region)
    box = alpha_bbox(alpha)
    if box is None:
        raise NoSubjectError("SimplyPNG: no subject found in the image")
    cleaned = rgba.to(torch.float32).clone()
    cleaned[..., 3] = alpha
    cleaned[..., :3] = torch.where((alpha <= 0)[..., None], 0.0, cleaned[..., :3])
    return extract(cleaned, cutout_canvas(box, padding, unit, square, min_size))
