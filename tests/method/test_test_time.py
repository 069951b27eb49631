"""TDA, TDA-transductive, the TIP-X + TDA combination and DMN-ZS against an independent float64 NumPy
brute force of docs/METHOD.md's rules (every cache rebuilt from scratch at every stream position), the
blocked implementations against the per-query loops, and the properties the method section lists."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from susx_cli.errors import SusxError
from susx_cli.method import dmn, tda

ROOT = Path(__file__).resolve().parents[2]
N, C, D = 500, 20, 32


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _stream(seed=0, n=N, classes=C, dims=D):
    """Queries (n, D) and W (C, D) as float64 tensors, and a seeded stream order (n,). A shared direction
    keeps the cosines close together so that a good share of queries falls in the negative band."""
    rng = np.random.default_rng(seed)
    common = _unit(rng.normal(size=(1, dims)))
    centres = _unit(rng.normal(size=(classes, dims)))
    W = _unit(common + 0.2 * centres)
    y = rng.integers(0, classes, n)
    Q = _unit(common + 0.2 * centres[y] + 0.4 * rng.normal(size=(n, dims)) / np.sqrt(dims))
    return torch.from_numpy(Q), torch.from_numpy(W), torch.from_numpy(rng.permutation(n))


def _order(seed, n=N):
    return torch.from_numpy(np.random.default_rng(seed).permutation(n))


# ---------------------------------------------------------------- the independent brute force


def _zero_shot(Q, W):
    """logits, probabilities and log-probabilities (n, C) with a log-sum-exp written out."""
    logits = 100.0 * Q @ W.T
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return logits, np.exp(log_p), log_p


def _lowest(members, k):
    """A cache rebuilt from scratch: the k lowest (score, arrival) pairs of (score, arrival, row) tuples."""
    return sorted(members)[:k]


def _cached(order_np, upto, pred, score, k, eligible):
    """Per class, the cached rows after stream positions 0..upto, chosen from scratch."""
    members = {}
    for t in range(upto + 1):
        r = order_np[t]
        if eligible[r]:
            members.setdefault(pred[r], []).append((score[r], t, r))
    return {c: [r for _, _, r in _lowest(m, k)] for c, m in members.items()}


def brute_tda(Q, W, order, alpha_pos=2.0, beta_pos=5.0, base=None, transductive=False):
    """TDA read at every stream position with caches rebuilt from scratch (or the final caches)."""
    Q, W, order_np = Q.numpy(), W.numpy(), order.numpy()
    n, classes = len(Q), len(W)
    logits, p, log_p = _zero_shot(Q, W)
    H = -(p * log_p).sum(axis=1)
    pred = logits.argmax(axis=1)
    band = (H / math.log2(classes) > 0.2) & (H / math.log2(classes) < 0.5)
    base = logits if base is None else base.numpy()
    out = np.empty_like(logits)
    for t in range(n):
        upto = n - 1 if transductive else t
        positive = _cached(order_np, upto, pred, H, 3, np.ones(n, bool))
        negative = _cached(order_np, upto, pred, H, 2, band)
        f, z = Q[order_np[t]], base[order_np[t]].copy()
        for c, rows in positive.items():
            z[c] += alpha_pos * sum(np.exp(-beta_pos * (1 - Q[q] @ f)) for q in rows)
        for rows in negative.values():
            for q in rows:
                z -= 0.117 * np.exp(-1.0 * (1 - Q[q] @ f)) * ((p[q] > 0.03) & (p[q] < 1.0))
        out[order_np[t]] = z
    return out


def brute_dmn(Q, W, order, gamma=1.0, capacity=50):
    """DMN-ZS read at every stream position with the memory rebuilt from scratch."""
    Q, W, order_np = Q.numpy(), W.numpy(), order.numpy()
    n = len(Q)
    logits, p, _ = _zero_shot(Q, W)
    H = -(p * np.log(p + 1e-8)).sum(axis=1)
    pred = logits.argmax(axis=1)
    out = np.empty_like(logits)
    for t in range(n):
        memory = _cached(order_np, t, pred, H, capacity, np.ones(n, bool))
        f = Q[order_np[t]]
        cosines = W @ f
        for c, rows in memory.items():
            keys = np.vstack([Q[rows], W[c : c + 1]])
            a = (np.exp(-5.5 * (1 - keys @ f))[:, None] * keys).sum(axis=0)
            cosines[c] = a @ f / np.linalg.norm(a)
        memory_p = np.exp(100 * cosines - (100 * cosines).max())
        out[order_np[t]] = p[order_np[t]] + gamma * memory_p / memory_p.sum()
    return out


# ---------------------------------------------------------------- TDA


@pytest.fixture(scope="module")
def stream():
    return _stream()


@pytest.fixture(scope="module")
def tda_brute(stream):
    return brute_tda(*stream)


def test_stream_exercises_every_rule(stream):
    """The synthetic stream has evictions in both caches and masks of several classes, so the tests
    below can fail."""
    Q, W, order = stream
    stats = tda.zero_shot_stats(Q, W)
    positive, negative = tda.tda_admissions(stats, order, tda.TdaParams())
    assert (positive.t_out < N).sum() > 100 and (negative.t_out < N).sum() > 20
    masks = tda.negative_mask(stats.logits[negative.row].softmax(-1), (0.03, 1.0))
    assert masks.sum(1).float().mean() > 2


def test_sequential_matches_brute_force(stream, tda_brute):
    got = tda.tda_logits_sequential(*stream, tda.TdaParams())
    np.testing.assert_allclose(got.numpy(), tda_brute, rtol=0, atol=1e-9)
    zero_shot = tda.zero_shot_stats(*stream[:2]).logits
    assert (got.argmax(1) != zero_shot.argmax(1)).sum() > 0  # the caches change some predictions


@pytest.mark.parametrize("block", [3, 37, 512])
def test_blocked_matches_sequential(stream, block):
    params = tda.TdaParams(alpha_pos=1.3, beta_pos=4.0)
    expected = tda.tda_logits_sequential(*stream, params)
    got = tda.tda_logits(*stream, params, block=block)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-9)


def test_first_query_is_zero_shot_with_exact_rise_and_fall(stream):
    """P1: write before read. The first query's own entry moves its own class up by alpha+ and, when it
    is in the negative band, every masked class down by alpha-."""
    Q, W, _ = stream
    stats = tda.zero_shot_stats(Q, W)
    band = tda.in_band(stats.entropy, C, (0.2, 0.5))
    params = tda.TdaParams()
    for first in (int(torch.nonzero(band)[0]), int(torch.nonzero(~band)[0])):
        order = torch.cat([torch.tensor([first]), torch.tensor([r for r in range(N) if r != first])])
        z = tda.tda_logits(Q, W, order, params)[first]
        c = int(stats.pred[first])
        expected = torch.zeros(C, dtype=Q.dtype)
        expected[c] += params.alpha_pos
        if band[first]:
            expected -= params.alpha_neg * tda.negative_mask(stats.logits[first].softmax(-1), (0.03, 1.0))
        torch.testing.assert_close(z - stats.logits[first], expected, rtol=0, atol=1e-12)
        assert int(z.argmax()) == c


def test_final_caches_do_not_depend_on_order(stream):
    """P2: two permutations leave the same cached rows per class (the k lowest entropies), though the
    predictions along the way differ."""
    Q, W, _ = stream
    first, second = tda.tda_caches(Q, W, _order(1)), tda.tda_caches(Q, W, _order(2))
    assert torch.equal(first.positive, second.positive) and torch.equal(first.negative, second.negative)
    stats = tda.zero_shot_stats(Q, W)
    for c in range(C):
        rows = torch.nonzero(stats.pred == c).flatten()
        lowest = rows[torch.argsort(stats.entropy[rows])[:3]].sort().values
        assert torch.equal(first.positive[c][first.positive[c] >= 0], lowest)
    assert not torch.allclose(tda.tda_logits(Q, W, _order(1)), tda.tda_logits(Q, W, _order(2)))


def test_negative_term_bounds_and_sign(stream):
    """P3: only in-band queries enter the negative cache; both bounds are strict; the term only subtracts."""
    Q, W, order = stream
    stats = tda.zero_shot_stats(Q, W)
    negative = tda.tda_caches(Q, W, order).negative
    cached = negative[negative >= 0]
    assert tda.in_band(stats.entropy[cached], C, (0.2, 0.5)).all()
    edges = torch.tensor([0.2, 0.5, 0.3]) * math.log2(C)
    assert tda.in_band(edges, C, (0.2, 0.5)).tolist() == [False, False, True]
    assert tda.negative_mask(torch.tensor([0.03, 1.0, 0.5, 0.0]), (0.03, 1.0)).tolist() == [0, 0, 1, 0]
    only_negative = tda.tda_logits(Q, W, order, tda.TdaParams(alpha_pos=0.0))
    assert (only_negative <= stats.logits).all() and (only_negative < stats.logits).sum() > N


def test_zero_weights_give_zero_shot_bit_for_bit(stream):
    Q, W, order = stream
    params = tda.TdaParams(alpha_pos=0.0, alpha_neg=0.0)
    zero_shot = tda.zero_shot_stats(Q, W).logits
    assert torch.equal(tda.tda_logits(Q, W, order, params), zero_shot)
    assert torch.equal(tda.tda_transductive_logits(Q, W, params), zero_shot)
    base = torch.randn(N, C, dtype=Q.dtype)
    assert torch.equal(tda.add_tda_terms(base, Q, W, order, params), base)
    per_query = torch.stack([100.0 * (W @ Q[r]) for r in range(N)])
    assert torch.equal(tda.tda_logits_sequential(Q, W, order, params), per_query)


@pytest.mark.parametrize("function", ["blocked", "sequential"])
def test_admission_ties_keep_the_older_entry(function):
    """Scores 2, 2, 1, 2, 1, 1 offered to one class of capacity 2."""
    expected = [{0, 1}, {0, 2}, {0, 2}, {2, 4}, {2, 4}]
    scores = [2.0, 2.0, 1.0, 2.0, 1.0, 1.0]
    if function == "blocked":
        entries = tda.replay_admission(
            torch.arange(6), torch.zeros(6, dtype=torch.long), torch.tensor(scores), capacity=2
        )
        held = [
            {int(a) for a, b in zip(entries.t_in, entries.t_out, strict=True) if a <= t < b} for t in range(6)
        ]
    else:
        slot_scores, arrivals, held = torch.zeros(2), torch.full((2,), -1), []
        for t, score in enumerate(scores):
            slot = tda.offer(slot_scores, arrivals, int((arrivals >= 0).sum()), score)
            if slot is not None:
                slot_scores[slot], arrivals[slot] = score, t
            held.append(set(arrivals[arrivals >= 0].tolist()))
    assert held[1:] == expected


def test_permuting_classes_permutes_outputs(stream):
    Q, W, order = stream
    perm = torch.from_numpy(np.random.default_rng(3).permutation(C))
    torch.testing.assert_close(
        tda.tda_logits(Q, W[perm], order), tda.tda_logits(Q, W, order)[:, perm], rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        dmn.dmn_scores(Q, W[perm], order), dmn.dmn_scores(Q, W, order)[:, perm], rtol=0, atol=1e-12
    )


def test_transductive_matches_brute_force_and_is_order_free(stream):
    Q, W, order = stream
    got = tda.tda_transductive_logits(Q, W, block=64)
    np.testing.assert_allclose(got.numpy(), brute_tda(Q, W, order, transductive=True), rtol=0, atol=1e-9)
    rows = _order(5)  # the same queries in another file order: arrival ties can only move with it
    torch.testing.assert_close(
        tda.tda_transductive_logits(Q[rows], W, block=64), got[rows], rtol=0, atol=1e-12
    )


def test_combined_adds_the_cache_terms_to_base_logits(stream, tda_brute):
    """TIP-X + TDA: base logits plus TDA's terms, with admission from the zero-shot quantities only."""
    Q, W, order = stream
    base = torch.from_numpy(np.random.default_rng(4).normal(size=(N, C)) * 10)
    got = tda.add_tda_terms(base, Q, W, order, tda.TdaParams(), block=100)
    np.testing.assert_allclose(got.numpy(), brute_tda(Q, W, order, base=base), rtol=0, atol=1e-9)
    per_query = tda.tda_logits_sequential(Q, W, order, tda.TdaParams(), base_logits=base)
    torch.testing.assert_close(per_query, got, rtol=0, atol=1e-9)
    zero_shot = tda.zero_shot_stats(Q, W).logits.numpy()
    np.testing.assert_allclose((got - base).numpy(), tda_brute - zero_shot, rtol=0, atol=1e-9)


def test_paper_preset_and_bad_inputs(stream):
    assert tda.paper_params("imagenet") == tda.TdaParams()
    assert (tda.paper_params("imagenet-sketch").alpha_pos, tda.paper_params("imagenet-sketch").beta_pos) == (
        2.363,
        7.45,
    )
    with pytest.raises(SusxError, match="no paper configuration"):
        tda.paper_params("mnist")
    Q, W, order = stream
    with pytest.raises(SusxError, match="not a permutation"):
        tda.tda_logits(Q, W, order.clone().fill_(0))
    with pytest.raises(SusxError, match="dimensions"):
        dmn.dmn_scores(Q[:, :10], W, order)
    with pytest.raises(SusxError, match="base logits"):
        tda.add_tda_terms(torch.zeros(N, C + 1, dtype=Q.dtype), Q, W, order, tda.TdaParams())


# ---------------------------------------------------------------- DMN-ZS


@pytest.fixture(scope="module")
def dmn_sequential(stream):
    """The per-query loop's scores for capacities 50 and 4, computed once (the loop is the slow part)."""
    return {
        capacity: dmn.dmn_scores_sequential(*stream, dmn.DmnParams(capacity=capacity)) for capacity in (50, 4)
    }


@pytest.mark.parametrize("capacity", [50, 4])
def test_dmn_sequential_matches_brute_force(stream, dmn_sequential, capacity):
    got = dmn_sequential[capacity]
    np.testing.assert_allclose(got.numpy(), brute_dmn(*stream, capacity=capacity), rtol=0, atol=1e-9)
    zero_shot = tda.zero_shot_stats(*stream[:2]).logits
    assert (got.argmax(1) != zero_shot.argmax(1)).sum() > 0  # the memory changes some predictions


@pytest.mark.parametrize(
    ("capacity", "block", "group"), [(50, 17, 128), (50, 64, 3), (4, 29, 7), (4, 512, 128)]
)
def test_dmn_blocked_matches_sequential(stream, dmn_sequential, capacity, block, group, monkeypatch):
    monkeypatch.setattr(dmn, "CLASS_GROUP", group)
    got = dmn.dmn_scores(*stream, dmn.DmnParams(capacity=capacity), block=block)
    torch.testing.assert_close(got, dmn_sequential[capacity], rtol=0, atol=1e-9)


def test_dmn_gamma_zero_is_zero_shot_bit_for_bit(stream):
    Q, W, order = stream
    params = dmn.DmnParams(gamma=0.0)
    assert torch.equal(dmn.dmn_scores(Q, W, order, params), tda.zero_shot_stats(Q, W).logits.softmax(-1))
    Q, order = Q[:100], _order(6, 100)  # the loop on a shorter stream: it is the slow part
    per_query = torch.stack([(100.0 * (W @ Q[r])).softmax(-1) for r in range(100)])
    assert torch.equal(dmn.dmn_scores_sequential(Q, W, order, params), per_query)


def test_dmn_first_query_reads_its_own_entry(stream):
    """P1: the first query's class holds the query itself besides W_c; every other class reads W_c."""
    Q, W, order = stream
    first = int(order[0])
    f = Q[first]
    c = int((W @ f).argmax())
    cosines = W @ f
    a = math.exp(0.0) * f + math.exp(-5.5 * (1 - float(W[c] @ f))) * W[c]
    cosines[c] = a @ f / a.norm()
    expected = (100 * (W @ f)).softmax(-1) + (100 * cosines).softmax(-1)
    torch.testing.assert_close(dmn.dmn_scores(Q, W, order)[first], expected, rtol=0, atol=1e-12)


def test_dmn_memory_does_not_depend_on_order(stream):
    Q, W, _ = stream
    params = dmn.DmnParams(capacity=4)
    assert torch.equal(dmn.dmn_memory(Q, W, _order(1), params), dmn.dmn_memory(Q, W, _order(2), params))
    assert not torch.allclose(
        dmn.dmn_scores(Q, W, _order(1), params), dmn.dmn_scores(Q, W, _order(2), params)
    )


@pytest.mark.slow
def test_benchmark_quick_run():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "test_time_scale.py"), "--quick"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    for phase in ("tda", "dmn", "tda-loop", "dmn-loop"):
        assert any(line.startswith(phase + " ") for line in done.stdout.splitlines())
    assert "per-query loop / blocked" in done.stdout
