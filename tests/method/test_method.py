"""The method against an independent float64 NumPy implementation of docs/METHOD.md, and the search
against a direct triple loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from susx_cli.method import search, tipx


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _problem(n=237, N=90, C=7, D=24, seed=0):
    """Random normalised features with class structure; n is not a multiple of 100 on purpose."""
    rng = np.random.default_rng(seed)
    centers = _unit(rng.normal(size=(C, D)))
    W = _unit(centers + 0.6 * rng.normal(size=(C, D)))
    y = np.arange(N) % C
    yq = rng.integers(0, C, n)
    F = _unit(centers[y] + 0.9 * rng.normal(size=(N, D)))
    f = _unit(centers[yq] + 0.9 * rng.normal(size=(n, D)))
    return f, yq, F, y, W


def numpy_tipx(f, F, y, W, alpha, beta, gamma, tau=0.5, scale=100.0):
    """docs/METHOD.md written out plainly, with explicit loops over pairs for the KL."""
    C = W.shape[0]
    L = np.eye(C)[y]
    Z = scale * f @ W.T
    S = f @ F.T
    A = np.exp(-beta * (1 - S))

    def softmax(x):
        e = np.exp(x - x.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    p, q = softmax(f @ W.T / tau), softmax(F @ W.T / tau)
    K = np.zeros((f.shape[0], F.shape[0]))
    for i in range(f.shape[0]):
        for j in range(F.shape[0]):
            K[i, j] = np.sum(p[i] * (np.log(p[i]) - np.log(q[j])))
    Kp = (K - K.min()) / (K.max() - K.min()) * (S.max() - S.min()) + S.min()
    return Z + alpha * (A @ L) + gamma * ((-Kp) @ L)


def T(x):
    return torch.from_numpy(np.asarray(x))


def test_tipx_matches_numpy_reference_every_row():
    f, _, F, y, W = _problem()
    ref = numpy_tipx(f, F, y, W, alpha=3.0, beta=5.5, gamma=2.0)
    got = tipx.logits(T(f), T(W), T(F), T(y), alpha=3.0, beta=5.5, gamma=2.0).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)
    assert (got.argmax(1) == ref.argmax(1)).all()
    # The last n mod 100 rows are where the reference code left zeros: they must carry the KL term.
    zs = tipx.zero_shot_logits(T(f), T(W)).numpy()
    cache_only = tipx.logits(T(f), T(W), T(F), T(y), alpha=3.0, beta=5.5).numpy()
    assert not np.allclose((got - cache_only)[200:], 0)
    assert not np.allclose(got, zs)


def test_chunked_logits_equal_unchunked():
    f, _, F, y, W = _problem()
    whole = tipx.logits(T(f), T(W), T(F), T(y), alpha=1.0, beta=2.0, gamma=3.0, chunk=10_000)
    pieces = tipx.logits(T(f), T(W), T(F), T(y), alpha=1.0, beta=2.0, gamma=3.0, chunk=50)
    torch.testing.assert_close(whole, pieces, rtol=1e-12, atol=1e-12)


def test_kl_matrix_equals_pairwise_definition():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(5), size=6)
    q = rng.dirichlet(np.ones(5), size=4)
    K = tipx.kl_matrix(T(p), T(q)).numpy()
    direct = np.array([[np.sum(pi * np.log(pi / qj)) for qj in q] for pi in p])
    np.testing.assert_allclose(K, direct, rtol=1e-12)
    assert (K >= -1e-12).all()


def test_zero_shot_is_argmax_fw_and_tip_adapter_is_gamma_zero():
    f, _, F, y, W = _problem()
    zs = tipx.zero_shot_logits(T(f), T(W)).numpy()
    assert (zs.argmax(1) == (f @ W.T).argmax(1)).all()
    ta = tipx.logits(T(f), T(W), T(F), T(y), alpha=4.0, beta=3.0).numpy()
    tx0 = tipx.logits(T(f), T(W), T(F), T(y), alpha=4.0, beta=3.0, gamma=0.0).numpy()
    np.testing.assert_allclose(ta, tx0, rtol=1e-10, atol=1e-10)


def test_shuffling_the_support_set_changes_nothing():
    f, _, F, y, W = _problem()
    perm = np.random.default_rng(5).permutation(len(y))
    a = tipx.logits(T(f), T(W), T(F), T(y), alpha=2.0, beta=4.0, gamma=1.5).numpy()
    b = tipx.logits(T(f), T(W), T(F[perm]), T(y[perm]), alpha=2.0, beta=4.0, gamma=1.5).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


def test_per_class_normalisation_divides_by_class_size():
    f, _, F, y, W = _problem(N=30, C=3)
    y = np.array([0] * 20 + [1] * 7 + [2] * 3)
    raw = tipx.logits(T(f), T(W), T(F), T(y), alpha=1.0, beta=2.0).numpy()
    norm = tipx.logits(T(f), T(W), T(F), T(y), alpha=1.0, beta=2.0, normalize=True).numpy()
    zs = tipx.zero_shot_logits(T(f), T(W)).numpy()
    np.testing.assert_allclose((norm - zs) * np.array([20, 7, 3]), raw - zs, rtol=1e-10)


def direct_triple_loop(f, yq, F, y, W, grid, tau=0.5, exclude_self=False):
    """The reference's loop order (alpha, then beta, then gamma), each building logits and an argmax."""
    C = W.shape[0]
    L = np.eye(C)[y]
    mask = np.ones((f.shape[0], F.shape[0]), bool)
    if exclude_self:
        np.fill_diagonal(mask, False)
    Z = 100.0 * f @ W.T
    S = f @ F.T

    def softmax(x):
        e = np.exp(x - x.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    p, q = softmax(f @ W.T / tau), softmax(F @ W.T / tau)
    K = (p * np.log(p)).sum(1, keepdims=True) - p @ np.log(q).T
    Kp = (K - K[mask].min()) / (K[mask].max() - K[mask].min()) * (S[mask].max() - S[mask].min()) + S[
        mask
    ].min()
    kl = (-Kp * mask) @ L
    best, choice = -1, None
    for a in grid.alpha:
        for b in grid.beta:
            cache = (np.exp(-b * (1 - S)) * mask) @ L
            for g in grid.gamma:
                acc = int(((Z + a * cache + g * kl).argmax(1) == yq).sum())
                if acc > best:
                    best, choice = acc, (a, b, g)
    return choice, best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_search_picks_the_triple_loop_choice(seed):
    f, yq, F, y, W = _problem(n=150, N=60, C=6, seed=seed)
    grid = search.Grid(
        search.reference_grid(0.1, 50, 6), search.reference_grid(1, 50, 9), search.reference_grid(0.1, 30, 7)
    )
    expected, best = direct_triple_loop(f, yq, F, y, W, grid)
    for chunk in (1000, 37):  # chunking must not change the choice
        got = search.grid_search(T(f), T(yq), T(F), T(y), T(W), grid, chunk=chunk)
        assert (got.alpha, got.beta, got.gamma) == expected
        assert got.correct == best


def test_search_counts_match_direct_accuracy_at_every_grid_point():
    f, yq, F, y, W = _problem(n=120, N=40, C=5, seed=7)
    grid = search.Grid([0.5, 5.0, 20.0], [1.0, 6.0, 11.0], [0.1, 3.0, 12.0])
    got = search.grid_search(T(f), T(yq), T(F), T(y), T(W), grid)
    for ai, a in enumerate(grid.alpha):
        for bi, b in enumerate(grid.beta):
            for gi, g in enumerate(grid.gamma):
                direct = tipx.logits(T(f), T(W), T(F), T(y), alpha=a, beta=b, gamma=g).argmax(1)
                assert int(got.counts[ai, bi, gi]) == int((direct == T(yq)).sum())


def test_leave_one_out_search_matches_triple_loop():
    _, _, F, y, W = _problem(N=48, C=4, seed=11)
    grid = search.Grid([0.1, 2.0, 9.0], [1.0, 5.0, 9.0, 13.0], [0.1, 4.0])
    expected, best = direct_triple_loop(F, y, F, y, W, grid, exclude_self=True)
    for chunk in (1000, 13):  # chunked leave-one-out keeps memory O(chunk x N), same result
        got = search.grid_search(T(F), T(y), T(F), T(y), T(W), grid, exclude_self=True, chunk=chunk)
        assert (got.alpha, got.beta, got.gamma) == expected and got.correct == best


def test_ties_keep_the_first_grid_point():
    f, yq, F, y, W = _problem(n=30, N=12, C=3, seed=4)
    grid = search.Grid([1.0, 1.0], [2.0, 2.0], [0.5, 0.5])  # every point identical: all tie
    got = search.grid_search(T(f), T(yq), T(F), T(y), T(W), grid)
    assert (got.alpha, got.beta, got.gamma) == (1.0, 2.0, 0.5)
    assert int(got.counts.flatten().argmax()) == 0


def test_unsorted_grids_give_the_same_counts_in_their_own_order():
    f, yq, F, y, W = _problem(n=90, N=30, C=5, seed=9)
    grid = search.Grid([0.5, 5.0, 20.0], [1.0, 6.0], [0.1, 3.0, 12.0, 6.0])
    shuffled = search.Grid([20.0, 0.5, 5.0], [6.0, 1.0], [12.0, 0.1, 6.0, 3.0])
    a = search.grid_search(T(f), T(yq), T(F), T(y), T(W), grid).counts
    b = search.grid_search(T(f), T(yq), T(F), T(y), T(W), shuffled).counts
    for i, av in enumerate(shuffled.alpha):
        for j, bv in enumerate(shuffled.beta):
            for k, gv in enumerate(shuffled.gamma):
                assert b[i, j, k] == a[grid.alpha.index(av), grid.beta.index(bv), grid.gamma.index(gv)]
