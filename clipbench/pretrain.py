"""Contrastive pretraining of the embedded model on the procedural world and the shipped real images.

This is how the shipped weights were made (`clipbench pretrain`), so anyone can
reproduce them.  A fixed corpus of rendered images is drawn once from the seed;
each batch mixes it with the *pretrain* pools of the shipped real images
(clothing, digits, animal silhouettes: disjoint from every task's train pool,
test set, shift and probe).  Captions are re-drawn for every step, and real
images are moved by up to two pixels: the only augmentation.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from clipbench.data import shipped, world
from clipbench.models import ClipModel, create_embedded, save_embedded_weights
from clipbench.training import train_steps


@dataclass(frozen=True)
class PretrainConfig:
    """Defaults are those of the shipped weights (batch 128, AdamW 1e-3, cosine, as in DESIGN.md)."""

    steps: int = 4500
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 100
    corpus: int = 40_000
    real_fraction: float = 0.4  # share of each batch drawn from the shipped images' pretrain pools
    # how the real share divides between the shipped collections (fashion, mnist, animals)
    real_mix: tuple[float, float, float] = (0.4, 0.2, 0.4)
    seed: int = 0


def build_corpus(cfg: PretrainConfig, progress: Callable[[int, int], None] | None = None):
    rng = np.random.default_rng(cfg.seed)
    images, attrs, outline, hues = [], [], [], []
    chunk = 1000
    for start in range(0, cfg.corpus, chunk):
        n = min(chunk, cfg.corpus - start)
        a = world.sample_attributes(rng, n, spec=world.PRETRAIN_SPEC)
        s = world.render(rng, a, world.PRETRAIN_SPEC)
        images.append(s.images)
        attrs.append(a)
        outline.append(s.styles)
        hues.append(s.hues)
        if progress:
            progress(start + n, cfg.corpus)
    merged = {k: np.concatenate([a[k] for a in attrs]) for k in attrs[0]}
    return torch.from_numpy(np.concatenate(images)), merged, np.concatenate(outline), np.concatenate(hues)


def real_pools() -> dict[str, tuple[torch.Tensor, np.ndarray]]:
    """The pretrain pools of the shipped collections: (N, 32, 32) uint8 canvases and labels."""
    out = {}
    for name in shipped.COLLECTIONS:
        images, labels = shipped.split(name, "pretrain")
        out[name] = (torch.from_numpy(shipped.to_canvas(images)), labels)
    return out


def real_batch(rng: np.random.Generator, pools: dict, n: int,
               mix: tuple[float, ...] | None = None) -> tuple[torch.Tensor, list[str]]:
    """``n`` captioned real images: a collection drawn by ``mix`` (shipped.COLLECTIONS order), then an image,
    moved by up to 2 pixels."""
    names = list(shipped.COLLECTIONS)
    weights = np.asarray(mix if mix is not None else [1.0] * len(names), dtype=float)
    which = rng.choice(len(names), size=n, p=weights / weights.sum())
    images, texts = [], []
    for k in which:
        canvases, labels = pools[names[k]]
        i = int(rng.integers(0, len(labels)))
        dy, dx = (int(v) for v in rng.integers(-2, 3, 2))
        images.append(torch.roll(canvases[i], shifts=(dy, dx), dims=(0, 1)))
        texts.append(shipped.caption(names[k], int(labels[i]), rng))
    return torch.stack(images)[:, None].expand(-1, 3, -1, -1).contiguous(), texts


def vocabulary() -> set[str]:
    """Every word a pretraining caption or a default-suite prompt can contain."""
    from clipbench.suites.default import prompt_words

    return world.vocabulary() | shipped.vocabulary() | prompt_words()


def zero_unused_token_rows(model: ClipModel) -> int:
    """Zero the token-embedding rows no world caption or prompt uses.

    They never received a gradient, so they hold only their random init (and
    weight decay); zeroing them makes the shipped file a few MB instead of 15.
    """
    used = set()
    for word in vocabulary():
        used.update(int(t) for t in model.tokenizer([word])[0].tolist())
    emb = model.module.token_embedding.weight
    mask = torch.ones(emb.shape[0], dtype=torch.bool)
    mask[sorted(used)] = False
    with torch.no_grad():
        emb[mask] = 0
    return int((~mask).sum())


def pretrain(cfg: PretrainConfig, out: Path, progress: Callable[[str, int, int], None] | None = None,
             evaluate: Callable[[ClipModel], dict] | None = None, eval_every: int = 500,
             log: Callable[[str], None] = lambda s: None) -> dict:
    """Train the embedded architecture from scratch and write the weights to ``out``."""
    torch.manual_seed(cfg.seed)
    model = create_embedded(cfg.seed)
    images, attrs, outline, hues = build_corpus(cfg, (lambda d, t: progress("corpus", d, t)) if progress else None)
    pools = real_pools() if cfg.real_fraction > 0 else {}
    n_real = int(round(cfg.batch_size * cfg.real_fraction))
    rng = np.random.default_rng(cfg.seed + 1)
    decay = [p for n, p in model.module.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.module.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))
    from open_clip.loss import ClipLoss  # imported here: `clipbench --help` need not load open_clip

    loss_fn = ClipLoss()

    def batches():
        """Each step's images and captions, drawn from ``rng`` when the step needs them (the draws' order)."""
        for _ in range(cfg.steps):
            idx = rng.integers(0, len(images), cfg.batch_size - n_real)
            texts = [world.caption(rng, {k: attrs[k][i] for k in attrs}, bool(outline[i]), hue=float(hues[i]))
                     for i in idx]
            batch = images[idx]
            if n_real:
                real_images, real_texts = real_batch(rng, pools, n_real, cfg.real_mix)
                batch, texts = torch.cat([batch, real_images]), texts + real_texts
            yield batch, texts

    history = []
    start = time.time()

    def after_step(step: int, loss: float) -> None:
        with torch.no_grad():
            model.module.logit_scale.clamp_(0, math.log(100))
        if evaluate and (step % eval_every == 0 or step == cfg.steps):
            model.module.eval()
            scores = evaluate(model)
            model.module.train()
            history.append({"step": step, "loss": round(loss, 4), "seconds": round(time.time() - start, 1), **scores})
            log(str(history[-1]))

    model.module.train()
    train_steps(opt, batches(), lambda batch: loss_fn(*_features(model, *batch)), cfg.steps, scheduler=sched,
                progress=(lambda done, total: progress("train", done, total)) if progress else lambda done, total: None,
                after_step=after_step)
    model.module.eval()
    kept = zero_unused_token_rows(model)
    sha = save_embedded_weights(model.module, out)
    Path(str(out) + ".sha256").write_text(f"{sha}  {out.name}\n")
    return {"config": asdict(cfg), "sha256": sha, "token_rows_kept": kept, "history": history,
            "seconds": round(time.time() - start, 1)}


def train_pool_evaluator() -> Callable[[ClipModel], dict]:
    """Zero-shot accuracy on each default task's *train pool*, to watch pretraining: never a test set, so
    choosing a pretraining recipe by it selects nothing on the images the suite scores."""
    from clipbench.method import Adapted
    from clipbench.protocol import Evaluator
    from clipbench.suites.default import build_default_suite

    suite = build_default_suite()
    tasks = [suite.task(name) for name in suite.adapt_on]

    def evaluate(model: ClipModel) -> dict:
        ev, adapted = Evaluator(batch_size=1024), Adapted(model)
        return {f"{t.name} (train pool)": round(ev.accuracy(adapted, t.train.value, t), 1) for t in tasks}

    return evaluate


def _features(model: ClipModel, images: torch.Tensor, texts: list[str]):
    out = model.module(model.prepare_images(images), model.tokenize(texts))
    if isinstance(out, dict):
        return out["image_features"], out["text_features"], out["logit_scale"]
    return out[0], out[1], out[2]
