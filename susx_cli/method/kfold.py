"""Name-only hyperparameters by k-fold over the support set: no target label is read.

Every function here takes the support set (F (N, D), y (N,)), the text classifier W (C, D) and a fold
split, and nothing about the target data. The split is stratified and seeded: each class's images, in
index order, are shuffled by one seeded generator (classes in order 0..C-1) and dealt round-robin into
the k folds, the dealer carrying on from where the previous class stopped, so fold sizes differ by at
most one. A method's hyperparameters are chosen by estimating on k - 1 folds and scoring the held-out
fold, summing correct counts over the k folds; ties keep the first grid point.

Rule: 2 <= k <= N, and every class needs at least two support images. Dealt round-robin, such a class
lands in at least two folds, so every training part (all folds but one) keeps one of its images, even
when the class has fewer images than k (it is then missing from some held-out folds, which is harmless).
A class with one image would be missing from one training part; it is refused, since lowering k cannot
help.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from susx_cli.errors import SusxError
from susx_cli.method import gda, search


@dataclass(frozen=True)
class FoldSplit:
    """fold[i] in 0..k-1 is the fold of support image i: (N,) int64. Record it with ``to_dict``."""

    k: int
    seed: int
    fold: torch.Tensor

    def held_out(self, i: int) -> torch.Tensor:
        """Indices of the images of fold i: (n_i,)."""
        return (self.fold == i).nonzero(as_tuple=True)[0]

    def train(self, i: int) -> torch.Tensor:
        """Indices of the images of every fold but i: (N - n_i,)."""
        return (self.fold != i).nonzero(as_tuple=True)[0]

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "seed": self.seed, "fold": [int(v) for v in self.fold.tolist()]}


def stratified_folds(y: torch.Tensor, k: int, seed: int, num_classes: int | None = None) -> FoldSplit:
    """A seeded, stratified split of support labels y (N,) into k folds (see the module's rule)."""
    y = y.to(torch.int64)
    N = int(y.shape[0])
    C = num_classes if num_classes is not None else (int(y.max()) + 1 if N else 0)
    if not 2 <= k <= N:
        raise SusxError(
            f"k-fold needs 2 <= k <= the number of support images ({N}), got k = {k}",
            hint="use --folds 5, or fewer folds than support images",
        )
    labels = y.cpu()
    if N and (int(labels.min()) < 0 or int(labels.max()) >= C):
        raise SusxError(f"support labels must lie in 0..{C - 1}", hint="check the support set's classes")
    sizes = torch.bincount(labels, minlength=C)
    thin = (sizes < 2).nonzero(as_tuple=True)[0]
    if thin.numel():
        raise SusxError(
            f"k-fold needs at least 2 support images of every class; {thin.numel()} of {C} classes have fewer "
            f"(first: class {int(thin[0])})",
            hint="folds split images, never the views of one image; curate more images per class, or use "
            "--mode val (or loo, for a method that has it)",
        )
    gen = torch.Generator().manual_seed(seed)
    fold = torch.empty(N, dtype=torch.int64)
    dealer = 0
    for c in range(C):
        members = (labels == c).nonzero(as_tuple=True)[0]
        order = members[torch.randperm(members.numel(), generator=gen)]
        fold[order] = (dealer + torch.arange(order.numel())) % k
        dealer = (dealer + order.numel()) % k
    return FoldSplit(k=k, seed=seed, fold=fold.to(y.device))


def _check_split(split: FoldSplit, y: torch.Tensor) -> None:
    if split.fold.shape != y.shape:
        raise SusxError(
            f"the fold split covers {split.fold.numel()} images, the support set has {y.numel()}",
            hint="make the split from this support set's labels",
        )


def gda_alpha(
    F: torch.Tensor,
    y: torch.Tensor,
    W: torch.Tensor,
    split: FoldSplit,
    alphas: Sequence[float] = gda.ALPHA_GRID,
    logit_scale: float = 100.0,
    logit_bias: float = 0.0,
    views: torch.Tensor | None = None,
) -> gda.AlphaChoice:
    """GDA's alpha by k-fold: per fold, the head from the other folds scores the held-out fold; correct
    counts (A,) are summed over folds and the first maximum is kept. total = N.

    With ``views`` (N, K, D), each head is fitted on the view rows of the training folds' images (as
    ``fit_gda`` on every view) and scores the held-out images' averaged rows F: the folds split images,
    so no view of a held-out image is ever fitted on."""
    _check_split(split, y)
    C = W.shape[0]
    per_image = 1 if views is None else views.shape[1]
    counts = torch.zeros(len(alphas), dtype=torch.int64)
    for i in range(split.k):
        train, held = split.train(i), split.held_out(i)
        if train.numel() * per_image - C < 1:
            raise SusxError(
                f"k-fold: fold {i}'s training part has one image per class, too few for GDA's covariance",
                hint="use more folds or more support images per class",
            )
        if views is None:
            head = gda.fit_gda(F[train], y[train], C)
        else:
            rows = views[train].reshape(-1, views.shape[2])
            head = gda.fit_gda(rows, y[train].repeat_interleave(per_image), C)
        counts += gda.alpha_counts(
            F[held], y[held], W, head, alphas, logit_scale, logit_bias=logit_bias
        ).cpu()
    return gda.pick_alpha(counts, alphas, int(F.shape[0]))


class _PerFold:
    """Scales a progress bar's advances so k searches fill one search's total."""

    def __init__(self, inner, k: int):
        self.inner, self.k = inner, k

    def advance(self, amount: float) -> None:
        self.inner.advance(amount / self.k)


def best_point(counts: torch.Tensor, grid: search.Grid, total: int) -> search.SearchResult:
    """The first grid point, in alpha-major, then beta, then gamma order, with the most correct queries."""
    flat = int(torch.argmax(counts.flatten()))  # argmax keeps the first maximum: the tie rule
    a, rest = divmod(flat, len(grid.beta) * len(grid.gamma))
    b, g = divmod(rest, len(grid.gamma))
    correct = int(counts.flatten()[flat])
    return search.SearchResult(grid.alpha[a], grid.beta[b], grid.gamma[g], correct, total, counts.cpu())


def grid_search(
    F: torch.Tensor,
    y: torch.Tensor,
    W: torch.Tensor,
    grid: search.Grid,
    split: FoldSplit,
    *,
    progress=None,
    **options: Any,
) -> search.SearchResult:
    """TIP-X (Tip-Adapter with gamma = [0]) by k-fold: search.grid_search with support = the other folds
    and queries = the held-out fold, (A, B, G) counts summed over folds. ``options`` (tau, logit_scale,
    logit_bias, normalize, chunk, pair_chunk) go to search.grid_search unchanged. total = N."""
    _check_split(split, y)
    scaled = None if progress is None else _PerFold(progress, split.k)
    counts = torch.zeros(len(grid.alpha), len(grid.beta), len(grid.gamma), dtype=torch.int64)
    for i in range(split.k):
        train, held = split.train(i), split.held_out(i)
        r = search.grid_search(
            F[held], y[held], F[train], y[train], W, grid, exclude_self=False, progress=scaled, **options
        )
        counts += r.counts
    return best_point(counts, grid, int(F.shape[0]))
