"""DMN-ZS, single view with a fixed gamma, over precomputed features, as docs/METHOD.md states it.

Shapes as in ``tda``: queries (n, D), text_weights W (C, D), order (n,) stream position -> query row;
results (n, C) in file order. Each query is written to the memory of its zero-shot class (capacity 50,
TDA's admission rule on H_w = -sum p ln(p + 1e-8)) and then read: per class c the keys are its filled
slots plus W_c, a_c = sum_j A_5.5(k_j . f) k_j, and the score is p + gamma softmax(100 a_c . f / |a_c|).

The blocked implementation replays admission first and evaluates the memory read for blocks of stream
positions: the numerators a_c . f by one GEMM against the alive keys, the norms |a_c|^2 = w^T G_c w
from per-class Gram matrices G_c of those keys (and W_c), so no (B, C, D) tensor is ever formed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from susx_cli.method.tda import (
    LOGIT_SCALE,
    Admissions,
    _check_stream,
    cache_rows,
    entropy_of,
    offer,
    replay_admission,
    zero_shot_stats,
)

ENTROPY_EPS = 1e-8
BLOCK = 512


@dataclass(frozen=True)
class DmnParams:
    """DMN-ZS's constants; gamma weights the memory's probabilities against the zero-shot ones."""

    gamma: float = 1.0
    capacity: int = 50
    beta: float = 5.5
    scale: float = LOGIT_SCALE


def _padded_slots(cls: torch.Tensor, present: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, int]:
    """A padded per-class layout of E alive entries of classes cls (E,), all in ``present`` (P,): each
    entry's flat position (E,) in a (P, width) table whose slot 0 of every row is left for W_c, and width."""
    perm = torch.argsort(cls, stable=True)
    counts = torch.bincount(cls, minlength=num_classes)
    first = torch.cumsum(counts, 0) - counts
    slot = torch.empty_like(cls)
    slot[perm] = torch.arange(len(cls)) - first[cls[perm]] + 1
    row_of_class = torch.full((num_classes,), -1, dtype=torch.long)
    row_of_class[present] = torch.arange(len(present))
    width = int(counts.max()) + 1
    return row_of_class[cls] * width + slot, width


def _memory_norms(
    keys: torch.Tensor,
    cls: torch.Tensor,
    present: torch.Tensor,
    text_weights: torch.Tensor,
    weights: torch.Tensor,
    text_weight: torch.Tensor,
) -> torch.Tensor:
    """|a_c| for the classes in ``present`` (P,), by w^T G_c w with the Gram matrix G_c of class c's
    alive keys and W_c (padded to the largest class): (B, P). keys (E, D) of class cls (E,), every class
    in ``present``; weights (B, E) and text_weight (B, C) are the A_beta weights of the keys and of W."""
    P, B, D = len(present), len(weights), keys.shape[1]
    flat, width = _padded_slots(cls, present, text_weights.shape[0])
    padded = torch.zeros(P * width, D, dtype=keys.dtype)
    padded[::width] = text_weights[present]
    padded.index_copy_(0, flat, keys)
    padded = padded.view(P, width, D)
    gram = padded @ padded.transpose(1, 2)
    coeffs = torch.zeros(B, P * width, dtype=weights.dtype)
    coeffs[:, ::width] = text_weight[:, present]
    coeffs.index_copy_(1, flat, weights)
    coeffs = coeffs.view(B, P, width).transpose(0, 1)
    return (torch.matmul(coeffs, gram) * coeffs).sum(-1).T.sqrt()


def _memory_read(
    block_queries: torch.Tensor,
    queries: torch.Tensor,
    text_weights: torch.Tensor,
    memory: Admissions,
    span: tuple[int, int],
    beta: float,
) -> torch.Tensor:
    """The memory's cosines a_c . f / |a_c| for one block of stream positions [start, stop), with W_c . f
    where class c's memory is empty at that position: (B, C)."""
    start, stop = span
    alive = memory.alive(start, stop)
    cls = memory.cls[alive]
    keys = queries[memory.row[alive]]
    sims = block_queries @ keys.T
    weights = sims.sub(1.0).mul_(beta).exp_()
    # Only entries that arrive or leave inside the block need the time mask; the rest span all of it.
    t = torch.arange(start, stop)[:, None]
    t_in, t_out = memory.t_in[alive], memory.t_out[alive]
    moving = torch.nonzero((t_in >= start) | (t_out < stop)).flatten()
    weights[:, moving] *= (t_in[moving] <= t) & (t < t_out[moving])
    text_cos = block_queries @ text_weights.T
    text_weight = text_cos.sub(1.0).mul_(beta).exp_()
    numer = (text_weight * text_cos).index_add_(1, cls, sims.mul_(weights))
    # Count the class's entries at each position rather than test values: a class is empty before its
    # first admission only, since an eviction always brings its replacement.
    first_in = torch.full((text_weights.shape[0],), stop, dtype=torch.long)
    first_in.scatter_reduce_(0, cls, t_in, "amin")
    out = text_cos.clone()
    present = torch.unique(cls)
    if len(present):
        norms = _memory_norms(keys, cls, present, text_weights, weights, text_weight)
        filled = first_in[present] <= t
        out[:, present] = torch.where(filled, numer[:, present] / norms, text_cos[:, present])
    return out


def dmn_admissions(queries: torch.Tensor, text_weights: torch.Tensor, order: torch.Tensor, params: DmnParams):
    """Zero-shot statistics (with DMN's entropy) and the memory's admissions over the stream."""
    _check_stream(queries, text_weights, order)
    stats = zero_shot_stats(queries, text_weights, params.scale, ENTROPY_EPS)
    return stats, replay_admission(order, stats.pred, stats.entropy, params.capacity)


def dmn_scores(
    queries: torch.Tensor,
    text_weights: torch.Tensor,
    order: torch.Tensor,
    params: DmnParams = DmnParams(),
    block: int = BLOCK,
) -> torch.Tensor:
    """DMN-ZS's scores p + gamma p_mem (n, C) in file order for the stream ``order``, blocked."""
    stats, memory = dmn_admissions(queries, text_weights, order, params)
    out = torch.empty_like(stats.logits)
    for start in range(0, len(order), block):
        rows = order[start : start + block]
        span = (start, start + len(rows))
        cosines = _memory_read(queries[rows], queries, text_weights, memory, span, params.beta)
        memory_probs = (params.scale * cosines).softmax(-1)
        out[rows] = stats.logits[rows].softmax(-1) + params.gamma * memory_probs
    return out


def dmn_memory(
    queries: torch.Tensor, text_weights: torch.Tensor, order: torch.Tensor, params: DmnParams = DmnParams()
) -> torch.Tensor:
    """The memory after the whole stream as query rows per class, ascending, -1 if empty: (C, capacity)."""
    _, memory = dmn_admissions(queries, text_weights, order, params)
    return cache_rows(memory, text_weights.shape[0], params.capacity)


def dmn_scores_sequential(
    queries: torch.Tensor, text_weights: torch.Tensor, order: torch.Tensor, params: DmnParams = DmnParams()
) -> torch.Tensor:
    """The per-query loop over a preallocated memory [C, L, D] with scores, arrivals and fill counts:
    write, then read, one query at a time. (n, C) in file order."""
    _check_stream(queries, text_weights, order)
    C, D = text_weights.shape
    L = params.capacity
    memory = torch.zeros(C, L, D, dtype=queries.dtype)
    scores = torch.zeros(C, L, dtype=queries.dtype)
    arrivals = torch.full((C, L), -1)
    counts = torch.zeros(C, dtype=torch.long)
    out = torch.empty(len(order), C, dtype=queries.dtype)
    for t, r in enumerate(order.tolist()):
        f = queries[r]
        logits = params.scale * (text_weights @ f)
        entropy = float(entropy_of(logits[None], ENTROPY_EPS)[0])
        c = int(logits.argmax())
        slot = offer(scores[c], arrivals[c], int(counts[c]), entropy)
        if slot is not None:
            memory[c, slot], scores[c, slot], arrivals[c, slot] = f, entropy, t
            counts[c] = max(int(counts[c]), slot + 1)
        text_cos = text_weights @ f
        filled = torch.arange(L) < counts[:, None]
        weights = torch.exp(-params.beta * (1 - memory @ f)) * filled
        summed = torch.einsum("cl,cld->cd", weights, memory)
        summed += torch.exp(-params.beta * (1 - text_cos))[:, None] * text_weights
        cosines = (summed @ f) / summed.norm(dim=-1)
        cosines = torch.where(counts > 0, cosines, text_cos)
        out[r] = logits.softmax(-1) + params.gamma * (params.scale * cosines).softmax(-1)
    return out
