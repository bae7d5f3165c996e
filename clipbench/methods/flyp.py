"""Built-in plugin: FLYP, fine-tuning both towers with CLIP's own contrastive loss.

Goyal, Kumar, Garg, Kolter, Raghunathan, "Finetune like you pretrain: Improved
finetuning of zero-shot vision models", CVPR 2023.  Each image of a batch is
paired with its class's prompt and the batch is trained with the symmetric
in-batch contrastive loss CLIP was pretrained with (image-to-text and
text-to-image cross-entropy over logit_scale * I T^T, targets on the diagonal),
not cross-entropy over all classes (that is clipbench's ``full-ft``).  Images of
the same class in one batch share a prompt and are treated as negatives of each
other's prompt, as in the authors' code.  Optimiser settings from the paper:
AdamW, lr 1e-5, weight decay 0.1, cosine schedule with warm-up; the logit scale
trains with the towers, as in pretraining.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clipbench.hookspecs import hookimpl
from clipbench.method import Adapted, Method
from clipbench.config import FINETUNE_LR_GRID, AdamWRecipe, option
from clipbench.training import count_parameters, finetune


@dataclass(frozen=True)
class FLYPConfig(AdamWRecipe):
    lr: float = option(1e-5, "AdamW learning rate", search=FINETUNE_LR_GRID, source="FLYP paper: 1e-5")


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric in-batch loss: row i of each is a positive pair, every other row a negative."""
    logits = scale * image_features @ text_features.T
    targets = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def flyp_loss(model, images, labels, task) -> torch.Tensor:
    prompts = task.train_prompts()
    text = model.encode_text([prompts[int(y)] for y in labels])
    return contrastive_loss(model.encode_image(images), text, model.logit_scale)


class FLYP(Method):
    name = "flyp"
    citation = "Goyal et al., Finetune like you pretrain: Improved finetuning of zero-shot vision models, CVPR 2023"
    summary = "every weight of both encoders, CLIP's contrastive loss between images and their class prompts"
    config_class = FLYPConfig

    def adapt(self, model, fewshot, task, config, ctx):
        params = list(model.module.parameters())
        finetune(model, params, fewshot, task, config.schedule(), ctx, loss_fn=flyp_loss)
        return Adapted(model, trainable=count_parameters(params), task=task)


@hookimpl
def clipbench_register_methods(register):
    register(FLYP())
