"""Built-in plugin: BitFit, fine-tuning only the bias terms of the residual blocks.

Ben Zaken, Ravfogel, Goldberg, "BitFit: Simple Parameter-efficient Fine-tuning
for Transformer-based Masked Language-models", ACL 2022.  As in the A-CLIP
paper's comparison (mit-ll/IIMM): parameters matching ``resblocks.*bias`` of
both towers train; training recipe as A-CLIP's (SGD, momentum 0.9, weight
decay 1e-4, batch 128, 30 epochs) with BitFit's larger learning rate 1e-4.

Deviation card: `BitFit.deviations` below; `clipbench show method bitfit`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from clipbench.errors import ClipbenchError
from clipbench.cards import Deviation
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
    reference = ("mit-ll/IIMM: train.py, train_helpers.py (train), models/clip.py "
                 "(CustomCLIP.set_specified_train_layers, reg='bias'); the A-CLIP paper's BitFit comparison")
    deviations = (
        Deviation("data",
                  "the full training set, 10% held out for validation (--val-p 0.1)",
                  "the k-shot support set (16 per class by default); validation min(k, 4) per class",
                  True, "clipbench's protocol is few-shot for every method, so a full-data recipe meets far fewer "
                        "steps"),
        Deviation("what is searched",
                  "lr fixed (1e-4 in the A-CLIP paper's BitFit comparison; train.py's default is 1e-6)",
                  "lr chosen by `clipbench tune` on the validation split (1e-4 to 1); the paper's value with "
                  "--defaults",
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
        params = [p for n, p in model.module.named_parameters() if BIAS.search(n)]
        if not params:
            raise ClipbenchError("BitFit found no parameters matching resblocks.*bias in this model.")
        return Adapted(model, trainable=finetune_only(model, params, fewshot, task, config.schedule(), ctx),
                       task=task)


@hookimpl
def clipbench_register_methods(register):
    register(BitFit())
