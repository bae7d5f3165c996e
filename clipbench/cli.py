"""The `clipbench` command: run, list, difficulty, pretrain.

User mistakes end in one sentence on stderr and exit code 2, never a
traceback; an interrupted run says where its finished cells are saved.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clipbench.errors import ClipbenchError

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


MAX_SEED = 2**31 - 1
MAX_SEEDS = 100


def _seed_list(text: str) -> list[int]:
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


def _option(text: str) -> tuple[str, str, str]:
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise argparse.ArgumentTypeError(f"--option wants METHOD.KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    method, option = key.split(".", 1)
    return method, option, value


class Parser(argparse.ArgumentParser):
    """argparse with mistakes in one line (no usage block): what is wrong and where to read more."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}. See `{self.prog} --help`.\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="clipbench",
        description="Benchmark parameter-efficient fine-tuning of CLIP: in-distribution gain, "
                    "robustness under shift, and forgetting of zero-shot skill.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run methods on a suite with the standard protocol",
                         description="Adapt each method on k shots of every task, for every seed, and score it "
                                     "in distribution, under each shift and on each forgetting probe.",
                         epilog=EPILOG_RUN, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--method", "-m", nargs="+", required=True, metavar="NAME",
                     help="one or more methods (see `clipbench list methods`); commas also separate")
    run.add_argument("--suite", default="default", help="suite to run (default: %(default)s, the embedded one)")
    run.add_argument("--task", nargs="+", default=[], metavar="NAME",
                     help="only these tasks of the suite (default: all tasks the suite adapts on)")
    run.add_argument("--shots", type=_positive_int, default=16, help="support images per class, k (default: %(default)s)")
    run.add_argument("--seeds", type=_seed_list, default=[1, 2, 3], metavar="LIST",
                     help="seeds to run: a list 1,2,3 or a range 1-5; 2 means seed 2 only (default: 1,2,3)")
    run.add_argument("--out", type=Path, default=Path("results"),
                     help="folder for result files (default: ./%(default)s)")
    run.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    _model_arguments(run)
    _data_arguments(run)
    run.add_argument("--option", "-o", type=_option, action="append", default=[], metavar="METHOD.KEY=VALUE",
                     help="override one option of a method's config (repeatable)")
    run.add_argument("--batch-size", type=_positive_int, default=512, help="evaluation batch size (default: %(default)s)")
    run.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                     help="evaluation precision; bf16 scores in bfloat16 (on the CPU the image tower runs as a "
                          "bf16 copy, ~4x faster here), training stays fp32 (default: %(default)s)")
    run.add_argument("--no-cache", action="store_true",
                     help="do not read or write the embedding cache ($CLIPBENCH_CACHE_DIR, default ~/.cache/clipbench)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars (also off when not a terminal)")
    ex = run.add_argument_group("running the cells elsewhere (a suite is a grid of independent cells)")
    ex.add_argument("--executor", choices=["sequential", "local", "slurm", "ray"], default="sequential",
                    help="sequential: this process; local: --workers processes here; slurm: one job per cell "
                         "through submitit (clipbench[slurm]); ray: Ray tasks (clipbench[ray]) (default: %(default)s)")
    ex.add_argument("--workers", type=_positive_int, default=2, help="local and ray: parallel workers (default: 2)")
    ex.add_argument("--partition", default=None, help="slurm: partition")
    ex.add_argument("--gpus", type=int, default=0, help="slurm: GPUs per job (default: 0)")
    ex.add_argument("--cpus", type=_positive_int, default=4, help="slurm: CPUs per job (default: 4)")
    ex.add_argument("--mem-gb", type=_positive_int, default=16, help="slurm: memory per job (default: 16)")
    ex.add_argument("--time-min", type=_positive_int, default=60, help="slurm: time limit per cell job (default: 60)")
    ex.add_argument("--parallelism", type=_positive_int, default=64,
                    help="slurm: array jobs running at once (default: 64)")
    ex.add_argument("--no-wait", action="store_true",
                    help="slurm: submit and return; run the same command later to merge and resubmit what is missing")
    ex.add_argument("--ray-address", default=None,
                    help="ray: address of an existing cluster (e.g. auto); default: start one on this machine")
    hp = run.add_mutually_exclusive_group()
    hp.add_argument("--defaults", action="store_true",
                    help="run the papers' hyper-parameters, ignoring any tuned config (default: use the values "
                         "`clipbench tune` chose for this suite, model and shots, where they exist)")
    hp.add_argument("--tuned", type=Path, default=None, metavar="DIR",
                    help="folder of tuned configs written by `clipbench tune` (default: ./tuned, then the ones "
                         "shipped for the embedded default suite)")

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
    tune.add_argument("--shots", type=_positive_int, default=16, help="support images per class (default: %(default)s)")
    tune.add_argument("--out", type=Path, default=Path("tuned"), help="folder for tuned configs (default: ./%(default)s)")
    tune.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    tune.add_argument("--no-cache", action="store_true", help="do not use the embedding cache")
    _model_arguments(tune)
    _data_arguments(tune)

    lst = sub.add_parser("list", help="list methods, suites, tasks or models")
    lst.add_argument("what", choices=["methods", "suites", "tasks", "models"])
    lst.add_argument("--suite", default=None, help="with `tasks`: only this suite")

    diff = sub.add_parser("difficulty", help="task difficulty before training: silhouettes vs cosine (A-CLIP)",
                          description="Print each task's silhouette by modality (A-CLIP's measure: image vs "
                                      "text embeddings), silhouette by class and mean correct-class cosine "
                                      "similarity under the pretrained model; with --results, the rank "
                                      "correlation of each with the measured ID gain and forgetting.")
    diff.add_argument("--suite", default="default")
    diff.add_argument("--task", nargs="+", default=[], metavar="NAME")
    _model_arguments(diff)
    _data_arguments(diff)
    diff.add_argument("--device", default="auto")
    diff.add_argument("--results", type=Path, default=None, help="a result file or a folder of them")

    data = sub.add_parser("data", help="check that a suite's real datasets are where clipbench looks")
    data_sub = data.add_subparsers(dest="action", metavar="ACTION", required=True)
    dcheck = data_sub.add_parser("check", help="per dataset: present, missing or corrupt, with image counts",
                                 description="Look for every dataset a suite uses under --data and report, per "
                                             "dataset, the folder looked in, classes and images per split, "
                                             "and missing, empty or (with --decode) undecodable image files.")
    dcheck.add_argument("--suite", required=True, help="suite whose datasets to check, e.g. imagenet-dg")
    dcheck.add_argument("--data", type=Path, default=None,
                        help="root folder of the datasets (default: $CLIPBENCH_DATA_DIR)")
    dcheck.add_argument("--decode", action="store_true", help="also decode every image (slow on big datasets)")

    board = sub.add_parser("leaderboard", help="build the Markdown leaderboards or check a submission")
    board_sub = board.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = board_sub.add_parser("build", help="leaderboards/results/*.json -> leaderboards/<suite>.md")
    build.add_argument("--results", type=Path, default=Path("leaderboards/results"),
                       help="folder of result files (default: %(default)s)")
    build.add_argument("--out", type=Path, default=Path("leaderboards"), help="default: %(default)s")
    build.add_argument("--check-current", action="store_true",
                       help="write nothing; exit 1 if the Markdown differs from a fresh build (for CI)")
    chk = board_sub.add_parser("check", help="validate result files before submitting them")
    chk.add_argument("files", nargs="+", type=Path)
    ver = board_sub.add_parser("verify", help="re-run a result's seeds from its stored config and compare",
                               description="Check a result file, then re-run its seeds from the stored config "
                                           "and compare every accuracy and the zero-shot reference.")
    ver.add_argument("file", type=Path)
    which = ver.add_mutually_exclusive_group()
    which.add_argument("--seeds", type=_seed_list, default=None, metavar="LIST",
                       help="seeds to re-run, e.g. 2 or 1,3 (default: every seed of the result)")
    which.add_argument("--draw", action="store_true", help="re-run one seed drawn at random by the verifier")
    ver.add_argument("--tolerance", type=float, default=0.5, help="points (default: %(default)s)")
    ver.add_argument("--data", type=Path, default=None, metavar="ROOT",
                     help="root of the real datasets, for results on real-data suites (default: $CLIPBENCH_DATA_DIR)")

    rep = sub.add_parser("report", help="show one result file in the terminal, optionally plot it")
    rep.add_argument("files", nargs="+", type=Path, help="result files (one per method)")
    rep.add_argument("--plot", type=Path, default=None,
                     help="write a PNG of ID accuracy vs forgetting per method (needs matplotlib)")

    bench = sub.add_parser("bench", help="run the timed kernels (pytest-benchmark) and print their table",
                           description="Times image encoding, the methods' kernels and the metrics, each "
                                       "beside this machine's fp32 matmul peak measured in the same run.")
    bench.add_argument("pytest_args", nargs="*", help="extra pytest arguments, e.g. -k encoding")

    pre = sub.add_parser("pretrain", help="reproduce the embedded model's weights",
                         description="Contrastively pretrain the embedded clipbench-tiny model on the procedural "
                                     "world. The defaults are those of the shipped weights.")
    from clipbench.pretrain import PretrainConfig

    d = PretrainConfig()
    pre.add_argument("--steps", type=int, default=d.steps, help="optimiser steps (default: %(default)s)")
    pre.add_argument("--batch-size", type=int, default=d.batch_size, help="default: %(default)s")
    pre.add_argument("--lr", type=float, default=d.lr, help="default: %(default)s")
    pre.add_argument("--corpus", type=int, default=d.corpus, help="rendered images (default: %(default)s)")
    pre.add_argument("--seed", type=int, default=d.seed, help="default: %(default)s")
    pre.add_argument("--out", type=Path, default=Path("clipbench-tiny.pt.xz"),
                     help="weights file to write (default: ./%(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    console = Console()
    err = Console(stderr=True)
    try:
        return {"run": cmd_run, "tune": cmd_tune, "list": cmd_list, "data": cmd_data, "difficulty": cmd_difficulty, "pretrain": cmd_pretrain,
                "leaderboard": cmd_leaderboard, "report": cmd_report, "bench": cmd_bench}[args.command](args, console)
    except ClipbenchError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err.print("[yellow]interrupted.[/] Finished cells are saved; run the same command again to resume.")
        return 130


def _model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="model name: clipbench-tiny or an open_clip architecture, e.g. ViT-B-32 (default: the "
                        "suite's model; `clipbench list models` shows what is available offline)")
    p.add_argument("--pretrained", default=None,
                   help="open_clip pretrained tag, e.g. openai or laion2b_s34b_b79k (default: the suite's)")
    p.add_argument("--checkpoint", default=None,
                   help="a local weights file (open_clip or OpenAI format) instead of a pretrained tag")


def _data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, default=None, metavar="ROOT",
                   help="folder holding the real datasets of suites such as imagenet-dg, fewshot11, forgetting "
                        "(layouts in the README; default: $CLIPBENCH_DATA_DIR)")
    p.add_argument("--download", action="store_true",
                   help="let torchvision download the datasets it can (CIFAR, STL-10, MNIST, SVHN, FGVC-Aircraft) "
                        "into --data; off by default, nothing is fetched without it")


def _registry():
    from clipbench.plugins import collect, get_plugin_manager

    pm = get_plugin_manager()
    return pm, collect(pm)


def cmd_run(args, console: Console) -> int:
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
                                defaults=args.defaults, tuned_dir=args.tuned)
    pm, registry = _registry()
    show = not args.no_progress and console.is_terminal
    with ui.RichReporter(console, enabled=show) as reporter:
        if args.executor == "sequential":
            paths = runner.execute(request, registry, pm, reporter)
        else:
            from clipbench import sweep

            sweep_options = sweep.SweepOptions(
                executor=args.executor, workers=args.workers, partition=args.partition, gpus=args.gpus,
                cpus=args.cpus, mem_gb=args.mem_gb, time_min=args.time_min, parallelism=args.parallelism,
                wait=not args.no_wait, ray_address=args.ray_address)
            paths = sweep.execute(request, registry, pm, sweep_options, reporter,
                                  log=lambda line: console.print(escape(line), highlight=False, soft_wrap=True))
    loaded = [results.load_result(p) for p in paths]
    for r in loaded:
        for table in ui.summary_tables(r):
            console.print(table)
    if len(loaded) > 1:
        console.print(ui.comparison_table(loaded))
    for p in paths:
        console.print(f"results: {escape(str(p))}", highlight=False, soft_wrap=True)
    return 0


def cmd_tune(args, console: Console) -> int:
    from clipbench import tuning

    methods = [m for item in args.method for m in item.split(",") if m]
    request = tuning.TuneRequest(methods=methods, suite=args.suite, tasks=args.task, shots=args.shots,
                                 model=args.model, pretrained=args.pretrained, checkpoint=args.checkpoint,
                                 device=args.device, out_dir=args.out, cache=not args.no_cache, data=args.data,
                                 download=args.download)
    pm, registry = _registry()
    import time

    start = time.perf_counter()
    paths = tuning.execute(request, registry, pm,
                           log=lambda line: console.print(escape(line), highlight=False, soft_wrap=True))
    for p in paths:
        console.print(f"tuned: {escape(str(p))}", highlight=False, soft_wrap=True)
    console.print(f"tuning took {time.perf_counter() - start:.0f} s", highlight=False)
    return 0


def cmd_list(args, console: Console) -> int:
    pm, registry = _registry()
    if args.what == "methods":
        table = Table(title="methods")
        for col in ("name", "what it trains", "citation", "plugin"):
            table.add_column(col)
        for name in sorted(registry.methods):
            m = registry.methods[name]
            table.add_row(*map(escape, (name, str(getattr(m, "summary", "")), str(m.citation),
                                        registry.owners[("method", name)])))
    elif args.what == "suites":
        table = Table(title="suites")
        for col in ("name", "adapts on", "description", "plugin"):
            table.add_column(col)
        for name, s in sorted(registry.suites.items()):
            table.add_row(*map(escape, (name, ", ".join(s.adapt_on), str(s.description), registry.owners[("suite", name)])))
    elif args.what == "tasks":
        table = Table(title="tasks")
        for col in ("suite", "task", "classes", "shifts", "probes", "description"):
            table.add_column(col)
        suites = [registry.suite(args.suite)] if args.suite else [registry.suites[n] for n in sorted(registry.suites)]
        for s in suites:
            for t in s.tasks.values():
                classes = str(t.num_classes) if t.classnames else "read from --data"
                table.add_row(*map(escape, (s.name, t.name, classes, ", ".join(t.shifts) or "-",
                                            ", ".join(t.probes) or "-", str(t.description))))
    else:
        table = _models_table(registry)
    console.print(table)
    return 0


def _models_table(registry) -> Table:
    import open_clip

    table = Table(title="models")
    for col in ("name", "pretrained tags", "available offline", "source"):
        table.add_column(col)
    for name, src in sorted(registry.models.items()):
        table.add_row(escape(name), "world", "yes (ships with clipbench)", escape(src.plugin))
    cache = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache" /
                                                                            "huggingface")) / "hub")
    cached = {p.name for p in cache.glob("models--*")} if cache.is_dir() else set()
    by_arch: dict[str, list[str]] = {}
    for arch, tag in open_clip.list_pretrained():
        by_arch.setdefault(arch, []).append(tag)
    for arch in sorted(by_arch):
        tags = by_arch[arch]
        offline = []
        for tag in tags:
            cfg = open_clip.get_pretrained_cfg(arch, tag) or {}
            hf = cfg.get("hf_hub", "")
            repo = "models--" + hf.strip("/").split("/")[0] + "--" + hf.strip("/").split("/")[1] if hf.count("/") >= 1 \
                else None
            url_file = Path.home() / ".cache" / "clip" / os.path.basename(cfg.get("url") or "-")
            if (repo and repo in cached) or url_file.is_file():
                offline.append(tag)
        table.add_row(arch, ", ".join(tags[:4]) + (f" (+{len(tags) - 4})" if len(tags) > 4 else ""),
                      ", ".join(offline) if offline else "no: needs a download or --checkpoint", "open_clip")
    return table


def cmd_difficulty(args, console: Console) -> int:
    from clipbench import difficulty, results, runner

    pm, registry = _registry()
    request = runner.RunRequest(methods=[], suite=args.suite, tasks=args.task, model=args.model,
                                pretrained=args.pretrained, checkpoint=args.checkpoint, device=args.device,
                                data=args.data, download=args.download)
    suite = registry.suite(args.suite)
    tasks = suite.selected(args.task)
    model = runner.load_for(request, suite, registry, runner.resolve_device(args.device))
    runner.attach_data(request, suite, tasks, model)
    rows = [difficulty.task_difficulty(model, t) for t in tasks]
    table = Table(title=escape(f"task difficulty on {suite.name} ({model.name}, {model.pretrained})"),
                  caption="silhouette by modality: A-CLIP's measure (higher = images further from their "
                          "labels' texts = harder); by class: higher = easier; cosine: higher = easier")
    for col in ("task", "classes", "test images", "silhouette by modality", "silhouette by class",
                "mean correct cosine"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for r in rows:
        table.add_row(escape(r["task"]), str(r["classes"]), str(r["images"]), f"{r['silhouette_modality']:.4f}",
                      f"{r['silhouette_class']:.4f}", f"{r['cosine']:.4f}")
    console.print(table)
    if args.results:
        files = sorted(args.results.glob("*.json")) if args.results.is_dir() else [args.results]
        loaded = [results.load_result(f) for f in files]
        corr = Table(title="Spearman rank correlation with measured outcomes (across tasks)")
        for col in ("method", "outcome", "tasks", "silhouette by modality", "silhouette by class", "cosine"):
            corr.add_column(col)
        for r in difficulty.correlate(rows, loaded):
            corr.add_row(escape(r["method"]), r["outcome"], str(r["tasks"]),
                         *("n/a (< 3 tasks)" if r[m] != r[m] else f"{r[m]:+.3f}" for m in difficulty.MEASURES))
        console.print(corr)
    return 0


def cmd_data(args, console: Console) -> int:
    from clipbench.data import real
    from clipbench.tasks import default_data_dir

    pm, registry = _registry()
    suite = registry.suite(args.suite)
    root = args.data or default_data_dir()
    if suite.data is None:
        console.print(escape(f"Suite {suite.name!r} reads no datasets from disk: nothing to check."))
        return 0
    if root is None:
        raise ClipbenchError("Pass --data ROOT (the folder that holds your datasets) or set CLIPBENCH_DATA_DIR.")
    used = real.datasets_of(suite)
    table = Table(title=escape(f"datasets of suite {suite.name} under {root}"))
    for col in ("dataset", "state", "classes", "images", "looked in", "problems"):
        table.add_column(col, overflow="fold", ratio=3 if col == "problems" else None)
    states = []
    for ds in used:
        st = real.check(ds, Path(root), decode=args.decode)
        states.append(st.state)
        colour = {"present": "green", "missing": "yellow", "corrupt": "red"}[st.state]
        counts = ", ".join(f"{k} {v:,}" for k, v in st.counts.items()) or "-"
        table.add_row(escape(st.dataset), f"[{colour}]{st.state}[/{colour}]", escape(str(st.classes or "-")),
                      escape(counts), escape(str(st.path)), escape("; ".join(st.problems) or "-"))
    console.print(table)
    summary = {s: states.count(s) for s in ("present", "missing", "corrupt")}
    console.print(f"{summary['present']} present, {summary['missing']} missing, {summary['corrupt']} corrupt "
                  f"of {len(states)} datasets. Expected layouts: README.md, section 'Real datasets'.")
    return 0 if summary["present"] == len(states) else 1


def cmd_leaderboard(args, console: Console) -> int:
    from clipbench import leaderboard, submission

    pm, registry = _registry()
    checks = dict(known_methods=set(registry.methods), suites=registry.suites,
                  known_references=submission.shipped_references())
    if args.action == "verify":
        from clipbench import results, verify

        try:
            data = results.read_json(args.file)
        except results.ResultFileError as exc:
            raise ClipbenchError(str(exc)) from None
        problems = submission.check(data, **checks)
        if problems:
            raise ClipbenchError(f"{args.file} cannot be verified: {problems[0]} (`clipbench leaderboard check` "
                                 "lists every problem).")
        if not problems:
            seeds = [verify.draw_seed(data)] if args.draw else args.seeds
            if args.draw:
                console.print(f"re-running seed {seeds[0]} (drawn at random)", highlight=False)
            problems = verify.verify(data, registry, pm, seeds, args.tolerance, data_root=args.data)
        for p in problems:
            console.print(f"  {p}", highlight=False, markup=False)
        console.print("[green]verified[/]" if not problems else f"[red]{len(problems)} problem(s)[/]")
        return 1 if problems else 0
    if args.action == "check":
        bad = 0
        for f in args.files:
            problems = submission.check_file(f, **checks)
            name = escape(str(f))
            if problems:
                bad += 1
                console.print(f"[red]{name}: {len(problems)} problem(s)[/]", highlight=False)
                for p in problems:
                    console.print(f"  {p}", highlight=False, markup=False)
            else:
                console.print(f"[green]{name}: ok[/]", highlight=False)
        return 1 if bad else 0
    if not args.results.is_dir():
        raise ClipbenchError(f"No result folder at {args.results}: put result files there "
                             "(clipbench run --out leaderboards/results).")
    if args.check_current:
        stale = leaderboard.stale_pages(args.results, args.out, **checks)
        if stale:
            console.print(f"[red]stale:[/] {escape(', '.join(stale))}; run `clipbench leaderboard build`",
                          highlight=False)
            return 1
        console.print("leaderboards are current")
        return 0
    if not args.out.is_dir():
        raise ClipbenchError(f"No leaderboard folder at {args.out}: create it or pass --out FOLDER.")
    for path in leaderboard.build(args.results, args.out, **checks):
        console.print(f"wrote {escape(str(path))}", highlight=False)
    return 0


def cmd_report(args, console: Console) -> int:
    from clipbench import results, submission, ui

    loaded = []
    for f in args.files:
        try:
            data = results.read_json(f)
        except results.ResultFileError as exc:
            raise ClipbenchError(str(exc)) from None
        problems = submission.check(data, complete=False)
        if problems:
            raise ClipbenchError(f"{f} is not a result clipbench can report: {problems[0]}.")
        loaded.append(data)
    for r in loaded:
        for table in ui.summary_tables(r):
            console.print(table)
    console.print(ui.comparison_table(loaded))
    if args.plot:
        from clipbench.plot import tradeoff_plot

        tradeoff_plot(loaded, args.plot)
        console.print(f"plot: {escape(str(args.plot))}", highlight=False)
    return 0


def cmd_bench(args, console: Console) -> int:
    import pytest

    where = Path(__file__).resolve().parent.parent / "tests" / "benchmarks"
    if not where.is_dir():
        raise ClipbenchError(f"The timed kernels live in the source checkout (looked in {where}); "
                             "run `clipbench bench` from a clone of the repository.")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "bench.json"
        code = int(pytest.main([str(where), "-m", "benchmarks", "-q", "--benchmark-columns=min,median",
                                "--benchmark-sort=name", f"--benchmark-json={report}", *args.pytest_args]))
        if not report.is_file():
            return code or 1
        data = json.loads(report.read_text())
    table = Table(title="timed kernels (best of rounds) against this machine's fp32 matmul peak, same run")
    for col in ("kernel", "best ms", "items/s", "GFLOP/s", "peak GFLOP/s", "of peak", "ratio"):
        table.add_column(col, justify="left" if col in ("kernel", "ratio") else "right", no_wrap=col == "kernel")
    for b in sorted(data["benchmarks"], key=lambda b: b["name"]):
        info = b.get("extra_info", {})
        rate = next((v for k, v in info.items() if k.endswith("_per_second")), None)
        ratio = f"{info['ratio']}x {info.get('ratio_of', '')}" if "ratio" in info else ""
        table.add_row(escape(b["name"].removeprefix("test_").replace("_of_a_frozen_encoder_method", "")),
                      f"{b['stats']['min'] * 1000:.1f}",
                      "-" if rate is None else f"{rate:,.0f}",
                      *(f"{info[k]:{f}}" if k in info else "-" for k, f in
                        (("gflops", ".1f"), ("peak_gflops", ".1f"), ("fraction_of_peak", ".0%"))), ratio)
    console.print(table)
    return code


def cmd_pretrain(args, console: Console) -> int:
    from rich.progress import Progress

    from clipbench.pretrain import PretrainConfig, pretrain

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
    cfg = PretrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, corpus=args.corpus,
                         seed=args.seed)
    with Progress(console=console, disable=not console.is_terminal) as progress:
        bars = {}

        def tick(stage, done, total):
            if stage not in bars:
                bars[stage] = progress.add_task(stage, total=total)
            progress.update(bars[stage], completed=done)

        info = pretrain(cfg, args.out, progress=tick)
    console.print(json.dumps({k: v for k, v in info.items() if k != "history"}, indent=1))
    console.print(f"weights: {escape(str(args.out))}  (to ship them, copy to clipbench/assets/ with the .sha256 file)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
