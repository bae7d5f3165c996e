"""Built-in plugin: A-CLIP, fine-tuning only the attention q/k/v projections of both towers.

Niss, Vogt-Lowell, Tsiligkaridis, "Quantified Task Misalignment to Inform PEFT:
An Exploration of Domain Generalization and Catastrophic Forgetting in CLIP",
arXiv 2402.09613.  Following the authors' released code (mit-ll/IIMM,
"attention-layer tuning"): only the packed ``attn.in_proj_weight`` of every
residual block of the image and text transformers trains; biases, out_proj,
MLPs, LayerNorms, embeddings and the logit scale stay frozen.  Reference
training: SGD momentum 0.9, lr 1e-6, weight decay 1e-4, batch 128, 30 epochs,
cross-entropy over logit_scale * image . text^T with one prompt template.

Deviation card: `AClip.deviations` below; `clipbench show method aclip`.
"""

from __future__ import annotations

from dataclasses import dataclass

from clipbench.cards import Deviation
from clipbench.hookspecs import hookimpl
from clipbench.method import Adapted, Method
from clipbench.methods.attention import attention_layers
from clipbench.config import SGDRecipe, option
from clipbench.training import finetune_only


@dataclass(frozen=True)
class AClipConfig(SGDRecipe):
    lr: float = option(1e-6, "SGD learning rate (the authors' full-data 1e-6 leaves 16-shot training at zero-shot)",
                       search=[1e-6, 1e-5, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1], source="A-CLIP code: 1e-6")


class AClip(Method):
    name = "aclip"
    citation = ("Niss, Vogt-Lowell, Tsiligkaridis, Quantified Task Misalignment to Inform PEFT: An Exploration "
                "of Domain Generalization and Catastrophic Forgetting in CLIP, arXiv 2402.09613")
    summary = "attention q/k/v projections (in_proj_weight) of both towers"
    config_class = AClipConfig
    reference = ("mit-ll/IIMM: train.py, train_helpers.py (train), models/clip.py "
                 "(CustomCLIP.set_specified_train_layers, reg='attention')")
    deviations = (
        Deviation("data",
                  "the full training set, 10% held out for validation (--val-p 0.1)",
                  "the k-shot support set (16 per class by default); validation min(k, 4) per class",
                  True, "clipbench's protocol is few-shot for every method, so a full-data recipe meets far fewer "
                        "steps"),
        Deviation("what is searched",
                  "lr 1e-6 fixed",
                  "lr chosen by `clipbench tune` on the validation split (1e-6 to 1e-1); the paper's value with "
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
        params = [attn.in_proj_weight for _, attn in attention_layers(model.module)]
        return Adapted(model, trainable=finetune_only(model, params, fewshot, task, config.schedule(), ctx),
                       task=task)


@hookimpl
def clipbench_register_methods(register):
    register(AClip())
