"""WiSE-FT: weight-space ensembles of the zero-shot and the fine-tuned model.

Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022.  Defaults
from the paper: alpha = 0.5 (its recommended mixing coefficient, sec. 3),
AdamW with weight decay 0.1 and a cosine schedule; lr 1e-5 for few-shot data.
"""

from dataclasses import dataclass, field

import torch

from clipbench import hookimpl
from clipbench.method import Adapted, Method
from clipbench.training import Schedule, count_parameters, finetune


@dataclass(frozen=True)
class WiseFTConfig:
    alpha: float = 0.5
    # the search space `clipbench tune` chooses from on validation data, like a built-in's
    lr: float = field(default=1e-5, metadata={"help": "AdamW learning rate of the fine-tuning run",
                                               "search": [1e-6, 1e-5, 1e-4, 1e-3]})
    weight_decay: float = 0.1
    batch_size: int = 32
    epochs: int = 20


class WiseFT(Method):
    name = "wiseft"
    citation = "Wortsman et al., Robust fine-tuning of zero-shot models, CVPR 2022"
    summary = "full fine-tuning, then weights interpolated with the zero-shot ones (alpha 0.5)"
    config_class = WiseFTConfig

    def adapt(self, model, fewshot, task, config, ctx):
        zeroshot = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
        params = list(model.module.parameters())
        finetune(model, params, fewshot, task,
                 Schedule("adamw", config.lr, config.weight_decay, batch_size=config.batch_size,
                          epochs=config.epochs), ctx)
        with torch.no_grad():
            for key, value in model.module.state_dict().items():
                if value.is_floating_point():
                    value.copy_((1 - config.alpha) * zeroshot[key] + config.alpha * value)
        return Adapted(model, trainable=count_parameters(params), task=task)


@hookimpl
def clipbench_register_methods(register):
    register(WiseFT())
