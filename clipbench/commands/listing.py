"""`clipbench list` and `clipbench show`: what the installed plugins provide, compact by default.

Every listing fits 80 columns without truncating a name a user must type
(names never wrap; long descriptions fold or move to ``--verbose``);
``clipbench show method NAME`` gives one method in full, its deviation card included.
"""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from clipbench.commands.common import load_plugins


def add_parser(sub) -> None:
    lst = sub.add_parser("list", help="list methods, suites, tasks or models",
                         description="Compact by default; --verbose adds citations and descriptions. "
                                     "`clipbench show method NAME` prints one method in full.")
    lst.add_argument("what", choices=["methods", "suites", "tasks", "models"])
    lst.add_argument("--suite", default=None, help="with `tasks`: only this suite")
    lst.add_argument("--verbose", "-v", action="store_true", help="citations, descriptions, every column")
    lst.add_argument("--all", action="store_true",
                     help="with `models`: also every open_clip architecture whose weights are not on this machine")
    show = sub.add_parser("show", help="one method (or suite) in full: citation, options, defaults, search space, "
                                        "deviation card")
    show.add_argument("what", choices=["method", "suite"])
    show.add_argument("name", help="e.g. saft")


def _table(title: str, columns: list[tuple[str, dict]]) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, expand=False)
    for name, kw in columns:
        table.add_column(name, **kw)
    return table


NAME = {"no_wrap": True, "overflow": "ignore"}  # a name a user types: never wrapped, never cut
TEXT = {"overflow": "fold"}


def main(args, console: Console) -> int:
    pm, registry = load_plugins()
    if args.what == "methods":
        cols = [("method", NAME), ("what it trains", TEXT)] + ([("citation", TEXT)] if args.verbose else [])
        table = _table("methods (clipbench show method NAME for options)", cols + [("plugin", NAME)])
        for name in sorted(registry.methods):
            m = registry.methods[name]
            row = [name, str(getattr(m, "summary", ""))] + ([str(m.citation)] if args.verbose else [])
            owner = registry.owners[("method", name)]
            table.add_row(*map(escape, row + [owner]))
    elif args.what == "suites":
        cols = [("suite", NAME), ("adapts on", TEXT)] + ([("description", TEXT)] if args.verbose else [])
        table = _table("suites", cols + [("plugin", NAME)])
        for name, s in sorted(registry.suites.items()):
            owner = registry.owners[("suite", name)]
            row = [name, ", ".join(s.adapt_on)] + ([str(s.description)] if args.verbose else [])
            table.add_row(*map(escape, row + [owner]))
    elif args.what == "tasks":
        cols = [("suite", NAME), ("task", NAME), ("classes", {"justify": "right", **NAME}), ("shifts", TEXT),
                ("probes", TEXT)] + ([("description", TEXT)] if args.verbose else [])
        table = _table("tasks", cols)
        suites = [registry.suite(args.suite)] if args.suite else [registry.suites[n] for n in sorted(registry.suites)]
        for s in suites:
            for t in s.tasks.values():
                classes = str(t.num_classes) if t.classnames else "data"
                row = [s.name, t.name, classes, ", ".join(t.shifts) or "-", ", ".join(t.probes) or "-"]
                table.add_row(*map(escape, row + ([str(t.description)] if args.verbose else [])))
        if any(not t.classnames for s in suites for t in s.tasks.values()):
            table.caption = "classes 'data': read from the dataset under --data"
    else:
        table = _models(registry, show_all=args.all, verbose=args.verbose)
    console.print(table)
    return 0


def _models(registry, show_all: bool, verbose: bool) -> Table:
    """Models available here first (the plugins' sources, open_clip tags already downloaded); the rest with
    --all."""
    from clipbench.models import open_clip_catalogue

    table = _table("models available offline", [("model", NAME), ("--pretrained", TEXT), ("source", NAME)])
    for name, src in sorted(registry.models.items()):
        if src.available is False and not show_all:
            continue
        table.add_row(escape(name), escape(", ".join(src.tags) or "-"), escape(src.plugin))
    missing = 0
    for arch, tags, offline in open_clip_catalogue():
        if offline:
            table.add_row(escape(arch), escape(", ".join(offline)), "open_clip")
        elif show_all:
            shown = ", ".join(tags if verbose else tags[:3]) + ("" if verbose or len(tags) <= 3 else f" (+{len(tags) - 3})")
            table.add_row(escape(arch), escape(shown) + " [dim](download)[/]", "open_clip")
        else:
            missing += 1
    if missing:
        table.caption = (f"{missing} more open_clip architectures need a download first: "
                         "`clipbench list models --all`")
    if show_all:
        table.title = "models (download: fetched into the Hugging Face cache where there is network)"
    return table


def main_show(args, console: Console) -> int:
    pm, registry = load_plugins()
    if args.what == "suite":
        suite = registry.suite(args.name)
        console.print(f"[bold]{escape(suite.name)}[/] ({escape(registry.owners[('suite', suite.name)])}): "
                      f"{escape(suite.description)}", highlight=False)
        console.print(f"default model: {escape(suite.default_model)}"
                      + (f" ({escape(suite.default_pretrained)})" if suite.default_pretrained else ""),
                      highlight=False)
        args.what, args.suite, args.verbose = "tasks", suite.name, True
        return main(args, console)
    method = registry.method(args.name)
    console.print(f"[bold]{escape(method.name)}[/] ({escape(registry.owners[('method', method.name)])})",
                  highlight=False)
    console.print(f"trains: {escape(str(getattr(method, 'summary', '')))}", highlight=False)
    console.print(f"paper: {escape(str(method.citation))}", highlight=False)
    import dataclasses

    table = _table(f"options (--option {method.name}.NAME=VALUE; `clipbench tune` searches the grids)",
                   [("option", NAME), ("default", NAME), ("search grid", TEXT), ("what it is", TEXT)])
    defaults = method.config_class()
    for f in dataclasses.fields(method.config_class):
        meta = f.metadata or {}
        help_text = meta.get("help", "") + (f" ({meta['source']})" if meta.get("source") else "")
        grid = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in meta.get("search") or []) or "-"
        default = getattr(defaults, f.name)
        table.add_row(escape(f.name), escape(f"{default:g}" if isinstance(default, float) else str(default)),
                      escape(grid), escape(help_text))
    console.print(table)
    console.print(_tuned(method))
    from clipbench.cards import card_of

    reference, _ = card_of(method)
    console.print(f"compared against: {escape(reference or 'not stated')}", highlight=False)
    console.print(_card(method))
    return 0


def _tuned(method) -> Table:
    """The values `clipbench run` applies instead of the defaults: every tuned-config file for this method
    (./tuned, then the shipped ones) whose search space still matches the method's, task by task."""
    from clipbench import results, tuning

    space = tuning.search_space(method)
    table = _table("tuned values `clipbench run` applies (per suite, model weights and shots; "
                   "--defaults runs the defaults above)",
                   [("suite", NAME), ("weights", NAME), ("shots", {"justify": "right", **NAME}), ("task", NAME),
                    ("values", TEXT), ("val acc", {"justify": "right", **NAME}), ("from", TEXT)])
    if not space:
        table.caption = f"{method.name} declares no search space: it always runs its defaults"
        return table
    want = tuning.space_hash(space)
    seen = set()
    for folder in tuning.tuned_dirs():
        for path in sorted(folder.glob(f"*__{method.name}__*shot.json")) if folder.is_dir() else []:
            try:
                record = results.read_json(path)
            except results.ResultFileError:
                continue
            key = record.get("key") if isinstance(record, dict) else None
            if (not isinstance(key, dict) or key.get("method") != method.name or key.get("space_hash") != want
                    or record.get("schema") != tuning.SCHEMA):
                continue
            where = "shipped" if folder == tuning.SHIPPED else f"{folder}/"
            for task, values in tuning.chosen_values(record).items():
                ident = (key.get("suite"), key.get("model_fingerprint"), key.get("shots"), task)
                if ident in seen:  # ./tuned wins over the shipped file, as in `clipbench run`
                    continue
                seen.add(ident)
                rec = record["tasks"][task]
                shown = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
                edge = " (at the grid edge)" if rec.get("at_edge") else ""
                table.add_row(*map(escape, (str(key.get("suite")), str(key.get("model_fingerprint")),
                                            str(key.get("shots")), task, shown + edge,
                                            f"{rec.get('val_accuracy', float('nan')):.1f}", where)))
    if not seen:
        table.caption = "none yet: `clipbench tune --method " + method.name + "` chooses them"
    return table


def _card(method) -> Table:
    """The method's deviation card (clipbench.cards): every known difference from its reference code."""
    from clipbench.cards import card_of, summary

    _, deviations = card_of(method)
    title = f"deviation card: {summary(deviations)}" if deviations else "deviation card: none declared"
    table = _table(escape(title), [("aspect", TEXT), ("reference", TEXT), ("clipbench", TEXT),
                                   ("effect", {"no_wrap": True}), ("reason", TEXT)])
    for d in deviations:
        table.add_row(*map(escape, (d.aspect, d.reference, d.clipbench, d.effect, d.reason)))
    return table
