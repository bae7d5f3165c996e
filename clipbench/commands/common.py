"""What every command shares: the one-line-error parser, argument types, model and data options."""

from __future__ import annotations

import argparse
from pathlib import Path

from clipbench.results import MAX_SEED
from clipbench.sweep import positive_int  # noqa: F401  re-exported: the commands' flags use the executors' type

MAX_SEEDS = 100


def seed_list(text: str) -> list[int]:
    """An explicit list of seeds: ``1,2,3``, a range ``1-5``, or both (``1-3,7``); never a count."""
    seeds: list[int] = []
    try:
        for part in text.replace(" ", "").split(","):
            if not part:
                continue
            if "-" in part.lstrip("-"):
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, "")
                lo, hi = int(lo), int(hi)
                if hi < lo:
                    raise argparse.ArgumentTypeError(f"the seed range {part} runs backwards")
                if hi - lo >= MAX_SEEDS:
                    raise argparse.ArgumentTypeError(f"the seed range {part} holds more than {MAX_SEEDS} seeds")
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants seeds as a list (1,2,3) or a range (1-5), got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("name at least one seed")
    bad = [s for s in seeds if not 0 <= s <= MAX_SEED]
    if bad:
        raise argparse.ArgumentTypeError(f"seeds are whole numbers from 0 to {MAX_SEED}, got {bad[0]}")
    dup = sorted({s for s in seeds if seeds.count(s) > 1})
    if dup:
        raise argparse.ArgumentTypeError(f"seed {dup[0]} is named twice")
    if len(seeds) > MAX_SEEDS:
        raise argparse.ArgumentTypeError(f"at most {MAX_SEEDS} seeds in one run")
    return seeds

def option_value(text: str) -> tuple[str, str, str]:
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise argparse.ArgumentTypeError(f"--option wants METHOD.KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    method, option = key.split(".", 1)
    if not method.strip() or not option.strip():
        raise argparse.ArgumentTypeError(f"--option wants METHOD.KEY=VALUE with both names, got {text!r}")
    return method, option, value

class Parser(argparse.ArgumentParser):
    """argparse with mistakes in one line (no usage block): what is wrong and where to read more."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}. See `{self.prog} --help`.\n")


def model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="model name: clipbench-tiny or an open_clip architecture, e.g. ViT-B-32 (default: the "
                        "suite's model; `clipbench list models` shows what is available offline)")
    p.add_argument("--pretrained", default=None,
                   help="open_clip pretrained tag, e.g. openai or laion2b_s34b_b79k (default: the suite's)")
    p.add_argument("--checkpoint", default=None,
                   help="a local weights file (open_clip or OpenAI format) instead of a pretrained tag")

def data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=None, metavar="ROOT",
                   help="folder holding the real datasets of suites such as imagenet-dg, fewshot11, forgetting "
                        "(layouts in the README; default: $CLIPBENCH_DATA_DIR)")
    p.add_argument("--download", action="store_true",
                   help="let torchvision download the datasets it can (CIFAR, STL-10, MNIST, SVHN, FGVC-Aircraft) "
                        "into --data; off by default, nothing is fetched without it")

def load_plugins():
    from clipbench.plugins import collect, get_plugin_manager

    pm = get_plugin_manager()
    return pm, collect(pm)
