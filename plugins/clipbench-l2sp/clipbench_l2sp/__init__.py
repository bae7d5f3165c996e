"""L2-SP: fine-tuning every weight with an L2 pull toward the pretrained starting point.

Li, Grandvalet, Davoine, "Explicit Inductive Bias for Transfer Learning with
Convolutional Networks", ICML 2018: the loss adds alpha / 2 * ||w - w0||^2 over
the pretrained weights w0 (the paper's L2-SP; its beta term on new layers does
not apply, CLIP adds none).  alpha = 0.01 as in the paper's main setting.

A complete third-party method: it imports only from ``clipbench`` (the public API).
"""

from dataclasses import dataclass

from clipbench import Adapted, AdamWRecipe, Method, count_parameters, finetune, hookimpl, option


@dataclass(frozen=True)
class L2SPConfig(AdamWRecipe):
    alpha: float = option(0.01, "strength of the pull toward the pretrained weights", source="L2-SP: 0.01")
    # the search space `clipbench tune` chooses from on validation data, like a built-in's
    lr: float = option(1e-5, "AdamW learning rate", search=[1e-6, 1e-5, 1e-4, 1e-3])
    weight_decay: float = option(0.0, "no decay: the pull toward w0 replaces it")


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

        finetune(model, params, fewshot, task, config.schedule(), ctx, extra_loss=pull)
        return Adapted(model, trainable=count_parameters(params), task=task)


@hookimpl
def clipbench_register_methods(register):
    register(L2SP())
