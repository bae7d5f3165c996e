"""`clipbench export`: flat rows that round-trip through csv.DictReader (and pandas) and JSON lines."""

import csv
import io
import json

import pytest

from clipbench import export, runner, scoring
from clipbench.cli import main


@pytest.fixture
def result(registry, tmp_path):
    pm, reg = registry
    [path] = runner.execute(runner.RunRequest(["counting"], suite="mini", shots=2, seeds=[1, 2],
                                              out_dir=tmp_path / "results"), reg, pm)
    return path


def test_csv_round_trips_one_row_per_cell_task_and_run(result, tmp_path, capsys):
    out = tmp_path / "rows.csv"
    assert main(["export", str(result), "--out", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["level"] for r in rows] == ["cell", "cell", "task", "run"]
    data = json.loads(result.read_text())
    cell = next(c for c in data["cells"] if c["seed"] == 2)
    row = next(r for r in rows if r["level"] == "cell" and r["seed"] == "2")
    assert float(row["id"]) == cell["id"] and float(row["shift.outline"]) == cell["shifts"]["outline"]
    assert row["method"] == "counting" and row["hyperparameters"] == "paper" and row["config_hash"]
    run_row = rows[-1]
    overall = scoring.summarise(data["cells"], data["reference"])["overall"]
    assert float(run_row["score"]) == overall["score"]["mean"] and run_row["seeds"] == "1 2"
    assert len({len(r) for r in rows}) == 1  # rectangular


def test_jsonl_and_a_folder(result, capsys):
    assert main(["export", str(result.parent), "--format", "jsonl"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["level"] for r in lines] == ["cell", "cell", "task", "run"]
    assert lines[0]["task"] == "shape" and lines[-1]["task"] is None


def test_pandas_reads_it_where_installed(result):
    pd = pytest.importorskip("pandas")
    frame = pd.read_csv(io.StringIO(export.to_csv(export.rows(json.loads(result.read_text())))))
    assert len(frame) == 4 and set(frame["level"]) == {"cell", "task", "run"}


def test_a_damaged_file_is_one_sentence(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    assert main(["export", str(bad)]) == 2
    assert "cannot be exported" in capsys.readouterr().err
