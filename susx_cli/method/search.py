"""Exhaustive (alpha, beta, gamma) grid search, vectorised, with the same choice as the reference loop.

For a fixed beta every logit difference ``logit_c - logit_y`` is linear in (alpha, gamma). So a query
whose true class wins at the four corners of the (alpha, gamma) rectangle wins at every grid point,
a query that one class beats at all four corners loses at every grid point, and only the rest, against
only the classes that win at some corner, need more work: per alpha, the gammas where the true class
wins form one interval, found by binary search on the sorted gamma grid. Counts of correct queries are
integers summed over query chunks, so the result does not depend on the chunk size, and ties keep the
first grid point in alpha-major, then beta, then gamma order, as the reference's strict '>' does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from susx_cli.method import tipx


def reference_grid(start: float, stop: float, steps: int) -> list[float]:
    """The reference's grid: start + i (stop - start) / steps for i in 0..steps-1 (stop excluded)."""
    return [start + i * (stop - start) / steps for i in range(steps)]


REFERENCE = {
    "alpha": reference_grid(0.1, 50.0, 20),
    "beta": reference_grid(1.0, 50.0, 200),
    "gamma": reference_grid(0.1, 30.0, 50),
}


@dataclass
class Grid:
    alpha: list[float]
    beta: list[float]
    gamma: list[float]

    @property
    def size(self) -> int:
        return len(self.alpha) * len(self.beta) * len(self.gamma)


@dataclass
class SearchResult:
    alpha: float
    beta: float
    gamma: float
    correct: int
    total: int
    counts: torch.Tensor = field(repr=False)  # (A, B, G) int64: correct queries per grid point

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def _beats(d: torch.Tensor, cls: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Class c beats the true class y under argmax-first-index: d > 0, or d == 0 with c < y."""
    return (d > 0) | ((d == 0) & (cls < true))


def _chunk_counts(
    Z: torch.Tensor,
    cache: torch.Tensor,
    K: torch.Tensor,
    yq: torch.Tensor,
    alphas: torch.Tensor,
    gammas: torch.Tensor,
    pair_chunk: int,
) -> torch.Tensor:
    """Correct queries of one chunk at every (alpha, gamma) for one beta: (A, G) int64."""
    q, C = Z.shape
    A, G = alphas.numel(), gammas.numel()
    cls = torch.arange(C, device=Z.device)
    rows = torch.arange(q, device=Z.device)
    a_c = torch.stack([alphas.min(), alphas.max()])
    g_c = torch.stack([gammas.min(), gammas.max()])
    corners = Z[None, None] + a_c[:, None, None, None] * cache[None, None] + g_c[None, :, None, None] * K[None, None]
    corners = corners.reshape(4, q, C)
    d = corners - corners[:, rows, yq][..., None]
    beats = _beats(d, cls[None, None, :], yq[None, :, None])  # (4, q, C)
    right_everywhere = ~beats.any(-1).any(0)
    wrong_everywhere = beats.all(0).any(-1)
    undecided = ~(right_everywhere | wrong_everywhere)
    counts = torch.full((A, G), int(right_everywhere.sum()), dtype=torch.int64, device=Z.device)
    if not bool(undecided.any()):
        return counts
    qi, ci = (beats.any(0) & undecided[:, None]).nonzero(as_tuple=True)
    yi = yq[qi]
    dz = Z[qi, ci] - Z[qi, yi]
    dc = cache[qi, ci] - cache[qi, yi]
    dk = K[qi, ci] - K[qi, yi]
    # For one alpha, each candidate's condition "c does not beat y", dz + dc alpha + dk gamma < 0 (<= 0 when
    # c > y), holds on a half-line of gamma. Their intersection is an interval of the sorted gamma grid,
    # found by binary search, so a query costs O(A log G) instead of a sweep over all A x G points.
    strict = ci < yi  # a tie goes to the lower index: then c beats y already at equality
    start = torch.zeros(q, A, dtype=torch.int64, device=Z.device)  # first winning gamma index
    stop = torch.full((q, A), G, dtype=torch.int64, device=Z.device)  # one past the last
    for s in range(0, qi.numel(), pair_chunk):
        sl = slice(s, s + pair_chunk)
        e = dz[sl, None] + dc[sl, None] * alphas[None, :]  # (p, A): the difference at gamma = 0
        k = dk[sl, None].expand_as(e)
        st = strict[sl, None].expand_as(e)
        t = -e / torch.where(k == 0, torch.ones_like(k), k)  # the gamma where the difference is 0
        flat = t.reshape(-1).contiguous()
        left = torch.searchsorted(gammas, flat, right=False).reshape(t.shape)  # gammas < t
        right = torch.searchsorted(gammas, flat, right=True).reshape(t.shape)  # gammas <= t
        # dk > 0: gamma < t (strict) or <= t; dk < 0: gamma > t (strict) or >= t; dk == 0: all or none.
        hi = torch.where(k > 0, torch.where(st, left, right), torch.full_like(left, G))
        lo = torch.where(k < 0, torch.where(st, right, left), torch.zeros_like(left))
        never = (k == 0) & torch.where(st, e >= 0, e > 0)
        hi = torch.where(never, torch.zeros_like(hi), hi)
        index = qi[sl, None].expand_as(hi)
        start.scatter_reduce_(0, index, lo, reduce="amax")
        stop.scatter_reduce_(0, index, hi, reduce="amin")
    rows_u = undecided.nonzero(as_tuple=True)[0]
    lo, hi = start[rows_u], stop[rows_u]  # (u, A)
    won = hi > lo
    a_idx = torch.arange(A, device=Z.device).expand_as(lo)
    diff = torch.zeros(A, G + 1, dtype=torch.int64, device=Z.device)
    ones = torch.ones_like(lo[won])
    diff.index_put_((a_idx[won], lo[won]), ones, accumulate=True)
    diff.index_put_((a_idx[won], hi[won]), -ones, accumulate=True)
    return counts + diff.cumsum(1)[:, :G]


def grid_search(
    f: torch.Tensor,
    yq: torch.Tensor,
    F: torch.Tensor,
    y: torch.Tensor,
    W: torch.Tensor,
    grid: Grid,
    *,
    tau: float = 0.5,
    logit_scale: float = 100.0,
    normalize: bool = False,
    exclude_self: bool = False,
    chunk: int = 2048,
    pair_chunk: int = 4096,
    progress=None,
    logit_bias: float = 0.0,
) -> SearchResult:
    """Top-1 accuracy of TIP-X at every grid point; the best point (first in alpha, beta, gamma order).

    Tip-Adapter is the same search with gamma = [0]. ``exclude_self`` runs leave-one-out (f is F,
    yq is y). Z and the KL term are computed once per query chunk, the cache once per beta.
    """
    if not (grid.alpha and grid.beta and grid.gamma):
        raise ValueError("the grid has an empty axis")
    dtype, dev = f.dtype, f.device
    alphas = torch.tensor(grid.alpha, dtype=dtype, device=dev)
    # The gamma sweep needs an ascending grid; counts are put back in the grid's own order at the end.
    gammas, gamma_order = torch.sort(torch.tensor(grid.gamma, dtype=dtype, device=dev), stable=True)
    betas = list(grid.beta)
    counts = torch.zeros(len(grid.alpha), len(betas), len(grid.gamma), dtype=torch.int64, device=dev)
    ranges = None
    if f.shape[0] > chunk:
        ranges = tipx.support_ranges(f, F, W, tau, chunk, exclude_self=exclude_self)
    # On a uniform beta grid, exp(-b_k (1 - S)) = exp(-b_{k-1} (1 - S)) * exp(-step (1 - S)).
    steps = [b2 - b1 for b1, b2 in zip(betas, betas[1:], strict=False)]
    uniform = len(steps) > 1 and all(math.isclose(s, steps[0], rel_tol=1e-9) for s in steps)
    for start in range(0, f.shape[0], chunk):
        fc, yc = f[start : start + chunk], yq[start : start + chunk]
        t = tipx.query_terms(
            fc, F, y, W, tau=tau, logit_scale=logit_scale, normalize=normalize, exclude_self=exclude_self,
            self_offset=start, ranges=ranges, logit_bias=logit_bias
        )
        one_minus_s = 1.0 - t.S
        if t.mask is not None:
            one_minus_s = one_minus_s.masked_fill(~t.mask, float("inf"))  # exp(-inf) = 0: pair left out
        A = None
        step_factor = torch.exp(-steps[0] * one_minus_s) if uniform else None
        for b, beta in enumerate(betas):
            if A is None or not uniform or b % 8 == 0:
                A = torch.exp(-beta * one_minus_s)  # exact now and then, so rounding cannot build up
            else:
                A = A * step_factor
            cache = tipx.class_sum(A, y, W.shape[0])
            if normalize:
                cache = cache / t.counts.clamp_min(1)
            counts[:, b, :] += _chunk_counts(t.Z, cache, t.kl_term, yc, alphas, gammas, pair_chunk)
            if progress is not None:
                progress.advance(len(grid.alpha) * len(grid.gamma) * fc.shape[0] / f.shape[0])
    unsorted = torch.empty_like(counts)
    unsorted[:, :, gamma_order] = counts
    counts = unsorted
    flat = int(torch.argmax(counts.flatten()))  # argmax returns the first maximum: the tie rule
    a, rest = divmod(flat, len(betas) * len(grid.gamma))
    b, g = divmod(rest, len(grid.gamma))
    return SearchResult(
        alpha=grid.alpha[a],
        beta=betas[b],
        gamma=grid.gamma[g],
        correct=int(counts.flatten()[flat]),
        total=int(f.shape[0]),
        counts=counts.cpu(),
    )
