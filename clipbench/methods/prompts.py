"""Learned prompt contexts for open_clip's text tower, shared by CoOp and CoCoOp.

CoOp (Zhou et al., IJCV 2022) replaces the words of a prompt template by
learned vectors in the token-embedding space: the prompt of class c is
``[SOT] v_1 ... v_M <class c tokens> . [EOT]`` (class token at the "end"), and
the frozen text tower encodes it from there.  This module tokenises the
prompts once, with M placeholder words where the context goes, and runs
open_clip's text tower on token embeddings whose context positions are
replaced by the learned vectors; the pooling position (the EOT token) and
everything after the embedding are open_clip's own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clipbench.errors import ClipbenchError

PLACEHOLDER = "X"


class PromptTokens:
    """Tokenised ``X X ... X <class>.`` prompts of a task, and where their context vectors go."""

    def __init__(self, model, classnames: list[str], n_ctx: int):
        self.n_ctx = n_ctx
        texts = [" ".join([PLACEHOLDER] * n_ctx) + f" {name}." for name in classnames]
        self.tokens = model.tokenize(texts)  # (C, L)
        context = self.tokens.shape[1]
        longest = int((self.tokens > 0).sum(dim=1).max())
        if self.tokens[:, -1].ne(0).any() or longest > context:
            raise ClipbenchError(f"{n_ctx} context tokens and the longest class name do not fit the text tower's "
                                 f"context of {context} tokens; use fewer context tokens.")
        self.positions = slice(1, 1 + n_ctx)  # right after the start-of-text token

    def embed(self, module: torch.nn.Module) -> torch.Tensor:
        """The prompts' token embeddings (C, L, width), placeholders included (to be replaced)."""
        return module.token_embedding(self.tokens)


def fits(model, classnames: list[str], n_ctx: int) -> bool:
    """Whether ``n_ctx`` context tokens plus every class name fit the model's text context."""
    tokens = model.tokenize([" ".join([PLACEHOLDER] * n_ctx) + f" {name}." for name in classnames])
    return bool(tokens[:, -1].eq(0).all())


def init_context(model, n_ctx: int, init: str, generator: torch.Generator) -> torch.Tensor:
    """(n_ctx, width) initial context: the token embeddings of ``init`` (e.g. "a photo of a"), or N(0, 0.02)."""
    module = model.module
    width = module.token_embedding.weight.shape[1]
    if init:
        tokens = model.tokenize([init])[0]
        words = tokens[1:1 + n_ctx]
        if int((tokens > 0).sum()) - 2 != n_ctx:
            raise ClipbenchError(f"The context initialisation {init!r} is not {n_ctx} tokens long.")
        with torch.no_grad():
            return module.token_embedding(words).detach().clone()
    return (torch.randn(n_ctx, width, generator=generator) * 0.02).to(module.token_embedding.weight.device)


def encode_with_context(module: torch.nn.Module, prompts: PromptTokens, context: torch.Tensor) -> torch.Tensor:
    """L2-normalised text features of the prompts with ``context`` in place of the placeholders.

    ``context`` is (n_ctx, width), shared by every class (CoOp's generic context), or
    (B, n_ctx, width), one context per image (CoCoOp): the result is then (B, C, D).
    """
    base = prompts.embed(module)  # (C, L, W)
    per_image = context.dim() == 3
    if per_image:
        b = context.shape[0]
        x = base.unsqueeze(0).expand(b, *base.shape).clone()  # (B, C, L, W)
        x[:, :, prompts.positions] = context.unsqueeze(1).expand(b, base.shape[0], *context.shape[1:])
        x = x.reshape(b * base.shape[0], *base.shape[1:])
        tokens = prompts.tokens.repeat(b, 1)
    else:
        x = base.clone()
        x[:, prompts.positions] = context.unsqueeze(0).expand(base.shape[0], *context.shape)
        tokens = prompts.tokens
    cast = module.transformer.get_cast_dtype()
    x = x.to(cast) + module.positional_embedding.to(cast)
    x = module.transformer(x, attn_mask=module.attn_mask)
    x = module.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]  # the EOT token (open_clip "argmax")
    if module.text_projection is not None:
        x = module.text_projection(x) if isinstance(module.text_projection, torch.nn.Linear) else x @ module.text_projection
    x = F.normalize(x, dim=-1)
    return x.view(context.shape[0], base.shape[0], -1) if per_image else x


def check_text_tower(module: torch.nn.Module) -> None:
    if getattr(module, "text_pool_type", "argmax") != "argmax" or not hasattr(module, "token_embedding"):
        raise ClipbenchError("Prompt learning needs open_clip's standard text transformer (token embeddings, "
                             "EOT pooling); this model's text tower is different.")
