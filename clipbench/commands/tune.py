"""`clipbench tune`: choose each method's hyper-parameters on validation splits of the tuning seeds."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from clipbench.commands.common import (data_arguments, model_arguments, positive_int,
                                       load_plugins)


def add_parser(sub) -> None:
    tune = sub.add_parser("tune", help="choose each method's hyper-parameters on validation splits",
                          description="For every task of the suite, try each point of the method's declared search "
                                      "space (the same trial budget for every method), adapting on the k shots of "
                                      "the dedicated tuning seeds and scoring their validation splits; never an "
                                      "evaluation seed, never a test set. Writes one tuned-config file per method "
                                      "that `clipbench run` then uses; an interrupted tuning resumes.",
                          epilog="example:\n  clipbench tune --suite default --method full-ft saft\n"
                                 "  clipbench run --method full-ft saft      # uses the choices in ./tuned",
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    tune.add_argument("--method", "-m", nargs="+", required=True, metavar="NAME", help="methods to tune")
    tune.add_argument("--suite", default="default", help="suite to tune on (default: %(default)s)")
    tune.add_argument("--task", nargs="+", default=[], metavar="NAME", help="only these tasks (default: all)")
    tune.add_argument("--shots", type=positive_int, default=16, help="support images per class (default: %(default)s)")
    tune.add_argument("--out", type=Path, default=Path("tuned"), help="folder for tuned configs (default: ./%(default)s)")
    tune.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    tune.add_argument("--no-cache", action="store_true", help="do not use the embedding cache")
    model_arguments(tune)
    data_arguments(tune)


def main(args, console: Console) -> int:
    from clipbench import tuning

    methods = [m for item in args.method for m in item.split(",") if m]
    request = tuning.TuneRequest(methods=methods, suite=args.suite, tasks=args.task, shots=args.shots,
                                 model=args.model, pretrained=args.pretrained, checkpoint=args.checkpoint,
                                 device=args.device, out_dir=args.out, cache=not args.no_cache, data=args.data,
                                 download=args.download)
    pm, registry = load_plugins()
    import time

    start = time.perf_counter()
    paths = tuning.tune(request, registry, pm,
                           log=lambda line: console.print(escape(line), highlight=False, soft_wrap=True))
    for p in paths:
        console.print(f"tuned: {escape(str(p))}", highlight=False, soft_wrap=True)
    console.print(f"tuning took {time.perf_counter() - start:.0f} s", highlight=False)
    return 0
