"""The leave-one-out and k-fold search as it was before self-exclusion went through the diagonal and
rivals were pruned per group of betas (susx 543b71c: method/search.py and the loo parts of method/tipx.py),
frozen as the reference for tests/method/test_search_loo.py. Not imported by susx itself."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from susx_cli.method import memory
from susx_cli.method.search import Grid, SearchResult, affinity_schedule
from susx_cli.method.tipx import class_sum, kl_to_logs, log_signatures, signatures, zero_shot_logits

EXACT_EVERY = (
    16  # running product for at most 15 betas between exact exponentials (drift bound: affinity_schedule)
)
L2_SHARE = (
    0.75  # CPU: an affinity block's two (rows, columns) float64 buffers fill this share of the L2 cache
)
RANGE_GROUP = 8  # betas whose cache differences are folded into their range at once
MAX_PADDING = 2.0  # class-padded layout only if it is at most this many times wider than the support set


# ----------------------------------------------------------------------------------------------------
# Affinities: exp(-beta (1 - S)) summed per class, for every beta, near one pass per beta.
# ----------------------------------------------------------------------------------------------------


@dataclass
class ClassLayout:
    """Support columns arranged so that a per-class sum is a reduce over contiguous segments.

    Support images sorted by class, every class padded to the largest class size m with empty slots
    (distance +inf, affinity 0): support image j sits in column ``slots[j]`` of a (C * m)-wide row, and
    the per-class sum is a sum over the last axis of a (rows, C, m) view. When padding would more than
    double the width (very unequal classes), ``slots`` is None: original order and index_add_.
    """

    classes: int
    width: int  # m: columns per class, or 0 without padding
    slots: torch.Tensor | None
    labels: torch.Tensor

    @classmethod
    def of(cls, y: torch.Tensor, num_classes: int, max_padding: float = MAX_PADDING) -> ClassLayout:
        sizes = torch.bincount(y, minlength=num_classes)
        m = int(sizes.max()) if y.numel() else 0
        if m == 0 or num_classes * m > max_padding * y.numel():
            return cls(num_classes, 0, None, y)
        order = torch.argsort(y, stable=True)
        first = torch.cumsum(sizes, 0) - sizes  # first sorted position of each class
        rank = torch.arange(y.numel(), device=y.device) - first[y[order]]  # place within its class
        slots = torch.empty_like(y)
        slots[order] = y[order] * m + rank
        return cls(num_classes, m, slots, y)

    @property
    def columns(self) -> int:
        return self.classes * self.width if self.slots is not None else self.labels.numel()

    def distances(self, S: torch.Tensor, mask: torch.Tensor | None, out: torch.Tensor) -> torch.Tensor:
        """x = 1 - S in this layout, +inf at padding and at left-out pairs (S is overwritten): (q, columns)."""
        x = S.neg_().add_(1.0)  # same rounding as 1 - S
        if mask is not None:
            x.masked_fill_(~mask, math.inf)  # exp(-beta inf) = 0: the pair is left out
        if self.slots is None:
            return out.copy_(x)
        return out.fill_(math.inf).index_copy_(1, self.slots, x)

    def class_sums(self, A: torch.Tensor, out: torch.Tensor, ones: torch.Tensor | None) -> torch.Tensor:
        """Per-class sums of the affinities A (rows, columns) into out (rows, C)."""
        if self.slots is None:
            return out.zero_().index_add_(1, self.labels, A)
        # A matrix-vector product with ones is the fastest contiguous segment sum torch has on CPU.
        torch.mv(A.view(-1, self.width), ones, out=out.view(-1))
        return out


@dataclass
class CacheLogits:
    """The cache logits A L of a query chunk for every beta, and the range over the betas of each
    (query, class) difference cache_c - cache_y, computed as counting computes it."""

    values: torch.Tensor  # (B, q, C)
    diff_low: torch.Tensor  # (q, C)
    diff_high: torch.Tensor  # (q, C)


def cache_logits(
    x: torch.Tensor,
    betas: list[float],
    layout: ClassLayout,
    yq: torch.Tensor,
    out: torch.Tensor,
    block: int,
    divide_by: torch.Tensor | None = None,
) -> CacheLogits:
    """Per-class sums of exp(-beta x) for every beta, divided by ``divide_by`` (q, C) if given (per-class
    normalisation): x (q, columns), yq (q,) true classes, out (B, q, C) receives the values.

    Rows go in blocks of ``block``; each block runs through all betas while its buffers stay in cache,
    and its differences to the true class are folded into their range over the betas there and then.
    """
    exact, step = affinity_schedule(betas)
    q, C = x.shape[0], out.shape[2]
    A = torch.empty(min(block, q), x.shape[1], dtype=x.dtype, device=x.device)
    E = torch.empty_like(A) if step is not None else None
    diff = torch.empty(RANGE_GROUP, min(block, q), C, dtype=x.dtype, device=x.device)
    low = torch.full((q, C), math.inf, dtype=x.dtype, device=x.device)
    high = torch.full((q, C), -math.inf, dtype=x.dtype, device=x.device)
    ones = torch.ones(max(layout.width, 1), dtype=x.dtype, device=x.device)
    for r0 in range(0, q, block):
        rows = slice(r0, min(r0 + block, q))
        xb = x[rows]
        a = A[: xb.shape[0]]
        if E is not None:
            e = torch.mul(xb, -step, out=E[: xb.shape[0]]).exp_()
        for k, beta in enumerate(betas):
            if exact[k]:
                torch.mul(xb, -beta, out=a).exp_()  # the bits of exp(-beta * (1 - S))
                if beta <= 0:  # -beta * inf is nan or +inf there: left-out and padding pairs stay 0
                    a.masked_fill_(xb == math.inf, 0.0)
            else:
                a.mul_(e)
            layout.class_sums(a, out[k, rows], ones)
            if k % RANGE_GROUP == RANGE_GROUP - 1 or k == len(betas) - 1:  # a few betas at once: fewer calls
                group = out[k - k % RANGE_GROUP : k + 1, rows]  # (g, b, C), still in cache
                if divide_by is not None:
                    group.div_(divide_by[rows])
                d = torch.sub(
                    group,
                    group.gather(2, yq[None, rows, None].expand(group.shape[0], -1, 1)),
                    out=diff[: group.shape[0], : xb.shape[0]],
                )
                torch.minimum(low[rows], d.amin(0), out=low[rows])
                torch.maximum(high[rows], d.amax(0), out=high[rows])
    return CacheLogits(out, low, high)


# ----------------------------------------------------------------------------------------------------
# Counting correct queries at every (alpha, gamma) for one beta.
# ----------------------------------------------------------------------------------------------------


@dataclass
class Rivals:
    """The (query, class) pairs of a chunk where class c might beat the true class y at some grid point.

    For one beta, c beats y at some corner of the (alpha, gamma) rectangle iff it does at the corner
    maximising (dz + gamma dk) + alpha dc, where dz, dk, dc are c's zero-shot, KL and cache logits minus
    y's. With dc's range over all betas (``CacheLogits``), and because rounded multiplication and addition
    are monotonic, the range's ends bound every beta's maximum exactly, in floating point: a pair whose bound stays
    below 0 (at 0 the index tie rule may count) can never matter, and the rest are the rivals, a few per
    query instead of C. The same bounds from below find queries that a rival beats at every grid point
    of every beta: they are left out altogether. Per-pair tensors (P,); pairs ordered by query row.
    """

    q: int
    rows: torch.Tensor  # query row of each pair
    flat: torch.Tensor  # row * C + c: the pair's index into a flattened (q, C) cache
    flat_true: torch.Tensor  # row * C + y
    dz: torch.Tensor
    dk: torch.Tensor
    top: torch.Tensor  # dz + max(gamma_lo dk, gamma_hi dk)
    bottom: torch.Tensor  # dz + min(gamma_lo dk, gamma_hi dk)
    lower: torch.Tensor  # c < y: a tie goes to the lower index, so c beats y already at equality
    alpha_range: tuple[float, float]
    always_wrong: torch.Tensor  # (q,) queries some rival beats at every grid point: they have no pairs

    @classmethod
    def of(
        cls,
        caches: CacheLogits,
        Z: torch.Tensor,
        kl: torch.Tensor,
        yq: torch.Tensor,
        alphas: list[float],
        gammas: torch.Tensor,
    ) -> Rivals:
        """Z, kl (q, C): zero-shot and KL logits; gammas ascending."""
        q, C = Z.shape
        col = yq[:, None]
        dz, dk = Z - Z.gather(1, col), kl - kl.gather(1, col)
        g_lo, g_hi = dk * gammas[0], dk * gammas[-1]
        top = torch.maximum(g_lo, g_hi).add_(dz)
        a_lo, a_hi = min(alphas), max(alphas)
        d_lo, d_hi = caches.diff_low, caches.diff_high
        ends = [
            d_hi * a_lo,
            d_hi * a_hi,
            d_lo * a_lo,
            d_lo * a_hi,
        ]  # alpha dc over all betas lies between these
        lower = torch.arange(C, device=Z.device)[None, :] < col
        bottom = torch.minimum(g_lo, g_hi).add_(dz)
        # A rival that beats y even at the least favourable corner and beta makes y lose everywhere.
        sure = _beats(
            bottom + torch.minimum(torch.minimum(ends[0], ends[1]), torch.minimum(ends[2], ends[3])), lower
        )
        always_wrong = sure.scatter_(1, col, False).any(1)
        possible = (
            top + torch.maximum(torch.maximum(ends[0], ends[1]), torch.maximum(ends[2], ends[3]))
        ) >= 0
        possible.scatter_(1, col, False)  # y is not its own rival
        possible &= ~always_wrong[:, None]
        rows, c = possible.nonzero(as_tuple=True)
        flat = rows * C + c
        pick = lambda t: t.reshape(-1)[flat]  # noqa: E731
        return cls(
            q,
            rows,
            flat,
            rows * C + yq[rows],
            pick(dz),
            pick(dk),
            pick(top),
            pick(bottom),
            c < yq[rows],
            (a_lo, a_hi),
            always_wrong,
        )


def _beats(d: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
    """Class c beats the true class y under argmax-first-index: d > 0, or d == 0 with c < y."""
    return (d > 0) | ((d == 0) & lower)


def count_correct(
    cache: torch.Tensor, r: Rivals, alphas: torch.Tensor, gammas: torch.Tensor, pair_chunk: int = 4096
) -> torch.Tensor:
    """Correct queries of one chunk at every (alpha, gamma) for one beta: (A, G) int64. cache: (q, C)."""
    A, G = alphas.numel(), gammas.numel()
    dev = cache.device
    flat = cache.reshape(-1)
    dc = flat.index_select(0, r.flat) - flat.index_select(0, r.flat_true)  # index_select: faster than t[idx]
    lo, hi = dc * r.alpha_range[0], dc * r.alpha_range[1]
    # Rounding is monotonic, so these are exactly the largest and smallest of (dz + gamma dk) + alpha dc
    # over the four corners; a rival beats y at some corner iff it beats y at `best`, at all iff at `worst`.
    beats_somewhere = _beats(torch.maximum(lo, hi).add_(r.top), r.lower)
    beats_everywhere = _beats(torch.minimum(lo, hi).add_(r.bottom), r.lower)
    per_row = lambda m: torch.zeros(r.q, dtype=torch.int64, device=dev).index_add_(0, r.rows, m.long()) > 0  # noqa: E731
    right = ~per_row(beats_somewhere) & ~r.always_wrong  # right at every grid point
    wrong = per_row(beats_everywhere)  # wrong at every grid point
    counts = torch.full((A, G), int(right.sum()), dtype=torch.int64, device=dev)
    pairs = (
        (beats_somewhere & ~wrong.index_select(0, r.rows)).nonzero().view(-1)
    )  # rivals of undecided queries
    if pairs.numel() == 0:
        return counts
    # For one alpha, each rival's condition "c does not beat y", dz + dc alpha + dk gamma < 0 when c < y
    # (<= 0 when c > y), holds on a half-line of gamma: gamma <= u (dk > 0) or gamma >= l (dk < 0), a
    # strict bound made non-strict with the next float (gamma < t iff gamma <= nextafter(t, -inf)).
    # Their intersection per (query, alpha) is [max l, min u]: its grid indices come from one binary
    # search each on the sorted gamma grid.
    upper = torch.full((r.q, A), math.inf, dtype=dc.dtype, device=dev)
    lower = torch.full((r.q, A), -math.inf, dtype=dc.dtype, device=dev)
    inf = torch.tensor(math.inf, dtype=dc.dtype, device=dev)
    for s in range(0, pairs.numel(), pair_chunk):
        p = pairs[s : s + pair_chunk]
        pick = lambda t, p=p: t.index_select(0, p)[:, None]  # noqa: E731
        k, strict = pick(r.dk), pick(r.lower)  # strict: c < y must stay strictly below y
        e = torch.addcmul(pick(r.dz), pick(dc), alphas[None, :])  # (p, A): the difference at gamma = 0
        t = -e / torch.where(k == 0, 1.0, k)  # the gamma where the difference is 0
        u = torch.where(k > 0, torch.where(strict, torch.nextafter(t, -inf), t), inf)
        u = torch.where((k == 0) & torch.where(strict, e >= 0, e > 0), -inf, u)  # dk == 0: never or always
        lo_b = torch.where(k < 0, torch.where(strict, torch.nextafter(t, inf), t), -inf)
        index = pick(r.rows).expand_as(u)
        upper.scatter_reduce_(0, index, u, reduce="amin")
        lower.scatter_reduce_(0, index, lo_b, reduce="amax")
    undecided = (~right & ~wrong & ~r.always_wrong).nonzero().view(-1)
    start = torch.searchsorted(gammas, lower.index_select(0, undecided), right=False)  # first gamma >= max l
    stop = torch.searchsorted(
        gammas, upper.index_select(0, undecided), right=True
    )  # one past the last <= min u
    a_idx = torch.arange(A, device=dev).mul_(G + 1).expand_as(start)
    won = (stop > start).view(-1)
    edges = torch.bincount((a_idx + start).view(-1)[won], minlength=A * (G + 1))
    edges -= torch.bincount((a_idx + stop).view(-1)[won], minlength=A * (G + 1))
    return counts + edges.view(A, G + 1).cumsum(1)[:, :G]


# ----------------------------------------------------------------------------------------------------
# The search.
# ----------------------------------------------------------------------------------------------------


def chunk_plan(
    n: int, N: int, C: int, B: int, columns: int, device, budget: int | None = None
) -> tuple[int, int]:
    """(query rows per chunk, rows per affinity block) for this problem and the free memory.

    Beside the (n, C) KL sums, a chunk holds per query row S and K (2 N floats; S alone in the second
    pass), the laid-out distances (columns), the cache logits of every beta (B C) and about a dozen (C)
    rows of margins and scratch.
    """
    budget = memory.working_budget(device) if budget is None else budget
    budget = max(budget // 4, budget - 8 * n * C)
    per_row = 8 * (max(2 * N, N + columns) + B * C + 12 * C)
    rows = memory.chunk_rows(per_row, n, device, budget)
    if getattr(device, "type", str(device)) == "cuda":
        return rows, rows  # a GPU wants big kernels, not cache blocking
    return rows, max(1, min(rows, int(L2_SHARE * memory.l2_cache_bytes()) // (2 * 8 * max(columns, 1))))


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
    chunk: int | None = None,
    block: int | None = None,
    pair_chunk: int = 4096,
    progress=None,
    logit_bias: float = 0.0,
) -> SearchResult:
    """Top-1 accuracy of TIP-X at every grid point; the best point (first in alpha, beta, gamma order).

    Tip-Adapter is the same search with gamma = [0]. ``exclude_self`` runs leave-one-out (f is F,
    yq is y). Features may come in any float dtype: the search runs in float64, where a float32 rounding
    could flip a count. ``chunk`` (query rows at a time) and ``block`` (rows per affinity block) default
    to sizes from free memory and the CPU cache; they change speed and memory, never the result.
    """
    if not (grid.alpha and grid.beta and grid.gamma):
        raise ValueError("the grid has an empty axis")
    f, F, W = (t.to(torch.float64) for t in (f, F, W))
    dev, n, C = f.device, f.shape[0], W.shape[0]
    alphas = torch.tensor(grid.alpha, dtype=torch.float64, device=dev)
    # The gamma sweep needs an ascending grid; counts are put back in the grid's own order at the end.
    gammas, gamma_order = torch.sort(torch.tensor(grid.gamma, dtype=torch.float64, device=dev), stable=True)
    betas = list(grid.beta)
    layout = ClassLayout.of(y, C)
    rows, auto_block = chunk_plan(n, F.shape[0], C, len(betas), layout.columns, dev)
    rows, block = chunk or rows, block or auto_block
    kl = kl_sums(f, F, y, W, tau=tau, rows=rows, exclude_self=exclude_self)  # pass 1: S and K
    q_max = min(rows, n)
    s_buf = torch.empty(q_max, F.shape[0], dtype=torch.float64, device=dev)
    x_buf = torch.empty(q_max, layout.columns, dtype=torch.float64, device=dev)
    caches = torch.empty(len(betas), q_max, C, dtype=torch.float64, device=dev)
    counts = torch.zeros(len(grid.alpha), len(betas), len(grid.gamma), dtype=torch.int64, device=dev)
    for start in range(0, n, rows):  # pass 2: S again, the affinities of every beta, the counts
        chunk_rows = slice(start, start + rows)
        fc, yc = f[chunk_rows], yq[chunk_rows]
        q = fc.shape[0]
        S = torch.matmul(fc, F.T, out=s_buf[:q])
        x = layout.distances(S, self_mask(S, start) if exclude_self else None, x_buf[:q])
        seen = class_counts(y, C, q, start if exclude_self else None)
        kl_term = kl.term(chunk_rows, seen)
        if normalize:
            kl_term.div_(seen.clamp_min(1))
        chunk_caches = cache_logits(
            x, betas, layout, yc, caches[:, :q], block, seen.clamp_min(1) if normalize else None
        )
        rivals = Rivals.of(
            chunk_caches,
            zero_shot_logits(fc, W, logit_scale, logit_bias),
            kl_term,
            yc,
            grid.alpha,
            gammas,
        )
        for b in range(len(betas)):
            counts[:, b, :] += count_correct(chunk_caches.values[b], rivals, alphas, gammas, pair_chunk)
            if progress is not None:
                progress.advance(len(grid.alpha) * len(grid.gamma) * q / n)
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
        total=n,
        counts=counts.cpu(),
    )


# py (the loo parts)


def min_max(x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[float, float]:
    if mask is None:
        return float(x.min()), float(x.max())
    return float(x[mask].min()), float(x[mask].max())


def self_mask(S: torch.Tensor, offset: int) -> torch.Tensor:
    """Leave-one-out mask for query rows offset..offset+q-1 of the support set itself: False at (i, offset+i)."""
    mask = torch.ones_like(S, dtype=torch.bool)
    idx = torch.arange(S.shape[0], device=S.device)
    mask[idx, offset + idx] = False
    return mask


def class_counts(
    y: torch.Tensor, num_classes: int, rows: int, self_offset: int | None = None
) -> torch.Tensor:
    """Support images per class that each of ``rows`` queries sees: the class sizes, less the query's own
    image in leave-one-out (query i is support image self_offset + i): (rows, C) float64."""
    sizes = torch.bincount(y, minlength=num_classes).to(torch.float64).expand(rows, num_classes)
    if self_offset is None:
        return sizes
    counts = sizes.clone()
    idx = torch.arange(rows, device=y.device)
    counts[idx, y[self_offset + idx]] -= 1
    return counts


@dataclass
class KLSums:
    """What the KL term needs from the (n, N) divergences, gathered in one pass over the queries.

    sums: (n, C) per-class sums of K over the pairs each query sees; k_range, s_range: global (min, max)
    of K and of S over those pairs (the rescale uses the whole query set's ranges, as the unchunked
    formula does).
    """

    sums: torch.Tensor
    k_range: tuple[float, float]
    s_range: tuple[float, float]

    def term(self, rows: slice, counts: torch.Tensor) -> torch.Tensor:
        """The KL logits (-K') L of these query rows: (q, C). The rescale K' = a K + b is affine, so its
        per-class sum is a (sum of K) + b (count): no second (q, N) pass. counts: (q, C)."""
        (k_min, k_max), (s_min, s_max) = self.k_range, self.s_range
        span = k_max - k_min
        a = (
            (s_max - s_min) / span if span > 0 else 0.0
        )  # all divergences equal: the term carries no information
        b = s_min - k_min * a
        return (self.sums[rows] * a).add_(counts * b).neg_()


def kl_sums(
    f: torch.Tensor,
    F: torch.Tensor,
    y: torch.Tensor,
    W: torch.Tensor,
    *,
    tau: float = 0.5,
    rows: int = 4096,
    exclude_self: bool = False,
    log_q: torch.Tensor | None = None,
) -> KLSums:
    """The first pass of TIP-X over queries f, ``rows`` at a time (two (rows, N) tensors at once).

    ``exclude_self`` (leave-one-out, f is F): pair (i, i) is left out of the sums and the ranges.
    ``log_q``: the support's ``log_signatures``, when the caller has them.
    """
    log_q = log_signatures(F, W, tau) if log_q is None else log_q
    n, C = f.shape[0], W.shape[0]
    sums = torch.empty(n, C, dtype=f.dtype, device=f.device)
    k_buf, s_buf = (torch.empty(min(rows, n), F.shape[0], dtype=f.dtype, device=f.device) for _ in range(2))
    k_lo, k_hi, s_lo, s_hi = math.inf, -math.inf, math.inf, -math.inf
    for start in range(0, n, rows):
        fc = f[start : start + rows]
        K = kl_to_logs(signatures(fc, W, tau), log_q, out=k_buf[: fc.shape[0]])
        S = torch.matmul(fc, F.T, out=s_buf[: fc.shape[0]])
        mask = self_mask(S, start) if exclude_self else None
        (a, b), (c, d) = min_max(K, mask), min_max(S, mask)
        k_lo, k_hi, s_lo, s_hi = min(k_lo, a), max(k_hi, b), min(s_lo, c), max(s_hi, d)
        if mask is not None:
            K.masked_fill_(~mask, 0.0)
        sums[start : start + rows] = class_sum(K, y, C)
    return KLSums(sums, (k_lo, k_hi), (s_lo, s_hi))
