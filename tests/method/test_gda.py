"""GDA against an independent NumPy computation of docs/METHOD.md's formulas; the alpha choice and its tie
rule; the stratified, seeded fold split; k-fold choices against direct per-fold loops; bad inputs."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from susx_cli.errors import SusxError
from susx_cli.method import gda, kfold, search, tipx


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _problem(sizes, D, n=40, seed=0, spread=0.8):
    """Support with the given class sizes, n queries, a text classifier W (C, D): all float64 NumPy."""
    rng = np.random.default_rng(seed)
    C = len(sizes)
    centres = _unit(rng.normal(size=(C, D)))
    W = _unit(centres + 0.7 * rng.normal(size=(C, D)))
    y = np.repeat(np.arange(C), sizes)
    rng.shuffle(y)  # labels interleaved, not sorted: the code must not rely on their order
    F = _unit(centres[y] + spread * rng.normal(size=(len(y), D)) / np.sqrt(D) * 4)
    yq = rng.integers(0, C, n)
    f = _unit(centres[yq] + spread * rng.normal(size=(n, D)) / np.sqrt(D) * 4)
    return f, yq, F, y, W


def numpy_gda(F, y, C):
    """docs/METHOD.md's GDA written out plainly: a loop per class, NumPy's pinv."""
    N, D = F.shape
    mu = np.stack([F[y == k].mean(axis=0) for k in range(C)])
    X = F - mu[y]
    Sigma = X.T @ X / (N - 1)
    P = D * np.linalg.pinv((N - 1) * Sigma + np.trace(Sigma) * np.eye(D))
    W_gda = np.stack([P @ mu[k] for k in range(C)])
    b = np.array([np.log(1.0 / C) - 0.5 * mu[k] @ P @ mu[k] for k in range(C)])
    return mu, P, W_gda, b


def numpy_logits(f, W, F, y, alpha, scale=100.0):
    """100 f W + alpha (f W_gda^T + b), with W (C x D) as in docs/METHOD.md."""
    _, _, W_gda, b = numpy_gda(F, y, W.shape[0])
    return scale * f @ W.T + alpha * (f @ W_gda.T + b)


def T(x):
    return torch.from_numpy(np.asarray(x))


CASES = [  # (class sizes, D): unbalanced, N < D (shrinkage carries the precision) and N > D
    ([5, 2], 3),
    ([1, 3, 7, 2, 10], 16),
    ([4, 1, 1, 9, 2, 6, 3, 1, 5, 2], 64),
    ([50, 30, 20, 40], 8),
]


@pytest.mark.parametrize(("sizes", "D"), CASES)
@pytest.mark.parametrize("alpha", [0.0, 0.1, 10.0])
def test_gda_logits_match_numpy(sizes, D, alpha):
    f, _, F, y, W = _problem(sizes, D, seed=len(sizes) + D)
    C = len(sizes)
    head = gda.fit_gda(T(F), T(y), C)
    mu, P, W_gda, b = numpy_gda(F, y, C)
    np.testing.assert_allclose(head.mu.numpy(), mu, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(head.precision.numpy(), P, rtol=1e-8, atol=1e-8 * np.abs(P).max())
    np.testing.assert_allclose(head.weight.numpy(), W_gda, rtol=1e-8, atol=1e-8 * np.abs(W_gda).max())
    np.testing.assert_allclose(head.bias.numpy(), b, rtol=1e-8)
    got = gda.gda_logits(T(f), T(W), head, alpha).numpy()
    ref = numpy_logits(f, W, F, y, alpha)
    np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-8 * np.abs(ref).max())
    assert (got.argmax(1) == ref.argmax(1)).all()
    assert head.support_size == len(y) and head.num_classes == C


def test_logit_scale_and_zero_alpha_give_zero_shot():
    f, _, F, y, W = _problem([3, 4, 5], 6)
    head = gda.fit_gda(T(F), T(y), 3)
    got = gda.gda_logits(T(f), T(W), head, 0.0, logit_scale=7.5)
    np.testing.assert_allclose(got.numpy(), tipx.zero_shot_logits(T(f), T(W), 7.5).numpy(), rtol=1e-14)


def test_float32_inputs_are_computed_in_float64():
    f, yq, F, y, W = _problem([6, 3, 8, 2], 12)
    f32, F32, W32 = (T(a).float() for a in (f, F, W))
    head = gda.fit_gda(F32, T(y), 4)
    assert head.mu.dtype == head.precision.dtype == head.weight.dtype == head.bias.dtype == torch.float64
    got = gda.gda_logits(f32, W32, head, 1.0)
    assert got.dtype == torch.float64
    # The same as the float64 computation on the float32 values: nothing was done in float32.
    up = (a.numpy().astype(np.float64) for a in (f32, W32, F32))
    f64, W64, F64 = up
    ref = numpy_logits(f64, W64, F64, y, 1.0)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-8, atol=1e-8 * np.abs(ref).max())


def test_alpha_counts_match_a_direct_loop():
    f, yq, F, y, W = _problem([8, 5, 9, 3, 7], 20, n=200, seed=3)
    head = gda.fit_gda(T(F), T(y), 5)
    choice = gda.choose_alpha(T(f), T(yq), T(W), head)
    expected = [int((numpy_logits(f, W, F, y, a).argmax(1) == yq).sum()) for a in gda.ALPHA_GRID]
    assert choice.counts.tolist() == expected
    assert gda.alpha_counts(T(f), T(yq), T(W), head, chunk=7).tolist() == expected  # chunks change nothing
    assert choice.alphas == list(gda.ALPHA_GRID)
    best = int(np.argmax(expected))
    assert choice.alpha == gda.ALPHA_GRID[best] and choice.correct == expected[best] and choice.total == 200
    assert choice.accuracy == pytest.approx(expected[best] / 200)


def test_choose_alpha_keeps_the_first_of_tied_maxima():
    # A hand-made head: W picks coordinates 0 and 1, the GDA term is (0, f[2]). Query 1 (true class 1):
    # zero-shot prefers class 0 by 1, the term prefers class 1 by 3, so it is right for alpha > 1/3.
    # Query 2 (true class 0): the term prefers class 1 by 0.05, so it turns wrong for alpha > 20.
    # Correct counts over the grid 1e-4 .. 100: 1 1 1 1 2 2 1, a tie between alpha = 1 and 10.
    W = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    f = torch.tensor([[0.60, 0.59, 3.0], [0.60, 0.59, 0.05]], dtype=torch.float64)
    head = gda.GDAHead(
        mu=torch.zeros(2, 3, dtype=torch.float64),
        precision=torch.eye(3, dtype=torch.float64),
        weight=torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64),
        bias=torch.zeros(2, dtype=torch.float64),
        support_size=4,
    )
    choice = gda.choose_alpha(f, torch.tensor([1, 0]), W, head)
    assert choice.counts.tolist() == [1, 1, 1, 1, 2, 2, 1]
    assert (choice.alpha, choice.correct, choice.total) == (1.0, 2, 2)  # the first of the tied maxima


def test_pick_alpha_tie_rule():
    alphas = [0.5, 1.0, 2.0, 4.0]
    choice = gda.pick_alpha(torch.tensor([1, 3, 2, 3]), alphas, 5)
    assert (choice.alpha, choice.correct, choice.total) == (1.0, 3, 5)


@pytest.mark.parametrize(
    ("sizes", "D", "message"),
    [
        ([3, 0, 2], 4, "no"),  # a class with no support image
        ([1, 1, 1], 4, "more support images than classes"),  # N = C: no within-class freedom
        ([1], 4, "more support images than classes"),  # N - 1 = 0
    ],
)
def test_bad_support_sets_are_refused(sizes, D, message):
    _, _, F, y, _ = _problem(sizes, D)
    with pytest.raises(SusxError, match=message) as err:
        gda.fit_gda(T(F), T(y), len(sizes))
    assert "\n" not in err.value.one_line()


def test_nan_and_mismatched_inputs_are_refused():
    f, yq, F, y, W = _problem([4, 5, 3], 6)
    bad = F.copy()
    bad[2, 3] = np.nan
    with pytest.raises(SusxError, match="NaN"):
        gda.fit_gda(T(bad), T(y), 3)
    head = gda.fit_gda(T(F), T(y), 3)
    badq = f.copy()
    badq[0, 0] = np.inf
    with pytest.raises(SusxError, match="NaN"):
        gda.gda_logits(T(badq), T(W), head, 1.0)
    badW = W.copy()
    badW[1, 1] = np.nan
    with pytest.raises(SusxError, match="NaN"):
        gda.gda_logits(T(f), T(badW), head, 1.0)
    with pytest.raises(SusxError, match="labels"):
        gda.fit_gda(T(F), T(y + 1), 3)  # label 3 with 3 classes
    with pytest.raises(SusxError, match="do not match"):
        gda.fit_gda(T(F), T(y[:-1]), 3)
    with pytest.raises(SusxError, match="text classifier"):
        gda.gda_logits(T(f), T(W[:2]), head, 1.0)
    with pytest.raises(SusxError, match="dimension"):
        gda.gda_logits(T(f[:, :5]), T(W), head, 1.0)
    with pytest.raises(SusxError, match="alpha grid"):
        gda.choose_alpha(T(f), T(yq), T(W), head, alphas=[])
    with pytest.raises(SusxError, match="labels of shape"):
        gda.choose_alpha(T(f), T(yq[:-1]), T(W), head)


# ---- k-fold -------------------------------------------------------------------------------------


def test_fold_split_is_seeded_and_stratified():
    labels = np.repeat(np.arange(6), [2, 3, 7, 10, 4, 5])
    np.random.default_rng(0).shuffle(labels)  # classes interleaved
    y = T(labels)
    a = kfold.stratified_folds(y, 4, seed=11)
    b = kfold.stratified_folds(y, 4, seed=11)
    c = kfold.stratified_folds(y, 4, seed=12)
    assert torch.equal(a.fold, b.fold) and not torch.equal(a.fold, c.fold)
    per_fold = torch.bincount(a.fold, minlength=4)
    assert int(per_fold.max() - per_fold.min()) <= 1  # fold sizes differ by at most one
    for k in range(6):
        in_class = torch.bincount(a.fold[y == k], minlength=4)
        assert int(in_class.max() - in_class.min()) <= 1  # each class spread evenly (round-robin)
    for i in range(4):  # every class keeps an image in every training part, even the 2-image class
        assert set(y[a.train(i)].tolist()) == set(range(6))
        assert torch.equal(torch.sort(torch.cat([a.train(i), a.held_out(i)])).values, torch.arange(len(y)))
    record = a.to_dict()
    assert record["k"] == 4 and record["seed"] == 11 and record["fold"] == a.fold.tolist()


@pytest.mark.parametrize(
    ("sizes", "k", "message"),
    [([3, 3], 1, "2 <= k"), ([2, 2], 5, "2 <= k"), ([3, 1, 4], 3, "at least 2 support images")],
)
def test_bad_fold_requests_are_refused(sizes, k, message):
    with pytest.raises(SusxError, match=message):
        kfold.stratified_folds(T(np.repeat(np.arange(len(sizes)), sizes)), k, seed=0)


def test_kfold_gda_alpha_matches_a_direct_loop():
    _, _, F, y, W = _problem([9, 4, 12, 6, 3, 8], 10, seed=5)
    split = kfold.stratified_folds(T(y), 3, seed=2)
    choice = kfold.gda_alpha(T(F), T(y), T(W), split)
    expected = np.zeros(len(gda.ALPHA_GRID), dtype=np.int64)
    fold = split.fold.numpy()
    for i in range(3):
        tr, te = fold != i, fold == i
        for j, a in enumerate(gda.ALPHA_GRID):
            out = numpy_logits(F[te], W, F[tr], y[tr], a)
            expected[j] += int((out.argmax(1) == y[te]).sum())
    assert choice.counts.tolist() == expected.tolist()
    assert choice.alpha == gda.ALPHA_GRID[int(np.argmax(expected))] and choice.total == len(y)


def test_kfold_gda_refuses_a_training_part_without_covariance():
    y = T(np.repeat(np.arange(3), 2))  # k = 2: each training part has one image per class
    _, _, F, _, W = _problem([2, 2, 2], 5)
    split = kfold.stratified_folds(y, 2, seed=0)
    with pytest.raises(SusxError, match="too few for GDA"):
        kfold.gda_alpha(T(F), y, T(W), split)


def test_kfold_takes_only_support_and_text():
    """Name-only by construction: the k-fold choices take support features/labels, the text classifier,
    a split made from support labels (and the support images' own views), and options; there is no argument
    through which query data could enter. The result does change with the support labels, so they are really
    what it is fitted on."""
    allowed = {"F", "y", "W", "split", "alphas", "logit_scale", "logit_bias", "grid", "progress", "options"}
    allowed |= {"views"}
    for fn in (kfold.gda_alpha, kfold.grid_search, kfold.stratified_folds):
        assert set(inspect.signature(fn).parameters) <= allowed | {"k", "seed", "num_classes"}
    _, _, F, y, W = _problem([10, 10, 10, 10], 8, seed=9, spread=1.5)
    split = kfold.stratified_folds(T(y), 5, seed=0)
    a = kfold.gda_alpha(T(F), T(y), T(W), split)
    b = kfold.gda_alpha(T(F), T(y), T(W), split)
    assert torch.equal(a.counts, b.counts)
    shuffled = y.copy()
    np.random.default_rng(1).shuffle(shuffled)
    c = kfold.gda_alpha(T(F), T(shuffled), T(W), kfold.stratified_folds(T(shuffled), 5, seed=0))
    assert not torch.equal(a.counts, c.counts)


def _direct_kfold_counts(F, y, W, grid, split, normalize=False):
    """Per fold and grid point: tipx.logits on the held-out fold with the other folds as support."""
    counts = np.zeros((len(grid.alpha), len(grid.beta), len(grid.gamma)), dtype=np.int64)
    for i in range(split.k):
        tr, te = split.train(i), split.held_out(i)
        for a, alpha in enumerate(grid.alpha):
            for b, beta in enumerate(grid.beta):
                for g, gamma in enumerate(grid.gamma):
                    out = tipx.logits(
                        F[te],
                        W,
                        F[tr],
                        y[tr],
                        alpha=alpha,
                        beta=beta,
                        gamma=gamma,
                        normalize=normalize,
                    )
                    counts[a, b, g] += int((out.argmax(1) == y[te]).sum())
    return counts


@pytest.mark.parametrize("normalize", [False, True])
def test_kfold_tipx_counts_equal_a_per_fold_loop(normalize):
    _, _, F, y, W = _problem([7, 5, 9, 3, 6], 12, seed=4, spread=1.2)
    F, y, W = T(F), T(y), T(W)
    grid = search.Grid([0.1, 2.0, 8.0], [1.0, 5.5, 12.0, 30.0], [0.0, 1.0, 6.0])
    split = kfold.stratified_folds(y, 3, seed=7)

    class Progress:
        done = 0.0

        def advance(self, x):
            self.done += x

    progress = Progress()
    r = kfold.grid_search(F, y, W, grid, split, normalize=normalize, progress=progress)
    expected = _direct_kfold_counts(F, y, W, grid, split, normalize)
    assert r.counts.tolist() == expected.tolist()
    a, b, g = np.unravel_index(int(np.argmax(expected)), expected.shape)  # first maximum, C order
    assert (r.alpha, r.beta, r.gamma) == (grid.alpha[a], grid.beta[b], grid.gamma[g])
    assert r.correct == int(expected.max()) and r.total == len(y)
    assert progress.done == pytest.approx(grid.size)  # k searches fill one bar


def test_best_point_tie_rule_is_alpha_then_beta_then_gamma():
    grid = search.Grid([1.0, 2.0], [3.0, 4.0], [5.0, 6.0])
    counts = torch.zeros(2, 2, 2, dtype=torch.int64)
    counts[1, 0, 0] = counts[0, 1, 1] = counts[0, 1, 0] = 4  # tied: (0, 1, 0) comes first
    r = kfold.best_point(counts, grid, 10)
    assert (r.alpha, r.beta, r.gamma, r.correct) == (1.0, 4.0, 5.0, 4)


def test_split_for_another_support_set_is_refused():
    _, _, F, y, W = _problem([4, 4, 4], 5)
    split = kfold.stratified_folds(T(y[:-2]), 2, seed=0)
    with pytest.raises(SusxError, match="fold split covers"):
        kfold.gda_alpha(T(F), T(y), T(W), split)
