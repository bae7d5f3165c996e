"""Built-in plugin: full fine-tuning of both towers, cross-entropy over the class prompts.

The baseline every PEFT paper beats out of distribution: every weight trains
with cross-entropy over ``logit_scale * image . text^T`` against one prompt per
class (the "FT" / "FT-CE" baseline of the WiSE-FT and FLYP papers).  This is
*not* FLYP: FLYP's contrastive in-batch loss is not implemented here.  Only the
optimiser settings are taken from FLYP's fine-tuning recipe (Goyal et al., CVPR
2023: AdamW, lr 1e-5, weight decay 0.1, cosine schedule with warmup).
"""

from __future__ import annotations

from dataclasses import dataclass

from clipbench.hookspecs import hookimpl
from clipbench.method import Adapted, Method
from clipbench.config import FINETUNE_LR_GRID, AdamWRecipe, option
from clipbench.training import count_parameters, finetune


@dataclass(frozen=True)
class FullFTConfig(AdamWRecipe):
    lr: float = option(1e-5, "AdamW learning rate", search=FINETUNE_LR_GRID, source="FLYP's recipe: 1e-5")


class FullFineTune(Method):
    name = "full-ft"
    citation = ("Full fine-tuning with cross-entropy over class prompts (the FT baseline); optimiser settings "
                "from Goyal et al., Finetune like you pretrain, CVPR 2023 (FLYP's contrastive loss is not used)")
    summary = "every weight of both encoders, cross-entropy over class prompts"
    config_class = FullFTConfig

    def adapt(self, model, fewshot, task, config, ctx):
        params = list(model.module.parameters())
        finetune(model, params, fewshot, task, config.schedule(), ctx)
        return Adapted(model, trainable=count_parameters(params), task=task)


@hookimpl
def clipbench_register_methods(register):
    register(FullFineTune())
