"""The Python API: run the benchmark from a notebook or a script, and read result files back.

    import clipbench

    run = clipbench.evaluate(method="linear-probe", tasks=["shape"], seeds=[1, 2])
    run.summary["overall"]["score"]       # {"mean": ..., "std": None}, as `clipbench run` prints it
    run.to_pandas()                        # one row per cell (level="task" or "run" for the summaries)

A thin layer over the runner: :func:`evaluate` builds the same :class:`~clipbench.runner.RunRequest`
the ``run`` command builds and calls the same :func:`~clipbench.runner.execute`, so a run started here
resumes from (and writes) the same result files, and its numbers are those of :mod:`clipbench.scoring`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from clipbench.errors import ClipbenchError


class Result:
    """One run (one method on one suite, model and setting) as its result file holds it.

    ``data`` is the file's content; ``path`` the file (None when :func:`evaluate` ran without ``out_dir``).
    Every number is recomputed from the cells by :mod:`clipbench.scoring`, never read from the file's
    summary."""

    def __init__(self, data: dict, path: Path | None = None):
        self.data = data
        self.path = Path(path) if path is not None else None

    @property
    def method(self) -> str:
        return self.data["config"]["method"]

    @property
    def config(self) -> dict:
        return self.data["config"]

    @property
    def cells(self) -> list[dict]:
        """One dict per (task, seed): ``id``, ``shifts``, ``probes`` (accuracies in %), ``cost``, ..."""
        return self.data["cells"]

    @property
    def reference(self) -> dict:
        """Zero-shot accuracies of the pretrained model per task (what gains and forgetting are measured from)."""
        return self.data["reference"]

    @cached_property
    def summary(self) -> dict:
        """``{"tasks": {task: ...}, "overall": ...}``: mean and std over seeds of every measure, and the score."""
        from clipbench import scoring

        return scoring.summarise(self.cells, self.reference)

    @property
    def score(self) -> float | None:
        """The suite score (the leaderboard's ranking number)."""
        return (self.summary["overall"].get("score") or {}).get("mean")

    def interval(self) -> tuple[float, float] | None:
        """The score's 95% interval: a bootstrap over test images and seeds (None without per-image records)."""
        from clipbench import scoring

        return scoring.bootstrap({"run": (self.cells, self.reference)})["score"].get("run")

    def to_pandas(self, level: str = "cell"):
        """A DataFrame of ``clipbench export``'s rows of one level: ``cell``, ``task`` or ``run``."""
        return _frame([self.data], level)

    def __repr__(self) -> str:
        tasks = sorted({c["task"] for c in self.cells})
        seeds = sorted({c["seed"] for c in self.cells})
        score = "no cells" if self.score is None else f"score {self.score:.1f}"
        return (f"<Result {self.method} on {self.config['suite']} ({self.config['model']}): {score}, "
                f"{len(tasks)} task(s) x {len(seeds)} seed(s)>")


class Results(Sequence):
    """Several runs (one per method): a sequence of :class:`Result`, also indexed by method name."""

    def __init__(self, runs: list[Result]):
        self.runs = list(runs)

    def __getitem__(self, key):
        if isinstance(key, str):
            found = [r for r in self.runs if r.method == key]
            if len(found) != 1:
                names = ", ".join(r.method for r in self.runs)
                raise KeyError(f"no run of method {key!r} here ({names})" if not found else
                               f"{len(found)} runs of method {key!r} here ({names}): index them by position")
            return found[0]
        return self.runs[key]

    def __len__(self) -> int:
        return len(self.runs)

    @property
    def summary(self) -> dict[str, dict]:
        """Each run's :attr:`Result.summary`, by method (or by position where a method appears twice)."""
        from clipbench.ui import run_labels

        return {label: r.summary for label, r in zip(run_labels([r.data for r in self.runs]), self.runs)}

    @property
    def cells(self) -> list[dict]:
        """Every run's cells; each names its ``method``."""
        return [cell for r in self.runs for cell in r.cells]

    def to_pandas(self, level: str = "cell"):
        """The rows of every run stacked into one DataFrame (as ``clipbench export`` writes them)."""
        return _frame([r.data for r in self.runs], level)

    def __repr__(self) -> str:
        return "<Results " + ", ".join(repr(r)[len("<Result "):-1] for r in self.runs) + ">"


def _frame(datas: list[dict], level: str):
    from clipbench import export

    if level not in export.LEVELS:
        raise ClipbenchError(f"level must be one of {', '.join(export.LEVELS)}, got {level!r}.")
    try:
        import pandas
    except ImportError:
        raise ClipbenchError("to_pandas() needs pandas, which is not installed here: pip install pandas "
                             "(or read the rows with clipbench.export.rows).") from None
    rows = [row for data in datas for row in export.rows(data, (level,))]
    return pandas.DataFrame(rows, columns=export.columns(rows))


def evaluate(method: str, suite: str = "default", tasks: list[str] | None = None, seeds: list[int] = (1, 2, 3),
             model: str | None = None, options: dict | None = None, *, pretrained: str | None = None,
             checkpoint: str | None = None, shots: int = 16, out_dir: str | Path | None = None,
             device: str = "auto", precision: str = "fp32", cache: bool = True, data: str | Path | None = None,
             defaults: bool = False, plugins: Sequence = (), progress: bool = True) -> Result:
    """Run one method on a suite with the standard protocol, as ``clipbench run`` does; return its Result.

    ``tasks`` (default: every task the suite adapts on) and ``seeds`` are lists; ``options`` maps the
    method's option names to values (``{"lr": 1e-4}``); the other arguments are ``clipbench run``'s.
    With ``out_dir`` the result file is written there (and a second call resumes from its cells); without
    it, the run happens in a temporary folder that is removed afterwards.  ``plugins``: extra plugin
    objects (a module or object with ``@clipbench.hookimpl`` functions), e.g. a method defined in the
    notebook.  ``progress`` prints the plan, the zero-shot reference and one line per cell.
    """
    if not isinstance(method, str):
        raise ClipbenchError(f"evaluate() runs one method, named by a string such as 'saft', got {method!r}; "
                             "evaluate_many([...]) runs several.")
    if options is not None and not _is_str_dict(options):
        raise ClipbenchError(f"options maps option names of {method} to values, e.g. {{'lr': 1e-4}}; "
                             f"got {options!r}.")
    return evaluate_many([method], suite, tasks, seeds, model, {method: dict(options)} if options else None,
                         pretrained=pretrained, checkpoint=checkpoint, shots=shots, out_dir=out_dir, device=device,
                         precision=precision, cache=cache, data=data, defaults=defaults, plugins=plugins,
                         progress=progress)[0]


def evaluate_many(methods: list[str], suite: str = "default", tasks: list[str] | None = None,
                  seeds: list[int] = (1, 2, 3), model: str | None = None, options: dict[str, dict] | None = None,
                  *, pretrained: str | None = None, checkpoint: str | None = None, shots: int = 16,
                  out_dir: str | Path | None = None, device: str = "auto", precision: str = "fp32",
                  cache: bool = True, data: str | Path | None = None, defaults: bool = False,
                  plugins: Sequence = (), progress: bool = True) -> Results:
    """Run several methods in one go (the model loads once, the zero-shot reference is scored once);
    ``options`` maps a method to its options, ``{"lora": {"rank": 8}}``.  Otherwise as :func:`evaluate`."""
    from clipbench import runner

    if isinstance(methods, str) or not isinstance(methods, (list, tuple)) or not methods \
            or not all(isinstance(m, str) for m in methods):
        raise ClipbenchError(f"methods is a non-empty list of method names, e.g. ['saft', 'lora'], got {methods!r}.")
    if isinstance(tasks, str):
        tasks = [tasks]
    if tasks is not None and (not isinstance(tasks, (list, tuple)) or not all(isinstance(t, str) for t in tasks)):
        raise ClipbenchError(f"tasks is a list of task names, e.g. ['shape'], got {tasks!r}.")
    if not isinstance(seeds, (list, tuple)):
        raise ClipbenchError(f"seeds is a list of seeds, e.g. [1, 2, 3] (a single number would be ambiguous: one "
                             f"seed or a count?), got {seeds!r}.")
    if options is not None and not (isinstance(options, dict) and all(
            isinstance(m, str) and _is_str_dict(o) for m, o in options.items())):
        raise ClipbenchError(f"options maps each method to its options, e.g. {{'lora': {{'rank': 8}}}}, got "
                             f"{options!r}.")
    for name, value in (("suite", suite), ("model", model), ("pretrained", pretrained), ("device", device)):
        if value is not None and not isinstance(value, str):
            raise ClipbenchError(f"{name} is a name (a string), got {value!r}.")
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise ClipbenchError(f"shots is a whole number of images per class, at least 1, got {shots!r}.")
    from clipbench.plugins import collect, get_plugin_manager

    pm = get_plugin_manager(extra=list(plugins))
    registry = collect(pm)
    with tempfile.TemporaryDirectory(prefix="clipbench-") as scratch:
        request = runner.RunRequest(
            methods=list(methods), suite=suite, tasks=list(tasks or []), shots=shots, seeds=list(seeds),
            model=model, pretrained=pretrained, checkpoint=None if checkpoint is None else str(checkpoint),
            device=device, out_dir=Path(out_dir) if out_dir is not None else Path(scratch),
            options={m: dict(o) for m, o in (options or {}).items()}, cache=cache, precision=precision,
            data=Path(data) if data is not None else None, defaults=defaults)
        paths = runner.execute(request, registry, pm, _reporter(progress))
        from clipbench import results

        return Results([Result(results.load_result(p), p if out_dir is not None else None) for p in paths])


def load(path: str | Path) -> Result | Results:
    """A result file as a :class:`Result` (a folder: its result files as :class:`Results`), checked as
    ``clipbench report`` checks it: a damaged or foreign file is one sentence naming its first problem."""
    from clipbench import results, submission

    path = Path(path)
    files = results.result_files([path])
    loaded = [Result(data, f) for f, data in zip(files, submission.read_checked(files, "loaded"))]
    return Results(loaded) if path.is_dir() else loaded[0]


def _is_str_dict(value) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) for k in value)


def _reporter(progress: bool):
    """Plain lines (the batch-log format: plan, reference, one line per cell), which read the same in a
    notebook, a terminal and a log; or nothing."""
    from clipbench import protocol

    if not progress:
        return protocol.SilentReporter()
    from rich.console import Console

    from clipbench.ui import RichReporter

    return RichReporter(Console(), enabled=False, log_cells=True)
