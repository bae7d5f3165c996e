"""Task difficulty before any training (A-CLIP, Niss et al. 2024).

- ``silhouette_modality`` (the paper's, as its authors' code computes it): the
  silhouette of image and class-text embeddings labelled by modality, a measure
  of image/text misalignment; higher = harder.
- ``silhouette_class`` (clipbench's earlier reading): the silhouette of image
  embeddings clustered by class with each class's text embedding in its
  cluster; higher = easier.
- ``cosine``: the mean cosine similarity of an image with its correct class's
  text embedding; higher = easier.

The paper finds the silhouette predicts fine-tuning outcomes better than the
cosine; :func:`correlate` measures that on your own results.
"""

from __future__ import annotations

from typing import Callable

import torch

from clipbench import metrics
from clipbench.method import Adapted
from clipbench.models import ClipModel
from clipbench.tasks import ImageSet, Task


MEASURES = ("silhouette_modality", "silhouette_class", "cosine")
HARDER_WHEN = {"silhouette_modality": "higher", "silhouette_class": "lower", "cosine": "lower"}


@torch.inference_mode()
def task_difficulty(model: ClipModel, task: Task, batch_size: int | None = None,
                    features: Callable[[ImageSet], torch.Tensor] | None = None) -> dict:
    """The three measures on the task's test set; ``features(images)`` gives the pretrained embeddings
    (the command passes the embedding cache's, so a second call encodes nothing)."""
    images = task.test.value
    if features is not None:
        emb = features(images).to(model.device)
    else:
        from clipbench.protocol import default_batch_size

        batch = batch_size or default_batch_size(model.device)
        emb = torch.cat([model.encode_image(x) for x, _ in images.batches(batch)])
    text = Adapted(model).text_head(task)
    labels = images.labels
    return {
        "task": task.name,
        "classes": task.num_classes,
        "images": len(images),
        "silhouette_modality": metrics.silhouette_modality(emb, text),
        "silhouette_class": metrics.silhouette_class(emb, labels, text),
        "cosine": metrics.mean_correct_cosine(emb, labels, text),
    }


def correlate(difficulties: list[dict], runs: list[tuple[str, dict | None]]) -> list[dict]:
    """Spearman correlation of each difficulty measure with each method's ID gain and forgetting; ``runs``
    are (method, summary) pairs (:func:`clipbench.scoring.summary_of` of a result).

    One row per (method, outcome), with each rho's two-sided p-value (``<measure>_p``); nan where fewer
    than three tasks overlap or an outcome is constant.
    """
    by_task = {d["task"]: d for d in difficulties}
    rows = []
    for method, summary in runs:
        tasks = (summary or {}).get("tasks") or {}
        common = [t for t in tasks if t in by_task]
        for outcome in ("id_gain", "mean_forgetting"):
            values = [(by_task[t], tasks[t][outcome]["mean"]) for t in common if tasks[t].get(outcome)]
            # forgetting is over scorable probes only (scoring.py); a task without any has no value
            row = {"method": method, "outcome": outcome, "tasks": len(values)}
            for measure in MEASURES:
                xs, ys = [d[measure] for d, _ in values], [v for _, v in values]
                row[measure] = metrics.spearman(xs, ys)
                row[f"{measure}_p"] = metrics.spearman_p(xs, ys)
            rows.append(row)
    return rows
