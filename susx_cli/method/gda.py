"""GDA (Gaussian discriminant analysis on the support set) exactly as docs/METHOD.md states it, in float64.

Shapes: F (N, D) support features, y (N,) support labels in 0..C-1, f (n, D) query features, W (C, D)
text classifier (row c is the class-c text embedding, as in method/tipx.py and docs/METHOD.md). Whatever
dtype arrives, everything is computed and counted in float64.

Support rule: every class needs at least one image, and the support set needs at least one within-class
degree of freedom, N - C >= 1 (some class has two images; this implies N - 1 >= 1). With N = C every
image is its own class mean, X = 0, Sigma = 0 and the head carries no information, so it is refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from susx_cli.errors import SusxError
from susx_cli.method import tipx

ALPHA_GRID = (1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)  # the paper's grid for alpha


@dataclass(frozen=True)
class GDAHead:
    """The fitted linear head. mu, weight: (C, D); precision: (D, D); bias: (C,); all float64."""

    mu: torch.Tensor
    precision: torch.Tensor
    weight: torch.Tensor  # W_gda = mu P (row k is P mu_k since P is symmetric)
    bias: torch.Tensor  # b_k = log(1 / C) - 0.5 mu_k^T P mu_k
    support_size: int  # N, the images the head was estimated from

    @property
    def num_classes(self) -> int:
        return self.mu.shape[0]


@dataclass
class AlphaChoice:
    """The chosen alpha and the correct-query count at every grid point (first maximum kept)."""

    alpha: float
    correct: int
    total: int
    alphas: list[float]
    counts: torch.Tensor = field(repr=False)  # (A,) int64, in the order of ``alphas``

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def check_finite(x: torch.Tensor, what: str) -> None:
    """A one-line error if ``x`` holds NaN or infinity."""
    if not bool(torch.isfinite(x).all()):
        raise SusxError(
            f"the {what} contain NaN or infinite values", hint="re-embed the images; check the input files"
        )


def check_support(F: torch.Tensor, y: torch.Tensor, num_classes: int) -> None:
    """Refuse a support set GDA cannot be estimated from (see the module's support rule)."""
    if F.ndim != 2 or y.ndim != 1 or F.shape[0] != y.shape[0]:
        raise SusxError(
            f"support features {tuple(F.shape)} and labels {tuple(y.shape)} do not match",
            hint="features must be (N, D) with one label per row",
        )
    check_finite(F, "support features")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise SusxError(
            f"support labels must lie in 0..{num_classes - 1}", hint="check the support set's classes"
        )
    sizes = torch.bincount(y, minlength=num_classes)
    empty = (sizes == 0).nonzero(as_tuple=True)[0]
    if empty.numel():
        raise SusxError(
            f"GDA needs a support image of every class; {empty.numel()} of {num_classes} classes have none "
            f"(first: class {int(empty[0])})",
            hint="curate images for every class",
        )
    if F.shape[0] - num_classes < 1:
        raise SusxError(
            f"GDA needs more support images than classes for a covariance; got {F.shape[0]} images "
            f"for {num_classes} classes",
            hint="give at least one class a second support image",
        )


def fit_gda(F: torch.Tensor, y: torch.Tensor, num_classes: int) -> GDAHead:
    """Class means (C, D), shrinkage precision (D, D) and the linear head of docs/METHOD.md's GDA.

    Sigma = X^T X / (N - 1) with X = F - mu[y]; P = D pinv((N - 1) Sigma + trace(Sigma) I_D);
    W_gda = mu P; b_k = log(1 / C) - 0.5 mu_k^T P mu_k.
    """
    y = y.to(device=F.device, dtype=torch.int64)
    check_support(F, y, num_classes)
    F = F.to(torch.float64)
    N, D = F.shape
    sizes = torch.bincount(y, minlength=num_classes).to(F.dtype)
    mu = torch.zeros(num_classes, D, dtype=F.dtype, device=F.device).index_add_(0, y, F) / sizes[:, None]
    X = F - mu[y]
    sigma = X.T @ X / (N - 1)
    eye = torch.eye(D, dtype=F.dtype, device=F.device)
    P = D * torch.linalg.pinv((N - 1) * sigma + torch.trace(sigma) * eye, hermitian=True)
    P = 0.5 * (P + P.T)  # exactly symmetric, so mu P is the stack of the P mu_k
    weight = mu @ P
    bias = math.log(1.0 / num_classes) - 0.5 * (weight * mu).sum(1)
    return GDAHead(mu=mu, precision=P, weight=weight, bias=bias, support_size=N)


def gda_term(f: torch.Tensor, head: GDAHead) -> torch.Tensor:
    """The GDA logits f W_gda^T + b without the zero-shot part: (n, C) float64."""
    if f.ndim != 2 or f.shape[1] != head.mu.shape[1]:
        raise SusxError(
            f"query features {tuple(f.shape)} do not match the GDA head's dimension {head.mu.shape[1]}",
            hint="use features from the model the support set was embedded with",
        )
    check_finite(f, "query features")
    return f.to(torch.float64) @ head.weight.T + head.bias


def _zero_shot(
    f: torch.Tensor, W: torch.Tensor, head: GDAHead, logit_scale: float, logit_bias: float = 0.0
) -> torch.Tensor:
    if W.shape != head.mu.shape:
        raise SusxError(
            f"text classifier {tuple(W.shape)} does not match the GDA head {tuple(head.mu.shape)}",
            hint="use the text classifier the support set was calibrated with",
        )
    check_finite(W, "text classifier weights")
    return tipx.zero_shot_logits(f.to(torch.float64), W.to(torch.float64), logit_scale, logit_bias)


def gda_logits(
    f: torch.Tensor,
    W: torch.Tensor,
    head: GDAHead,
    alpha: float,
    logit_scale: float = 100.0,
    logit_bias: float = 0.0,
) -> torch.Tensor:
    """logit_scale f W^T + logit_bias + alpha (f W_gda^T + b): (n, C) float64; prediction = argmax."""
    term = gda_term(f, head)
    return _zero_shot(f, W, head, logit_scale, logit_bias) + alpha * term


def alpha_counts(
    f: torch.Tensor,
    yq: torch.Tensor,
    W: torch.Tensor,
    head: GDAHead,
    alphas: Sequence[float] = ALPHA_GRID,
    logit_scale: float = 100.0,
    chunk: int = 4096,
    logit_bias: float = 0.0,
) -> torch.Tensor:
    """Correct queries (argmax, first index on ties) at every alpha: (A,) int64.

    Queries go in chunks of rows, so memory stays O(chunk * C); integer counts do not depend on it.
    """
    if len(alphas) == 0:
        raise SusxError("the alpha grid has no values", hint="give at least one alpha")
    if yq.shape != (f.shape[0],):
        raise SusxError(
            f"{f.shape[0]} query features but labels of shape {tuple(yq.shape)}",
            hint="give one label per query",
        )
    yq = yq.to(device=f.device, dtype=torch.int64)
    counts = torch.zeros(len(alphas), dtype=torch.int64, device=f.device)
    for start in range(0, f.shape[0], chunk):
        fc, yc = f[start : start + chunk], yq[start : start + chunk]
        term, Z = gda_term(fc, head), _zero_shot(fc, W, head, logit_scale, logit_bias)
        counts += torch.stack([((Z + a * term).argmax(1) == yc).sum() for a in alphas])
    return counts


def pick_alpha(counts: torch.Tensor, alphas: Sequence[float], total: int) -> AlphaChoice:
    """The first alpha with the most correct queries (torch.argmax keeps the first maximum)."""
    best = int(torch.argmax(counts))
    return AlphaChoice(alphas[best], int(counts[best]), total, list(alphas), counts.cpu())


def choose_alpha(
    f: torch.Tensor,
    yq: torch.Tensor,
    W: torch.Tensor,
    head: GDAHead,
    alphas: Sequence[float] = ALPHA_GRID,
    logit_scale: float = 100.0,
    logit_bias: float = 0.0,
) -> AlphaChoice:
    """alpha on labelled validation features f (n, D), yq (n,): the paper's grid, first maximum kept."""
    counts = alpha_counts(f, yq, W, head, alphas, logit_scale, logit_bias=logit_bias)
    return pick_alpha(counts, alphas, int(f.shape[0]))
