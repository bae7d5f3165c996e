"""Built-in plugin: LoRA on the query and value projections of both towers.

Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022.
Configuration and recipe of the A-CLIP paper's comparison (mit-ll/IIMM): rank 16
on the q and v slices of every packed ``in_proj_weight``, scaling 0.2, the
non-zero factor drawn from N(0, 0.02); the pretrained weights stay frozen; SGD
with momentum 0.9 and weight decay 1e-4 at a constant rate, batch 128, 30
epochs (the shared A-CLIP recipe).  The update is merged into the weights after
training, so the adapted model costs nothing extra at inference.

Deviation card: `LoRA.deviations` below; `clipbench show method lora`.
"""

from __future__ import annotations

from dataclasses import dataclass

from clipbench.cards import Deviation
from clipbench.hookspecs import hookimpl
from clipbench.method import Adapted, Method
from clipbench.methods.attention import add_lora, attention_layers, merge_parametrizations
from clipbench.config import SGDRecipe, option
from clipbench.training import count_parameters, finetune


@dataclass(frozen=True)
class LoRAConfig(SGDRecipe):
    rank: int = option(16, "rank of each update", source="mit-ll/IIMM README: --rank 16")
    scaling: float = option(0.2, "alpha / rank, the update's scale", source="mit-ll/IIMM models/common.py: 0.2")
    init_std: float = option(0.02, "standard deviation of the non-zero factor's normal initialisation",
                             source="mit-ll/IIMM models/common.py: 0.02")
    lr: float = option(1e-4, "SGD learning rate of the low-rank factors",
                       search=[1e-6, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0], source="LoRA's usual 1e-4")
    merge: bool = option(True, "merge the update into the weights after training")


class LoRA(Method):
    name = "lora"
    citation = "Hu et al., LoRA: Low-Rank Adaptation of Large Language Models, ICLR 2022"
    summary = "rank-16 updates of the q and v projections, both towers (merged after training)"
    config_class = LoRAConfig
    reference = ("mit-ll/IIMM: models/common.py (LoraMultiheadAttention), models/clip.py (LoRACLIP), train.py and "
                 "train_helpers.py (the A-CLIP paper's LoRA comparison)")
    deviations = (
        Deviation("base weight",
                  "each forward adds the update in place into a detached alias of the stored pretrained weight, "
                  "so the stored base drifts by every forward's update (training and evaluation alike)",
                  "W0 stays frozen; each forward computes W0 + scaling * B A",
                  True, "a bug of the released forward, not the method (Hu et al.: W0 is frozen); fixed. Measured "
                        "on a copy of that forward: after two forwards the stored base is off by exactly twice the "
                        "update"),
        Deviation("merge",
                  "the update stays a separate term, added to in_proj_weight at every forward",
                  "merged into in_proj_weight after training",
                  False, "the same weights at inference; merging only removes the extra cost"),
        Deviation("data",
                  "the full training set, 10% held out for validation (--val-p 0.1)",
                  "the k-shot support set (16 per class by default); validation min(k, 4) per class",
                  True, "clipbench's protocol is few-shot for every method, so a full-data recipe meets far fewer "
                        "steps"),
        Deviation("what is searched",
                  "lr fixed (train.py's default 1e-6, shared by every method)",
                  "lr chosen by `clipbench tune` on the validation split (1e-6 to 1, spanning A-CLIP's and "
                  "BitFit's SGD grids; 1e-4 by default); the default with --defaults",
                  True, "full-data learning rates rarely suit 16 shots; every method is tuned the same way, never "
                        "on test data"),
        Deviation("checkpoint",
                  "the epoch with the best validation accuracy (best_ckpt_*.pt, which test.py loads)",
                  "the last epoch",
                  True, "clipbench evaluates no intermediate epoch: every method is scored at the end of its "
                        "schedule"),
        Deviation("precision",
                  "training forward and loss under torch.amp.autocast('cuda') (fp16), no GradScaler; evaluation in "
                  "fp32",
                  "fp32 training and evaluation",
                  True, "one precision for every method; fp16 activations change the gradients (and small ones "
                        "underflow without loss scaling)"),
    )

    def adapt(self, model, fewshot, task, config, ctx):
        model.module.requires_grad_(False)
        layers = attention_layers(model.module)
        loras = [add_lora(attn, config.rank, config.scaling, init_std=config.init_std) for _, attn in layers]
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
