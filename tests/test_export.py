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


def test_intervals_levels_and_exact_values(tmp_path):
    """A committed board row: each task and the run carry the score's 95% interval (the bootstrap of
    scoring.py); stored numbers read back exactly; computed ones have no float noise."""
    from pathlib import Path

    board = sorted((Path(__file__).resolve().parent.parent / "leaderboards" / "results").glob("default__saft__*.json"))
    data = json.loads(board[0].read_text())
    out = tmp_path / "rows.csv"
    assert main(["export", str(board[0]), "--out", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    boot = scoring.bootstrap({"run": (data["cells"], data["reference"])})
    for row in rows:
        if row["level"] == "task":
            assert (float(row["score_ci_low"]), float(row["score_ci_high"])) == boot["task_score"]["run"][row["task"]]
        elif row["level"] == "run":
            assert (float(row["score_ci_low"]), float(row["score_ci_high"])) == boot["score"]["run"]
        else:
            assert row["score_ci_low"] == ""
        if row["level"] != "cell":
            assert float(row["score_ci_low"]) <= float(row["score"]) <= float(row["score_ci_high"])
    for row in (r for r in rows if r["level"] == "cell"):
        cell = next(c for c in data["cells"] if c["task"] == row["task"] and c["seed"] == int(row["seed"]))
        assert float(row["id"]) == cell["id"]  # read back as the very float the file stores
        assert all(float(row[f"probe.{p}"]) == v for p, v in cell["probes"].items())
        ref = data["reference"][row["task"]]
        kept = [p for p in cell["probes"] if p not in scoring.excluded_probes(ref)]
        forgetting = scoring.mean(scoring.forgetting(ref["probes"][p], cell["probes"][p]) for p in kept)
        assert float(row["mean_forgetting"]) == round(forgetting, scoring.DIGITS)
    computed = [r[k] for r in rows for k in ("mean_shift", "mean_probe", "mean_forgetting") if r[k]]
    assert computed and all(len(text.split(".")[-1]) <= scoring.DIGITS for text in computed)
    assert main(["export", str(board[0]), "--level", "run", "--out", str(out)]) == 0
    assert [r["level"] for r in csv.DictReader(io.StringIO(out.read_text()))] == ["run"]


def test_a_task_missing_a_seed_gets_no_interval_of_another_number(registry, tmp_path):
    pm, reg = registry
    [path] = runner.execute(runner.RunRequest(["counting"], suite="mini", tasks=["shape", "size"], shots=2,
                                              seeds=[1, 2], out_dir=tmp_path), reg, pm)
    data = json.loads(path.read_text())
    data["cells"] = [c for c in data["cells"] if not (c["task"] == "size" and c["seed"] == 2)]
    rows = {(r["level"], r["task"]): r for r in export.rows(data, ("task", "run"))}
    assert rows[("task", "shape")]["score_ci_low"] is not None
    assert rows[("task", "size")]["score_ci_low"] is None and rows[("run", None)]["score_ci_low"] is None


def test_export_help_documents_the_levels(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = capsys.readouterr().out
    assert "--level" in out and all(f"\n  {level} " in out for level in ("cell", "task", "run"))
    assert "score_ci_low" in out
