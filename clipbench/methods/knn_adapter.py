"""Built-in plugin: the kNN adapter, latent updates localised around the support set.

Ibing, Lim, Kobbelt, "Localized Latent Updates for Fine-Tuning Vision-Language
Models", arXiv 2212.06556: "a lightweight adapter that only updates the model's
predictions close to seen datapoints".  Only the abstract could be read, so
what follows is clipbench's reconstruction of that idea, not the paper's
algorithm: the kernel, the neighbour count, the radius grid and the training
below are clipbench's choices.  Each support image i gets a learned
offset d_i of its image embedding; a query embedding f moves by the offsets of
its k nearest support embeddings, weighted by a kernel with compact support,

    f' = normalise(f + sum_i w_i(f) d_i),   w_i(f) = max(0, 1 - dist(f, s_i) / r)^2,

with dist the cosine distance.  Beyond radius r of every support embedding the
weights are exactly 0 and the output is exactly zero-shot CLIP; at a support
point its own offset acts in full.  Offsets start at zero and are trained with
cross-entropy on the support set; the radius is chosen on the validation split
(accuracy, then loss to break ties; the paper's closest published relative,
Tip-Adapter, tunes its kernel on validation data the same way).  The encoders are untouched; probes see the
adapter wherever their images fall near the support set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clipbench.config import MethodConfig, option
from clipbench.hookspecs import hookimpl
from clipbench.method import Adapted, Method
from clipbench.training import best_on_validation, full_batch


@dataclass(frozen=True)
class KNNAdapterConfig(MethodConfig):
    neighbours: int = option(8, "support embeddings that vote for a query")
    radii: tuple[float, ...] = option((0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6),
                                      "radii (cosine distance) tried; one is chosen on validation")
    lr: float = option(1e-2, "Adam learning rate of the offsets (full batch)")
    steps: int = option(300, "full-batch steps")


def local_weights(query: torch.Tensor, keys: torch.Tensor, radius: float, k: int) -> torch.Tensor:
    """(Q, N) kernel weights, non-zero only for the k nearest keys within ``radius`` (cosine distance)."""
    dist = 1.0 - query @ keys.T
    w = (1.0 - dist / radius).clamp(min=0).pow(2)
    if k < keys.shape[0]:
        kth = torch.topk(dist, k, dim=1, largest=False).values[:, -1:]
        w = torch.where(dist <= kth, w, torch.zeros_like(w))
    return w


def apply_offsets(query: torch.Tensor, keys: torch.Tensor, offsets: torch.Tensor, radius: float, k: int):
    w = local_weights(query, keys, radius, k)
    moved = F.normalize(query + w @ offsets, dim=-1)
    touched = (w > 0).any(dim=1, keepdim=True)
    return torch.where(touched, moved, query)


class LocalLatentAdapter(Adapted):
    def __init__(self, model, task, keys, offsets, radius, k):
        super().__init__(model, trainable=offsets.numel(), task=task, added=[offsets])  # keys are stored, not trained
        self.keys, self.offsets, self.radius, self.k = keys, offsets, radius, k

    def transform_image_features(self, features):
        return apply_offsets(features, self.keys, self.offsets, self.radius, self.k)


class KNNAdapter(Method):
    name = "knn-adapter"
    citation = ("clipbench's reconstruction (kernel, radius grid and training its own) of Ibing, Lim, Kobbelt, "
                "Localized Latent Updates for Fine-Tuning Vision-Language Models, arXiv 2212.06556")
    summary = "learned offsets of support embeddings, acting only within a radius of them (reconstruction)"
    config_class = KNNAdapterConfig

    def adapt(self, model, fewshot, task, config, ctx):
        keys = fewshot.features(model)
        val = fewshot.features(model, "val")
        with torch.no_grad():
            head = Adapted(model).text_head(task)
        labels, val_labels = fewshot.labels.to(keys.device), fewshot.val_labels.to(keys.device)
        scale = float(model.logit_scale.detach())
        k = min(config.neighbours, len(keys))

        def fit_and_score(radius):
            offsets = torch.zeros_like(keys, requires_grad=True)
            opt = torch.optim.Adam([offsets], lr=config.lr)
            full_batch(opt, lambda: F.cross_entropy(scale * apply_offsets(keys, keys, offsets, radius, k) @ head.T,
                                                    labels), config.steps)
            offsets = offsets.detach()
            with torch.no_grad():
                val_logits = scale * apply_offsets(val, keys, offsets, radius, k) @ head.T
            # accuracy first; the validation loss breaks the ties a handful of images leaves
            score = (float((val_logits.argmax(1) == val_labels).float().mean()),
                     -float(F.cross_entropy(val_logits, val_labels)))
            return score, offsets

        radius, offsets = best_on_validation(config.radii, fit_and_score, ctx.progress)
        return LocalLatentAdapter(model, task, keys, offsets, radius, k)


@hookimpl
def clipbench_register_methods(register):
    register(KNNAdapter())
