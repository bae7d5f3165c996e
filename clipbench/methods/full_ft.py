"""Built-in plugin: full fine-tuning of both towers, cross-entropy over the class prompts.

The baseline every PEFT paper beats out of distribution: every weight trains
with cross-entropy over ``logit_scale * image . text^T`` against one prompt per
class (the "FT" / "FT-CE" baseline of the WiSE-FT and FLYP papers).  This is
*not* FLYP: FLYP's contrastive in-batch loss is not implemented here.  Only the
optimiser settings are taken from FLYP's fine-tuning recipe (Goyal et al., CVPR
2023: AdamW, lr 1e-5, weight decay 0.1, cosine schedule with warmup).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clipbench.hookspecs import hookimpl
from clipbench.method import Adapted, Method
from clipbench.training import Schedule, count_parameters, finetune


@dataclass(frozen=True)
class FullFTConfig:
    lr: float = field(default=1e-5, metadata={
        "help": "AdamW learning rate (FLYP's 1e-5)",
        "search": [1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4]})
    weight_decay: float = 0.1
    batch_size: int = 32
    epochs: int = 20
    warmup_fraction: float = 0.1


class FullFineTune(Method):
    name = "full-ft"
    citation = ("Full fine-tuning with cross-entropy over class prompts (the FT baseline); optimiser settings "
                "from Goyal et al., Finetune like you pretrain, CVPR 2023 (FLYP's contrastive loss is not used)")
    summary = "every weight of both encoders, cross-entropy over class prompts"
    config_class = FullFTConfig

    def adapt(self, model, fewshot, task, config, ctx):
        params = list(model.module.parameters())
        schedule = Schedule("adamw", config.lr, config.weight_decay, batch_size=config.batch_size,
                            epochs=config.epochs, warmup_fraction=config.warmup_fraction)
        finetune(model, params, fewshot, task, schedule, ctx)
        return Adapted(model, trainable=count_parameters(params), task=task)


@hookimpl
def clipbench_register_methods(register):
    register(FullFineTune())
