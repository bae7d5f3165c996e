"""`clipbench pretrain`: reproduce the embedded model's weights."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from clipbench.errors import ClipbenchError


class DEFAULTS:
    """PretrainConfig's defaults, here so that the parser (and `clipbench --help`) need not import torch;
    a test keeps them equal."""

    steps, batch_size, lr, corpus, real_fraction, seed = 4500, 128, 1e-3, 40_000, 0.4, 0


def add_parser(sub) -> None:
    pre = sub.add_parser("pretrain", help="reproduce the embedded model's weights",
                         description="Contrastively pretrain the embedded clipbench-tiny model on the procedural "
                                     "world and the pretrain pools of the shipped real images (never a task's "
                                     "train pool, test set, shift or probe). The defaults are those of the "
                                     "shipped weights; zero-shot accuracy on each default task's train pool is "
                                     "printed every --eval-every steps.")
    d = DEFAULTS
    pre.add_argument("--steps", type=int, default=d.steps, help="optimiser steps (default: %(default)s)")
    pre.add_argument("--batch-size", type=int, default=d.batch_size, help="default: %(default)s")
    pre.add_argument("--lr", type=float, default=d.lr, help="default: %(default)s")
    pre.add_argument("--corpus", type=int, default=d.corpus, help="rendered images (default: %(default)s)")
    pre.add_argument("--real-fraction", type=float, default=d.real_fraction,
                     help="share of each batch drawn from the shipped real images (default: %(default)s)")
    pre.add_argument("--eval-every", type=int, default=500,
                     help="steps between zero-shot checks on the train pools; 0: none (default: %(default)s)")
    pre.add_argument("--seed", type=int, default=d.seed, help="default: %(default)s")
    pre.add_argument("--out", type=Path, default=Path("clipbench-tiny.pt.xz"),
                     help="weights file to write (default: ./%(default)s)")


def main(args, console: Console) -> int:
    from rich.progress import Progress

    from clipbench.pretrain import PretrainConfig, pretrain, train_pool_evaluator

    out_dir = args.out.parent if str(args.out.parent) else Path(".")
    if not out_dir.is_dir():
        raise ClipbenchError(f"--out {args.out}: the folder {out_dir} does not exist; create it first.")
    if args.out.is_dir():
        raise ClipbenchError(f"--out {args.out} is a folder: name the weights file to write, e.g. {args.out}/tiny.pt.xz.")
    if not os.access(out_dir, os.W_OK):
        raise ClipbenchError(f"--out {args.out}: the folder {out_dir} cannot be written.")
    for name in ("steps", "batch_size", "corpus"):
        if getattr(args, name) < 1:
            raise ClipbenchError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}.")
    if not 0.0 <= args.real_fraction <= 1.0:
        raise ClipbenchError(f"--real-fraction must be between 0 and 1, got {args.real_fraction}.")
    if args.eval_every < 0:
        raise ClipbenchError(f"--eval-every must be 0 or more, got {args.eval_every}.")
    cfg = PretrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, corpus=args.corpus,
                         real_fraction=args.real_fraction, seed=args.seed)
    with Progress(console=console, disable=not console.is_terminal) as progress:
        bars = {}

        def tick(stage, done, total):
            if stage not in bars:
                bars[stage] = progress.add_task(stage, total=total)
            progress.update(bars[stage], completed=done)

        info = pretrain(cfg, args.out, progress=tick,
                        evaluate=train_pool_evaluator() if args.eval_every else None,
                        eval_every=args.eval_every or 1, log=lambda line: console.print(escape(line)))
    console.print(json.dumps({k: v for k, v in info.items() if k != "history"}, indent=1))
    console.print(f"weights: {escape(str(args.out))}  (to ship them, copy to clipbench/assets/ with the .sha256 file)")
    return 0
