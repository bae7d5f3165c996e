"""`clipbench run`: adapt methods on a suite with the standard protocol and print the results."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from clipbench.commands.common import (data_arguments, model_arguments, option_value, positive_int,
                                       load_plugins, seed_list)

EPILOG_RUN = """examples:
  clipbench run --method saft                               embedded default suite, offline, CPU
  clipbench run --method full-ft linear-probe --seeds 1     two methods, one seed
  clipbench run --method full-ft --option full-ft.lr=1e-4   change one option of a method
  clipbench run --method zeroshot --suite default --task shape --shots 4
  clipbench run --method saft --suite imagenet-dg --model ViT-B-32 --pretrained openai --data ~/datasets
  clipbench run --method saft lora --suite fewshot11 --model ViT-B-32 --pretrained openai --data ~/datasets \\
      --executor slurm --partition gpu --gpus 1 --time-min 120 --out results/

Results go to OUT/<suite>__<method>__<model>__<run hash>.json, merged after every
cell from one file per cell in the .cells folder beside it. Running the same
command again (or with more seeds or tasks) resumes from the cells already done;
runs of the same setting by several processes or machines merge into one."""


def add_parser(sub) -> None:
    run = sub.add_parser("run", help="run methods on a suite with the standard protocol",
                         description="Adapt each method on k shots of every task, for every seed, and score it "
                                     "in distribution, under each shift and on each forgetting probe.",
                         epilog=EPILOG_RUN, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--method", "-m", nargs="+", required=True, metavar="NAME",
                     help="one or more methods (see `clipbench list methods`); commas also separate")
    run.add_argument("--suite", default="default", help="suite to run (default: %(default)s, the embedded one)")
    run.add_argument("--task", nargs="+", default=[], metavar="NAME",
                     help="only these tasks of the suite (default: all tasks the suite adapts on)")
    run.add_argument("--probes", nargs="+", default=None, metavar="NAME",
                     help="only these forgetting probes (e.g. the probe datasets you have for the forgetting "
                          "suite); a run with probes left out is its own run, never a leaderboard row (default: "
                          "every probe of each task)")
    run.add_argument("--shots", type=positive_int, default=16, help="support images per class, k (default: %(default)s)")
    run.add_argument("--seeds", type=seed_list, default=[1, 2, 3], metavar="LIST",
                     help="seeds to run: a list 1,2,3 or a range 1-5; 2 means seed 2 only (default: 1,2,3)")
    run.add_argument("--out", type=Path, default=Path("results"),
                     help="folder for result files (default: ./%(default)s)")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    model_arguments(run)
    data_arguments(run)
    run.add_argument("--option", "-o", type=option_value, action="append", default=[], metavar="METHOD.KEY=VALUE",
                     help="override one option of a method's config (repeatable)")
    run.add_argument("--batch-size", type=positive_int, default=None,
                     help="evaluation batch size; it never changes a number (default: 128 on the CPU, where it "
                          "keeps a batch in the caches, 512 on a GPU)")
    run.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                     help="evaluation precision; bf16 scores in bfloat16 (on the CPU the image tower runs as a "
                          "bf16 copy, ~4x faster here), training stays fp32 (default: %(default)s)")
    run.add_argument("--no-cache", action="store_true",
                     help="do not read or write the embedding cache ($CLIPBENCH_CACHE_DIR, default ~/.cache/clipbench; "
                          "the built-in world's rendered images are still kept there)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars (also off when not a terminal)")
    ex = run.add_argument_group("running the cells elsewhere (a suite is a grid of independent cells)")
    executors = builtin_executors()
    ex.add_argument("--executor", default="auto", metavar="NAME",
                    help="; ".join(f"{e.name}: {e.help}" for e in executors)
                    + "; or an executor a plugin adds (default: %(default)s)")
    seen = set()
    for executor in executors:  # each executor declares the flags it reads; shared ones (--gpus) once
        for f in executor.flags:
            if f.names not in seen:
                seen.add(f.names)
                ex.add_argument(*f.names, **f.spec)
    ex.add_argument("--executor-option", type=option_pair, action="append", default=[], metavar="KEY=VALUE",
                    help="a value for an executor a plugin adds (repeatable); it reaches it as options.extra")
    hp = run.add_mutually_exclusive_group()
    hp.add_argument("--defaults", action="store_true",
                    help="run the papers' hyper-parameters, ignoring any tuned config (default: use the values "
                         "`clipbench tune` chose for this suite, model and shots, where they exist)")
    hp.add_argument("--tuned", type=Path, default=None, metavar="DIR",
                    help="folder of tuned configs written by `clipbench tune` (default: ./tuned, then the ones "
                         "shipped for the embedded default suite)")


def builtin_executors() -> list:
    """The built-in executors' declarations, for the parser's flags (their modules import no engine)."""
    from clipbench import sweep, sweep_ray, sweep_slurm

    found: list = []
    for module in (sweep, sweep_slurm, sweep_ray):
        module.clipbench_register_executors(register=found.append)
    return found


def option_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"wants KEY=VALUE, got {text!r}")
    return key.strip(), value


def sweep_options(args):
    """The executor's options from the parsed flags: built-in flags by name, the others in ``extra``."""
    import dataclasses

    from clipbench import sweep

    known = {f.name for f in dataclasses.fields(sweep.SweepOptions)} - {"executor", "extra", "threads"}
    values = {name: getattr(args, name) for name in known if hasattr(args, name)}
    return sweep.SweepOptions(executor=args.executor, extra=dict(args.executor_option), **values)


def main(args, console: Console) -> int:
    from clipbench import results, runner, ui

    methods = [m for item in args.method for m in item.split(",") if m]
    options: dict[str, dict] = {}
    for method, key, value in args.option:
        options.setdefault(method, {})[key] = value
    request = runner.RunRequest(methods=methods, suite=args.suite, tasks=args.task, shots=args.shots,
                                seeds=args.seeds, model=args.model, pretrained=args.pretrained,
                                checkpoint=args.checkpoint, device=args.device, out_dir=args.out,
                                options=options, batch_size=args.batch_size, cache=not args.no_cache,
                                precision=args.precision, data=args.data, download=args.download,
                                defaults=args.defaults, tuned_dir=args.tuned, probes=args.probes)
    pm, registry = load_plugins()
    show = not args.no_progress and console.is_terminal
    with ui.RichReporter(console, enabled=show) as reporter:
        from clipbench import sweep

        paths = sweep.dispatch(request, registry, pm, sweep_options(args), reporter,
                              log=lambda line: console.print(escape(line), highlight=False, soft_wrap=True))
    loaded = [results.load_result(p) for p in paths]
    for r in loaded:
        for table in ui.summary_tables(r):
            console.print(table)
    if len(loaded) > 1 or any(len({c["task"] for c in r["cells"]}) > 1 for r in loaded):
        console.print(ui.comparison_table(loaded))  # the suite-level numbers (and the leaderboard's score)
    for p in paths:
        console.print(f"results: {escape(str(p))}", highlight=False, soft_wrap=True)
    return 0
