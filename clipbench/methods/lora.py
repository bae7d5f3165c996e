"""Built-in plugin: LoRA on the query and value projections of both towers.

Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022.
Configuration of the A-CLIP paper's comparison (mit-ll/IIMM): rank 16 on the q
and v slices of every packed ``in_proj_weight``, scaling 0.2; the pretrained
weights stay frozen and the update is merged into them after training, so the
adapted model costs nothing extra at inference.  Training recipe as A-CLIP's
with LoRA's usual learning rate 1e-4 (AdamW).
"""

from __future__ import annotations

from dataclasses import dataclass

from clipbench.hookspecs import hookimpl
from clipbench.method import Adapted, Method
from clipbench.methods.attention import add_lora, attention_layers, merge_parametrizations
from clipbench.config import MethodConfig, option
from clipbench.training import count_parameters, finetune


@dataclass(frozen=True)
class LoRAConfig(MethodConfig):
    rank: int = option(16, "rank of each update", source="the A-CLIP paper's LoRA comparison: 16")
    scaling: float = option(0.2, "alpha / rank, the update's scale")
    lr: float = option(1e-4, "AdamW learning rate of the low-rank factors",
                       search=[1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2], source="LoRA's usual 1e-4")
    weight_decay: float = option(1e-4, "AdamW weight decay")
    batch_size: int = option(128, "images per step")
    epochs: int = option(30, "passes over the support set")
    merge: bool = option(True, "merge the update into the weights after training")


class LoRA(Method):
    name = "lora"
    citation = "Hu et al., LoRA: Low-Rank Adaptation of Large Language Models, ICLR 2022"
    summary = "rank-16 updates of the q and v projections, both towers (merged after training)"
    config_class = LoRAConfig

    def adapt(self, model, fewshot, task, config, ctx):
        model.module.requires_grad_(False)
        layers = attention_layers(model.module)
        loras = [add_lora(attn, config.rank, config.scaling) for _, attn in layers]
        params = [p for lora in loras for p in lora.parameters()]
        finetune(model, params, fewshot, task, config.schedule(), ctx)
        trainable = count_parameters(params)
        if config.merge:
            merge_parametrizations(model.module)
        model.module.requires_grad_(False)
        # the factors A, B are what trained; merged, the q/v weights they generate change densely
        generated = [f"{name}.in_proj_weight" for name, _ in layers] if config.merge else []
        return Adapted(model, trainable=trainable, task=task, added=loras if config.merge else [],
                       generated=generated)


@hookimpl
def clipbench_register_methods(register):
    register(LoRA())
