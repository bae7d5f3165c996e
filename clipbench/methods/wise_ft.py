"""Built-in plugin: WiSE-FT, the weight-space ensemble of the zero-shot and the fine-tuned model.

Wortsman, Ilharco, Kim, Li, Kornblith, Roelofs, Lopes, Hajishirzi, Farhadi,
Namkoong, Schmidt, "Robust fine-tuning of zero-shot models", CVPR 2022.  Every
weight is fine-tuned (clipbench's FT baseline: cross-entropy over the class
prompts, AdamW, weight decay 0.1, cosine schedule), then the weights are
interpolated, theta = (1 - alpha) theta_zero-shot + alpha theta_fine-tuned,
with the paper's recommended alpha = 0.5.  The adapted model keeps the
difference theta_fine-tuned - theta_zero-shot, so the whole alpha curve is
available: ``adapted.at(alpha)`` is the model at any other mixing coefficient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from clipbench.hookspecs import hookimpl
from clipbench.method import Adapted, Method
from clipbench.config import FINETUNE_LR_GRID, AdamWRecipe, option
from clipbench.training import count_parameters, finetune


@dataclass(frozen=True)
class WiseFTConfig(AdamWRecipe):
    lr: float = option(1e-5, "AdamW learning rate of the fine-tuning run", search=FINETUNE_LR_GRID,
                       source="FLYP's recipe, as clipbench's FT baseline")
    alpha: float = option(0.5, "mixing coefficient: 0 is zero-shot, 1 the fine-tuned model", source="WiSE-FT: 0.5")


class WeightEnsemble(Adapted):
    """The model at ``alpha``, with the fine-tuning direction kept for the rest of the curve."""

    def __init__(self, model, task, alpha, direction, trainable):
        super().__init__(model, trainable=trainable, task=task)
        self.alpha, self.direction = alpha, direction

    @torch.no_grad()
    def at(self, alpha: float) -> "WeightEnsemble":
        """The weight-space ensemble at another mixing coefficient (a new model; this one is unchanged)."""
        model = self.model.clone()
        for key, value in model.module.state_dict().items():
            if key in self.direction:
                value.add_((alpha - self.alpha) * self.direction[key])
        return WeightEnsemble(model, self.task, alpha, self.direction, self.trainable)


class WiseFT(Method):
    name = "wise-ft"
    citation = "Wortsman et al., Robust fine-tuning of zero-shot models, CVPR 2022 (WiSE-FT)"
    summary = "full fine-tuning, then the weights interpolated with the zero-shot ones (alpha 0.5)"
    config_class = WiseFTConfig

    def adapt(self, model, fewshot, task, config, ctx):
        zero_shot = {k: v.detach().clone() for k, v in model.module.state_dict().items() if v.is_floating_point()}
        params = list(model.module.parameters())
        finetune(model, params, fewshot, task, config.schedule(), ctx)
        direction = {}
        with torch.no_grad():
            for key, value in model.module.state_dict().items():
                if key in zero_shot:
                    direction[key] = value - zero_shot[key]
                    value.copy_(zero_shot[key] + config.alpha * direction[key])
        return WeightEnsemble(model, task, config.alpha, direction, count_parameters(params))


@hookimpl
def clipbench_register_methods(register):
    register(WiseFT())
