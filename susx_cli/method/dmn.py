"""DMN-ZS, single view with a fixed gamma, over precomputed features, as docs/METHOD.md states it.

Shapes as in ``tda``: queries (n, D), text_weights W (C, D), order (n,) stream position -> query row;
results (n, C) in file order. Each query is written to the memory of its zero-shot class (capacity 50,
TDA's admission rule on H_w = -sum p ln(p + 1e-8)) and then read: per class c the keys are its filled
slots plus W_c, a_c = sum_j A_5.5(k_j . f) k_j, and the score is p + gamma softmax(100 a_c . f / |a_c|).

The blocked implementation replays admission first and evaluates the memory read for blocks of stream
positions and groups of classes: the numerators a_c . f by a GEMM against the group's alive keys, the
norms |a_c|^2 = w^T G_c w from per-class Gram matrices G_c of those keys and W_c, so no (B, C, D) tensor
is ever formed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from susx_cli.method.tda import (
    LOGIT_SCALE,
    Admissions,
    cache_rows,
    check_stream,
    entropy_of,
    offer,
    replay_admission,
    zero_shot_stats,
)

ENTROPY_EPS = 1e-8
BLOCK = 512
CLASS_GROUP = 128  # classes whose memory is read together; results never depend on it


@dataclass(frozen=True)
class DmnParams:
    """DMN-ZS's constants; gamma weights the memory's probabilities against the zero-shot ones."""

    gamma: float = 1.0
    capacity: int = 50
    beta: float = 5.5
    scale: float = LOGIT_SCALE


def _class_norms(
    keys: torch.Tensor,
    slots: torch.Tensor,
    width: int,
    text_weights: torch.Tensor,
    weights: torch.Tensor,
    text_weight: torch.Tensor,
) -> torch.Tensor:
    """|a_c| = sqrt(w^T G_c w) for P classes, with the Gram matrix G_c of class c's keys and W_c laid out
    in a (P, width) table (slot 0 of each row holds W_c): (B, P). keys (E, D) sit at flat ``slots`` (E,);
    weights (B, E) and text_weight (B, P) are the A_beta weights of the keys and of text_weights (P, D)."""
    P, B, D = len(text_weights), len(weights), keys.shape[1]
    padded = torch.zeros(P * width, D, dtype=keys.dtype)
    padded[::width] = text_weights
    padded.index_copy_(0, slots, keys)
    padded = padded.view(P, width, D)
    gram = padded @ padded.transpose(1, 2)
    coeffs = torch.zeros(B, P * width, dtype=weights.dtype)
    coeffs[:, ::width] = text_weight
    coeffs.index_copy_(1, slots, weights)
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
    where class c's memory is empty at that position: (B, C). Classes go in groups of CLASS_GROUP, so
    that the alive keys and their weights are never all held at once."""
    start, stop = span
    alive = memory.alive(start, stop)
    alive = alive[torch.argsort(memory.cls[alive], stable=True)]  # grouped by class, arrival order kept
    cls = memory.cls[alive]
    counts = torch.bincount(cls, minlength=len(text_weights))
    present = torch.nonzero(counts).flatten()
    ends = torch.cumsum(counts[present], 0).tolist()
    text_cos = block_queries @ text_weights.T
    text_weight = text_cos.sub(1.0).mul_(beta).exp_()
    out = text_cos.clone()
    t = torch.arange(start, stop)[:, None]
    for group in range(0, len(present), CLASS_GROUP):
        classes = present[group : group + CLASS_GROUP]
        first = ends[group - 1] if group else 0
        entries = alive[first : ends[group + len(classes) - 1]]
        local = torch.repeat_interleave(torch.arange(len(classes)), counts[classes])
        keys = queries[memory.row[entries]]
        sims = block_queries @ keys.T
        weights = sims.sub(1.0).mul_(beta).exp_()
        # Only entries that arrive or leave inside the block need the time mask; the rest span all of it.
        t_in, t_out = memory.t_in[entries], memory.t_out[entries]
        moving = torch.nonzero((t_in >= start) | (t_out < stop)).flatten()
        weights[:, moving] *= (t_in[moving] <= t) & (t < t_out[moving])
        numer = (text_weight[:, classes] * text_cos[:, classes]).index_add_(1, local, sims.mul_(weights))
        width = int(counts[classes].max()) + 1
        offsets = torch.cumsum(counts[classes], 0) - counts[classes]
        slots = local * width + torch.arange(len(entries)) - offsets[local] + 1
        norms = _class_norms(keys, slots, width, text_weights[classes], weights, text_weight[:, classes])
        # A class is empty before its first admission only (an eviction always brings its replacement),
        # so counting reduces to comparing with its earliest alive arrival.
        first_in = torch.full((len(classes),), stop, dtype=torch.long).scatter_reduce_(0, local, t_in, "amin")
        out[:, classes] = torch.where(first_in <= t, numer / norms, text_cos[:, classes])
    return out


def dmn_admissions(queries: torch.Tensor, text_weights: torch.Tensor, order: torch.Tensor, params: DmnParams):
    """Zero-shot statistics (with DMN's entropy) and the memory's admissions over the stream."""
    check_stream(queries, text_weights, order)
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
    check_stream(queries, text_weights, order)
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
