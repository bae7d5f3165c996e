"""L2-SP: fine-tuning every weight with an L2 pull toward the pretrained starting point.

Li, Grandvalet, Davoine, "Explicit Inductive Bias for Transfer Learning with
Convolutional Networks", ICML 2018: the loss adds alpha / 2 * ||w - w0||^2 over
the pretrained weights w0 (the paper's L2-SP; its beta term on new layers does
not apply, CLIP adds none).  alpha = 0.01 as in the paper's main setting.
"""

from dataclasses import dataclass, field

import torch

from clipbench import hookimpl
from clipbench.method import Adapted, Method
from clipbench.training import Schedule, count_parameters, finetune


@dataclass(frozen=True)
class L2SPConfig:
    alpha: float = field(default=0.01, metadata={"help": "strength of the pull toward the pretrained weights"})
    # the search space `clipbench tune` chooses from on validation data, like a built-in's
    lr: float = field(default=1e-5, metadata={"help": "AdamW learning rate", "search": [1e-6, 1e-5, 1e-4, 1e-3]})
    batch_size: int = 32
    epochs: int = 20


class L2SP(Method):
    name = "l2sp"
    citation = "Li, Grandvalet, Davoine, Explicit Inductive Bias for Transfer Learning with CNNs, ICML 2018"
    summary = "every weight, with an L2 pull toward the pretrained weights"
    config_class = L2SPConfig

    def adapt(self, model, fewshot, task, config, ctx):
        params = list(model.module.parameters())
        start = [p.detach().clone() for p in params]

        def pull(images, labels, logits):
            return config.alpha / 2 * sum((p - s).pow(2).sum() for p, s in zip(params, start))

        schedule = Schedule("adamw", config.lr, 0.0, batch_size=config.batch_size, epochs=config.epochs)
        finetune(model, params, fewshot, task, schedule, ctx, extra_loss=pull)
        return Adapted(model, trainable=count_parameters(params), task=task)


@hookimpl
def clipbench_register_methods(register):
    register(L2SP())
