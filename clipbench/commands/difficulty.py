"""`clipbench difficulty`: task difficulty before training (A-CLIP's silhouettes vs cosine)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clipbench.commands.common import (data_arguments, model_arguments, load_plugins)


def add_parser(sub) -> None:
    diff = sub.add_parser("difficulty", help="task difficulty before training: silhouettes vs cosine (A-CLIP)",
                          description="Print each task's silhouette by modality (A-CLIP's measure: image vs "
                                      "text embeddings), silhouette by class and mean correct-class cosine "
                                      "similarity under the pretrained model; with --results, the rank "
                                      "correlation of each with the measured ID gain and forgetting.")
    diff.add_argument("--suite", default="default")
    diff.add_argument("--task", nargs="+", default=[], metavar="NAME")
    model_arguments(diff)
    data_arguments(diff)
    diff.add_argument("--device", default="auto")
    diff.add_argument("--results", type=Path, default=None, help="a result file or a folder of them")


def main(args, console: Console) -> int:
    from clipbench import difficulty, results, runner, scoring

    pm, registry = load_plugins()
    request = runner.RunRequest(methods=[], suite=args.suite, tasks=args.task, model=args.model,
                                pretrained=args.pretrained, checkpoint=args.checkpoint, device=args.device,
                                data=args.data, download=args.download)
    suite = registry.suite(args.suite)
    tasks = suite.selected(args.task)
    model = runner.load_for(request, suite, registry, runner.resolve_device(args.device))
    runner.attach_data(request, suite, tasks, model)
    evaluator = runner.evaluator_for(request, model)  # the embedding cache: a second run encodes nothing
    rows = [difficulty.task_difficulty(model, t, features=lambda images, t=t: evaluator.features(images, t.name,
                                                                                                  precision="fp32"))
            for t in tasks]
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
        corr = Table(title="Spearman rank correlation with measured outcomes (across tasks)",
                     caption="p: two-sided, exact over every ordering of the tasks (up to 8); with 5 tasks "
                             "rho 1.0 has p = 0.017 and 0.9 has p = 0.083")
        for col in ("method", "outcome", "tasks", "silhouette by modality", "silhouette by class", "cosine"):
            corr.add_column(col, no_wrap=col == "method", justify="left" if col in ("method", "outcome") else "right")
        runs = [(r["config"]["method"], scoring.summary_of(r)) for r in loaded]
        for r in difficulty.correlate(rows, runs):
            # nan: fewer than three tasks, or an outcome that is the same on every task (no ranking to correlate)
            why = "n/a (< 3 tasks)" if r["tasks"] < 3 else "n/a (constant)"
            corr.add_row(escape(r["method"]), r["outcome"], str(r["tasks"]),
                         *(why if r[m] != r[m] else f"{r[m]:+.3f} (p {r[m + '_p']:.3f})"
                           for m in difficulty.MEASURES))
        console.print(corr)
    return 0
