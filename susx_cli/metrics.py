"""Classification metrics from logits and labels (pure numpy).

Units: accuracies, recalls and the expected calibration error are in percent; the negative
log-likelihood is in nats per query.

Tie rule: classes with exactly equal logits rank by the lower class index. ``topk_indices`` is the one
ranking that predictions, their top-5 and every metric use (not torch.topk or torch.argmax, which promise
no order among equal values on every device).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ECE_BINS = 15
# Up to this many classes the full C x C confusion matrix is kept (100 x 100 int64 = 80 KB, readable at a
# glance); above it, ImageNet's 1000 classes would make a million mostly-zero cells, so each class keeps
# only its TOP_CONFUSIONS most frequent wrong predictions.
CONFUSION_MATRIX_MAX_CLASSES = 100
TOP_CONFUSIONS = 5

METRIC_DESCRIPTIONS = {
    "top1": "top-1 accuracy (%)",
    "top5": "top-5 accuracy (%)",
    "mean_per_class_recall": "mean over the classes that occur among the queries of each class's recall (%)",
    "ece": f"expected calibration error (%): {ECE_BINS} equal-width bins over the maximum softmax probability; "
    "softmax of the method's final logits, which already include its scale (100 x cosine for zero-shot), "
    "so the temperature is the method's own",
    "nll": "negative log-likelihood of the true class (nats per query): softmax of the method's final logits, "
    "which already include its scale (100 x cosine for zero-shot), so the temperature is the method's own",
    "n": "number of labelled queries",
}


def topk_indices(logits: np.ndarray, k: int) -> np.ndarray:
    """(n, k) class indices of (n, C) logits by decreasing logit, k capped at C; exact ties go to the
    lower index (a stable sort of the negated logits keeps equal ones in index order)."""
    k = min(k, logits.shape[1])
    order = np.argsort(-np.asarray(logits), axis=1, kind="stable")
    return order[:, :k]


def classification_metrics(top: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
    """top-1, top-5 and mean per-class recall (over classes that occur in ``labels``), in percent."""
    correct1 = top[:, 0] == labels
    correct5 = (top == labels[:, None]).any(1)
    recalls = [correct1[labels == c].mean() for c in range(num_classes) if (labels == c).any()]
    return {
        "top1": 100.0 * float(correct1.mean()),
        f"top{top.shape[1]}": 100.0 * float(correct5.mean()),
        "mean_per_class_recall": 100.0 * float(np.mean(recalls)),
        "n": int(labels.shape[0]),
    }


# ----------------------------------------------------------------------------------------- calibration


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """(n, C) log-probabilities, computed stably (max subtracted before exponentiating)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean of -log softmax(logits)[label] over the queries, in nats; logits (n, C), labels (n,)."""
    logp = log_softmax(logits)
    return float(-logp[np.arange(labels.shape[0]), labels].mean())


def expected_calibration_error(logits: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE in percent: sum over equal-width confidence bins (lo, hi] of |B|/n * |accuracy(B) - confidence(B)|,
    confidence = the maximum softmax probability of each query (Guo et al., 2017); logits (n, C)."""
    probs = np.exp(log_softmax(logits))
    confidence = probs.max(axis=1)
    # The prediction is ranked on the logits, as everywhere: logits apart can round to equal probabilities.
    correct = topk_indices(logits, 1)[:, 0] == labels
    # bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 0 cannot occur (>= 1/C).
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    n = labels.shape[0]
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.sum() / n * abs(correct[members].mean() - confidence[members].mean())
    return 100.0 * float(total)


def calibration_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """ECE (%) and NLL (nats) of the softmax of the final logits (n, C)."""
    return {"ece": expected_calibration_error(logits, labels), "nll": negative_log_likelihood(logits, labels)}


# ----------------------------------------------------------------------------------------- per class


@dataclass
class PerClass:
    """Per-class results over C classes.

    ``recall`` (C,) float64 in percent, NaN for a class without queries; ``queries`` (C,) int64 labelled
    queries per class; ``support`` (C,) int64 support images per class, None without a support set;
    ``confusion`` (C, C) int64 (row: true class, column: predicted) when C <= CONFUSION_MATRIX_MAX_CLASSES,
    else None and ``top_confused`` / ``top_counts`` (C, TOP_CONFUSIONS) int64: each class's most frequent
    wrong predictions (-1 / 0 where there are fewer).
    """

    recall: np.ndarray
    queries: np.ndarray
    support: np.ndarray | None = None
    confusion: np.ndarray | None = None
    top_confused: np.ndarray | None = None
    top_counts: np.ndarray | None = None

    def confusions(self, k: int = TOP_CONFUSIONS) -> tuple[np.ndarray, np.ndarray]:
        """Each class's k most frequent wrong predictions: (C, k) class indices (-1 padded) and counts."""
        if self.confusion is not None:
            return top_confusions_from_matrix(self.confusion, k)
        return self.top_confused[:, :k], self.top_counts[:, :k]

    def worst(self, limit: int = 10) -> list[int]:
        """Up to ``limit`` classes that have queries, by increasing recall (ties: the lower class index first)."""
        seen = np.flatnonzero(self.queries > 0)
        order = seen[np.argsort(self.recall[seen], kind="stable")]
        return [int(c) for c in order[:limit]]


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(C,) int64 occurrences of each class index in ``labels`` (entries < 0 ignored)."""
    labels = np.asarray(labels)
    return np.bincount(labels[labels >= 0], minlength=num_classes).astype(np.int64)


def per_class_recall(predicted: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(C,) recall in percent: correct / queries of each class; NaN for a class without queries."""
    queries = class_counts(labels, num_classes)
    correct = class_counts(labels[predicted == labels], num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(queries > 0, 100.0 * correct / np.maximum(queries, 1), np.nan)


def confusion_matrix(predicted: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int64: entry [t, p] = queries of true class t predicted as p."""
    flat = np.bincount(labels.astype(np.int64) * num_classes + predicted, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def top_confusions_from_matrix(
    confusion: np.ndarray, k: int = TOP_CONFUSIONS
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k largest off-diagonal entries: (C, k) column indices (-1 where the count is 0) and counts."""
    wrong = confusion.copy()
    np.fill_diagonal(wrong, 0)
    order = np.argsort(-wrong, axis=1, kind="stable")[:, :k]
    counts = np.take_along_axis(wrong, order, axis=1)
    return np.where(counts > 0, order, -1).astype(np.int64), counts.astype(np.int64)


def top_confusions(
    predicted: np.ndarray, labels: np.ndarray, num_classes: int, k: int = TOP_CONFUSIONS
) -> tuple[np.ndarray, np.ndarray]:
    """Like ``top_confusions_from_matrix`` without building the C x C matrix (memory O(wrong queries)):
    ties between counts go to the lower predicted index."""
    wrong = predicted != labels
    pairs, counts = np.unique(
        labels[wrong].astype(np.int64) * num_classes + predicted[wrong], return_counts=True
    )
    true, pred = pairs // num_classes, pairs % num_classes
    # Sort by (true class, count descending, predicted index): each true class's best come first.
    order = np.lexsort((pred, -counts, true))
    true, pred, counts = true[order], pred[order], counts[order]
    top = np.full((num_classes, k), -1, dtype=np.int64)
    top_counts = np.zeros((num_classes, k), dtype=np.int64)
    first = np.searchsorted(true, true, side="left")  # index of each entry's class's first entry
    rank = np.arange(true.shape[0]) - first
    keep = rank < k
    top[true[keep], rank[keep]] = pred[keep]
    top_counts[true[keep], rank[keep]] = counts[keep]
    return top, top_counts


def per_class_results(
    predicted: np.ndarray, labels: np.ndarray, num_classes: int, support_labels: np.ndarray | None = None
) -> PerClass:
    """Recall, query and support counts, and the confusion matrix or top confusions of labelled queries."""
    predicted, labels = np.asarray(predicted, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    out = PerClass(
        recall=per_class_recall(predicted, labels, num_classes),
        queries=class_counts(labels, num_classes),
        support=None if support_labels is None else class_counts(support_labels, num_classes),
    )
    if num_classes <= CONFUSION_MATRIX_MAX_CLASSES:
        out.confusion = confusion_matrix(predicted, labels, num_classes)
    else:
        out.top_confused, out.top_counts = top_confusions(predicted, labels, num_classes)
    return out
