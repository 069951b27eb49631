"""Zero-shot, Tip-Adapter and TIP-X logits as METHOD.md states them, in float64 by default.

Shapes: f (n, D) query features, F (N, D) support features, W (C, D) text classifier (row c is the
class-c text embedding; METHOD.md's W is its transpose), y (N,) support labels in 0..C-1. All rows
L2-normalised. Reference defects are fixed here: every KL row is computed, the KL rescale uses the
query set's own similarity range, and nothing runs in float16.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from susx_cli.method import METHODS

PROB_FLOOR = 1e-30  # floor on probabilities before the log; softmax of cosines never gets near it


def zero_shot_logits(f: torch.Tensor, W: torch.Tensor, logit_scale: float = 100.0, logit_bias: float = 0.0) -> torch.Tensor:
    """Z = scale * f W^T + bias: (n, C). The bias (SigLIP models learn one) is the same for every class."""
    Z = logit_scale * (f @ W.T)
    return Z + logit_bias if logit_bias else Z


def signatures(x: torch.Tensor, W: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """Inter-modal signatures softmax(x W^T / tau) on raw cosines (no factor 100): (m, C)."""
    return torch.softmax((x @ W.T) / tau, dim=-1)


def kl_matrix(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """K[i, j] = KL(p_i || q_j) for all pairs with one matrix product, never an (n, N, C) tensor: (n, N)."""
    log_p = p.clamp_min(PROB_FLOOR).log()
    log_q = q.clamp_min(PROB_FLOOR).log()
    return (p * log_p).sum(-1, keepdim=True) - p @ log_q.T


def class_sum(M: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """M L for one-hot L = one_hot(y): per-class sums of the columns of M, (n, N) -> (n, C)."""
    out = torch.zeros(M.shape[0], num_classes, dtype=M.dtype, device=M.device)
    return out.index_add_(1, y, M)


def affinity(S: torch.Tensor, beta: float) -> torch.Tensor:
    """Tip-Adapter's A = exp(-beta (1 - S)): (n, N)."""
    return torch.exp(-beta * (1.0 - S))


def min_max(x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[float, float]:
    if mask is None:
        return float(x.min()), float(x.max())
    return float(x[mask].min()), float(x[mask].max())


def rescale(K: torch.Tensor, k_range: tuple[float, float], s_range: tuple[float, float]) -> torch.Tensor:
    """One global min-max of K onto the range of S: K' = (K - min K)/(max K - min K)(max S - min S) + min S."""
    k_min, k_max = k_range
    s_min, s_max = s_range
    span = k_max - k_min
    if span <= 0:  # all divergences equal: the term carries no information
        return torch.full_like(K, s_min)
    return (K - k_min) / span * (s_max - s_min) + s_min


@dataclass
class QueryTerms:
    """Everything about a query set that does not depend on (alpha, beta, gamma).

    Z, kl_term: (n, C); S: (n, N); counts: (n, C) support images per class each query sees
    (differs from the class sizes only in leave-one-out).
    """

    Z: torch.Tensor
    S: torch.Tensor
    kl_term: torch.Tensor
    mask: torch.Tensor | None
    counts: torch.Tensor
    normalize: bool

    def cache(self, y: torch.Tensor, beta: float) -> torch.Tensor:
        """The cache logits A L for one beta (normalised per class if asked): (n, C)."""
        A = affinity(self.S, beta)
        if self.mask is not None:
            A = A * self.mask
        out = class_sum(A, y, self.counts.shape[1])
        return out / self.counts.clamp_min(1) if self.normalize else out


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
    logit_bias: float = 0.0,
) -> QueryTerms:
    """Precompute Z, S and the KL term (-K') L for queries f against support (F, y).

    ``exclude_self`` (leave-one-out, f is F): pair (i, i) is left out of the cache, the KL term and the
    rescale range. ``ranges`` ((min K, max K), (min S, max S)) lets a chunked caller pass the global
    ranges of the whole query set; by default they are this query set's own.
    """
    C = W.shape[0]
    Z = zero_shot_logits(f, W, logit_scale, logit_bias)
    S = f @ F.T
    K = kl_matrix(signatures(f, W, tau), signatures(F, W, tau))
    mask = self_mask(S, self_offset) if exclude_self else None
    if ranges is None:
        ranges = (min_max(K, mask), min_max(S, mask))
    neg = -rescale(K, *ranges)
    if mask is not None:
        neg = neg * mask
    counts = class_sum(torch.ones_like(S) if mask is None else mask.to(S.dtype), y, C)
    kl_term = class_sum(neg, y, C)
    if normalize:
        kl_term = kl_term / counts.clamp_min(1)
    return QueryTerms(Z, S, kl_term, mask, counts, normalize)


def self_mask(S: torch.Tensor, offset: int) -> torch.Tensor:
    """Leave-one-out mask for query rows offset..offset+q-1 of the support set itself: False at (i, offset+i)."""
    mask = torch.ones_like(S, dtype=torch.bool)
    idx = torch.arange(S.shape[0], device=S.device)
    mask[idx, offset + idx] = False
    return mask


def support_ranges(
    f: torch.Tensor, F: torch.Tensor, W: torch.Tensor, tau: float = 0.5, chunk: int = 4096, exclude_self: bool = False
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Global (min, max) of K and of S over all query rows (pairs (i, i) left out with ``exclude_self``),
    computed in chunks of queries."""
    q = signatures(F, W, tau)
    k_lo, k_hi, s_lo, s_hi = float("inf"), float("-inf"), float("inf"), float("-inf")
    for start in range(0, f.shape[0], chunk):
        fc = f[start : start + chunk]
        K = kl_matrix(signatures(fc, W, tau), q)
        S = fc @ F.T
        mask = self_mask(S, start) if exclude_self else None
        (a, b), (c, d) = min_max(K, mask), min_max(S, mask)
        k_lo, k_hi = min(k_lo, a), max(k_hi, b)
        s_lo, s_hi = min(s_lo, c), max(s_hi, d)
    return (k_lo, k_hi), (s_lo, s_hi)


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
    chunk: int = 4096,
    logit_bias: float = 0.0,
) -> torch.Tensor:
    """Logits (n, C) of ``method``: Z; Z + alpha A L; or Z + alpha A L + gamma (-K') L (TIP-X).

    Queries are processed in chunks of rows so memory stays O(chunk * N); the KL rescale uses the
    global range over all queries, as the unchunked formula does.
    """
    if method == "zero-shot":
        return zero_shot_logits(f, W, logit_scale, logit_bias)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}")
    ranges = support_ranges(f, F, W, tau, chunk) if method == "tip-x" else None
    out = []
    for start in range(0, f.shape[0], chunk):
        fc = f[start : start + chunk]
        if method == "tip-adapter":
            Z = zero_shot_logits(fc, W, logit_scale, logit_bias)
            A = class_sum(affinity(fc @ F.T, beta), y, W.shape[0])
            if normalize:
                A = A / torch.bincount(y, minlength=W.shape[0]).clamp_min(1).to(A.dtype)
            out.append(Z + alpha * A)
        else:
            t = query_terms(
                fc, F, y, W, tau=tau, logit_scale=logit_scale, normalize=normalize, ranges=ranges, logit_bias=logit_bias
            )
            out.append(t.Z + alpha * t.cache(y, beta) + gamma * t.kl_term)
    return torch.cat(out)
