"""Classification metrics from logits and labels (pure numpy)."""

from __future__ import annotations

import numpy as np


def topk_indices(logits: np.ndarray, k: int) -> np.ndarray:
    """(n, k) class indices by decreasing logit; ties broken by the lower index, like argmax."""
    k = min(k, logits.shape[1])
    order = np.argsort(-logits, axis=1, kind="stable")
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
