"""Built-in plugin: LoRA on the query and value projections of both towers.

Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022.
Configuration of the A-CLIP paper's comparison (mit-ll/IIMM): rank 16 on the q
and v slices of every packed ``in_proj_weight``, scaling 0.2; the pretrained
weights stay frozen and the update is merged into them after training, so the
adapted model costs nothing extra at inference.  Training recipe as A-CLIP's
with LoRA's usual learning rate 1e-4 (AdamW).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clipbench.hookspecs import hookimpl
from clipbench.method import Adapted, Method
from clipbench.methods.attention import add_lora, attention_layers, merge_parametrizations
from clipbench.training import Schedule, count_parameters, finetune


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = 16
    scaling: float = 0.2
    lr: float = field(default=1e-4, metadata={
        "help": "AdamW learning rate of the low-rank factors (LoRA's usual 1e-4)",
        "search": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]})
    weight_decay: float = 1e-4
    batch_size: int = 128
    epochs: int = 30
    merge: bool = True


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
        schedule = Schedule("adamw", config.lr, config.weight_decay, batch_size=config.batch_size,
                            epochs=config.epochs)
        finetune(model, params, fewshot, task, schedule, ctx)
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
