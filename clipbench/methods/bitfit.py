"""Built-in plugin: BitFit, fine-tuning only the bias terms of the residual blocks.

Ben Zaken, Ravfogel, Goldberg, "BitFit: Simple Parameter-efficient Fine-tuning
for Transformer-based Masked Language-models", ACL 2022.  As in the A-CLIP
paper's comparison (mit-ll/IIMM): parameters matching ``resblocks.*bias`` of
both towers train; training recipe as A-CLIP's (SGD, momentum 0.9, weight
decay 1e-4, batch 128, 30 epochs) with BitFit's larger learning rate 1e-4.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from clipbench.errors import ClipbenchError
from clipbench.hookspecs import hookimpl
from clipbench.method import Adapted, Method
from clipbench.config import SGDRecipe, option
from clipbench.training import finetune_only

BIAS = re.compile(r"resblocks\.\d+\..*bias$")


@dataclass(frozen=True)
class BitFitConfig(SGDRecipe):
    lr: float = option(1e-4, "SGD learning rate of the biases", search=[1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0],
                       source="A-CLIP paper's BitFit comparison: 1e-4")


class BitFit(Method):
    name = "bitfit"
    citation = ("Ben Zaken, Ravfogel, Goldberg, BitFit: Simple Parameter-efficient Fine-tuning for "
                "Transformer-based Masked Language-models, ACL 2022")
    summary = "bias terms of every residual block, both towers"
    config_class = BitFitConfig

    def adapt(self, model, fewshot, task, config, ctx):
        params = [p for n, p in model.module.named_parameters() if BIAS.search(n)]
        if not params:
            raise ClipbenchError("BitFit found no parameters matching resblocks.*bias in this model.")
        return Adapted(model, trainable=finetune_only(model, params, fewshot, task, config.schedule(), ctx),
                       task=task)


@hookimpl
def clipbench_register_methods(register):
    register(BitFit())
