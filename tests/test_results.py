"""Result files: atomic, shared-folder friendly, and read with bounds."""

import errno
import json
import os
import time

import pytest

from clipbench import results


def test_result_files_get_the_umask_mode(tmp_path):
    previous = os.umask(0o002)
    try:
        results.write_atomic(tmp_path / "r.json", {"a": 1})
        results.write_atomic(tmp_path / "p.md", "x")
    finally:
        os.umask(previous)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o664
    assert (tmp_path / "p.md").stat().st_mode & 0o777 == 0o664


def test_a_failed_write_keeps_the_old_file_whole_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    results.write_atomic(path, {"cells": [1]})

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results.os, "fsync", full)
    with pytest.raises(OSError):
        results.write_atomic(path, {"cells": [1, 2]})
    assert json.loads(path.read_text()) == {"cells": [1]}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_stale_temporaries_in_the_out_folder_are_removed(tmp_path):
    stale, fresh, users = tmp_path / "r.json.1.tmp", tmp_path / "r.json.2.tmp", tmp_path / "notes.tmp"
    for f in (stale, fresh, users):
        f.write_text("x")
    os.utime(stale, (time.time() - 3600,) * 2)
    os.utime(users, (time.time() - 3600,) * 2)
    assert results.remove_stale_temporaries(tmp_path, "*.json.*.tmp") == 1
    assert not stale.exists() and fresh.exists() and users.exists()  # never a file clipbench did not write


def test_read_json_refuses_duplicate_keys_and_constants(tmp_path):
    (tmp_path / "d.json").write_text('{"a": 1, "a": 2}')
    (tmp_path / "n.json").write_text('{"a": Infinity}')
    with pytest.raises(results.ResultFileError, match="appears twice"):
        results.read_json(tmp_path / "d.json")
    with pytest.raises(results.ResultFileError, match="Infinity is not a JSON number"):
        results.read_json(tmp_path / "n.json")


def test_run_files_keep_hostile_names_inside_the_folder(tmp_path):
    from clipbench.store import RunStore

    config = {"suite": "../../etc", "method": "a/b", "model": "x", "pretrained": None}
    store = RunStore(tmp_path, config)
    assert store.merged_path.parent == tmp_path and store.folder.parent == tmp_path
    assert "/" not in store.stem
