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
    """One definition: the score `run` reports, `report` prints and the page shows are one number, computed
    from the cells; a result file stores no summary, and one an older version stored (inflated here) is
    never read."""
    data, methods, suites, path = valid
    summary = scoring.summarise(data["cells"], data["reference"])
    assert "summary" not in data
    stale = dict(summary, overall=dict(summary["overall"], score={"mean": 99.9, "std": None}))
    path.write_text(json.dumps(dict(data, summary=stale)))
    score = f"{summary['overall']['score']['mean']:.1f}"
    page = leaderboard.render_suite("mini", [(path, dict(data, summary=stale))])
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


def _variant(data, bump, seeds=None, probe_wrong=0):
    """Another honest-looking row of the fake method: another config, optionally fewer seeds and some probe
    images scored wrong (bits and accuracy together)."""
    other = copy.deepcopy(data)
    other["config"]["method_config"] = {"bump": bump}
    if seeds is not None:
        other["config"]["seeds"] = seeds
        other["cells"] = [c for c in other["cells"] if c["seed"] in seeds]
    for cell in other["cells"]:
        for name, packed in cell["correct"]["probes"].items():
            n, raw = scoring.packed_parts(packed)
            value = int.from_bytes(raw, "little")
            flags = [bool(value >> i & 1) for i in range(n)]
            for i in [i for i, f in enumerate(flags) if f][:probe_wrong]:
                flags[i] = False
            cell["correct"]["probes"][name] = scoring.pack_correct(flags)
            cell["probes"][name] = scoring.accuracy_from_correct(cell["correct"]["probes"][name])
    other["config_hash"] = results.config_hash(other["config"])
    other["summary"] = scoring.summarise(other["cells"], other["reference"])
    return other


def test_a_row_lacking_a_seed_never_changes_the_other_rows_intervals(valid, tmp_path):
    """#23.2: a row whose seeds do not cover the others' cut every interval down to the common seeds."""
    data, _, _, path = valid
    b, c = _variant(data, 1.0, probe_wrong=1), _variant(data, 2.0, seeds=[1])
    rows = [(data, path, leaderboard.summarised(data)), (b, tmp_path / "b.json", leaderboard.summarised(b))]
    alone = leaderboard.intervals(rows)
    together = leaderboard.intervals(rows + [(c, tmp_path / "c.json", leaderboard.summarised(c))])
    full = [v for v in together.values() if v["seeds"] == [1, 2]]
    assert full and full[0]["score"] == next(iter(alone.values()))["score"]
    assert full[0]["difference"] == next(iter(alone.values()))["difference"]
    page = leaderboard.render_suite("mini", [(path, data), (tmp_path / "b.json", b), (tmp_path / "c.json", c)])
    assert "[-]" not in page and "Of the 1 pairs of methods" in page


def test_zero_forgetting_by_construction_is_marked_and_never_bold(valid):
    """#22.2: probes scored exactly as zero-shot are a property of the design, not a measured best: decided
    from the per-image correctness (the fake method changes nothing; one probe image moved is a measurement)."""
    from pathlib import Path

    data, _, _, _ = valid
    assert leaderboard.encoders_untouched(data)
    assert not leaderboard.encoders_untouched(_variant(data, 1.0, probe_wrong=1))
    results_dir = Path(__file__).resolve().parent.parent / "leaderboards" / "results"
    entries = [(p, json.loads(p.read_text())) for name in ("linear-probe", "saft", "knn-adapter")
               for p in results_dir.glob(f"default__{name}__*.json")]
    page = leaderboard.render_suite("default", entries)
    lines = page.splitlines()
    header = next(line for line in lines if line.startswith("| method"))
    column = [c.strip() for c in header.split("|")].index("probe forgetting")
    forgetting = {line.split("|")[1].strip(): line.split("|")[column].strip()
                  for line in lines if line.startswith("| ") and "results/" in line}
    assert forgetting["linear-probe"] == "0.0 ± 0.0 (encoders untouched)"
    assert forgetting["knn-adapter"].startswith("**") and "untouched" not in forgetting["knn-adapter"]  # measured best
    assert "encoders untouched" in page.split("\n\n")[1]  # the header says what the mark means


def test_one_row_per_run_whatever_the_file_name_or_seeds(valid, tmp_path):
    """#23.8: the same run under two names, or resubmitted on fewer seeds, made two rows and a self-pair."""
    data, methods, suites, path = valid
    (path.parent / "copy.json").write_text(path.read_text())
    with pytest.raises(ClipbenchError, match="the same run as copy.json .*one row per run"):
        leaderboard.build(path.parent, tmp_path, methods, suites)
    (path.parent / "copy.json").unlink()
    fewer = _variant(data, data["config"]["method_config"].get("bump", 0.0), seeds=[1])
    fewer["config"]["method_config"] = data["config"]["method_config"]
    fewer["config_hash"] = results.config_hash(fewer["config"])
    (path.parent / "fewer.json").write_text(json.dumps(fewer))
    with pytest.raises(ClipbenchError, match="one row per run"):
        leaderboard.build(path.parent, tmp_path, methods, suites)


def test_the_page_says_shots_and_seeds(valid):
    data, _, _, path = valid
    page = leaderboard.render_suite("mini", [(path, data)])
    assert "Every row: 2 shots per class, evaluation seeds 1, 2" in page


def test_the_pairwise_work_is_bounded_and_said(valid, tmp_path, monkeypatch):
    """#23.8: 1,024 rows took 124 s and 1 GB, growing with every pair: beyond a cap, neighbours only."""
    data, methods, suites, path = valid
    monkeypatch.setattr(leaderboard, "MAX_ALL_PAIRS", 2)
    entries = [(path, data)] + [(tmp_path / f"v{i}.json", _variant(data, float(i), probe_wrong=i)) for i in (1, 2)]
    rows = sorted([(d, p, leaderboard.summarised(d)) for p, d in entries],
                  key=lambda r: -r[2]["overall"]["score"]["mean"])
    [boot] = leaderboard.intervals(rows).values()
    assert len(boot["difference"]) == 2 and boot["neighbours_only"]
    page = leaderboard.render_suite("mini", entries)
    assert "Of the 2 pairs of ranking neighbours (more than 2 rows: neighbours only)" in page
    monkeypatch.setattr(leaderboard, "MAX_ROWS", 1)
    (path.parent / "v1.json").write_text(json.dumps(entries[1][1]))
    with pytest.raises(ClipbenchError, match="suite 'mini' has 2 rows; a board holds at most 1"):
        leaderboard.build(path.parent, tmp_path, methods, suites)


def _new_flipped(data, bump, flip_right=0):
    """A base-to-new row whose new-class images are scored as the zero-shot reference scores them, except
    ``flip_right`` wrong ones made right in each cell (a measurement, not zero-shot by construction)."""
    other = copy.deepcopy(data)
    other["config"]["method_config"] = {"bump": bump}
    for cell in other["cells"]:
        n, raw = scoring.packed_parts(other["reference"][cell["task"]]["correct"]["new"])
        flags = [bool(int.from_bytes(raw, "little") >> i & 1) for i in range(n)]
        for i in [i for i, f in enumerate(flags) if not f][:flip_right]:
            flags[i] = True
        cell["correct"]["new"] = scoring.pack_correct(flags)
        cell["new"] = scoring.accuracy_from_correct(cell["correct"]["new"])
    other["config_hash"] = results.config_hash(other["config"])
    return other


def test_a_base_to_new_board_shows_the_harmonic_mean_and_marks_new_classes_scored_as_zero_shot(registry, tmp_path):
    """#26.2: a head tied to the base classes answers new ones with the zero-shot classifier: the board says
    so ("as zero-shot", never bold), decided from the per-image correctness; and it shows CoCoOp's base-to-new
    harmonic mean.  A board without base-to-new tasks shows neither column."""
    pm, reg = registry
    [path] = runner.execute(runner.RunRequest(["counting"], suite="mini-split", shots=2, seeds=[1, 2],
                                              out_dir=tmp_path / "results"), reg, pm)
    data = json.loads(path.read_text())
    zero_shot, measured = _new_flipped(data, 1.0), _new_flipped(data, 2.0, flip_right=1)
    assert leaderboard.new_as_zero_shot(zero_shot) and not leaderboard.new_as_zero_shot(measured)
    page = leaderboard.render_suite("mini-split", [(tmp_path / "z.json", zero_shot), (tmp_path / "m.json", measured)])
    lines = page.splitlines()
    header = [c.strip() for c in next(line for line in lines if line.startswith("| method")).split("|")]
    rows = {line.split("|")[-2].strip(): [c.strip() for c in line.split("|")] for line in lines
            if line.startswith("| ") and "results/" in line}
    new, hm = header.index("new-class acc"), header.index("base-to-new H")
    z, m = rows["[json](results/z.json)"], rows["[json](results/m.json)"]
    assert z[new].endswith("(as zero-shot)") and not z[new].startswith("**")
    assert m[new].startswith("**") and "zero-shot" not in m[new]
    summary = leaderboard.summarised(measured)["overall"]
    assert m[hm].strip("*") == f"{summary['base_new_hm']['mean']:.1f}"
    assert "as zero-shot" in page.split("\n\n")[1]  # the header says what the mark means


def test_a_board_without_base_to_new_tasks_has_no_new_class_columns(valid):
    data, _, _, path = valid
    header = next(line for line in leaderboard.render_suite("mini", [(path, data)]).splitlines()
                  if line.startswith("| method"))
    assert "new-class acc" not in header and "base-to-new H" not in header
