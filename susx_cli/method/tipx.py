"""Zero-shot, Tip-Adapter and TIP-X logits as METHOD.md states them, in float64 by default.

Shapes: f (n, D) query features, F (N, D) support features, W (C, D) text classifier (row c is the
class-c text embedding; METHOD.md's W is its transpose), y (N,) support labels in 0..C-1. All rows
L2-normalised. Reference defects are fixed here: every KL row is computed, the KL rescale uses the
query set's own similarity range, and nothing runs in float16.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

PROB_FLOOR = 1e-30  # floor on probabilities before the log; softmax of cosines never gets near it
METHODS = ("zero-shot", "tip-adapter", "tip-x")


def zero_shot_logits(f: torch.Tensor, W: torch.Tensor, logit_scale: float = 100.0) -> torch.Tensor:
    """Z = scale * f W^T: (n, C)."""
    return logit_scale * (f @ W.T)


def signatures(x: torch.Tensor, W: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """Inter-modal signatures softmax(x W^T / tau) on raw cosines (no factor 100): (m, C)."""
    return torch.softmax((x @ W.T) / tau, dim=-1)


def log_signatures(x: torch.Tensor, W: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """log of the signatures, floored: (m, C). The support's are computed once and reused by every chunk."""
    return signatures(x, W, tau).clamp_min(PROB_FLOOR).log()


def kl_matrix(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """K[i, j] = KL(p_i || q_j) for all pairs with one matrix product, never an (n, N, C) tensor: (n, N)."""
    return kl_to_logs(p, q.clamp_min(PROB_FLOOR).log())


def kl_to_logs(p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """K = rowsum(p log p) 1^T - p log_q^T, built in the product's own (n, N) buffer."""
    entropy_term = (p * p.clamp_min(PROB_FLOOR).log()).sum(-1, keepdim=True)
    return (p @ log_q.T).neg_().add_(entropy_term)


def class_sum(M: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """M L for one-hot L = one_hot(y): per-class sums of the columns of M, (n, N) -> (n, C)."""
    out = torch.zeros(M.shape[0], num_classes, dtype=M.dtype, device=M.device)
    return out.index_add_(1, y, M)


def affinity(S: torch.Tensor, beta: float) -> torch.Tensor:
    """Tip-Adapter's A = exp(-beta (1 - S)): (n, N)."""
    return torch.exp(-beta * (1.0 - S))


def affinity_(S: torch.Tensor, beta: float) -> torch.Tensor:
    """``affinity`` computed in S's own buffer (S is overwritten), with the same rounding: (n, N)."""
    return S.neg_().add_(1.0).mul_(-beta).exp_()


def min_max(x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[float, float]:
    if mask is None:
        return float(x.min()), float(x.max())
    return float(x[mask].min()), float(x[mask].max())


def rescale_(K: torch.Tensor, k_range: tuple[float, float], s_range: tuple[float, float]) -> torch.Tensor:
    """One global min-max of K onto the range of S, in K's buffer:
    K' = (K - min K)/(max K - min K)(max S - min S) + min S."""
    k_min, k_max = k_range
    s_min, s_max = s_range
    span = k_max - k_min
    if span <= 0:  # all divergences equal: the term carries no information
        return K.fill_(s_min)
    return K.sub_(k_min).div_(span).mul_(s_max - s_min).add_(s_min)


@dataclass
class QueryTerms:
    """Everything about a query set that does not depend on (alpha, beta, gamma).

    Z, kl_term: (n, C); S: (n, N); mask: (n, N) bool, False at left-out pairs, or None; counts: (n, C)
    support images per class each query sees (differs from the class sizes only in leave-one-out).
    """

    Z: torch.Tensor
    S: torch.Tensor
    kl_term: torch.Tensor
    mask: torch.Tensor | None
    counts: torch.Tensor


def query_terms(
    f: torch.Tensor,
    F: torch.Tensor,
    y: torch.Tensor,
    W: torch.Tensor,
    *,
    tau: float = 0.5,
    logit_scale: float = 100.0,
    normalize: bool = False,
    exclude_self: bool = False,
    self_offset: int = 0,
    ranges: tuple[tuple[float, float], tuple[float, float]] | None = None,
    log_q: torch.Tensor | None = None,
) -> QueryTerms:
    """Precompute Z, S and the KL term (-K') L for queries f against support (F, y).

    ``exclude_self`` (leave-one-out, f is F): pair (i, i) is left out of the cache, the KL term and the
    rescale range. ``ranges`` ((min K, max K), (min S, max S)) lets a chunked caller pass the global
    ranges of the whole query set; by default they are this query set's own. ``log_q``: the support's
    ``log_signatures``, when the caller has them. Peak memory: two (n, N) tensors.
    """
    C = W.shape[0]
    log_q = log_signatures(F, W, tau) if log_q is None else log_q
    Z = zero_shot_logits(f, W, logit_scale)
    S = f @ F.T
    K = kl_to_logs(signatures(f, W, tau), log_q)
    mask = self_mask(S, self_offset) if exclude_self else None
    if ranges is None:
        ranges = (min_max(K, mask), min_max(S, mask))
    neg = rescale_(K, *ranges).neg_()
    if mask is not None:
        neg.masked_fill_(~mask, 0.0)
    counts = torch.bincount(y, minlength=C).to(S.dtype).expand(f.shape[0], C)
    if exclude_self:  # query i does not see its own support image
        counts = counts.clone()
        rows = torch.arange(f.shape[0], device=S.device)
        counts[rows, y[self_offset + rows]] -= 1
    kl_term = class_sum(neg, y, C)
    del neg, K
    if normalize:
        kl_term = kl_term / counts.clamp_min(1)
    return QueryTerms(Z, S, kl_term, mask, counts)


def self_mask(S: torch.Tensor, offset: int) -> torch.Tensor:
    """Leave-one-out mask for query rows offset..offset+q-1 of the support set itself: False at (i, offset+i)."""
    mask = torch.ones_like(S, dtype=torch.bool)
    idx = torch.arange(S.shape[0], device=S.device)
    mask[idx, offset + idx] = False
    return mask


def support_ranges(
    f: torch.Tensor,
    F: torch.Tensor,
    W: torch.Tensor,
    tau: float = 0.5,
    chunk: int = 4096,
    exclude_self: bool = False,
    log_q: torch.Tensor | None = None,
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Global (min, max) of K and of S over all query rows (pairs (i, i) left out with ``exclude_self``),
    computed in chunks of queries."""
    log_q = log_signatures(F, W, tau) if log_q is None else log_q
    k_lo, k_hi, s_lo, s_hi = float("inf"), float("-inf"), float("inf"), float("-inf")
    for start in range(0, f.shape[0], chunk):
        fc = f[start : start + chunk]
        K = kl_to_logs(signatures(fc, W, tau), log_q)
        S = fc @ F.T
        mask = self_mask(S, start) if exclude_self else None
        (a, b), (c, d) = min_max(K, mask), min_max(S, mask)
        k_lo, k_hi = min(k_lo, a), max(k_hi, b)
        s_lo, s_hi = min(s_lo, c), max(s_hi, d)
        del K, S, mask
    return (k_lo, k_hi), (s_lo, s_hi)


def logits_rows_per_chunk(n: int, N: int, C: int, device) -> int:
    """Query rows per chunk of ``logits``: two (rows, N) tensors and a few (rows, C) ones fit the budget."""
    from susx_cli.method import memory

    return memory.chunk_rows(8 * (2 * N + 6 * C), n, device)


def logits(
    method: str,
    f: torch.Tensor,
    W: torch.Tensor,
    F: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    *,
    alpha: float = 0.0,
    beta: float = 1.0,
    gamma: float = 0.0,
    tau: float = 0.5,
    logit_scale: float = 100.0,
    normalize: bool = False,
    chunk: int | None = None,
) -> torch.Tensor:
    """Logits (n, C) of ``method``: Z; Z + alpha A L; or Z + alpha A L + gamma (-K') L (TIP-X).

    Queries are processed in chunks of rows (by default sized from free memory), so memory stays
    O(chunk * N) beside the (n, C) result; the KL rescale uses the global range over all queries, as the
    unchunked formula does.
    """
    if method == "zero-shot":
        return zero_shot_logits(f, W, logit_scale)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    n, C = f.shape[0], W.shape[0]
    chunk = chunk or logits_rows_per_chunk(n, F.shape[0], C, f.device)
    log_q = log_signatures(F, W, tau) if method == "tip-x" else None
    ranges = support_ranges(f, F, W, tau, chunk, log_q=log_q) if method == "tip-x" else None
    sizes = torch.bincount(y, minlength=C).to(f.dtype)
    out = torch.empty(n, C, dtype=f.dtype, device=f.device)
    for start in range(0, n, chunk):
        fc = f[start : start + chunk]
        if method == "tip-adapter":
            cache = class_sum(affinity_(fc @ F.T, beta), y, C)
            if normalize:
                cache = cache / sizes.clamp_min(1)
            out[start : start + chunk] = zero_shot_logits(fc, W, logit_scale) + alpha * cache
        else:
            t = query_terms(fc, F, y, W, tau=tau, logit_scale=logit_scale, normalize=normalize, ranges=ranges, log_q=log_q)
            cache = class_sum(affinity_(t.S, beta), y, C)
            if normalize:
                cache = cache / t.counts.clamp_min(1)
            out[start : start + chunk] = t.Z + alpha * cache + gamma * t.kl_term
    return out
