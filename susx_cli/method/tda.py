"""TDA (test-time dynamic adapter) over precomputed features, as docs/METHOD.md states it.

Shapes: queries (n, D) and text_weights W (C, D), unit rows; order (n,) maps a stream position to a
query row. Every function returns its (n, C) result in file order (row i belongs to query row i).

Admission depends only on the fixed zero-shot quantities, so the blocked implementation replays it
first (a scalar pass recording each admitted entry's row, class, t_in and t_out) and then evaluates
the cache terms for blocks of stream positions with one GEMM each. ``tda_logits_sequential`` is the
literal per-query loop over preallocated caches that the blocked one is tested against.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import torch

from susx_cli.errors import SusxError

LOGIT_SCALE = 100.0
BLOCK = 512  # stream positions per phase-(ii) block; results never depend on it
ZERO_SHOT_CHUNK = 4096


@dataclass(frozen=True)
class TdaParams:
    """TDA's hyperparameters; only (alpha_pos, beta_pos) vary between the paper's configs."""

    alpha_pos: float = 2.0
    beta_pos: float = 5.0
    alpha_neg: float = 0.117
    beta_neg: float = 1.0
    k_pos: int = 3
    k_neg: int = 2
    band: tuple[float, float] = (0.2, 0.5)  # open interval on H / log2(C) for the negative cache
    mask: tuple[float, float] = (0.03, 1.0)  # open interval on a cached probability
    scale: float = LOGIT_SCALE


# The paper's (alpha_pos, beta_pos) per dataset, tuned on test data; ImageNet's (2, 5) is the default.
PAPER_ALPHA_BETA: dict[str, tuple[float, float]] = {
    "imagenet": (2.0, 5.0),
    "imagenet-a": (2.0, 5.0),
    "imagenet-v2": (1.0, 8.0),
    "imagenet-r": (1.0, 8.0),
    "imagenet-sketch": (2.363, 7.45),
    "caltech101": (5.0, 5.0),
    "dtd": (2.0, 3.0),
    "eurosat": (4.0, 8.0),
    "fgvc_aircraft": (2.0, 2.0),
    "food101": (1.0, 1.0),
    "flowers102": (1.0, 5.0),
    "oxford_pets": (2.0, 7.0),
    "stanford_cars": (1.0, 7.0),
    "sun397": (2.0, 3.0),
    "ucf101": (3.0, 8.0),
}


def stream_order(n: int, seed: int) -> torch.Tensor:
    """The default stream of n queries: ``torch.randperm(n, generator=torch.Generator().manual_seed(seed))``
    on the CPU, (n,) int64, stream position -> query row. Same seed, same order on every machine."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def paper_params(dataset: str) -> TdaParams:
    """The ``paper`` preset: the paper's (alpha_pos, beta_pos) for ``dataset``, other constants fixed."""
    if dataset not in PAPER_ALPHA_BETA:
        raise SusxError(
            f"TDA has no paper configuration for dataset '{dataset}'",
            hint=f"use one of {', '.join(PAPER_ALPHA_BETA)}, or ImageNet's alpha 2, beta 5",
        )
    alpha, beta = PAPER_ALPHA_BETA[dataset]
    return TdaParams(alpha_pos=alpha, beta_pos=beta)


@dataclass
class ZeroShotStats:
    """Per query row: logits (n, C) = scale W f, entropy (n,) in nats, pred (n,) = argmax logits."""

    logits: torch.Tensor
    entropy: torch.Tensor
    pred: torch.Tensor


def zero_shot_stats(
    queries: torch.Tensor, text_weights: torch.Tensor, scale: float = LOGIT_SCALE, entropy_eps: float = 0.0
) -> ZeroShotStats:
    """Zero-shot quantities for all queries, one chunked GEMM. The entropy is -sum p ln p (exact at
    p = 0 through log_softmax) or, with ``entropy_eps``, DMN's -sum p ln(p + eps)."""
    n = queries.shape[0]
    logits = torch.empty(n, text_weights.shape[0], dtype=queries.dtype)
    entropy = torch.empty(n, dtype=queries.dtype)
    for start in range(0, n, ZERO_SHOT_CHUNK):
        rows = slice(start, start + ZERO_SHOT_CHUNK)
        chunk = torch.matmul(queries[rows], text_weights.T, out=logits[rows]).mul_(scale)
        entropy[rows] = entropy_of(chunk, entropy_eps)
    return ZeroShotStats(logits, entropy, logits.argmax(-1))


def entropy_of(logits: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """(m, C) logits -> (m,) entropy of their softmax in nats; see ``zero_shot_stats``."""
    probs = logits.softmax(-1)
    if eps:
        return -(probs * (probs + eps).log()).sum(-1)
    return -(probs * logits.log_softmax(-1)).sum(-1)


def in_band(entropy: torch.Tensor, num_classes: int, band: tuple[float, float]) -> torch.Tensor:
    """Which queries may enter the negative cache: band[0] < H / log2(C) < band[1], strict (n,) bool.
    Nats over a base-2 maximum is the official normalisation, kept on purpose."""
    normalised = entropy / math.log2(num_classes)
    return (normalised > band[0]) & (normalised < band[1])


def negative_mask(probs: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    """m = 1 where bounds[0] < pi < bounds[1] (strict), as probs' dtype: (m, C)."""
    return ((probs > bounds[0]) & (probs < bounds[1])).to(probs.dtype)


# ---------------------------------------------------------------- admission


@dataclass
class Admissions:
    """Every entry ever admitted to a cache, in admission order (E entries): query ``row``, class
    ``cls``, ``t_in`` (its own stream position) and ``t_out`` (position of the query that evicted it,
    else n). The entry is in the cache for positions t_in <= t < t_out."""

    row: torch.Tensor
    cls: torch.Tensor
    t_in: torch.Tensor
    t_out: torch.Tensor
    length: int  # n, the stream's length

    def alive(self, start: int, stop: int) -> torch.Tensor:
        """Indices of entries present at some position in [start, stop)."""
        return torch.nonzero((self.t_in < stop) & (self.t_out > start)).flatten()

    def final(self) -> torch.Tensor:
        """Indices of the entries in the cache after the whole stream."""
        return torch.nonzero(self.t_out == self.length).flatten()


def replay_admission(
    order: torch.Tensor,
    pred: torch.Tensor,
    score: torch.Tensor,
    capacity: int,
    eligible: torch.Tensor | None = None,
) -> Admissions:
    """The admission rule over the stream: a class with a free slot takes the entry; a full class
    replaces its worst entry (highest score, most recent among equal highest) only if the new score is
    strictly lower. Each class keeps a heap keyed on (-score, -t_in), so its top is the worst entry."""
    n = len(order)
    rows = order.tolist()
    classes, scores = pred.tolist(), score.tolist()
    offered = [True] * n if eligible is None else eligible.tolist()
    heaps: dict[int, list[tuple[float, int, int]]] = {}
    row_of: list[int] = []
    cls_of: list[int] = []
    t_in: list[int] = []
    t_out: list[int] = []
    for t, r in enumerate(rows):
        if not offered[r]:
            continue
        c, h = classes[r], scores[r]
        heap = heaps.setdefault(c, [])
        entry = (-h, -t, len(row_of))
        if len(heap) < capacity:
            heapq.heappush(heap, entry)
        elif h < -heap[0][0]:
            t_out[heapq.heapreplace(heap, entry)[2]] = t
        else:
            continue
        row_of.append(r)
        cls_of.append(c)
        t_in.append(t)
        t_out.append(n)
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    return Admissions(as_long(row_of), as_long(cls_of), as_long(t_in), as_long(t_out), n)


def tda_admissions(
    stats: ZeroShotStats, order: torch.Tensor, params: TdaParams
) -> tuple[Admissions, Admissions]:
    """Phase (i) of the blocked design: the positive and the negative cache's admissions."""
    num_classes = stats.logits.shape[1]
    positive = replay_admission(order, stats.pred, stats.entropy, params.k_pos)
    eligible = in_band(stats.entropy, num_classes, params.band)
    negative = replay_admission(order, stats.pred, stats.entropy, params.k_neg, eligible)
    return positive, negative


# ---------------------------------------------------------------- blocked evaluation


def _cache_affinity(
    block_queries: torch.Tensor,
    queries: torch.Tensor,
    entries: Admissions,
    alive: torch.Tensor,
    beta: float,
    positions: torch.Tensor | None,
) -> torch.Tensor:
    """A_beta(q_j . f) for the block's queries against the alive entries' keys, times
    1[t_in <= t < t_out] when ``positions`` (the block's stream positions) are given: (B, E)."""
    sims = block_queries @ queries[entries.row[alive]].T
    weights = sims.sub_(1.0).mul_(beta).exp_()
    if positions is not None:
        t = positions[:, None]
        weights.mul_((entries.t_in[alive] <= t) & (t < entries.t_out[alive]))
    return weights


def _tda_terms(
    block_queries: torch.Tensor,
    queries: torch.Tensor,
    logits: torch.Tensor,
    caches: tuple[Admissions, Admissions],
    span: tuple[int, int],
    params: TdaParams,
    timed: bool,
) -> torch.Tensor:
    """alpha+ (positive cache term) - alpha- (negative cache term) for one block: (B, C).
    ``span`` is the block's stream positions [start, stop); ``timed=False`` reads the final caches."""
    positive, negative = caches
    start, stop = span
    num_classes = logits.shape[1]
    positions = torch.arange(start, stop) if timed else None
    pick = (lambda e: e.alive(start, stop)) if timed else (lambda e: e.final())
    alive = pick(positive)
    weights = _cache_affinity(block_queries, queries, positive, alive, params.beta_pos, positions)
    pos = torch.zeros(len(block_queries), num_classes, dtype=logits.dtype)
    pos.index_add_(1, positive.cls[alive], weights)
    alive = pick(negative)
    weights = _cache_affinity(block_queries, queries, negative, alive, params.beta_neg, positions)
    masks = negative_mask(logits[negative.row[alive]].softmax(-1), params.mask)
    return params.alpha_pos * pos - params.alpha_neg * (weights @ masks)


def add_tda_terms(
    base_logits: torch.Tensor,
    queries: torch.Tensor,
    text_weights: torch.Tensor,
    order: torch.Tensor,
    params: TdaParams,
    block: int = BLOCK,
) -> torch.Tensor:
    """base_logits + TDA's positive and negative cache terms, read online in stream order: (n, C).

    With zero-shot base logits this is TDA; with a static cache method's logits (TIP-X) it is the
    combined method. Admission always uses the fixed zero-shot quantities, never ``base_logits``."""
    check_stream(queries, text_weights, order, base_logits)
    stats = zero_shot_stats(queries, text_weights, params.scale)
    return _online(base_logits, queries, stats, order, params, block)


def tda_logits(
    queries: torch.Tensor,
    text_weights: torch.Tensor,
    order: torch.Tensor,
    params: TdaParams = TdaParams(),
    block: int = BLOCK,
) -> torch.Tensor:
    """TDA's logits z (n, C) in file order for the stream ``order``, by the two-phase blocked design."""
    check_stream(queries, text_weights, order)
    stats = zero_shot_stats(queries, text_weights, params.scale)
    return _online(stats.logits, queries, stats, order, params, block)


def _online(
    base_logits: torch.Tensor,
    queries: torch.Tensor,
    stats: ZeroShotStats,
    order: torch.Tensor,
    params: TdaParams,
    block: int,
) -> torch.Tensor:
    """Phase (i) then phase (ii) over blocks of ``block`` stream positions: (n, C) in file order."""
    caches = tda_admissions(stats, order, params)
    out = torch.empty_like(base_logits)
    for start in range(0, len(order), block):
        rows = order[start : start + block]
        span = (start, start + len(rows))
        terms = _tda_terms(queries[rows], queries, stats.logits, caches, span, params, timed=True)
        out[rows] = base_logits[rows] + terms
    return out


def tda_transductive_logits(
    queries: torch.Tensor,
    text_weights: torch.Tensor,
    params: TdaParams = TdaParams(),
    base_logits: torch.Tensor | None = None,
    block: int = BLOCK,
) -> torch.Tensor:
    """TDA-transductive: both caches filled over the whole set, then every query read against the final
    caches (order-free, since the final caches are): (n, C)."""
    order = torch.arange(queries.shape[0])
    check_stream(queries, text_weights, order, base_logits)
    stats = zero_shot_stats(queries, text_weights, params.scale)
    caches = tda_admissions(stats, order, params)
    out = (stats.logits if base_logits is None else base_logits).clone()
    for start in range(0, len(order), block):
        rows = slice(start, start + block)
        span = (start, min(start + block, len(order)))
        out[rows] += _tda_terms(queries[rows], queries, stats.logits, caches, span, params, timed=False)
    return out


@dataclass
class TdaCaches:
    """The final caches as query rows per class, ascending, -1 for an empty slot: positive (C, k+),
    negative (C, k-)."""

    positive: torch.Tensor
    negative: torch.Tensor


def cache_rows(entries: Admissions, num_classes: int, capacity: int) -> torch.Tensor:
    """The final entries' query rows per class, ascending, padded with -1: (C, capacity)."""
    table = torch.full((num_classes, capacity), -1, dtype=torch.long)
    final = entries.final()
    for c, r in sorted(zip(entries.cls[final].tolist(), entries.row[final].tolist(), strict=True)):
        slot = int((table[c] >= 0).sum())
        table[c, slot] = r
    return table


def tda_caches(
    queries: torch.Tensor, text_weights: torch.Tensor, order: torch.Tensor, params: TdaParams = TdaParams()
) -> TdaCaches:
    """TDA's caches after the whole stream ``order``."""
    check_stream(queries, text_weights, order)
    stats = zero_shot_stats(queries, text_weights, params.scale)
    positive, negative = tda_admissions(stats, order, params)
    C = text_weights.shape[0]
    return TdaCaches(cache_rows(positive, C, params.k_pos), cache_rows(negative, C, params.k_neg))


def check_stream(
    queries: torch.Tensor,
    text_weights: torch.Tensor,
    order: torch.Tensor,
    base_logits: torch.Tensor | None = None,
) -> None:
    n, C = queries.shape[0], text_weights.shape[0]
    if queries.shape[1] != text_weights.shape[1]:
        raise SusxError(
            f"query features have {queries.shape[1]} dimensions, the text classifier {text_weights.shape[1]}",
            hint="embed the queries and the class names with the same model",
        )
    if order.shape != (n,) or not torch.equal(torch.sort(order).values, torch.arange(n)):
        raise SusxError(
            "the stream order is not a permutation of the query rows",
            hint=f"pass each of the {n} query rows exactly once",
        )
    if base_logits is not None and base_logits.shape != (n, C):
        raise SusxError(
            f"base logits have shape {tuple(base_logits.shape)}, expected ({n}, {C})",
            hint="compute them for the same queries and classes",
        )


# ---------------------------------------------------------------- sequential reference


def offer(scores: torch.Tensor, arrivals: torch.Tensor, count: int, score: float) -> int | None:
    """The slot of one class's cache that a new entry with ``score`` takes, or None: a free slot if
    ``count`` < capacity, else the worst slot (highest score, most recent among equal highest) when
    ``score`` is strictly lower. scores, arrivals: (capacity,)."""
    if count < len(scores):
        return count
    worst = max(range(len(scores)), key=lambda j: (float(scores[j]), int(arrivals[j])))
    return worst if score < float(scores[worst]) else None


def tda_logits_sequential(
    queries: torch.Tensor,
    text_weights: torch.Tensor,
    order: torch.Tensor,
    params: TdaParams = TdaParams(),
    base_logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """The per-query loop over preallocated caches (keys [C,k,D], scores [C,k], arrivals [C,k] with -1
    for empty, and the negative entries' masks [C,k-,C], taken from their probabilities on admission):
    write, then read, one query at a time. (n, C) in file order."""
    check_stream(queries, text_weights, order, base_logits)
    C, D = text_weights.shape
    dtype = queries.dtype
    caches = {
        sign: (torch.zeros(C, k, D, dtype=dtype), torch.zeros(C, k, dtype=dtype), torch.full((C, k), -1))
        for sign, k in ((1, params.k_pos), (-1, params.k_neg))
    }
    cached_masks = torch.zeros(C, params.k_neg, C, dtype=dtype)
    out = torch.empty(len(order), C, dtype=dtype)
    for t, r in enumerate(order.tolist()):
        f = queries[r]
        logits = params.scale * (text_weights @ f)
        probs = logits.softmax(-1)
        entropy = float(entropy_of(logits[None])[0])
        c = int(logits.argmax())
        band = in_band(torch.tensor([entropy], dtype=queries.dtype), C, params.band)
        for sign in (1, -1) if bool(band) else (1,):
            keys, scores, arrivals = caches[sign]
            slot = offer(scores[c], arrivals[c], int((arrivals[c] >= 0).sum()), entropy)
            if slot is not None:
                keys[c, slot], scores[c, slot], arrivals[c, slot] = f, entropy, t
                if sign < 0:
                    cached_masks[c, slot] = negative_mask(probs, params.mask)
        keys, _, arrivals = caches[1]
        pos = torch.exp(-params.beta_pos * (1 - keys @ f)).mul(arrivals >= 0).sum(-1)
        keys, _, arrivals = caches[-1]
        weights = torch.exp(-params.beta_neg * (1 - keys @ f)).mul(arrivals >= 0)
        neg = torch.einsum("ck,ckj->j", weights, cached_masks)
        base = logits if base_logits is None else base_logits[r]
        out[r] = base + (params.alpha_pos * pos - params.alpha_neg * neg)
    return out
