"""Leaderboard pages: deterministic, recomputed by scoring.py, escaped, and built only from checked files."""

import copy
import json

import pytest

from clipbench import leaderboard, results, runner, scoring
from clipbench.cli import main
from clipbench.errors import ClipbenchError


@pytest.fixture
def valid(registry, tmp_path):
    pm, reg = registry
    [path] = runner.execute(runner.RunRequest(["counting"], suite="mini", shots=2, seeds=[1, 2],
                                              out_dir=tmp_path / "results"), reg, pm)
    return json.loads(path.read_text()), set(reg.methods), reg.suites, path


def test_build_is_deterministic_and_marks_the_best(valid, tmp_path):
    _, methods, suites, path = valid
    out = tmp_path / "boards"
    out.mkdir()
    [md] = leaderboard.build(path.parent, out, methods, suites)
    first = md.read_bytes()
    leaderboard.build(path.parent, out, methods, suites)
    assert md.read_bytes() == first
    text = first.decode()
    assert "| counting" in text and "**" in text and f"(results/{path.name})" in text
    assert "## Task shape" in text
    assert "above chance" in text  # the header states the one definition


def test_every_score_has_a_bootstrap_interval_and_pairs_are_counted(valid, tmp_path):
    data, methods, suites, path = valid
    other = copy.deepcopy(data)  # a second row on the same model: every image right in distribution
    other["config"]["method_config"] = {"bump": 1.0}
    other["config_hash"] = results.config_hash(other["config"])
    for cell in other["cells"]:
        n = cell["correct"]["id"]["n"]
        cell["correct"]["id"], cell["id"] = scoring.pack_correct([True] * n), 100.0
    other["summary"] = scoring.summarise(other["cells"], other["reference"])
    second = path.parent / "second.json"
    second.write_text(json.dumps(other))
    page = leaderboard.render_suite("mini", [(path, data), (second, other)])
    boot = scoring.bootstrap({"a": (data["cells"], data["reference"]), "b": (other["cells"], other["reference"])})
    for name, d in (("a", data), ("b", other)):
        lo, hi = boot["score"][name]
        score = scoring.summarise(d["cells"], d["reference"])["overall"]["score"]["mean"]
        assert lo <= score <= hi
        assert f"[{lo:.1f}, {hi:.1f}]" in page
    assert "## Which differences are real" in page and "Of the 1 pairs of methods" in page
    diff, lo, hi = boot["difference"][("a", "b")]
    assert ("**1** are told apart" in page) == (lo > 0 or hi < 0)


def test_report_and_leaderboard_print_the_same_score(valid, capsys):
    """One definition: the score the run summary stores, `report` prints and the page shows are one number."""
    data, methods, suites, path = valid
    summary = scoring.summarise(data["cells"], data["reference"])
    assert data["summary"] == summary
    score = f"{summary['overall']['score']['mean']:.1f}"
    page = leaderboard.render_suite("mini", [(path, data)])
    row = next(line for line in page.splitlines() if line.startswith("| counting"))
    assert f" {score} " in row or f"**{score}**" in row
    assert main(["report", str(path)]) == 0
    comparison = capsys.readouterr().out.split("Suite means over tasks")[1]
    assert score in comparison


def test_a_bad_file_stops_the_build_and_nothing_is_written(valid, tmp_path):
    data, methods, suites, path = valid
    evil = copy.deepcopy(data)
    evil["config"]["suite"] = "../README"
    evil["config_hash"] = results.config_hash(evil["config"])
    (path.parent / "evil.json").write_text(json.dumps(evil))
    out = tmp_path / "boards"
    out.mkdir()
    (tmp_path / "README.md").write_text("keep me")
    with pytest.raises(ClipbenchError, match="evil.json: config.suite: '../README' is not a valid suite name"):
        leaderboard.build(path.parent, out, methods, suites)
    assert not list(out.iterdir()) and (tmp_path / "README.md").read_text() == "keep me"


def test_injection_is_escaped_even_if_a_name_got_through(valid):
    data, _, _, path = valid
    data = copy.deepcopy(data)
    data["config"]["model"] = "x | <script>alert(1)</script> | **pwn**"
    page = leaderboard.render_suite("mini", [(path, data)])
    assert "<script>" not in page and "| **pwn**" not in page
    assert r"x \| \<script\>alert(1)\</script\> \| \*\*pwn\*\*" in page


def test_reference_conflicts_between_files_are_refused(valid, tmp_path):
    data, methods, suites, path = valid
    other = copy.deepcopy(data)
    other["config"]["method_config"] = {"bump": 1.0}
    other["config_hash"] = results.config_hash(other["config"])
    flags = [True] * other["reference"]["shape"]["correct"]["shifts"]["outline"]["n"]  # a consistent forgery
    other["reference"]["shape"]["correct"]["shifts"]["outline"] = scoring.pack_correct(flags)
    other["reference"]["shape"]["shifts"]["outline"] = 100.0
    other["summary"] = scoring.summarise(other["cells"], other["reference"])
    (path.parent / "other.json").write_text(json.dumps(other))
    with pytest.raises(ClipbenchError, match="zero-shot reference of 'shape' differs"):
        leaderboard.build(path.parent, tmp_path, methods, suites)


def test_result_file_names_must_be_plain(valid, tmp_path):
    data, methods, suites, path = valid
    (path.parent / "we ird;name.json").write_text(path.read_text())
    with pytest.raises(ClipbenchError, match="not a result file name"):
        leaderboard.build(path.parent, tmp_path, methods, suites)


def test_cli_build_and_check_current_write_nothing_extra(valid, tmp_path, registry, monkeypatch):
    _, _, _, path = valid
    pm, reg = registry
    from clipbench.commands import leaderboard as command

    monkeypatch.setattr(command, "load_plugins", lambda: (pm, reg))
    out = tmp_path / "boards"
    out.mkdir()
    assert main(["leaderboard", "build", "--results", str(path.parent), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert main(["leaderboard", "build", "--results", str(path.parent), "--out", str(out), "--check-current"]) == 0
    (out / "mini.md").write_text("stale")
    assert main(["leaderboard", "build", "--results", str(path.parent), "--out", str(out), "--check-current"]) == 1
    after = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert set(after) == set(before)  # --check-current compared; it wrote no file anywhere


def test_committed_leaderboards_are_current(tmp_path):
    """leaderboards/*.md must equal a fresh build from leaderboards/results (no hand edits, nothing stale)."""
    from pathlib import Path

    from clipbench import submission
    from clipbench.plugins import collect, get_plugin_manager

    reg = collect(get_plugin_manager(load_entrypoints=False))
    root = Path(__file__).resolve().parent.parent / "leaderboards"
    assert list((root / "results").glob("*.json")), "the published default-suite results are missing"
    stale = leaderboard.stale_pages(root / "results", root, set(reg.methods), reg.suites,
                                    submission.shipped_references())
    assert stale == [], f"{stale} are stale: run `clipbench leaderboard build`"
