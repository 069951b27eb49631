"""Name-only search (leave-one-out and k-fold over the support set) against the implementation frozen in
tests/method/frozen_search.py: the same counts at every grid point, so the same choice, on problems shaped like
CLIP features (a shared direction, classes a small step apart) where, in leave-one-out, nearly every
class is a rival at small betas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from susx_cli.method import kfold, search, tipx
from tests.method import frozen_search
from tests.method.test_method import T
from tests.method.test_search_scale import SCALE_GRID, _labels


def _clip_like(N: int, C: int, D: int, labels: np.ndarray, seed: int = 0):
    """Support features F (N, D) with labels y, and the text classifier W (C, D), as
    benchmarks/imagenet_scale.py builds them: cosines near 0.9, classes apart by a small part."""
    rng = np.random.default_rng(seed)

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    common, centres = unit(rng.normal(size=(1, D))), unit(rng.normal(size=(C, D)))
    W = unit(common + 0.2 * centres + 0.011 * rng.normal(size=(C, D)))
    F = unit(common + 0.2 * centres[labels] + 0.045 * rng.normal(size=(N, D)))
    return T(F), T(labels), T(W)


def _frozen_kfold(F, y, W, grid, split, **options) -> torch.Tensor:
    """kfold.grid_search's loop over folds on the frozen search: (A, B, G) counts."""
    counts = torch.zeros(len(grid.alpha), len(grid.beta), len(grid.gamma), dtype=torch.int64)
    for i in range(split.k):
        train, held = split.train(i), split.held_out(i)
        counts += frozen_search.grid_search(F[held], y[held], F[train], y[train], W, grid, **options).counts
    return counts


@pytest.mark.parametrize("kind", ["balanced", "unequal", "lopsided"])
@pytest.mark.parametrize("normalize", [False, True])
def test_leave_one_out_counts_equal_the_frozen_search(kind, normalize):
    F, y, W = _clip_like(150, 10, 24, _labels(kind, 150, 10), seed=1)
    args = (F, y, F, y, W, SCALE_GRID)
    old = frozen_search.grid_search(*args, exclude_self=True, normalize=normalize, chunk=150)
    assert old.counts.min() < old.counts.max()  # the grid matters: not a degenerate problem
    for chunk, block in ((67, 9), (150, None)):  # several chunks and blocks; one of each
        new = search.grid_search(*args, exclude_self=True, normalize=normalize, chunk=chunk, block=block)
        assert torch.equal(new.counts, old.counts)
        assert (new.alpha, new.beta, new.gamma, new.correct) == (old.alpha, old.beta, old.gamma, old.correct)


def test_leave_one_out_tip_adapter_counts_equal_the_frozen_search():
    F, y, W = _clip_like(160, 10, 24, _labels("balanced", 160, 10), seed=2)
    grid = search.Grid(SCALE_GRID.alpha, SCALE_GRID.beta, [0.0])
    old = frozen_search.grid_search(F, y, F, y, W, grid, exclude_self=True)
    new = search.grid_search(F, y, F, y, W, grid, exclude_self=True, chunk=50, block=7)
    assert torch.equal(new.counts, old.counts)


@pytest.mark.parametrize("normalize", [False, True])
def test_kfold_counts_equal_the_frozen_search(normalize):
    F, y, W = _clip_like(120, 8, 24, _labels("unequal", 120, 8), seed=3)
    split = kfold.stratified_folds(y, 4, seed=0, num_classes=8)
    old = _frozen_kfold(F, y, W, SCALE_GRID, split, normalize=normalize)
    assert old.min() < old.max()
    new = kfold.grid_search(F, y, W, SCALE_GRID, split, normalize=normalize, chunk=23)
    assert torch.equal(new.counts, old)
    best = kfold.best_point(old, SCALE_GRID, 120)
    assert (new.alpha, new.beta, new.gamma, new.correct) == (best.alpha, best.beta, best.gamma, best.correct)


def test_narrowed_rivals_count_what_all_rivals_count():
    # Leave-one-out at the first chunk: per group of betas, the rivals narrowed to that group's range count
    # the same at each of its betas as the chunk's rivals, and at large betas they are far fewer.
    F, y, W = _clip_like(192, 12, 32, _labels("balanced", 192, 12), seed=4)
    C, betas = 12, SCALE_GRID.beta
    layout = search.ClassLayout.of(y, C)
    S = F @ F.T
    x = layout.distances(S.clone(), 0, torch.empty(192, layout.columns, dtype=torch.float64))
    seen = tipx.class_counts(y, C, 192, 0)
    kl = tipx.kl_sums(F, F, y, W, exclude_self=True).term(slice(0, 192), seen)
    out = torch.empty(len(betas), 192, C, dtype=torch.float64)
    caches = search.cache_logits(x, betas, layout, y, out, block=16)
    alphas, gammas = T(np.array(SCALE_GRID.alpha)), T(np.array(SCALE_GRID.gamma))
    rivals = search.Rivals.of(caches, tipx.zero_shot_logits(F, W), kl, y, SCALE_GRID.alpha, gammas)
    sizes = []
    for g, group in enumerate(search.beta_groups(len(betas))):
        narrowed = rivals.within(caches.group_low[g], caches.group_high[g])
        sizes.append(narrowed.rows.numel())
        for b in group:
            full = search.count_correct(caches.values[b], rivals, alphas, gammas, pair_chunk=101)
            assert torch.equal(search.count_correct(caches.values[b], narrowed, alphas, gammas), full)
    assert rivals.rows.numel() > 0.8 * 192 * (C - 1)  # loo: nearly every class is a rival somewhere
    assert sizes[-1] < sizes[0] / 4


def test_min_max_leaves_out_the_own_pair_and_restores_it():
    rng = np.random.default_rng(5)
    x = T(rng.uniform(0, 1, (5, 9)))
    x[1, 4] = -3.0  # query 1's own pair with offset 3: the smallest value, left out
    x[2, 5] = 7.0  # query 2's own pair: the largest, left out
    before = x.clone()
    mask = frozen_search.self_mask(x, 3)
    assert tipx.min_max(x, 3) == frozen_search.min_max(x, mask)
    assert tipx.min_max(x, 3) == (float(x[mask].min()), float(x[mask].max()))
    assert torch.equal(x, before)
    assert tipx.min_max(x) == (-3.0, 7.0)
