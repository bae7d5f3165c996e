"""Where the attention weights of an open_clip model live, in one place.

open_clip's transformers use ``nn.MultiheadAttention``, whose query, key and
value projections are one packed ``in_proj_weight`` of shape (3d, d): rows
[0, d) are q, [d, 2d) k, [2d, 3d) v.  peft cannot target the slices by name,
so A-CLIP, LoRA and OrthCR all find and slice them through this module.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from clipbench.errors import ClipbenchError

TOWERS = {"image": "visual.transformer.resblocks", "text": "transformer.resblocks"}


def attention_layers(module: nn.Module, towers=("image", "text")) -> list[tuple[str, nn.MultiheadAttention]]:
    """Every residual block's attention in the given towers, as (qualified name, module)."""
    found = []
    for tower in towers:
        prefix = TOWERS[tower]
        blocks = [(n, m) for n, m in module.named_modules()
                  if n.startswith(prefix + ".") and n.endswith(".attn") and n.count(".") == prefix.count(".") + 2]
        if not blocks:
            raise ClipbenchError(
                f"This model has no {tower}-tower attention layers at {prefix}.<i>.attn: the method needs "
                "open_clip's transformer towers (a ViT image encoder and the standard text transformer).")
        for name, attn in blocks:
            if not isinstance(attn, nn.MultiheadAttention) or not getattr(attn, "_qkv_same_embed_dim", False):
                raise ClipbenchError(f"{name} is {type(attn).__name__}, not a packed nn.MultiheadAttention "
                                     "with an in_proj_weight; this method cannot adapt it.")
            found.append((name, attn))
    return found


def qkv_slice(attn: nn.MultiheadAttention, which: str) -> slice:
    d = attn.embed_dim
    start = "qkv".index(which) * d
    return slice(start, start + d)


class PackedLoRA(nn.Module):
    """A low-rank update on chosen q/k/v slices of a packed in_proj_weight (a parametrization).

    W = W0 + scaling * B A on each slice; B starts at zero, so the model starts at W0
    (Hu et al. 2022).  A starts Kaiming-uniform as in peft, or N(0, ``init_std``) as in the
    A-CLIP authors' code.  ``merge`` folds the update into W0 and removes the parametrization.
    """

    def __init__(self, attn: nn.MultiheadAttention, rank: int, scaling: float, slices=("q", "v"),
                 init_std: float | None = None):
        super().__init__()
        d = attn.embed_dim
        self.slices = [qkv_slice(attn, s) for s in slices]
        self.scaling = scaling
        self.A = nn.ParameterList()
        self.B = nn.ParameterList()
        for _ in self.slices:
            a = torch.empty(rank, d, device=attn.in_proj_weight.device)
            if init_std is None:
                nn.init.kaiming_uniform_(a, a=math.sqrt(5))
            else:
                nn.init.normal_(a, std=init_std)
            self.A.append(nn.Parameter(a))
            self.B.append(nn.Parameter(torch.zeros(d, rank, device=attn.in_proj_weight.device)))

    def delta(self, like: torch.Tensor) -> torch.Tensor:
        update = torch.zeros_like(like)
        for s, a, b in zip(self.slices, self.A, self.B):
            update[s] = self.scaling * (b @ a)
        return update

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.delta(weight)


def add_lora(attn: nn.MultiheadAttention, rank: int, scaling: float, slices=("q", "v"),
             init_std: float | None = None) -> PackedLoRA:
    lora = PackedLoRA(attn, rank, scaling, slices, init_std)
    parametrize.register_parametrization(attn, "in_proj_weight", lora)
    return lora


def merge_parametrizations(module: nn.Module) -> None:
    """Fold every parametrization into its plain weight (the deployable, merged model)."""
    for sub in list(module.modules()):
        if parametrize.is_parametrized(sub):
            for name in list(sub.parametrizations.keys()):
                parametrize.remove_parametrizations(sub, name, leave_parametrized=True)
