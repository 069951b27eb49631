"""Exhaustive (alpha, beta, gamma) grid search, vectorised, with the same choice as the reference loop.

For a fixed beta every logit difference ``logit_c - logit_y`` is linear in (alpha, gamma). So a query
whose true class wins at the four corners of the (alpha, gamma) rectangle wins at every grid point,
a query that one class beats at all four corners loses at every grid point, and only the rest, against
only the classes that win at some corner, need more work: per alpha, the gammas where the true class
wins form one interval, found by binary search on the sorted gamma grid. Counts of correct queries are
integers summed over query chunks, so the result does not depend on the chunk size, and ties keep the
first grid point in alpha-major, then beta, then gamma order, as the reference's strict '>' does.

What remains is about one pass over the (n, N) affinities per beta, arranged to run near that floor
(one exp and one per-class sum per beta): the support set is laid out class by class, so a per-class sum
is a reduce over contiguous segments; the affinities of consecutive betas are a running product (an
exact exponential every few betas); rows go in blocks that stay in the CPU's L2 cache across all betas;
large buffers are allocated once per search; chunks of queries are sized from free memory. The corner
test then runs only on each query's rivals (``Rivals``), and the KL term takes one (n, N) pass
(``tipx.kl_sums``). Everything is computed and counted in float64.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import torch

from susx_cli.method import memory, tipx

EXACT_EVERY = (
    16  # running product for at most 15 betas between exact exponentials (drift bound: affinity_schedule)
)
L2_SHARE = (
    0.75  # CPU: an affinity block's two (rows, columns) float64 buffers fill this share of the L2 cache
)
RANGE_GROUP = 8  # betas whose cache differences are folded into their range at once
MAX_PADDING = 2.0  # class-padded layout only if it is at most this many times wider than the support set


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


# ----------------------------------------------------------------------------------------------------
# Affinities: exp(-beta (1 - S)) summed per class, for every beta, near one pass per beta.
# ----------------------------------------------------------------------------------------------------


def affinity_schedule(betas: list[float], exact_every: int = EXACT_EVERY) -> tuple[list[bool], float | None]:
    """Which betas get an exact exponential (True) and which the running product, and the product's step.

    On a uniform ascending grid exp(-b_k x) = exp(-b_{k-1} x) exp(-h x), h = b_1 - b_0: one multiplication
    instead of an exponential. Drift bound, for x = 1 - S in [0, 2] and u = 2^-53: after j <= exact_every - 1
    products since the last exact value, the relative error against exp(-b_k x) exceeds the exact
    exponential's own (argument rounding x b_k u plus one exp rounding) by at most
    j (u_exp + u) + x |b_k - b_k0 - j h|, where u_exp <= 2u is exp's accuracy and the last term is the grid's
    departure from uniform spacing in floating point (a few ulps of b_k). tests/method/test_search_scale.py checks
    this bound against extended-precision exponentials on the reference grid.
    """
    steps = [b2 - b1 for b1, b2 in zip(betas, betas[1:], strict=False)]
    uniform = len(steps) > 1 and steps[0] > 0 and all(math.isclose(s, steps[0], rel_tol=1e-9) for s in steps)
    if not uniform:
        return [True] * len(betas), None
    return [k % exact_every == 0 for k in range(len(betas))], steps[0]


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

    def distances(self, S: torch.Tensor, self_offset: int | None, out: torch.Tensor) -> torch.Tensor:
        """x = 1 - S in this layout, +inf at padding and, in leave-one-out (query i is support image
        self_offset + i), at each query's own image (S is overwritten): (q, columns)."""
        x = S.neg_().add_(1.0)  # same rounding as 1 - S
        if self_offset is not None:
            x.diagonal(self_offset).fill_(math.inf)  # exp(-beta inf) = 0: the pair is left out
        if self.slots is None:
            return out.copy_(x)
        return out.fill_(math.inf).index_copy_(1, self.slots, x)

    def class_sums(self, A: torch.Tensor, out: torch.Tensor, ones: torch.Tensor) -> torch.Tensor:
        """Per-class sums of the affinities A (rows, columns) into out (rows, C)."""
        if self.slots is None:
            return out.zero_().index_add_(1, self.labels, A)
        # A matrix-vector product with ones is the fastest contiguous segment sum torch has on CPU.
        torch.mv(A.view(-1, self.width), ones, out=out.view(-1))
        return out


@dataclass
class CacheLogits:
    """The cache logits A L of a query chunk for every beta, and the range of each (query, class)
    difference cache_c - cache_y over each group of RANGE_GROUP consecutive betas, computed as counting
    computes it."""

    values: torch.Tensor  # (B, q, C)
    group_low: torch.Tensor  # (ceil(B / RANGE_GROUP), q, C)
    group_high: torch.Tensor  # (ceil(B / RANGE_GROUP), q, C)

    @property
    def diff_low(self) -> torch.Tensor:
        """The range's low end over all betas: (q, C)."""
        return self.group_low.amin(0)

    @property
    def diff_high(self) -> torch.Tensor:
        return self.group_high.amax(0)


def beta_groups(betas: int) -> list[range]:
    """The betas (indices) of each range group, in order."""
    return [range(g, min(g + RANGE_GROUP, betas)) for g in range(0, betas, RANGE_GROUP)]


def cache_logits(
    x: torch.Tensor,
    betas: list[float],
    layout: ClassLayout,
    yq: torch.Tensor,
    out: torch.Tensor,
    block: int,
    divide_by: torch.Tensor | None = None,
    ranges: torch.Tensor | None = None,
) -> CacheLogits:
    """Per-class sums of exp(-beta x) for every beta, divided by ``divide_by`` (q, C) if given (per-class
    normalisation): x (q, columns), yq (q,) true classes, out (B, q, C) receives the values, ``ranges``
    (2, groups, q, C) the per-group ranges (allocated here if not given).

    Rows go in blocks of ``block``; each block runs through all betas while its buffers stay in cache,
    and its differences to the true class are folded into their range over each group of betas there
    and then.
    """
    exact, step = affinity_schedule(betas)
    q, C = x.shape[0], out.shape[2]
    A = torch.empty(min(block, q), x.shape[1], dtype=x.dtype, device=x.device)
    E = torch.empty_like(A) if step is not None else None
    diff = torch.empty(RANGE_GROUP, min(block, q), C, dtype=x.dtype, device=x.device)
    if ranges is None:
        ranges = torch.empty(2, len(beta_groups(len(betas))), q, C, dtype=x.dtype, device=x.device)
    low, high = ranges[0], ranges[1]
    ones = torch.ones(max(layout.width, 1), dtype=x.dtype, device=x.device)
    for r0 in range(0, q, block):
        rows = slice(r0, min(r0 + block, q))
        xb = x[rows]
        a = A[: xb.shape[0]]
        if E is not None and step is not None:
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
                torch.amin(d, 0, out=low[k // RANGE_GROUP, rows])
                torch.amax(d, 0, out=high[k // RANGE_GROUP, rows])
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
    of every beta: they are left out altogether. ``within`` narrows the pairs to those that can matter
    for one group of betas, by the same bound on that group's range.

    Per-pair tensors (P,), pairs ordered by ``kind`` (``BOUND_KINDS``: the sign of dk and the tie rule,
    which fix the form of the pair's gamma bound for every beta and alpha), then by query row.
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
    kind: torch.Tensor  # index into BOUND_KINDS, ascending
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
        pair_dk, strict = dk[rows, c], c < yq[rows]
        kind = bound_kinds(pair_dk, strict)
        order = torch.argsort(kind, stable=True)
        rows, c = rows[order], c[order]
        flat = rows * C + c
        pick = lambda t: t.reshape(-1)[flat]  # noqa: E731
        return cls(
            q,
            rows,
            flat,
            rows * C + yq[rows],
            pick(dz),
            pair_dk[order],
            pick(top),
            pick(bottom),
            strict[order],
            kind[order],
            (a_lo, a_hi),
            always_wrong,
        )

    def within(self, low: torch.Tensor, high: torch.Tensor) -> Rivals:
        """The pairs that can beat y at some corner for some beta whose cache differences lie in
        [low, high] (q, C): the bound of ``of`` on a narrower range, so the pairs left out would not
        count at those betas; order kept."""
        a_lo, a_hi = self.alpha_range
        # alpha d is monotonic in d for each alpha, so only the ends of [low, high] that alpha's sign picks
        # can reach furthest: one end when every alpha has the same sign.
        ends = ([high] if a_hi >= 0 else []) + ([low] if a_lo < 0 else [])
        picked = [end.reshape(-1).index_select(0, self.flat) for end in ends]
        reach = functools.reduce(torch.maximum, [torch.maximum(d * a_lo, d * a_hi) for d in picked])
        keep = (reach.add_(self.top) >= 0).nonzero().view(-1)
        pick = lambda t: t.index_select(0, keep)  # noqa: E731
        return Rivals(
            self.q,
            pick(self.rows),
            pick(self.flat),
            pick(self.flat_true),
            pick(self.dz),
            pick(self.dk),
            pick(self.top),
            pick(self.bottom),
            pick(self.lower),
            pick(self.kind),
            self.alpha_range,
            self.always_wrong,
        )


# A pair's condition "c does not beat y" at one (beta, alpha), dz + dc alpha + dk gamma < 0 when c < y
# ("strict": a tie goes to the lower index), <= 0 when c > y, holds on a half-line of gamma whose form
# depends only on the sign of dk and on strictness: gamma <= u (dk > 0) or gamma >= l (dk < 0), a strict
# bound made non-strict with the next float (gamma < t iff gamma <= nextafter(t, -inf)); with dk == 0 it
# holds for no gamma or for all. Each kind: (bound, strict); "none" (dk is nan) never binds.
BOUND_KINDS = (
    ("upper", True),
    ("upper", False),
    ("lower", True),
    ("lower", False),
    ("all-or-none", True),
    ("all-or-none", False),
    ("none", False),
)


def bound_kinds(dk: torch.Tensor, strict: torch.Tensor) -> torch.Tensor:
    """Each pair's index into BOUND_KINDS: (P,) int64."""
    sign = torch.where(dk > 0, 0, torch.where(dk < 0, 2, torch.where(dk == 0, 4, 6)))
    return sign + ((~strict) & (sign < 6)).to(torch.int64)


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

    def per_row(m: torch.Tensor) -> torch.Tensor:
        """Whether any of a query's (query, rival) pairs holds ``m``: (q,) bool."""
        return torch.zeros(r.q, dtype=torch.int64, device=dev).index_add_(0, r.rows, m.to(torch.int64)) > 0

    right = ~per_row(beats_somewhere) & ~r.always_wrong  # right at every grid point
    wrong = per_row(beats_everywhere)  # wrong at every grid point
    counts = torch.full((A, G), int(right.sum()), dtype=torch.int64, device=dev)
    pairs = (
        (beats_somewhere & ~wrong.index_select(0, r.rows)).nonzero().view(-1)
    )  # rivals of undecided queries
    if pairs.numel() == 0:
        return counts
    # Per (query, alpha), the pairs' half-lines of gamma (BOUND_KINDS) intersect in [max l, min u]: its grid
    # indices come from one binary search each on the sorted gamma grid.
    upper = torch.full((r.q, A), math.inf, dtype=dc.dtype, device=dev)
    lower = torch.full((r.q, A), -math.inf, dtype=dc.dtype, device=dev)
    inf = torch.tensor(math.inf, dtype=dc.dtype, device=dev)
    kinds = torch.arange(len(BOUND_KINDS) + 1, device=dev)
    ends = torch.searchsorted(r.kind.index_select(0, pairs), kinds).tolist()  # pairs are sorted by kind
    for kind, (bound, strict) in enumerate(BOUND_KINDS):
        if bound == "none":
            continue
        for s in range(ends[kind], ends[kind + 1], pair_chunk):
            p = pairs[s : min(s + pair_chunk, ends[kind + 1])]
            pick = lambda t, p=p: t.index_select(0, p)[:, None]  # noqa: E731
            e = torch.addcmul(pick(r.dz), pick(dc), alphas[None, :])  # (p, A): the difference at gamma = 0
            index = pick(r.rows).expand_as(e)
            if bound == "all-or-none":
                never = e >= 0 if strict else e > 0
                upper.scatter_reduce_(0, index, torch.where(never, -inf, inf), reduce="amin")
                continue
            t = e.div_(pick(r.dk).neg_())  # the gamma where the difference is 0: e / -dk is (-e) / dk exactly
            if bound == "upper":
                upper.scatter_reduce_(0, index, torch.nextafter(t, -inf) if strict else t, reduce="amin")
            else:
                lower.scatter_reduce_(0, index, torch.nextafter(t, inf) if strict else t, reduce="amax")
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
    pass), the laid-out distances (columns), the cache logits of every beta (B C), their two ranges per
    group of betas and about a dozen (C) rows of margins and scratch.
    """
    budget = memory.working_budget(device) if budget is None else budget
    budget = max(budget // 4, budget - 8 * n * C)
    per_row = 8 * (max(2 * N, N + columns) + (B + 2 * len(beta_groups(B))) * C + 12 * C)
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
    kl = tipx.kl_sums(f, F, y, W, tau=tau, rows=rows, exclude_self=exclude_self)  # pass 1: S and K
    q_max = min(rows, n)
    s_buf = torch.empty(q_max, F.shape[0], dtype=torch.float64, device=dev)
    x_buf = torch.empty(q_max, layout.columns, dtype=torch.float64, device=dev)
    caches = torch.empty(len(betas), q_max, C, dtype=torch.float64, device=dev)
    ranges = torch.empty(2, len(beta_groups(len(betas))), q_max, C, dtype=torch.float64, device=dev)
    counts = torch.zeros(len(grid.alpha), len(betas), len(grid.gamma), dtype=torch.int64, device=dev)
    for start in range(0, n, rows):  # pass 2: S again, the affinities of every beta, the counts
        chunk_rows = slice(start, start + rows)
        fc, yc = f[chunk_rows], yq[chunk_rows]
        q = fc.shape[0]
        S = torch.matmul(fc, F.T, out=s_buf[:q])
        own = start if exclude_self else None  # query i is support image start + i
        x = layout.distances(S, own, x_buf[:q])
        seen = tipx.class_counts(y, C, q, own)
        kl_term = kl.term(chunk_rows, seen)
        if normalize:
            kl_term.div_(seen.clamp_min(1))
        chunk_caches = cache_logits(
            x,
            betas,
            layout,
            yc,
            caches[:, :q],
            block,
            seen.clamp_min(1) if normalize else None,
            ranges[:, :, :q],
        )
        rivals = Rivals.of(
            chunk_caches,
            tipx.zero_shot_logits(fc, W, logit_scale, logit_bias),
            kl_term,
            yc,
            grid.alpha,
            gammas,
        )
        for g, group in enumerate(beta_groups(len(betas))):
            # Most rivals matter only at some betas (in leave-one-out, where the query's own class has
            # one image less, nearly every class beats it at small betas and large alphas): narrow them
            # to this group's range once, not at every beta.
            narrowed = rivals.within(chunk_caches.group_low[g], chunk_caches.group_high[g])
            for b in group:
                counts[:, b, :] += count_correct(chunk_caches.values[b], narrowed, alphas, gammas, pair_chunk)
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
