"""Built-in plugin: WiSE-FT, the weight-space ensemble of the zero-shot and the fine-tuned image classifier.

Wortsman, Ilharco, Kim, Li, Kornblith, Roelofs, Lopes, Hajishirzi, Farhadi,
Namkoong, Schmidt, "Robust fine-tuning of zero-shot models", CVPR 2022; checked
against the authors' code, mlfoundations/wise-ft.

What it is, as released:

1. The zero-shot classifier (``src/models/zeroshot.py``): every class name is
   put through every template of the prompt ensemble, the text embeddings are
   normalised, averaged and renormalised, and the class embeddings multiplied
   by the exponentiated logit scale become the weight of a linear head
   (``ClassificationHead``, bias zero) that L2-normalises its input
   (``src/models/modeling.py``).  The text tower is then deleted: only the image
   encoder and that head remain (``src/wise_ft.py``).
2. Fine-tuning (``src/models/finetune.py``): the image encoder and the head,
   end to end, with cross-entropy on the head's logits, AdamW, a cosine schedule
   after a linear warm-up, and the gradient norm clipped to 1.0.  Nothing of the
   text side moves, the logit scale included (it lives on in the head weight).
3. Interpolation (``src/wise_ft.py``, ``_merge``): every weight of the image
   classifier, theta = (1 - alpha) theta_zero-shot + alpha theta_fine-tuned,
   with alpha = 0.5 (``src/args.py``) for the image encoder and the head alike.

clipbench does the same: the harness's zero-shot head (the task's prompt
ensemble, :func:`clipbench.method.zeroshot_head`) times the pretrained logit
scale initialises the head; the image tower and the head train through the
shared loop with gradient clipping 1.0; the text tower and the logit scale stay
bit-identical to the pretrained ones; the image tower and the head are then
interpolated at ``alpha``.  Both end points are kept, so ``adapted.at(alpha)``
is the model at any other point of the curve (``at(0)`` the zero-shot model,
``at(1)`` the fine-tuned one).

Scoring: on its own task and its shifts (the same label space) the
interpolated head scores the interpolated image features, which arrive
L2-normalised from :meth:`clipbench.models.ClipModel.encode_image`, as the
released head normalises its input.  On forgetting probes and on new classes
the head cannot act (it is tied to the source label space), so those are
zero-shot CLIP, the pretrained text tower's class embeddings, over the
interpolated image encoder: the released code has no text tower left to do
anything else, and the board marks that forgetting as "by construction".

Where each default comes from: ``lr`` 3e-5 is the fine-tuning command of the
wise-ft README (ViT-B/32 on ImageNet; ``src/args.py``'s own default is 1e-3),
and ``clipbench tune`` chooses it per task on validation from the grid shared
with full fine-tuning; ``weight_decay`` 0.1 and ``grad_clip`` 1.0 are the
released values (``src/args.py``, ``src/models/finetune.py``), ``alpha`` 0.5
the released default; batch size, epochs and warm-up come from clipbench's
AdamW recipe (FLYP's), suited to 16 shots (see below).

Deviation card: `WiseFT.deviations` below; `clipbench show method wise-ft`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from clipbench.cards import Deviation
from clipbench.config import FINETUNE_LR_GRID, AdamWRecipe, option
from clipbench.hookspecs import hookimpl
from clipbench.method import Adapted, Method
from clipbench.methods.lp_ft import ImageHead
from clipbench.training import count_parameters, finetune


@dataclass(frozen=True)
class WiseFTConfig(AdamWRecipe):
    lr: float = option(3e-5, "AdamW learning rate of the fine-tuning run (image tower and head)",
                       search=FINETUNE_LR_GRID,
                       source="wise-ft README fine-tuning command: 3e-5 (src/args.py default 1e-3)")
    weight_decay: float = option(0.1, "AdamW weight decay (image tower and head)", source="wise-ft src/args.py: 0.1")
    grad_clip: float = option(1.0, "gradient norm clip", source="wise-ft src/models/finetune.py: 1.0")
    alpha: float = option(0.5, "mixing coefficient: 0 is zero-shot, 1 the fine-tuned model",
                          source="wise-ft src/args.py: 0.5")


class WeightEnsemble(ImageHead):
    """The image tower and head at ``alpha``; zero-shot CLIP over that image tower on other label spaces.

    ``ends`` maps each interpolated tensor (``visual.*`` state entries, ``head.weight``, ``head.bias``) to its
    (zero-shot, fine-tuned) values, so :meth:`at` gives any other point of the curve.
    """

    def __init__(self, model, task, alpha, ends, trainable):
        weight = _mix(alpha, *ends["head.weight"])
        bias = _mix(alpha, *ends["head.bias"])
        super().__init__(model, task, weight, bias, trainable)
        self.alpha, self.ends = alpha, ends
        with torch.no_grad():
            for key, value in model.module.visual.state_dict().items():
                if f"visual.{key}" in ends:
                    value.copy_(_mix(alpha, *ends[f"visual.{key}"]))

    def at(self, alpha: float) -> "WeightEnsemble":
        """The weight-space ensemble at another mixing coefficient (a new model; this one is unchanged)."""
        return WeightEnsemble(self.model.clone(), self.task, alpha, self.ends, self.trainable)


def _mix(alpha: float, zero_shot: torch.Tensor, tuned: torch.Tensor) -> torch.Tensor:
    """(1 - alpha) zero_shot + alpha tuned, as the released ``_merge`` (exactly an end point at 0 and 1)."""
    return (1 - alpha) * zero_shot + alpha * tuned


class WiseFT(Method):
    name = "wise-ft"
    citation = "Wortsman et al., Robust fine-tuning of zero-shot models, CVPR 2022 (WiSE-FT)"
    summary = ("image tower and a zero-shot-initialised head fine-tuned, then interpolated with the zero-shot "
               "ones (alpha 0.5); text tower untouched")
    config_class = WiseFTConfig
    reference = ("mlfoundations/wise-ft: src/wise_ft.py (interpolation), src/models/finetune.py (training), "
                 "src/models/modeling.py (ImageClassifier, ClassificationHead), src/models/zeroshot.py (head), "
                 "src/args.py (defaults)")
    deviations = (
        Deviation("batch size, epochs, warm-up",
                  "batch 512, 10 epochs, 500 warm-up steps",
                  "batch 32, 20 epochs over the support set, 10% warm-up (clipbench's AdamW recipe)",
                  True, "ImageNet-scale settings do not fit 16 shots (500 warm-up steps would be the whole run); "
                        "the lr grid is tuned with the shared recipe"),
        Deviation("what is searched",
                  "lr 3e-5 fixed (README command; src/args.py's default is 1e-3)",
                  "lr chosen by `clipbench tune` on the validation split (1e-6 to 3e-4); 3e-5 with --defaults",
                  True, "full-data learning rates rarely suit 16 shots; every method is tuned the same way, never "
                        "on test data"),
        Deviation("schedule",
                  "linear warm-up, then cosine over the steps after it",
                  "the warm-up ramp multiplied by a cosine over all steps (training.warmup_cosine)",
                  True, "the shared loop's schedule; the peak rate is slightly lower"),
        Deviation("augmentation",
                  "RandomResizedCrop(scale=(0.9, 1.0)), bicubic, every step",
                  "none: the support images as they are",
                  True, "not yet applied: the crops exist (clipbench.random_crops, as LP-FT uses them) but adopting "
                        "them re-tunes this method; planned with FLYP's (issue #22)"),
        Deviation("prompt ensemble of the head",
                  "the dataset's template list (80 templates for ImageNet)",
                  "the task's own templates",
                  False, "the same construction over each benchmark's templates"),
        Deviation("interpolated weights",
                  "the whole classifier state dict, text-side leftovers included (they never get a gradient)",
                  "the image tower and the head; the text side is not touched",
                  False, "the leftovers interpolate to themselves"),
        Deviation("scoring outside the task",
                  "only the head's label space (ImageNet and its shifts) is evaluated",
                  "forgetting probes and new classes too: zero-shot over the interpolated image tower",
                  False, "the protocol's forgetting probes; the released scores are unchanged, and the head, tied "
                         "to the source label space, cannot act there"),
    )

    def adapt(self, model, fewshot, task, config, ctx):
        with torch.no_grad():  # the zero-shot head: logit scale x the prompt-ensemble class embeddings
            w0 = (model.logit_scale * Adapted(model).text_head(task)).detach().clone()
        b0 = torch.zeros(len(w0), device=w0.device, dtype=w0.dtype)
        weight, bias = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
        visual = [p for p in model.module.visual.parameters()]
        zero_shot = {k: v.detach().clone() for k, v in model.module.visual.state_dict().items()
                     if v.is_floating_point()}

        model.module.requires_grad_(False)  # the text tower and the logit scale stay as pretrained
        for p in visual:
            p.requires_grad_(True)

        def head_logits(m, images, t):  # encode_image's features are L2-normalised, as the released head's input
            return m.encode_image(images) @ weight.T + bias

        finetune(model, visual + [weight, bias], fewshot, task, config.schedule(), ctx, logits_fn=head_logits)
        model.module.requires_grad_(False)

        tuned = {k: v.detach().clone() for k, v in model.module.visual.state_dict().items() if k in zero_shot}
        ends = {f"visual.{k}": (zero_shot[k], tuned[k]) for k in zero_shot}
        ends["head.weight"] = (w0, weight.detach().clone())
        ends["head.bias"] = (b0, bias.detach().clone())
        trainable = count_parameters(visual) + weight.numel() + bias.numel()
        return WeightEnsemble(model, task, config.alpha, ends, trainable)


@hookimpl
def clipbench_register_methods(register):
    register(WiseFT())
