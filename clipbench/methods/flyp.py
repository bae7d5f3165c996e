"""Built-in plugin: FLYP, fine-tuning both towers with CLIP's own contrastive loss.

Goyal, Kumar, Garg, Kolter, Raghunathan, "Finetune like you pretrain: Improved
finetuning of zero-shot vision models", CVPR 2023.  As the authors' code builds
its training CSV, every support image is one row per template of the task's
zero-shot ensemble, captioned with that template and its class name; each row
is a random resized crop (area 0.9-1.0, the code's train transform).  An epoch
is as many batches as the image set has, drawn from one shuffled stream of rows
that carries on across epochs (the code's loop), and a batch of rows is
trained with the symmetric in-batch contrastive loss CLIP was pretrained with (image-to-text and text-to-image cross-entropy over
logit_scale * I T^T, targets on the diagonal), not cross-entropy over all
classes (that is clipbench's ``full-ft``).  Rows sharing a caption, or an
image, in one batch are negatives of each other, as in the authors' code.
Optimiser settings from the paper: AdamW, lr 1e-5, weight decay 0.1, cosine
schedule with warm-up; the logit scale trains with the towers, as in
pretraining.

Deviation card: `FLYP.deviations` below; `clipbench show method flyp`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clipbench.cards import Deviation
from clipbench.hookspecs import hookimpl
from clipbench.method import Adapted, Method
from clipbench.augment import random_crops
from clipbench.config import FINETUNE_LR_GRID, AdamWRecipe, option
from clipbench.training import (count_parameters, make_optimizer, minibatches, steps_per_epoch, train_steps,
                                warmup_cosine)


@dataclass(frozen=True)
class FLYPConfig(AdamWRecipe):
    lr: float = option(1e-5, "AdamW learning rate", search=FINETUNE_LR_GRID, source="FLYP paper: 1e-5")
    epochs: int = option(20, "epochs of the support images' batch count, drawn from the stream of (image, template) "
                         "rows")
    crop_scale: tuple[float, float] = option((0.9, 1.0), "area share of each row's random resized crop",
                                             source="locuslab/FLYP clip/clip.py: RandomResizedCrop scale (0.9, 1.0)",
                                             above=0.0, high=1.0, ordered=True)


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric in-batch loss: row i of each is a positive pair, every other row a negative."""
    logits = scale * image_features @ text_features.T
    targets = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def template_rows(n_images: int, n_templates: int, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(image, template) of each row index: the training CSV of the authors' code, one row per image and
    template, numbered template-major (row r is image r mod N with template r div N)."""
    return rows % n_images, rows // n_images


class FLYP(Method):
    name = "flyp"
    citation = "Goyal et al., Finetune like you pretrain: Improved finetuning of zero-shot vision models, CVPR 2023"
    summary = "every weight of both encoders, CLIP's contrastive loss over (image, template) caption rows"
    config_class = FLYPConfig
    reference = ("locuslab/FLYP: src/models/flyp_loss.py (training), src/main.py, src/few_shot.py, clip/clip.py "
                 "(train transform), README commands")
    deviations = (
        Deviation("captions",
                  "one row per (image, template) in the training CSV, the dataset's template set (ImageNet: the "
                  "80 OpenAI templates)",
                  "one row per (image, template) of the task's zero-shot ensemble (3 templates in the embedded "
                  "suite)",
                  False, "the same construction; the embedded tasks simply have 3 templates"),
        Deviation("augmentation",
                  "RandomResizedCrop scale (0.9, 1.0), bicubic, no flip, on every training row",
                  "the same crop box rule (torchvision's, area 0.9-1.0, aspect 3/4-4/3), resized bilinear with "
                  "antialiasing, no flip; drawn from the cell's seed",
                  True, "clipbench's one crop routine (clipbench.random_crops) for every augmenting method; "
                        "bicubic and bilinear differ at the pixel level"),
        Deviation("batch, epochs, warm-up, weight decay",
                  "ImageNet: batch 512, 10 epochs, 500 warm-up steps, wd 0.1 (iWildCam, FMoW: batch 256, wd 0.2; "
                  "few_shot.py: one fixed batch of 2k rows, one step an epoch, crops drawn once, the checkpoint "
                  "of the lowest validation loss)",
                  "batch 32, 20 epochs of ceil(images / 32) steps each, 10% of the steps warming up, wd 0.1",
                  True, "FLYP's ImageNet recipe scaled to a 16-shot support set"),
        Deviation("warm-up shape",
                  "linear warm-up, then a cosine over the remaining steps (src/models/utils.py cosine_lr)",
                  "linear warm-up multiplied by a cosine over all the steps (the shared warmup_cosine)",
                  True, "one schedule helper for every AdamW method; the two differ only during the first 10% of "
                        "the steps"),
        Deviation("checkpoint",
                  "every epoch is evaluated; the epoch with the best ID validation accuracy is reported",
                  "the last epoch",
                  True, "clipbench evaluates no intermediate epoch: every method is scored at the end of its "
                        "schedule"),
        Deviation("data",
                  "the full training set (k-shot only in few_shot.py, for SST2 and PatchCamelyon)",
                  "the k-shot support set (16 per class by default); validation min(k, 4) per class",
                  True, "clipbench's protocol is few-shot for every method, so a full-data recipe meets far fewer "
                        "steps"),
        Deviation("what is searched",
                  "lr 1e-5 fixed",
                  "lr chosen by `clipbench tune` on the validation split (1e-6 to 3e-4); the paper's value with "
                  "--defaults",
                  True, "full-data learning rates rarely suit 16 shots; every method is tuned the same way, never "
                        "on test data"),
    )

    def adapt(self, model, fewshot, task, config, ctx):
        params = list(model.module.parameters())
        schedule = config.schedule()
        captions = [[template.format(name) for name in task.classnames] for template in task.templates]
        images, labels = fewshot.images.to(ctx.device), fewshot.labels.to(ctx.device)
        n_rows = len(labels) * len(captions)
        # an epoch is the image set's number of batches, drawn from one shuffled stream of rows that carries
        # on across epochs (the authors' loop), so the templates add variety, not steps
        per_epoch = steps_per_epoch(len(labels), schedule.batch_size)
        total = per_epoch * schedule.epochs
        opt = make_optimizer(params, schedule)
        sched = warmup_cosine(opt, total, schedule.warmup_fraction, schedule.decay)
        passes = math.ceil(total / steps_per_epoch(n_rows, schedule.batch_size))
        batches = itertools.islice(minibatches(n_rows, schedule.batch_size, passes, ctx.generator, ctx.device), total)

        def row_loss(rows: torch.Tensor) -> torch.Tensor:
            image_of, template_of = template_rows(len(labels), len(captions), rows)
            crops = random_crops(images[image_of], ctx.generator, tuple(config.crop_scale), flip=False)
            text = model.encode_text([captions[t][y] for t, y in zip(template_of.tolist(),
                                                                     labels[image_of].tolist())])
            return contrastive_loss(model.encode_image(crops), text, model.logit_scale)

        model.module.train()
        train_steps(opt, batches, row_loss, total, scheduler=sched, per_epoch=per_epoch, progress=ctx.progress,
                    epoch_finished=ctx.epoch_finished)
        model.module.eval()
        return Adapted(model, trainable=count_parameters(params), task=task)


@hookimpl
def clipbench_register_methods(register):
    register(FLYP())
