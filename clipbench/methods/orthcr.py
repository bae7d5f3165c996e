"""Built-in plugin: OrthCR, orthogonal fine-tuning with cross-regularization and Cutout.

Li, Jie, Ricci, Ma, Sebe, "Enhancing Robustness of Vision-Language Models
through Orthogonality Learning and Cross-Regularization", arXiv 2407.08374
(v3 renames it OrthSR, "self-regularization").  What the abstract and v3 state:

- trainable orthogonal matrices are injected into the transformer and the
  pretrained weights stay frozen, as in OFT (Qiu et al., NeurIPS 2023), on which
  the paper builds: OFT writes W' = R W0 for W0 of shape (in, out), i.e. R rotates
  the *input* side; in torch's (out, in) layout that is W' = W R^T, which keeps
  the angles between output neurons (W' W'^T = W W^T, OFT's hyperspherical
  energy).  huggingface/peft's OFT rotates the same side (tests compare against
  it).  R is block-diagonal, each block the Cayley transform
  R = (I - S)(I + S)^-1 of a skew-symmetric S built from b(b-1)/2 free entries
  (its upper triangle, peft's parametrisation); the generators start at 0, so
  R = I and the adapted model starts exactly at the pretrained one.  Rotated:
  the q, k and v projections (each its own R, as OFT on separate q/k/v layers)
  and the attention output projection of every block of both towers.
- a regulariser ties the fine-tuned branch to the frozen pretrained branch run
  "in a bypass manner": v3's ablation names it a Kullback-Leibler loss, so we use
  KL(p_pretrained || p_finetuned) between the two branches' class predictions on
  the same (augmented) support images, weight ``kl_weight``.
- Cutout (DeVries & Taylor 2017) on support images.

Not given in what could be read here, so chosen and said: block size 32 (OFT's
common setting for d = 768 is r = 8 blocks of 96; 32 keeps 4 blocks on the
embedded model's width 128), kl_weight 1.0, AdamW lr 1e-3 (OFT's range),
Cutout of a square half the image side (DeVries & Taylor's CIFAR setting).

Deviation card: `OrthCR.deviations` below; `clipbench show method orthcr`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize

from clipbench.errors import ClipbenchError
from clipbench.cards import Deviation
from clipbench.hookspecs import hookimpl
from clipbench.method import Adapted, Method
from clipbench.methods.attention import attention_layers, merge_parametrizations
from clipbench.config import MethodConfig, option
from clipbench.training import clip_logits, count_parameters, finetune


@dataclass(frozen=True)
class OrthCRConfig(MethodConfig):
    block_size: int = option(32, "side of each diagonal block of the rotation")
    kl_weight: float = option(1.0, "weight of the KL pull toward the frozen branch (cross-regularisation)")
    cutout_fraction: float = option(0.5, "Cutout square side as a fraction of the image side",
                                    search=[0.125, 0.5], bounds=(0.0, 1.0),
                                    source="DeVries & Taylor's CIFAR setting: 0.5")
    lr: float = option(1e-3, "AdamW learning rate of the rotation generators", search=[1e-4, 3e-4, 1e-3, 3e-3],
                       source="OFT's range")
    weight_decay: float = option(0.0, "AdamW weight decay")
    batch_size: int = option(32, "images per step")
    epochs: int = option(20, "passes over the support set")


def cayley(skew: torch.Tensor) -> torch.Tensor:
    """R = (I - S)(I + S)^-1 for a batch of skew-symmetric S (n, b, b); orthogonal by construction."""
    eye = torch.eye(skew.shape[-1], device=skew.device, dtype=skew.dtype).expand_as(skew)
    # (I - S) and (I + S)^-1 commute, so solving (I + S) X = (I - S) gives the same R
    return torch.linalg.solve(eye + skew, eye - skew)


class BlockCayley(nn.Module):
    """Parametrization W -> W R^T (OFT's input-side rotation), R block-diagonal orthogonal, R = I at start.

    ``groups`` splits the weight's rows into equal output slices that each get
    their own R (3 for a packed q/k/v ``in_proj_weight``).  The free parameters
    are the upper triangles of the skew-symmetric generators: b(b-1)/2 per block.
    """

    def __init__(self, out_features: int, in_features: int, block_size: int, groups: int = 1, device=None):
        super().__init__()
        if in_features % block_size:
            raise ClipbenchError(f"OrthCR block size {block_size} does not divide the layer's {in_features} "
                                 "inputs; choose --option orthcr.block_size=<a divisor>.")
        if out_features % groups:
            raise ClipbenchError(f"OrthCR cannot split {out_features} rows into {groups} q/k/v slices.")
        self.block_size, self.groups = block_size, groups
        self.blocks = in_features // block_size
        rows, cols = torch.triu_indices(block_size, block_size, 1, device=device)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        self.generator = nn.Parameter(torch.zeros(groups, self.blocks, len(rows), device=device))

    def skew(self) -> torch.Tensor:
        """(groups, blocks, b, b) skew-symmetric matrices from the free upper-triangle entries."""
        b = self.block_size
        upper = self.generator.new_zeros(self.groups, self.blocks, b, b)
        upper[..., self.rows, self.cols] = self.generator
        return upper - upper.transpose(-1, -2)

    def rotation_blocks(self) -> torch.Tensor:
        return cayley(self.skew())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        r = self.rotation_blocks()  # (g, n, b, b)
        w = weight.reshape(self.groups, -1, self.blocks, self.block_size)  # (g, out/g, n, b)
        # (W R^T)[o, c] = sum_k W[o, k] R[c, k], block by block over the input dimension
        return torch.einsum("gonk,gnck->gonc", w, r).reshape_as(weight)


def cutout(images: torch.Tensor, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero one size x size square per image (clipped at the border); returns images and boxes (y0, x0, y1, x1)."""
    n, _, h, w = images.shape
    cy = torch.randint(0, h, (n,), generator=generator)
    cx = torch.randint(0, w, (n,), generator=generator)
    y0, x0 = (cy - size // 2).clamp(0, h), (cx - size // 2).clamp(0, w)
    y1, x1 = (cy - size // 2 + size).clamp(0, h), (cx - size // 2 + size).clamp(0, w)
    ys = torch.arange(h).view(1, h, 1)
    xs = torch.arange(w).view(1, 1, w)
    hole = (ys >= y0.view(-1, 1, 1)) & (ys < y1.view(-1, 1, 1)) & (xs >= x0.view(-1, 1, 1)) & (xs < x1.view(-1, 1, 1))
    out = images.clone()
    out[hole.unsqueeze(1).expand_as(images).to(images.device)] = 0
    return out, torch.stack([y0, x0, y1, x1], dim=1)


def orthogonal_layers(module: nn.Module) -> list[tuple[str, nn.Module, str, int]]:
    """(qualified weight name, owner module, weight name, q/k/v groups) of every projection OrthCR rotates."""
    layers = []
    for name, attn in attention_layers(module):
        layers.append((f"{name}.in_proj_weight", attn, "in_proj_weight", 3))
        layers.append((f"{name}.out_proj.weight", attn.out_proj, "weight", 1))
    return layers


class OrthCR(Method):
    name = "orthcr"
    citation = ("Li, Jie, Ricci, Ma, Sebe, Enhancing Robustness of Vision-Language Models through Orthogonality "
                "Learning and Cross-Regularization, arXiv 2407.08374")
    summary = "block-diagonal Cayley rotations of the attention projections + KL to the frozen branch + Cutout"
    config_class = OrthCRConfig
    reference = ("paper only: Li et al., arXiv 2407.08374 (v1 OrthCR, v3 OrthSR); no released code found. The "
                 "rotation follows huggingface/peft's OFT (src/peft/tuners/oft), which the tests compare against")
    deviations = (
        Deviation("augmentation",
                  "Cutout (v1); \"attentive CutOut\" (v3), whose placement was not read",
                  "Cutout of one uniformly placed square, half the image side by default",
                  True, "DeVries & Taylor's CIFAR setting; an attention-guided placement is not reproduced"),
        Deviation("rotated layers",
                  "orthogonal matrices \"injected into the transformer\"; which layers: not read",
                  "q, k, v (one rotation each) and the attention output projection of every block, both towers",
                  True, "OFT's usual attention targets"),
        Deviation("block size",
                  "not given in what was read (OFT's common setting: 8 blocks of 96 at width 768)",
                  "blocks of 32",
                  True, "32 divides the embedded model's width 128 into 4 blocks"),
        Deviation("regulariser",
                  "a KL loss to the frozen branch run \"in a bypass manner\"; weight and direction not read",
                  "KL(p_pretrained || p_finetuned) on the same augmented images, weight 1.0",
                  True, "the natural distillation direction; the weight is chosen, not the paper's"),
        Deviation("optimiser, batch, epochs",
                  "not given in what was read",
                  "AdamW lr 1e-3 (OFT's range), no weight decay, batch 32, 20 epochs, cosine after 10% warm-up",
                  True, "chosen, and said; the paper's values would replace them"),
        Deviation("what is searched",
                  "not given in what was read",
                  "lr (1e-4 to 3e-3) and the Cutout square's side (1/8 or 1/2 of the image) chosen by `clipbench "
                  "tune` on the validation split",
                  True, "every method is tuned the same way, never on test data"),
    )

    def adapt(self, model, fewshot, task, config, ctx):
        frozen = model.clone()  # the bypass: the pretrained branch, never trained
        frozen.module.requires_grad_(False).eval()
        model.module.requires_grad_(False)
        rotations, targets = [], []
        for qualified, owner, name, groups in orthogonal_layers(model.module):
            weight = getattr(owner, name)
            rot = BlockCayley(weight.shape[0], weight.shape[1], config.block_size, groups, weight.device)
            parametrize.register_parametrization(owner, name, rot)
            rotations.append(rot)
            targets.append(qualified)
        params = [rot.generator for rot in rotations]
        size = max(1, round(config.cutout_fraction * fewshot.images.shape[-1]))
        with torch.no_grad():
            frozen_text = frozen.encode_text(task.train_prompts())

        def regulariser(images, labels, logits):
            with torch.no_grad():
                target = frozen.logit_scale * frozen.encode_image(images) @ frozen_text.T
            return config.kl_weight * F.kl_div(F.log_softmax(logits, -1), F.log_softmax(target, -1),
                                               log_target=True, reduction="batchmean")

        schedule = config.schedule()
        finetune(model, params, fewshot, task, schedule, ctx, logits_fn=clip_logits,
                 augment=lambda x, g: cutout(x, size, g)[0], extra_loss=regulariser)
        merge_parametrizations(model.module)
        model.module.requires_grad_(False)
        # the free generators are what trained; the rotated weights they generate change densely
        adapted = Adapted(model, trainable=count_parameters(params), task=task, added=params, generated=targets)
        adapted.rotations = [rot.rotation_blocks().detach() for rot in rotations]
        return adapted


@hookimpl
def clipbench_register_methods(register):
    register(OrthCR())
