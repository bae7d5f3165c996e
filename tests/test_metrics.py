import math

import numpy as np
import pytest
import torch

from clipbench import metrics


def test_accuracy_is_an_exact_fraction():
    assert metrics.accuracy(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2])) == 75.0
    # 379 of 400: float32 averaging gave 94.74999904632568; the count gives 100 * 379 / 400 exactly
    preds = torch.zeros(400, dtype=torch.long)
    labels = torch.zeros(400, dtype=torch.long)
    labels[:21] = 1
    assert metrics.accuracy(preds, labels) == 100 * 379 / 400 == 94.75


def test_silhouette_by_modality_follows_the_authors_code():
    """IIMM's get_metric_scores.py: L2-normalised images and texts, labels images 1 / texts 0, Euclidean."""
    from sklearn.metrics import silhouette_score

    g = torch.Generator().manual_seed(0)
    img = torch.randn(30, 8, generator=g) + 2.0
    txt = torch.randn(5, 8, generator=g)
    x = np.vstack([torch.nn.functional.normalize(img, dim=-1).numpy(), torch.nn.functional.normalize(txt, dim=-1).numpy()])
    y = np.concatenate([np.ones(30), np.zeros(5)])
    assert metrics.silhouette_modality(img, txt) == pytest.approx(silhouette_score(x, y), abs=1e-6)
    # modalities far apart score near 1, interleaved near 0 or below
    e = torch.eye(8)
    apart_img = e[0] + 0.05 * torch.randn(20, 8, generator=g)
    apart_txt = e[1] + 0.05 * torch.randn(4, 8, generator=g)
    assert metrics.silhouette_modality(apart_img, apart_txt) > 0.8
    same = torch.randn(20, 8, generator=g)
    assert metrics.silhouette_modality(same, same[:5] + 1e-3) < 0.1


def test_silhouette_by_class_matches_hand_computation():
    # two classes on the unit circle; text embeddings join their clusters
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # points: a=(1,0) c0, b=(0,1) c1, ta=(1,0) c0, tb=(0,1) c1; cosine distance 0 within, 1 across
    # every point: a(i) = 0, b(i) = 1 -> s = 1
    assert metrics.silhouette_class(img, labels, txt) == pytest.approx(1.0)

    img = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    labels = torch.tensor([0, 0])
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # cluster 0: p1=(1,0), p2=(1,1)/sqrt2, t0=(1,0); cluster 1: t1=(0,1) alone (s=0)
    d = lambda u, v: 1 - np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v)
    p1, p2, t0, t1 = np.array([1, 0]), np.array([1, 1]), np.array([1, 0]), np.array([0, 1])
    s = []
    for p, others in ((p1, (p2, t0)), (p2, (p1, t0)), (t0, (p1, p2))):
        a = np.mean([d(p, o) for o in others])
        b = d(p, t1)
        s.append((b - a) / max(a, b))
    expected = (sum(s) + 0.0) / 4
    assert metrics.silhouette_class(img, labels, txt) == pytest.approx(expected, abs=1e-6)


def test_mean_correct_cosine_matches_hand_computation():
    img = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    labels = torch.tensor([1, 0])
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # image 0 (0.6, 0.8) with class 1 (0,1): 0.8; image 1 (0,1) with class 0 (1,0): 0
    assert metrics.mean_correct_cosine(img, labels, txt) == pytest.approx(0.4)


def test_spearman_needs_three_points():
    assert math.isnan(metrics.spearman([1, 2], [2, 1]))
    assert metrics.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert metrics.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)


def test_spearman_p_is_exact_for_a_handful_of_tasks():
    """Five tasks: rho 1.0 has p = 2/120, rho 0.9 has p = 10/120 (the t approximation says 0.037)."""
    assert metrics.spearman_p([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == pytest.approx(2 / 120)
    assert metrics.spearman([1, 2, 3, 4, 5], [1, 2, 3, 5, 4]) == pytest.approx(0.9)
    assert metrics.spearman_p([1, 2, 3, 4, 5], [1, 2, 3, 5, 4]) == pytest.approx(10 / 120)
    assert math.isnan(metrics.spearman_p([1, 2], [2, 1]))
    big = list(range(12))
    assert metrics.spearman_p(big, big) < 1e-6  # past eight points: scipy's approximation
