"""Which support images hurt: for every support image j, the change in the leave-one-out accuracy of its
class when j is left out of the cache (docs/METHOD.md, "Support-image influence"). Pure tensor code.

Shapes: F (N, D) support features, y (N,) labels in 0..C-1, W (C, D) text classifier, rows L2-normalised.

Leave-one-out scores each support image i against the cache of the others: logits_i = Z_i + P_i / n_i with
P_i[c] = sum over k != i of class c of t(i, k), t(i, k) = alpha A[i, k] - gamma K'[i, k] (gamma = 0 for
Tip-Adapter) and n_i[c] the images of class c that i sees (1 unless ``normalize``). Leaving j out of the
cache changes only the entries of P and n in column y_j, by t(i, j) and 1, so for a query i of class y_j
only its true-class logit moves while its rivals stay put: every (i, j) pair of a class is decided from one
(N, C) pass and one gather, never N recomputations. The KL rescale keeps the full support set's ranges
(leaving one image out barely moves a global min or max, and keeping them makes each deletion local).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from susx_cli.method import tipx


@dataclass(frozen=True)
class Influence:
    """delta (N,): LOO accuracy of class y_j over its other images without j minus with j (positive: j
    hurts; 0 for an image alone in its class); correct (N,) bool: each image's LOO verdict with every
    other image in the cache; peers (N,): how many images each delta is measured on (class size - 1)."""

    delta: torch.Tensor
    correct: torch.Tensor
    peers: torch.Tensor


def class_members(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Indices of each class's images, ascending, padded with -1: (C, largest class)."""
    sizes = torch.bincount(y, minlength=num_classes)
    order = torch.argsort(y, stable=True)
    starts = torch.cumsum(sizes, 0) - sizes
    slot = torch.arange(y.shape[0], device=y.device) - starts[y[order]]
    members = torch.full((num_classes, int(sizes.max())), -1, dtype=torch.long, device=y.device)
    members[y[order], slot] = order
    return members


def verdicts(true: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Right under argmax with exact ties to the lower class index: the true logit beats every rival of a
    lower index and at least ties every rival of a higher one. Shapes broadcast."""
    return (true > low) & (true >= high)


def support_influence(
    F: torch.Tensor,
    y: torch.Tensor,
    W: torch.Tensor,
    *,
    alpha: float,
    beta: float,
    gamma: float | None = None,
    tau: float = 0.5,
    logit_scale: float = 100.0,
    logit_bias: float = 0.0,
    normalize: bool = False,
    rows: int = 1024,
) -> Influence:
    """Every support image's influence on its class's leave-one-out accuracy, ``rows`` queries at a time
    (a few (rows, N) tensors). ``gamma`` None: Tip-Adapter; else TIP-X with the KL term."""
    N, C = F.shape[0], W.shape[0]
    kl = tipx.kl_sums(F, F, y, W, tau=tau, rows=rows, exclude_self=True) if gamma is not None else None
    log_q = tipx.log_signatures(F, W, tau) if kl is not None else None
    a, b = kl.rescale() if kl is not None else (0.0, 0.0)
    members = class_members(y, C)
    sizes = torch.bincount(y, minlength=C).to(F.dtype)
    delta = torch.zeros(N, dtype=F.dtype, device=F.device)
    correct = torch.empty(N, dtype=torch.bool, device=F.device)
    classes = torch.arange(C, device=F.device)
    for start in range(0, N, rows):
        idx = torch.arange(start, min(start + rows, N), device=F.device)
        t = alpha * tipx.affinity(F[idx] @ F.T, beta)  # (r, N): each pair's cache contribution t(i, k)
        if gamma is not None and log_q is not None:  # TIP-X: the KL term, rescaled as the full set's
            K = tipx.kl_to_logs(tipx.signatures(F[idx], W, tau), log_q)
            t -= gamma * (a * K + b)
        t[torch.arange(idx.shape[0]), idx] = 0.0  # the query's own image is never in its cache
        P = tipx.class_sum(t, y, C)
        Z = tipx.zero_shot_logits(F[idx], W, logit_scale, logit_bias)
        own = y[idx]
        scale = tipx.class_counts(y, C, idx.shape[0], self_offset=start).clamp_min(1) if normalize else 1.0
        logits = Z + P / scale
        true = logits.gather(1, own[:, None])  # (r, 1)
        low = logits.masked_fill(classes[None] >= own[:, None], -torch.inf).amax(1, keepdim=True)
        high = logits.masked_fill(classes[None] <= own[:, None], -torch.inf).amax(1, keepdim=True)
        correct[idx] = verdicts(true, low, high)[:, 0]
        # Leaving out j, a peer of query i in its class: the true-class sum loses t(i, j) (and one count).
        peers = members[own]  # (r, m)
        valid = (peers >= 0) & (peers != idx[:, None])
        without = P.gather(1, own[:, None]) - t.gather(1, peers.clamp_min(0))
        if normalize:
            without = without / (sizes[own][:, None] - 2).clamp_min(1)
        true_without = Z.gather(1, own[:, None]) + without
        changed = verdicts(true_without, low, high).to(F.dtype) - correct[idx, None].to(F.dtype)
        delta.index_add_(0, peers[valid], changed[valid])
    peer_counts = sizes[y] - 1
    return Influence(delta / peer_counts.clamp_min(1), correct, peer_counts.to(torch.long))
