"""Cell-level run storage: any number of processes, on any machines, add cells to one run.

A *run* is everything a result row shares: method and its config, suite, shots,
model (weights hash), precision, tuned values.  Tasks and seeds are not part of
it, so running seeds 1, 2 and 3 separately, or adding a seed or a task later,
adds cells to the same run.  On disk, beside the merged result file
``<suite>__<method>__<model>__<run hash>.json`` (what ``report``, the
leaderboard and submissions read), the folder ``<same stem>.cells/`` holds:

- ``run.json``: the run's config and the provenance of its first writer;
- ``reference/<task>.json``: the task's zero-shot reference and data fingerprints;
- ``cells/<task>__seed<k>.json``: one finished cell each, created exclusively
  (hard link of a complete temporary file), so two writers of the same cell
  cannot both win: an identical duplicate is kept once, a different one is an
  error naming the file.

The merged file is rewritten after every cell and can be rebuilt from the folder
at any time (:func:`merge`); the folder is the truth.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

from clipbench import results
from clipbench.errors import ClipbenchError

RUN_SCHEMA = "clipbench.run/1"
SCORED = ("id", "new", "shifts", "probes", "support_fingerprint", "shots", "method", "task", "seed")


def run_key(config: dict) -> dict:
    """The part of a run config that identifies the run: everything but its tasks and seeds."""
    return {k: v for k, v in config.items() if k not in ("tasks", "seeds")}


def run_id(run: dict) -> str:
    """A run's stable identity (the hash in its file name): the same from its first cell to its last,
    while ``config_hash`` changes as tasks and seeds are added.  Trackers key their runs by it."""
    return results.config_hash(run_key(run["config"]))


def stem(config: dict) -> str:
    model = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{config['model']}-{config.get('pretrained') or 'none'}")
    suite, method = (re.sub(r"[^A-Za-z0-9_-]+", "_", str(config[k])) for k in ("suite", "method"))
    return f"{suite}__{method}__{model[:80]}__{results.config_hash(run_key(config))}"


def _write_new(path: Path, data: dict) -> bool:
    """Create ``path`` holding ``data`` only if it does not exist yet; True if this call created it."""
    return results.write_atomic(path, data, exclusive=True)


def _read(path: Path) -> dict:
    try:
        data = results.read_json(path)
    except results.ResultFileError as exc:
        raise ClipbenchError(f"{exc} Delete it to recompute what it held.") from None
    if not isinstance(data, dict):
        raise ClipbenchError(f"{path} is damaged: not an object. Delete it to recompute what it held.")
    return data


def _as_read(data: dict) -> dict:
    """``data`` as reading its file back would give it (lists for tuples, keys sorted), without the read."""
    return json.loads(json.dumps(data, sort_keys=True, allow_nan=False))


def scored_part(cell: dict) -> dict:
    """What two computations of the same cell must agree on (costs and timings may differ)."""
    return {k: cell.get(k) for k in SCORED}


class RunStore:
    """The cells, references and provenance of one run, in its folder beside the merged result file."""

    def __init__(self, out_dir: Path, config: dict, adopt_check: Callable[[dict], list[str]] | None = None):
        """``adopt_check`` lists what is wrong with a merged result file before its cells are adopted (the
        leaderboard's checks, given by the caller: the store itself only knows its files)."""
        self.out_dir = Path(out_dir)
        self.config = run_key(config)
        self.stem = stem(config)
        self.folder = self.out_dir / f"{self.stem}.cells"
        self.merged_path = self.out_dir / f"{self.stem}.json"
        self.adopt_check = adopt_check
        # Every file is read once: cells and references as they appear (other processes may add some), the
        # merged view rebuilt only when they change.
        self._cells: dict[str, dict] = {}
        self._references: dict[str, dict] = {}
        self._merged: tuple[tuple, dict] | None = None
        self._created: str | None = None

    # ---------------------------------------------------------------- opening

    def open(self, provenance: dict) -> None:
        """Create the folder (or check an existing one belongs to this run); adopt cells of an older merged file."""
        (self.folder / "cells").mkdir(parents=True, exist_ok=True)
        (self.folder / "reference").mkdir(exist_ok=True)
        results.remove_stale_temporaries(self.out_dir, "*.json.*.tmp")  # merged files of writers that died
        results.remove_stale_temporaries(self.folder / "cells", "*.json.*.tmp")
        run = {"schema": RUN_SCHEMA, "config": self.config, "provenance": provenance}
        if not _write_new(self.folder / "run.json", run):
            existing = _read(self.folder / "run.json")
            if existing.get("config") != self.config:
                raise ClipbenchError(f"{self.folder / 'run.json'} belongs to another run (its config differs); "
                                     "delete the folder or choose another --out.")
        if self.merged_path.is_file() and not any((self.folder / "cells").iterdir()):
            self._adopt(self.merged_path)

    def _adopt(self, path: Path) -> None:
        """Cells and references of a merged result file (a run made before its folder, or copied here)."""
        data = results.load_result(path)
        problems = self.adopt_check(data) if self.adopt_check is not None else []
        if not problems and run_key(data["config"]) != self.config:
            problems = ["its config is another run's"]
        if problems:  # said, and the file is never overwritten: its cells (seed 1 of a copied run) would be lost
            raise ClipbenchError(f"{path} is in --out but cannot be adopted as this run's cells "
                                 f"({problems[0].rstrip('.')}), so it was left untouched; move it elsewhere (or fix "
                                 "it) and run the same command again.")
        data_fps = data["provenance"].get("data", {})
        for task, ref in data["reference"].items():
            fps = {k: v for k, v in data_fps.items() if k.split("/")[0] == task or k.startswith(f"{task}/")}
            self.put_reference(task, ref, fps)
        for cell in data["cells"]:
            self.put_cell(cell)

    # ---------------------------------------------------------------- references

    def reference(self, task: str) -> dict | None:
        entry = self._reference_entry(f"{task}.json")
        return entry["reference"] if entry is not None else None

    def _reference_entry(self, name: str) -> dict | None:
        if name not in self._references:
            path = self.folder / "reference" / name
            if not path.is_file():
                return None
            self._references[name] = _read(path)
        return self._references[name]

    def put_reference(self, task: str, reference: dict, data_fingerprints: dict) -> None:
        """Store a task's zero-shot reference; a different one already stored is an error (not the same model)."""
        path = self.folder / "reference" / f"{task}.json"
        entry = {"task": task, "reference": reference, "data": data_fingerprints}
        if _write_new(path, entry):
            self._references[path.name] = _as_read(entry)
        else:
            existing = self._reference_entry(path.name)
            if existing.get("reference") != reference:
                raise ClipbenchError(f"The zero-shot reference of task {task!r} computed here differs from the one in "
                                     f"{path}: not the same model, data or code. Use another --out.")

    # ---------------------------------------------------------------- cells

    def cell_path(self, task: str, seed: int) -> Path:
        return self.folder / "cells" / f"{task}__seed{seed}.json"

    def done(self) -> set[tuple[str, int]]:
        return {(c["task"], c["seed"]) for c in self.cells()}

    def put_cell(self, cell: dict) -> bool:
        """Add a finished cell; False if an identical one was already there.  A different one is an error."""
        path = self.cell_path(cell["task"], cell["seed"])
        if _write_new(path, cell):
            self._cells[path.name] = _as_read(cell)
            return True
        existing = self._cell(path)
        if scored_part(existing) != scored_part(cell):
            raise ClipbenchError(f"Cell {cell['task']} seed {cell['seed']} was computed twice with different "
                                 f"numbers: {path} holds one, this process got another. Something differs between "
                                 "the machines (code, data, library versions); delete one to keep the other.")
        return False

    def cells(self) -> list[dict]:
        folder = self.folder / "cells"
        if not folder.is_dir():
            return []
        return [self._cell(path) for path in sorted(folder.glob("*__seed*.json"))]

    def _cell(self, path: Path) -> dict:
        """A cell file's content, read the first time it is asked for (a finished cell never changes)."""
        if path.name not in self._cells:
            cell = _read(path)
            if path.name != f"{cell.get('task')}__seed{cell.get('seed')}.json":
                raise ClipbenchError(f"{path} holds the cell of task {cell.get('task')!r} seed {cell.get('seed')!r}, "
                                     "not the one its name says; delete it.")
            self._cells[path.name] = cell
        return self._cells[path.name]

    # ---------------------------------------------------------------- the merged result

    def merged(self) -> dict:
        """The run as one schema-2 result: tasks and seeds are those with cells (or references)."""
        cells = sorted(self.cells(), key=lambda c: (c["task"], c["seed"]))
        entries = [self._reference_entry(path.name) for path in sorted((self.folder / "reference").glob("*.json"))]
        key = (tuple((c["task"], c["seed"]) for c in cells), tuple(e["task"] for e in entries))
        if self._merged is not None and self._merged[0] == key:  # nothing new: the run is not scored again
            return self._merged[1]
        run = _read(self.folder / "run.json")
        references, data_fps = {}, {}
        for entry in entries:
            references[entry["task"]] = entry["reference"]
            data_fps.update(entry["data"])
        tasks = sorted({c["task"] for c in cells} | set(references))
        seeds = sorted({c["seed"] for c in cells})
        config = dict(run["config"], tasks=tasks, seeds=seeds)
        result = results.new_result(config, dict(run["provenance"], data=dict(sorted(data_fps.items()))))
        result["reference"] = {t: references[t] for t in tasks if t in references}
        result["cells"] = cells
        self._merged = (key, result)
        return result

    def view(self) -> dict:
        """The merged run as far as it can be read: when the run's files are what failed, its config alone (so
        trackers still hear of a failure)."""
        try:
            return self.merged()
        except Exception:
            config = dict(self.config)
            return {"config": config, "config_hash": results.config_hash(config), "cells": []}

    def write_merged(self) -> Path:
        result = self.merged()
        if self._created is None and self.merged_path.is_file():
            try:  # keep the creation time of the first write: re-merging is idempotent
                self._created = results.read_json(self.merged_path).get("created")
            except results.ResultFileError:
                pass
        result["created"] = self._created = self._created or result["created"]
        results.write_atomic(self.merged_path, result)
        return self.merged_path


def merge(folder: Path) -> Path:
    """Rebuild the merged result file of a run folder (``*.cells``) and return its path."""
    folder = Path(folder)
    run = _read(folder / "run.json")
    store = RunStore(folder.parent, run["config"])
    if store.folder.resolve() != folder.resolve():
        raise ClipbenchError(f"{folder} is not named after its run ({store.folder.name}); do not rename run folders.")
    return store.write_merged()
