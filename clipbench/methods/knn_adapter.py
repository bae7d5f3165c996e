"""Built-in plugin: the kNN adapter, localized latent updates (Ibing, Lim, Kobbelt).

Ibing, Lim, Kobbelt, "Localized Latent Updates for Fine-Tuning Vision-Language
Models", arXiv 2212.06556: a lightweight adapter that changes the model's
predictions only close to seen datapoints.  Implemented after the authors'
released code, VCI-RWTH/TrainingTheArchive: ``Embedding.py``, class
``LocalLinearSplitNet`` (commented there as the model used in the paper), the
``Embedder`` wrapper and ``CenterMarginLoss`` in the same file, and the few-shot
training loop in ``evaluation/eval_fewshot.py``.  Written anew for clipbench; no
code is copied.

The method.  Two maps, one for image embeddings and one for text embeddings,
each an affine map L(x) = W x + b initialised to the identity (W = I, b = 0).
Each map has centres; an embedding x (unit length) is moved by its map only in
proportion to how close it lies to the nearest centre:

    out(x) = normalise(w(x) * normalise(L x) + (1 - w(x)) * x),
    w(x)   = dampening * exp(rbf * d(x)),   d(x) = clamp(1 - max_c cos(x, c), 0, 1).

With rbf < 0 the weight is largest (= dampening) at a centre and decays with
the cosine distance; an embedding at distance d from every centre moves by at
most ||out(x) - x|| <= 4 w = 2 exp(rbf d) (dampening 0.5): the blend moves x
by w ||normalise(Lx) - x|| <= 2w and renormalising at most doubles that.  The
image map's centres are the support image embeddings, the text map's the
classes' training-prompt embeddings, each set clustered (agglomerative, cosine
distance, complete linkage; a cluster's centre is its normalised sum) to at
most ``max_centres`` when it has more points.

Training, per the released loop: ``iterations`` rounds; each round takes the
classes in order and makes one Adam (AMSGrad) step per class on

    mean_i d(t'_c, x'_i)  +  mean_j relu(max_i d(t'_c, x'_i) - d(t'_c, x'_j) + margin)  +  R,

with t'_c the mapped text embedding of class c, x'_i its mapped support images
(positives), x'_j the mapped support images of every other class (negatives),
d the cosine distance, the farthest positive distance held constant (no
gradient), and R = MSE(W_img, I) + MSE(b_img, 0) + MSE(W_txt, I) + MSE(b_txt, 0),
the pull toward the identity.  The weights w(x) are computed without gradient.

Scoring: the image map acts in ``transform_image_features`` and the text map
in ``encode_text``, on every task the model is scored on, so the shifts, the
forgetting probes and new classes see everything learned: the maps act on any
embedding near their centres and leave far ones (nearly) at zero-shot.  The
encoders are frozen; the support and validation features come from the
embedding cache (``fewshot.features``).

Where each default comes from (TrainingTheArchive):
    max_centres 50, dampening 0.5, identity initialisation: the paper model's
        construction ``LocalLinearSplitNet(dim, 50, 1e-3, 0.5, True)`` (commented
        out in ``SearchEngine.py``, the one place the class is built);
    margin 0.1: ``Embedder`` builds ``CenterMarginLoss(0.1)`` (``Embedding.py``);
    lr 1e-3, AMSGrad, no weight decay: ``Embedder``'s Adam (``Embedding.py``);
    iterations 500, one step per class each: ``optimize_embedding`` in
        ``evaluation/eval_fewshot.py`` and ``Embedder.optimize_embedding``;
    identity pull weight 1: ``LocalLinearSplitNet.regularization`` is added
        unweighted (the 1e4 factor belongs to the other classes of the file);
    rbf: see the differences; chosen on the validation split from ``rbfs``.

Deviation card: `KNNAdapter.deviations` below; `clipbench show method knn-adapter`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clipbench.cards import Deviation
from clipbench.config import MethodConfig, option
from clipbench.hookspecs import hookimpl
from clipbench.method import Adapted, Method
from clipbench.training import best_on_validation, train_steps

REF = "TrainingTheArchive"


@dataclass(frozen=True)
class KNNAdapterConfig(MethodConfig):
    max_centres: int = option(50, "at most this many centres per map (agglomerative clustering beyond)",
                              source=f"{REF}: LocalLinearSplitNet(num_clusters=50), SearchEngine.py")
    dampening: float = option(0.5, "weight of the mapped embedding at a centre (global dampening)",
                              source=f"{REF}: LocalLinearSplitNet(global_dampening=0.5), SearchEngine.py")
    rbfs: tuple[float, ...] = option((-100.0, -30.0, -10.0, -3.0),
                                     "kernel sharpness rbf in w = dampening * exp(rbf * d) tried, most local "
                                     "first; one is chosen on validation (ties: the earlier)",
                                     source=f"{REF}: rbf_weight +1e-3 in SearchEngine.py gives no locality; "
                                            "-10 is the file's LocalMLP kernel; see the docstring")
    margin: float = option(0.1, "hinge margin of the centre-margin loss",
                           source=f"{REF}: CenterMarginLoss(0.1) in Embedder, Embedding.py")
    identity_weight: float = option(1.0, "weight of the MSE pull of both maps toward the identity",
                                    source=f"{REF}: LocalLinearSplitNet.regularization, added unweighted")
    lr: float = option(1e-3, "Adam (AMSGrad, no weight decay) learning rate of both maps",
                       source=f"{REF}: Embedder's Adam(lr=1e-3, amsgrad=True, weight_decay=0)")
    iterations: int = option(500, "rounds over the classes, one optimiser step per class each",
                             source=f"{REF}: evaluation/eval_fewshot.py, 500 rounds of optimize_embedding", low=0)


def cluster_centres(points: torch.Tensor, max_centres: int) -> torch.Tensor:
    """Unit centres of ``points``: the points themselves, or at most ``max_centres`` cluster centres
    (agglomerative, cosine distance, complete linkage; a centre is its cluster's normalised sum)."""
    points = F.normalize(points.detach().float(), dim=-1)
    if len(points) <= max_centres:
        return points
    from sklearn.cluster import AgglomerativeClustering

    labels = AgglomerativeClustering(n_clusters=max_centres, metric="cosine", linkage="complete") \
        .fit(points.cpu().numpy()).labels_
    sums = torch.zeros(max_centres, points.shape[1], dtype=points.dtype)
    sums.index_add_(0, torch.as_tensor(labels, dtype=torch.long), points.cpu())
    return F.normalize(sums, dim=-1).to(points.device)


class LocalMap(nn.Module):
    """An identity-initialised affine map of unit embeddings, blended in only near its centres."""

    def __init__(self, centres: torch.Tensor, rbf: float, dampening: float):
        super().__init__()
        dim = centres.shape[1]
        self.linear = nn.Linear(dim, dim, device=centres.device)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(dim))
            self.linear.bias.zero_()
        self.register_buffer("centres", centres.detach().clone())
        self.rbf, self.dampening = float(rbf), float(dampening)

    def weight(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1) blend weights, dampening * exp(rbf * d), d the cosine distance to the nearest centre."""
        return blend_weight(x, self.centres, torch.tensor(self.rbf), self.dampening)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return blend(x, self.linear(x), self.weight(x))


def blend_weight(x: torch.Tensor, centres: torch.Tensor, rbf: torch.Tensor, dampening: float) -> torch.Tensor:
    """dampening * exp(rbf * d) for each row of ``x`` (d: cosine distance to its nearest centre, in [0, 1]),
    shaped rbf.shape + (N, 1); computed without gradient, as the reference does."""
    with torch.no_grad():
        cos = F.normalize(x, dim=-1) @ centres.T
        dist = (1 - cos.max(dim=-1, keepdim=True).values).clamp(0, 1)
        return dampening * torch.exp(rbf.to(x).reshape(*rbf.shape, 1, 1) * dist)


def blend(x: torch.Tensor, mapped: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """normalise(w * normalise(mapped) + (1 - w) * x)."""
    return F.normalize(w * F.normalize(mapped, dim=-1) + (1 - w) * x, dim=-1)


class CandidateMaps(nn.Module):
    """G independent affine maps (one per kernel sharpness tried), trained side by side.

    Their parameters are disjoint and the loss is the sum of each candidate's loss, so each candidate gets
    exactly the gradient (and, Adam being elementwise, exactly the steps) it would get trained alone.
    """

    def __init__(self, centres: torch.Tensor, rbfs, dampening: float):
        super().__init__()
        g, dim = len(rbfs), centres.shape[1]
        self.weight = nn.Parameter(torch.eye(dim, device=centres.device).repeat(g, 1, 1))
        self.bias = nn.Parameter(torch.zeros(g, dim, device=centres.device))
        self.register_buffer("centres", centres.detach().clone())
        self.register_buffer("rbfs", torch.tensor([float(r) for r in rbfs], device=centres.device))
        self.register_buffer("eye", torch.eye(dim, device=centres.device))
        self.dampening = float(dampening)

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        return blend_weight(x, self.centres, self.rbfs, self.dampening)  # (G, N, 1)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """(G, N, D): each candidate's output for ``x`` (N, D), given its blend weights ``w`` (G, N, 1)."""
        mapped = torch.baddbmm(self.bias.unsqueeze(1), x.expand(len(self.rbfs), *x.shape), self.weight.mT)
        return blend(x, mapped, w)

    def identity_pull(self) -> torch.Tensor:
        """(G,): MSE(W, I) + MSE(b, 0) of each candidate."""
        return (self.weight - self.eye).pow(2).mean(dim=(1, 2)) + self.bias.pow(2).mean(dim=1)

    def single(self, g: int) -> LocalMap:
        out = LocalMap(self.centres, float(self.rbfs[g]), self.dampening)
        with torch.no_grad():
            out.linear.weight.copy_(self.weight[g])
            out.linear.bias.copy_(self.bias[g])
        return out


def centre_margin_loss(centre: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, margin: float) -> torch.Tensor:
    """Pull the positives to the class centre (mean cosine distance) and push each negative past the
    farthest positive by ``margin`` (mean hinge; the farthest positive distance carries no gradient).
    Shapes: centre (..., D), pos (..., P, D), neg (..., M, D); the loss has the leading shape."""
    pos_dist = 1 - (pos @ centre.unsqueeze(-1)).squeeze(-1)
    neg_dist = 1 - (neg @ centre.unsqueeze(-1)).squeeze(-1)
    hinge = torch.relu(pos_dist.max(dim=-1, keepdim=True).values.detach() - neg_dist + margin)
    return pos_dist.mean(dim=-1) + hinge.mean(dim=-1)


class LocalLatentUpdates(Adapted):
    """The image map on image embeddings, the text map on text embeddings, for every task scored."""

    def __init__(self, model, task, image_map: LocalMap, text_map: LocalMap):
        maps = (image_map.eval(), text_map.eval())
        super().__init__(model, trainable=sum(p.numel() for m in maps for p in m.parameters()), task=task,
                         added=list(maps))
        self.image_map, self.text_map = maps
        self.notes = {"rbf": image_map.rbf, "image_centres": len(image_map.centres),
                      "text_centres": len(text_map.centres)}

    def transform_image_features(self, features):
        return self.image_map(features)

    def encode_text(self, texts):
        return self.text_map(self.model.encode_text(texts))


def train_maps(image_maps: CandidateMaps, text_maps: CandidateMaps, feats: torch.Tensor, labels: torch.Tensor,
               text: torch.Tensor, config: KNNAdapterConfig, progress=lambda done, total: None,
               epoch_finished=lambda epoch, epochs, loss: None) -> None:
    """The released loop: ``iterations`` rounds, one AMSGrad step per class on its centre-margin loss plus
    the identity pull of both maps (every candidate at once: their losses summed).  A round scores the whole
    support set once, so each is reported as an epoch."""
    feats, text = feats.detach(), text.detach()  # the encoders are frozen: their outputs are constants
    params = list(image_maps.parameters()) + list(text_maps.parameters())
    opt = torch.optim.Adam(params, lr=config.lr, amsgrad=True, weight_decay=0.0)
    w_image, w_text = image_maps.weights(feats), text_maps.weights(text)  # constant: the centres are fixed
    classes = [labels == c for c in range(len(text))]
    classes = [(c, is_c) for c, is_c in enumerate(classes) if is_c.any() and not is_c.all()]

    def loss_of_class(step):
        c, is_c = step
        mapped = image_maps(feats, w_image)  # (G, N, D)
        centre = text_maps(text[c:c + 1], w_text[:, c:c + 1])[:, 0]  # (G, D)
        loss = centre_margin_loss(centre, mapped[:, is_c], mapped[:, ~is_c], config.margin)
        return (loss + config.identity_weight * (image_maps.identity_pull() + text_maps.identity_pull())).sum()

    rounds = (step for _ in range(config.iterations) for step in classes)
    train_steps(opt, rounds, loss_of_class, config.iterations * len(classes), per_epoch=len(classes),
                progress=progress, epoch_finished=epoch_finished)


class KNNAdapter(Method):
    name = "knn-adapter"
    citation = ("Ibing, Lim, Kobbelt, Localized Latent Updates for Fine-Tuning Vision-Language Models, "
                "arXiv 2212.06556 (after the authors' code, VCI-RWTH/TrainingTheArchive, LocalLinearSplitNet)")
    summary = "identity-initialised linear maps of image and text embeddings, blended in only near the support"
    config_class = KNNAdapterConfig
    reference = ("VCI-RWTH/TrainingTheArchive: Embedding.py (LocalLinearSplitNet, Embedder, CenterMarginLoss), "
                 "SearchEngine.py (its construction), evaluation/eval_fewshot.py (training)")
    deviations = (
        Deviation("what is searched",
                  "rbf = +1e-3 in the one construction of the class: w = 0.5 exp(0.001 d), a global 50/50 blend "
                  "with no locality",
                  "rbf chosen on the validation split from (-100, -30, -10, -3) (-10 is the kernel of the file's "
                  "LocalMLP); the choice is in the cell's notes",
                  True, "a positive rbf contradicts the paper's locality and the class's own 'dirac' branch; "
                        "measured with +1e-3 on the default suite (seed 1): 33 and 39 points of probe accuracy lost "
                        "on digits and animals"),
        Deviation("distance to the centres",
                  "one .max() over the whole (batch x centres) similarity matrix: one weight per batch",
                  "the maximum over the centres per embedding",
                  True, "a bug of the released code, fixed: an embedding's update must not depend on its batch"),
        Deviation("centres",
                  "the active update_data stores centres the class never reads, so both weights are 0 "
                  "(an identity adapter)",
                  "the commented update_data beside it: support images as image centres, class texts as text "
                  "centres, each clustered to at most 50",
                  True, "a bug of the released code, fixed by following its own alternative"),
        Deviation("class text",
                  "the bare class name, one text per class, in training and scoring",
                  "the task's training prompt in training and as text centres; the template ensemble when scoring, "
                  "each prompt mapped before averaging",
                  True, "every clipbench method trains on the task's training prompt and is scored on its ensemble"),
        Deviation("episodes",
                  "N-way episodes of 10 shots from art and mini-ImageNet collections",
                  "the task's whole label space, k shots (16 by default), the standard protocol",
                  True, "clipbench's protocol is the same for every method"),
        Deviation("clustering call",
                  "AgglomerativeClustering(affinity='cosine', linkage='complete')",
                  "the same clustering with the argument's new name, metric='cosine'",
                  False, "scikit-learn renamed the argument"),
        Deviation("kernels not offered",
                  "a 'dirac' kernel (rbf < -1000) and a learned dampening",
                  "not offered",
                  False, "the released construction uses neither"),
    )

    def adapt(self, model, fewshot, task, config, ctx):
        model.module.requires_grad_(False)
        feats = fewshot.features(model).float()
        val = fewshot.features(model, "val").float()
        with torch.no_grad():
            text = model.encode_text(task.train_prompts()).float()
        labels = fewshot.labels.to(feats.device)
        val_labels = fewshot.val_labels.to(feats.device)
        image_maps = CandidateMaps(cluster_centres(feats, config.max_centres), config.rbfs, config.dampening)
        text_maps = CandidateMaps(cluster_centres(text, config.max_centres), config.rbfs, config.dampening)
        train_maps(image_maps, text_maps, feats, labels, text, config, ctx.progress, ctx.epoch_finished)

        def score(g):
            adapted = LocalLatentUpdates(model, task, image_maps.single(g), text_maps.single(g))
            with torch.no_grad():
                pred = adapted.logits_from_features(val, task).argmax(dim=1)
            return (float((pred == val_labels).float().mean()),), adapted

        _, adapted = best_on_validation(range(len(config.rbfs)), score)
        return adapted


@hookimpl
def clipbench_register_methods(register):
    register(KNNAdapter())
