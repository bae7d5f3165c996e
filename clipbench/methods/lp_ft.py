"""Built-in plugin: LP-FT, a linear probe first, then fine-tuning the image encoder from that head.

Kumar, Raghunathan, Jones, Ma, Liang, "Fine-Tuning can Distort Pretrained
Features and Underperform Out-of-Distribution", ICLR 2022.  Stage 1 trains a
linear head on the frozen image features as the authors' log_reg_sk.py does:
the image tower's raw (unnormalised) features of the training images,
extracted once through the training transforms (one random resized crop and
flip each), standardised by one scalar mean and std, L2-regularised logistic
regression warm-started along 50 values of C over logspace(-7, 2) (at most 200
iterations each), the C with the best validation accuracy kept and its weights
mapped back to unstandardised features.  Stage 2
fine-tunes the image encoder and that head together, starting from it, so the
features move less than under fine-tuning from a random head, with the
authors' transfer recipe: SGD, momentum 0.9, no weight decay, batch 64, 20
epochs, cosine decay, and their training transforms (random resized crop and
flip) on every batch.  The learning rate is searched on validation, as the
authors sweep theirs.  The head reads the raw features throughout (the harness
hands them to it: ``RawImageHead.raw_features``).  The text tower is not used by
the head and stays as it is.

Deviation card: `LPFT.deviations` below; `clipbench show method lp-ft`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from clipbench.augment import AUGMENTATION_ARITHMETIC, random_crops
from clipbench.cards import Deviation
from clipbench.config import MethodConfig, option
from clipbench.hookspecs import hookimpl
from clipbench.method import Adapted, Method
from clipbench.training import count_parameters, finetune

STAGE2_LR_GRID = [1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2]


@dataclass(frozen=True)
class LPFTConfig(MethodConfig):
    optimizer: ClassVar[str] = "sgd"

    lr: float = option(1e-3, "SGD learning rate of stage 2 (encoder and head)", search=STAGE2_LR_GRID,
                       source="swept by the authors (scripts/run_adaptation_experiments.py: 3e-7 to 1e-2)")
    momentum: float = option(0.9, "SGD momentum of stage 2", source="LP-FT code: 0.9")
    weight_decay: float = option(0.0, "SGD weight decay of stage 2", source="LP-FT code: 0")
    batch_size: int = option(64, "images per step of stage 2", source="LP-FT code: 64")
    epochs: int = option(20, "passes over the support set in stage 2", source="LP-FT code: 20")
    crop_scale: tuple[float, float] = option((0.5, 1.0), "area share of the random resized crops (probe features, "
                                             "stage 2)", source="torchvision's (0.08, 1) in the code; see the card",
                                             above=0.0, high=1.0, ordered=True)
    probe_c_range: tuple[float, float] = option((-7.0, 2.0), "stage 1: log10 of the smallest and largest C",
                                                source="LP-FT code: logspace(-7, 2)", low=-20.0, high=20.0)
    probe_c_values: int = option(50, "stage 1: C values along the range, warm-started in turn",
                                 source="LP-FT code: 50")
    probe_iterations: int = option(200, "stage 1: most solver iterations per C value",
                                   source="LP-FT code: max_iter 200")

    def schedule(self, **fixed):
        return super().schedule(**{"warmup_fraction": 0.0, **fixed})


def linear_probe_stage(model, fewshot, task, config, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Stage 1: the authors' probe on the frozen features; (weight, bias, chosen C).  Touches no weight.

    The training features are one augmented view of each support image (the authors extract them through
    the training transforms), standardised by one scalar mean and std; one logistic regression is
    warm-started along the C values in increasing order and the C with the best validation accuracy kept
    (the first on ties); its weights are mapped back to unstandardised features."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    feats = fewshot.views(model, 1, "probe", tuple(config.crop_scale), raw=True)[0].cpu().double().numpy()
    val = fewshot.features(model, "val", raw=True).cpu().double().numpy()
    y, y_val = fewshot.labels.numpy(), fewshot.val_labels.numpy()
    mean, std = feats.mean(), feats.std()
    probe = LogisticRegression(random_state=seed, warm_start=True, max_iter=config.probe_iterations)
    best = None
    for c in np.logspace(*config.probe_c_range, config.probe_c_values):
        probe.C = c
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # at most 200 iterations per C, as the authors
            probe.fit((feats - mean) / std, y)
        acc = float((probe.predict((val - mean) / std) == y_val).mean())
        if best is None or acc > best[0]:
            best = (acc, float(c), probe.coef_.copy(), probe.intercept_.copy(), probe.classes_.copy())
    _, c, coef, intercept, classes = best
    coef, intercept = coef / std, intercept - coef.sum(axis=1) * mean / std  # back to the raw features
    weight = np.zeros((task.num_classes, feats.shape[1]), dtype=np.float32)
    bias = np.zeros(task.num_classes, dtype=np.float32)
    if len(classes) == 2 and task.num_classes == 2:  # sklearn's binary form: one row for class 1
        weight[1], bias[1] = coef[0], intercept[0]
    else:
        weight[classes], bias[classes] = coef, intercept
    device = model.device
    return torch.from_numpy(weight).to(device), torch.from_numpy(bias).to(device), c


class ImageHead(Adapted):
    """Zero-shot CLIP over the (fine-tuned) encoders elsewhere; the trained head on the adapted task."""

    def __init__(self, model, task, weight, bias, trainable):
        super().__init__(model, trainable=trainable, task=task, added=[weight, bias])
        self.weight, self.bias = weight, bias

    def logits_from_features(self, features, task):
        if not self.is_own_task(task):
            return super().logits_from_features(features, task)
        return features @ self.weight.T + self.bias


class RawImageHead(ImageHead):
    """LP-FT's head: it reads the image tower's raw output (the harness hands it that); zero-shot CLIP
    elsewhere scores the normalised embedding, as everywhere."""

    raw_features = True

    def logits_from_features(self, features, task):
        return super().logits_from_features(features if self.is_own_task(task) else F.normalize(features, dim=-1),
                                            task)


class LPFT(Method):
    name = "lp-ft"
    citation = ("Kumar et al., Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution, "
                "ICLR 2022 (LP-FT)")
    summary = "linear probe on frozen features, then image encoder and head fine-tuned from it"
    config_class = LPFTConfig
    reference = ("AnanyaKumar/transfer_learning: unlabeled_extrapolation/log_reg_sk.py (stage 1), "
                 "unlabeled_extrapolation/baseline_train.py with configs/adaptation/*.yaml (stage 2), "
                 "scripts/run_adaptation_experiments.py (sweeps)")
    deviations = (
        Deviation("probe training features",
                  "each training image's features extracted once through the training transforms (RandomResizedCrop "
                  "area 0.08-1, flip; linprobe_run with aug=True)",
                  "one cached augmented view per support image (area 0.5-1, flip), drawn from the cell's seed",
                  True, "the crop scale of every augmenting method here (see augmentation)"),
        Deviation("stage-2 schedule",
                  "cosine over epochs (CosineAnnealingLR, T_max = epochs, stepped per epoch), no warm-up",
                  "cosine stepped per batch, no warm-up",
                  True, "clipbench's loop steps its schedules per batch; with 1-3 batches per epoch the two curves "
                        "stay within an epoch of each other"),
        Deviation("augmentation",
                  "the dataset's training transforms: RandomResizedCrop (area 0.08-1) and horizontal flip, fresh "
                  "every batch",
                  "random resized crop (area 0.5-1, torchvision's box rule) and flip, fresh every batch, drawn from "
                  "the cell's seed",
                  True, "the embedded suite's objects fill 28-32 pixel images that an 8% crop would mostly lose; "
                        "the scale of Tip-Adapter's code, as for every augmenting method here (crop_scale sets it)"),
        AUGMENTATION_ARITHMETIC,
        Deviation("checkpoint",
                  "the epoch with the best ID validation accuracy",
                  "the last epoch",
                  True, "clipbench evaluates no intermediate epoch: every method is scored at the end of its "
                        "schedule"),
        Deviation("data",
                  "the full training set",
                  "the k-shot support set (16 per class by default); validation min(k, 4) per class",
                  True, "clipbench's protocol is few-shot for every method, so a full-data recipe meets far fewer "
                        "steps"),
        Deviation("what is searched",
                  "the stage-2 lr swept on ID validation over 3e-7 to 1e-2 (10 values, SWEEP_LRS of "
                  "scripts/run_adaptation_experiments.py)",
                  "6 values from 1e-5 to 1e-2, searched by `clipbench tune` on the validation split (widened past "
                  "an edge that wins); 1e-3 with --defaults",
                  True, "every method gets the same trial budget; the k-shot protocol's validation split is small "
                        "(min(k, 4) per class)"),
    )

    def adapt(self, model, fewshot, task, config, ctx):
        weight, bias, c = linear_probe_stage(model, fewshot, task, config, seed=ctx.seed)
        weight.requires_grad_(True)
        bias.requires_grad_(True)
        visual = list(model.module.visual.parameters())
        model.module.requires_grad_(False)
        for p in visual:
            p.requires_grad_(True)

        def head_logits(m, images, t):
            return m.encode_image(images, normalize=False) @ weight.T + bias

        finetune(model, visual + [weight, bias], fewshot, task, config.schedule(), ctx, logits_fn=head_logits,
                 augment=lambda images, generator: random_crops(images, generator, tuple(config.crop_scale)))
        model.module.requires_grad_(False)
        weight, bias = weight.detach(), bias.detach()
        adapted = RawImageHead(model, task, weight, bias, count_parameters(visual) + weight.numel() + bias.numel())
        adapted.notes = {"probe_C": c}
        return adapted


@hookimpl
def clipbench_register_methods(register):
    register(LPFT())
