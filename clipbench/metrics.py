"""Measurements on tensors: accuracy and the A-CLIP task-difficulty measures (scores live in scoring.py)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent, computed once from integer counts: 100 * correct / total in float64.

    The same predictions always give the same bits, so a re-run reproduces a result file exactly.
    """
    return accuracy_of(correct(predictions, labels))


def correct(predictions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per image, whether its prediction is its label (bool)."""
    if len(labels) == 0:
        raise ValueError("accuracy of an empty set")
    return predictions.cpu() == labels.cpu()


def accuracy_of(correct: torch.Tensor) -> float:
    """100 * correct / total in float64 (what scoring.accuracy_from_correct recomputes from the bits)."""
    if len(correct) == 0:
        raise ValueError("accuracy of an empty set")
    return 100.0 * int(correct.sum()) / len(correct)


def silhouette_modality(image_emb: torch.Tensor, text_emb: torch.Tensor) -> float:
    """Silhouette of image vs text embeddings labelled by *modality* (images 1, texts 0): A-CLIP's measure.

    As the authors' released code computes it (mit-ll/IIMM, get_metric_scores.py):
    L2-normalised image embeddings and class text embeddings stacked, labelled by
    modality, scikit-learn's silhouette with its default Euclidean distance.  High
    means the two modalities sit apart (a large modality gap): images and their
    text labels are misaligned, the task is harder for zero-shot CLIP.
    """
    from sklearn.metrics import silhouette_score

    img = torch.nn.functional.normalize(image_emb.float(), dim=-1).cpu().numpy()
    txt = torch.nn.functional.normalize(text_emb.float(), dim=-1).cpu().numpy()
    x = np.vstack([img, txt])
    y = np.concatenate([np.ones(len(img)), np.zeros(len(txt))])
    return float(silhouette_score(x, y))


def silhouette_class(image_emb: torch.Tensor, labels: torch.Tensor, text_emb: torch.Tensor) -> float:
    """Silhouette (cosine distance) of image embeddings clustered by *class*, each class's text
    embedding added to its cluster.  High means well-separated classes, each near its label: easier.
    (clipbench's reading of the A-CLIP paper before its code was read; kept beside the paper's measure.)"""
    from sklearn.metrics import silhouette_score

    x = torch.cat([image_emb, text_emb]).float().cpu().numpy()
    y = torch.cat([labels.cpu(), torch.arange(len(text_emb))]).numpy()
    if len(np.unique(y)) < 2:
        raise ValueError("silhouette needs at least two classes")
    return float(silhouette_score(x, y, metric="cosine"))


def mean_correct_cosine(image_emb: torch.Tensor, labels: torch.Tensor, text_emb: torch.Tensor) -> float:
    """Mean cosine similarity of each image with its correct label's text embedding."""
    img = torch.nn.functional.normalize(image_emb.float(), dim=-1)
    txt = torch.nn.functional.normalize(text_emb.float(), dim=-1)
    return float((img * txt[labels]).sum(-1).mean())


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Rank correlation (nan when either side is constant or fewer than 3 points)."""
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    return float(spearmanr(a, b).statistic)


EXACT_UP_TO = 8  # points: up to here the p-value counts all n! orderings (40,320 at 8)


def spearman_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Spearman's rho: exact over every ordering of ``b`` for up to 8 points (the
    handful of tasks a suite has, where the t approximation is poor: rho 0.9 on 5 tasks is p = 0.083),
    scipy's t approximation beyond; nan where :func:`spearman` is nan."""
    import itertools

    from scipy.stats import rankdata

    rho = spearman(a, b)
    if rho != rho:
        return float("nan")
    if len(a) > EXACT_UP_TO:
        from scipy.stats import spearmanr

        return float(spearmanr(a, b).pvalue)
    ra, rb = rankdata(a), rankdata(b)
    hits = total = 0
    for order in itertools.permutations(rb):
        r = _pearson(ra, order)
        hits += abs(r) >= abs(rho) - 1e-12
        total += 1
    return hits / total


def _pearson(x, y) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((u - mx) * (v - my) for u, v in zip(x, y))
    vx, vy = sum((u - mx) ** 2 for u in x), sum((v - my) ** 2 for v in y)
    return cov / (vx * vy) ** 0.5 if vx and vy else 0.0
