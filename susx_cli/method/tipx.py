"""Zero-shot, Tip-Adapter and TIP-X logits as docs/METHOD.md states them, in float64 by default.

Shapes: f (n, D) query features, F (N, D) support features, W (C, D) text classifier (row c is the
class-c text embedding, as in docs/METHOD.md), y (N,) support labels in 0..C-1. All rows
L2-normalised. Reference defects are fixed here: every KL row is computed, the KL rescale uses the
query set's own similarity range, and nothing runs in float16.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

PROB_FLOOR = 1e-30  # floor on probabilities before the log; softmax of cosines never gets near it


def zero_shot_logits(
    f: torch.Tensor, W: torch.Tensor, logit_scale: float = 100.0, logit_bias: float = 0.0
) -> torch.Tensor:
    """Z = scale * f W^T + bias: (n, C). The bias (SigLIP models learn one) is the same for every class."""
    Z = logit_scale * (f @ W.T)
    return Z + logit_bias if logit_bias else Z


def signatures(x: torch.Tensor, W: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """Inter-modal signatures softmax(x W^T / tau) on raw cosines (no factor 100): (m, C)."""
    return torch.softmax((x @ W.T) / tau, dim=-1)


def log_signatures(x: torch.Tensor, W: torch.Tensor, tau: float = 0.5) -> torch.Tensor:
    """log of the signatures, floored: (m, C). The support's are computed once and reused by every chunk."""
    return signatures(x, W, tau).clamp_min(PROB_FLOOR).log()


def kl_matrix(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """K[i, j] = KL(p_i || q_j) for all pairs with one matrix product, never an (n, N, C) tensor: (n, N)."""
    return kl_to_logs(p, q.clamp_min(PROB_FLOOR).log())


def kl_to_logs(p: torch.Tensor, log_q: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """K = rowsum(p log p) 1^T - p log_q^T, built in the product's own (n, N) buffer (``out`` if given)."""
    entropy_term = (p * p.clamp_min(PROB_FLOOR).log()).sum(-1, keepdim=True)
    return torch.matmul(p, log_q.T, out=out).neg_().add_(entropy_term)


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


def min_max(x: torch.Tensor, self_offset: int | None = None) -> tuple[float, float]:
    """(min, max) of x (q, N), leaving out pairs (i, self_offset + i) when given (leave-one-out: query i is
    support image self_offset + i). The diagonal is set to +-inf for the reductions and put back, so no
    (q, N) mask or copy is made and the result is the min and max of exactly the other values."""
    if self_offset is None:
        return float(x.min()), float(x.max())
    own = x.diagonal(self_offset)
    kept = own.clone()
    own.fill_(math.inf)
    lo = float(x.min())
    own.fill_(-math.inf)
    hi = float(x.max())
    own.copy_(kept)
    return lo, hi


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

    def rescale(self) -> tuple[float, float]:
        """(a, b) of the rescale K' = a K + b onto the range of S."""
        (k_min, k_max), (s_min, s_max) = self.k_range, self.s_range
        span = k_max - k_min
        a = (s_max - s_min) / span if span > 0 else 0.0  # all divergences equal: the term carries nothing
        return a, s_min - k_min * a

    def term(self, rows: slice, counts: torch.Tensor) -> torch.Tensor:
        """The KL logits (-K') L of these query rows: (q, C). The rescale K' = a K + b is affine, so its
        per-class sum is a (sum of K) + b (count): no second (q, N) pass. counts: (q, C)."""
        a, b = self.rescale()
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
        offset = start if exclude_self else None
        (a, b), (c, d) = min_max(K, offset), min_max(S, offset)
        k_lo, k_hi, s_lo, s_hi = min(k_lo, a), max(k_hi, b), min(s_lo, c), max(s_hi, d)
        if exclude_self:
            K.diagonal(start).zero_()  # the query's own divergence is left out of its class sum
        sums[start : start + rows] = class_sum(K, y, C)
    return KLSums(sums, (k_lo, k_hi), (s_lo, s_hi))


def logits_rows_per_chunk(n: int, N: int, C: int, device) -> int:
    """Query rows per chunk of ``logits``: beside the (n, C) logits and KL sums, two (rows, N) tensors and a
    few (rows, C) ones fit the working budget."""
    from susx_cli.method import memory

    budget = memory.working_budget(device)
    return memory.chunk_rows(8 * (2 * N + 6 * C), n, device, max(budget // 4, budget - 16 * n * C))


def logits(
    f: torch.Tensor,
    W: torch.Tensor,
    F: torch.Tensor,
    y: torch.Tensor,
    *,
    alpha: float = 0.0,
    beta: float = 1.0,
    gamma: float | None = None,
    tau: float = 0.5,
    logit_scale: float = 100.0,
    normalize: bool = False,
    chunk: int | None = None,
    logit_bias: float = 0.0,
) -> torch.Tensor:
    """Logits (n, C): Tip-Adapter's Z + alpha A L, or with ``gamma`` TIP-X's Z + alpha A L + gamma (-K') L.

    Queries are processed in chunks of rows (by default sized from free memory), so memory stays
    O(chunk * N) beside the (n, C) results.
    """
    n, C = f.shape[0], W.shape[0]
    chunk = chunk or logits_rows_per_chunk(n, F.shape[0], C, f.device)
    counts = class_counts(y, C, 1)
    kl = kl_sums(f, F, y, W, tau=tau, rows=chunk) if gamma is not None else None
    out = torch.empty(n, C, dtype=f.dtype, device=f.device)
    s_buf = torch.empty(min(chunk, n), F.shape[0], dtype=f.dtype, device=f.device)
    for start in range(0, n, chunk):
        rows = slice(start, start + chunk)
        fc = f[rows]
        cache = class_sum(affinity_(torch.matmul(fc, F.T, out=s_buf[: fc.shape[0]]), beta), y, C)
        if normalize:
            cache = cache / counts.clamp_min(1)
        out[rows] = zero_shot_logits(fc, W, logit_scale, logit_bias) + alpha * cache
        if kl is not None and gamma is not None:
            term = kl.term(rows, counts)
            out[rows] += gamma * (term / counts.clamp_min(1) if normalize else term)
    return out
