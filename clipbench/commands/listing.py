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
from clipbench.errors import ClipbenchError


def add_parser(sub) -> None:
    lst = sub.add_parser("list", help="list methods, suites, tasks or models",
                         description="Compact by default; --verbose adds citations and descriptions. "
                                     "`clipbench show method NAME` prints one method in full.")
    lst.add_argument("what", choices=["methods", "suites", "tasks", "models"])
    lst.add_argument("--suite", default=None, help="with `tasks`: only this suite")
    lst.add_argument("--verbose", "-v", action="store_true", help="citations, descriptions, every column")
    lst.add_argument("--all", action="store_true",
                     help="with `models`: also every open_clip architecture whose weights are not on this machine")
    lst.add_argument("--json", action="store_true",
                     help="one JSON array of records on standard output, every field, for scripts")
    show = sub.add_parser("show", help="one method (or suite) in full: citation, options, defaults, search space, "
                                        "deviation card",
                          description="A method: its citation, every option with its default, source and search "
                                      "grid, the tuned values `clipbench run` applies instead of the defaults (and "
                                      "where they came from), and its deviation card. A suite: its tasks with "
                                      "their classes, shifts and probes.")
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
    if args.json:  # for scripts: every field, no folding, no markup, one JSON array on stdout
        import json
        import sys

        if sys.stdout is None:
            raise ClipbenchError("Standard output is closed, so the listing has nowhere to go.")
        sys.stdout.write(json.dumps(records(registry, args.what, args.suite, args.all), indent=1) + "\n")
        return 0
    if args.what == "methods":
        cols = [("method", NAME), ("what it trains", TEXT)] + ([("citation", TEXT)] if args.verbose else [])
        table = _table("methods (clipbench show method NAME for options)", cols + [("plugin", NAME)])
        for r in records(registry, "methods"):
            row = [r["name"], r["summary"]] + ([r["citation"]] if args.verbose else [])
            table.add_row(*map(escape, row + [r["plugin"]]))
    elif args.what == "suites":
        cols = [("suite", NAME), ("adapts on", TEXT)] + ([("description", TEXT)] if args.verbose else [])
        table = _table("suites", cols + [("plugin", NAME)])
        for r in records(registry, "suites"):
            row = [r["name"], ", ".join(r["adapts_on"])] + ([r["description"]] if args.verbose else [])
            table.add_row(*map(escape, row + [r["plugin"]]))
    elif args.what == "tasks":
        cols = [("suite", NAME), ("task", NAME), ("classes", {"justify": "right", **NAME}), ("shifts", TEXT),
                ("probes", TEXT)] + ([("description", TEXT)] if args.verbose else [])
        table = _table("tasks", cols)
        rows = records(registry, "tasks", args.suite)
        for r in rows:
            classes = "data" if r["classes"] is None else str(r["classes"])
            row = [r["suite"], r["task"], classes, ", ".join(r["shifts"]) or "-", ", ".join(r["probes"]) or "-"]
            table.add_row(*map(escape, row + ([r["description"]] if args.verbose else [])))
        if any(r["classes"] is None for r in rows):
            table.caption = "classes 'data': read from the dataset under --data"
    else:
        table = _models(registry, show_all=args.all, verbose=args.verbose)
    console.print(table)
    return 0


def records(registry, what: str, suite: str | None = None, show_all: bool = False) -> list[dict]:
    """What `list` shows, as plain records (the table and ``--json`` are two views of these)."""
    if what == "methods":
        return [{"name": name, "summary": str(getattr(m, "summary", "")), "citation": str(m.citation),
                 "plugin": registry.owners[("method", name)]}
                for name, m in sorted(registry.methods.items())]
    if what == "suites":
        return [{"name": name, "adapts_on": list(s.adapt_on), "description": str(s.description),
                 "default_model": s.default_model, "default_pretrained": s.default_pretrained,
                 "plugin": registry.owners[("suite", name)]}
                for name, s in sorted(registry.suites.items())]
    if what == "tasks":
        suites = [registry.suite(suite)] if suite else [registry.suites[n] for n in sorted(registry.suites)]
        return [{"suite": s.name, "task": t.name, "classes": t.num_classes if t.classnames else None,
                 "shifts": list(t.shifts), "probes": list(t.probes), "adapted_on": t.name in s.adapt_on,
                 "description": str(t.description)}
                for s in suites for t in s.tasks.values()]
    from clipbench.models import open_clip_catalogue

    out = [{"model": name, "pretrained": list(src.tags), "offline": list(src.tags) if src.available is not False
            else [], "source": src.plugin, "available": src.available is not False, "description": src.description}
           for name, src in sorted(registry.models.items())]
    out += [{"model": arch, "pretrained": list(tags), "offline": list(offline), "source": "open_clip",
             "available": bool(offline), "description": ""} for arch, tags, offline in open_clip_catalogue()]
    return out if show_all else [r for r in out if r["available"]]


def _models(registry, show_all: bool, verbose: bool) -> Table:
    """Models available here first (the plugins' sources, open_clip tags already downloaded); the rest with
    --all."""
    every = records(registry, "models", show_all=True)
    table = _table("models available offline", [("model", NAME), ("--pretrained", TEXT), ("source", NAME)])
    for r in every:
        if r["source"] != "open_clip":
            if r["available"] or show_all:
                table.add_row(escape(r["model"]), escape(", ".join(r["pretrained"]) or "-"), escape(r["source"]))
        elif r["offline"]:
            table.add_row(escape(r["model"]), escape(", ".join(r["offline"])), "open_clip")
        elif show_all:
            tags = r["pretrained"]
            shown = ", ".join(tags if verbose else tags[:3]) + ("" if verbose or len(tags) <= 3 else f" (+{len(tags) - 3})")
            table.add_row(escape(r["model"]), escape(shown) + " [dim](download)[/]", "open_clip")
    missing = sum(1 for r in every if r["source"] == "open_clip" and not r["offline"])
    if missing and not show_all:
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
    (./tuned, then the shipped ones) whose search space and fixed recipe still match the method's, task by task."""
    from clipbench import results, tuning

    def title(scope: str) -> str:
        return f"tuned values `clipbench run` applies ({scope}; --defaults runs the defaults above)"

    scope = "per suite, model weights and shots"
    right = {"justify": "right", **NAME}
    columns = [("suite", NAME), ("weights", NAME), ("shots", right), ("task", NAME), ("values", TEXT),
               ("val acc", right), ("from", TEXT)]
    space = tuning.search_space(method)
    if not space:
        table = _table(title(scope), columns)
        table.caption = f"{method.name} declares no search space: it always runs its defaults"
        return table
    rows = []
    seen = set()
    for folder in tuning.tuned_dirs():
        for path in sorted(folder.glob(f"*__{method.name}__*shot.json")) if folder.is_dir() else []:
            try:
                record = results.read_json(path)
            except results.ResultFileError:
                continue
            key = record.get("key") if isinstance(record, dict) else None
            if not isinstance(key, dict) or not tuning.made_for(key, method) or record.get("schema") != tuning.SCHEMA:
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
                rows.append(tuple(map(str, (key.get("suite"), key.get("model_fingerprint"), key.get("shots"), task,
                                            shown + edge, f"{rec.get('val_accuracy', float('nan')):.1f}", where))))
    shared = {(r[1], r[2]) for r in rows}
    if len(shared) == 1:  # one model and shot count (the usual case): said once, so the values keep their width
        [(weights, shots)] = shared
        scope = f"per suite; weights {weights}, {shots} shots"
        columns, rows = columns[:1] + columns[3:], [r[:1] + r[3:] for r in rows]
    table = _table(title(scope), columns)
    for row in sorted(rows, key=lambda r: r[0]):  # suites in name order, each suite's tasks as its file has them
        table.add_row(*map(escape, row))
    if not rows:
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
