"""The result file: one JSON per run (method, suite, model, setting) with its cells, written atomically.

The file carries its config, the config's hash and the provenance needed to
reproduce and check a leaderboard row; :mod:`clipbench.store` keeps the cells it
is merged from, one file each, so many processes can add to one run.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import stat
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from clipbench.errors import ClipbenchError

# 2: references carry chance levels; accuracies are exact fractions.
# 3: every cell and reference keeps per-image correctness ("correct") for the bootstrap and the checks.
SCHEMA = "clipbench.result/3"

# Names that end up in file names, Markdown and terminals: methods, suites, tasks, shifts and probes;
# model names and pretrained tags may also hold '.' and '+'.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
SAFE_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")
MAX_SEED = 2**31 - 1
TUNING_SEEDS = (10001, 10002, 10003)  # reserved for choosing hyper-parameters: never an evaluation seed
MAX_FILE_BYTES = 32 * 2**20  # result files are ~100 kB; a bigger "result" is not read
STALE_SECONDS = 600  # a temporary file untouched this long belongs to a process that died


def evaluation_seed_problem(seeds: list) -> str | None:
    """Why ``seeds`` cannot be a run's evaluation seeds, or None: the one rule that `run` applies before work,
    the checks of a submitted row apply to its file, and tuning relies on (its seeds are never evaluated)."""
    if not seeds:
        return "at least one seed is needed"
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED:
            return f"seeds are whole numbers from 0 to {MAX_SEED}, got {s!r}"
    if len(set(seeds)) != len(seeds):
        return "a seed is named twice"
    reserved = sorted(set(seeds) & set(TUNING_SEEDS))
    if reserved:
        return (f"seed {reserved[0]} is one of the tuning seeds {', '.join(map(str, TUNING_SEEDS))}, on which "
                "hyper-parameters are chosen, never an evaluation seed")
    return None


class ResultFileError(ClipbenchError):
    """A file that cannot be read as a result (too big, not JSON, duplicate keys, ...)."""


def file_mode() -> int:
    """The mode open() would give a new file under the process umask (mkstemp's 0600 hides shared results)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"the key {dup[:40]!r} appears twice in one object")
    return dict(pairs)


def _no_constants(name):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:20]} is too large for a number")
    return value


def read_json(path: Path) -> object:
    """Parse a result file with bounds: size, duplicate keys, NaN/Infinity, huge integers, deep nesting."""
    try:
        if path.is_dir():
            raise ResultFileError(f"{path} is a folder, not a result file (pass the .json files in it).")
        if not stat.S_ISREG(os.lstat(path).st_mode):  # a link to /dev/zero, a FIFO, a device: never read
            raise ResultFileError(f"{path} is not a regular file, so it was not read.")
        # O_NONBLOCK: a FIFO swapped in after the check above cannot block the open
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise ResultFileError(f"{path} is not a regular file, so it was not read.")
            raw = f.read(MAX_FILE_BYTES + 1)  # a byte cap on what is read, not a size the file claims
        if len(raw) > MAX_FILE_BYTES:
            raise ResultFileError(f"{path} is more than {MAX_FILE_BYTES // 2**20} MB; a result file is at most "
                                  f"{MAX_FILE_BYTES // 2**20} MB, so it was not read.")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ResultFileError(f"Result file not found: {path}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultFileError(f"{path} cannot be read ({type(exc).__name__}).") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants,
                          parse_float=_finite_float)
    except RecursionError:
        raise ResultFileError(f"{path} is not a result file: its JSON is nested too deeply.") from None
    except ValueError as exc:  # JSONDecodeError, duplicate keys, NaN, integers past Python's digit limit
        raise ResultFileError(f"{path} is not valid JSON ({str(exc)[:120]}).") from None


def config_hash(config: dict) -> str:
    """Stable hash of a run config (sorted keys, no whitespace)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def package_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("clipbench", "torch", "open_clip_torch", "numpy", "scikit-learn", "pluggy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def new_result(config: dict, provenance: dict) -> dict:
    return {
        "schema": SCHEMA,
        "config": config,
        "config_hash": config_hash(config),
        "provenance": provenance,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "reference": {},
        "cells": [],
    }


def write_atomic(path: Path, content: dict | str, exclusive: bool = False) -> bool:
    """The one way clipbench writes a file: JSON (a dict, keys sorted) or text, whole or not at all.

    The content goes to a temporary file in the same folder, is fsynced, then
    renamed over ``path`` (the old file stays whole until the rename; a failed
    write leaves no temporary behind), or with ``exclusive`` hard-linked to
    ``path`` only if nothing is there yet (two writers of one cell cannot both
    win).  True if ``path`` now holds this content.  The file gets the mode
    ``open()`` would give under the process umask.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "w") as f:
            if isinstance(content, str):
                f.write(content)
            else:
                json.dump(content, f, indent=1, sort_keys=True, allow_nan=False)
                f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        if not exclusive:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
    finally:
        Path(tmp).unlink(missing_ok=True)


def remove_stale_temporaries(folder: Path, pattern: str) -> int:
    """Delete temporary files left by processes that died mid-write (untouched for STALE_SECONDS)."""
    removed = 0
    now = time.time()
    try:
        candidates = list(Path(folder).glob(pattern))
    except OSError:
        return 0
    for tmp in candidates:
        try:
            if tmp.is_file() and now - tmp.stat().st_mtime > STALE_SECONDS:
                tmp.unlink()
                removed += 1
        except OSError:
            pass
    return removed


def result_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, a folder standing for the result files in it (sorted); naming none is an error."""
    paths = [Path(p) for p in paths]
    files = []
    for path in paths:
        files += sorted(path.glob("*.json")) if path.is_dir() else [path]
    if not files:
        raise ClipbenchError(f"No result files in {', '.join(map(str, paths))}.")
    return files


def load_result(path: Path) -> dict:
    """Read a result file; a damaged one is a clear error naming the file and the problem."""
    path = Path(path)
    data = read_json(path)
    problems = structural_problems(data)
    if problems:
        raise ClipbenchError(f"Result file {path} is damaged: {problems[0]}. Delete it to start that run afresh.")
    return data


def structural_problems(data) -> list[str]:
    """The fields a result file must have to be resumed or read (deep checks live in the leaderboard)."""
    if not isinstance(data, dict):
        return ["the top level is not an object"]
    problems = []
    if data.get("schema") != SCHEMA:
        problems.append(f"schema is {data.get('schema')!r}, expected {SCHEMA!r}")
    for key, kind in (("config", dict), ("provenance", dict), ("cells", list), ("reference", dict)):
        if not isinstance(data.get(key), kind):
            problems.append(f"field {key!r} is missing or not a{'n object' if kind is dict else ' list'}")
    if isinstance(data.get("config"), dict) and data.get("config_hash") != config_hash(data["config"]):
        problems.append("config_hash does not match config")
    for i, cell in enumerate(data.get("cells") or []):
        if not isinstance(cell, dict) or not {"task", "seed", "id", "shifts", "probes", "cost"} <= set(cell):
            problems.append(f"cells[{i}] lacks task/seed/id/shifts/probes/cost")
            break
    return problems
