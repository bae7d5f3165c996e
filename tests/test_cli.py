import pytest

from clipbench.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_explains_every_run_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in ("--method", "--suite", "--task", "--shots", "--seeds", "--out", "--device", "--model",
                   "--pretrained", "--checkpoint", "--option"):
        assert option in out


@pytest.mark.parametrize("argv, message", [
    (["run", "--method", "sfat"], "Unknown method 'sfat'"),
    (["run", "--method", "zeroshot", "--suite", "nope"], "Unknown suite 'nope'"),
    (["run", "--method", "zeroshot", "--task", "shapes"], "Unknown task 'shapes'"),
    (["run", "--method", "zeroshot", "--task", "shape", "--shots", "500"], "Use --shots"),
    (["run", "--method", "zeroshot", "--checkpoint", "/nonexistent/w.pt"], "looked for /nonexistent/w.pt"),
    (["run", "--method", "zeroshot", "--device", "tpu"], "Unknown device 'tpu'"),
    (["run", "--method", "zeroshot", "--option", "full-ft.lr=1"], "not among --method"),
    (["run", "--method", "zeroshot", "--model", "ViT-B-32", "--pretrained", "openai"],
     "The weights of ViT-B-32 (pretrained tag 'openai') are not available offline"),
    (["run", "--method", "zeroshot", "--model", "ViT-B-32"], "needs weights: pass --pretrained TAG"),
    (["run", "--method", "zeroshot", "--model", "ViT-B-32", "--pretrained", "opneai"], "Unknown pretrained tag 'opneai'"),
    (["run", "--method", "zeroshot", "--model", "ViT-Q-99"], "Unknown model 'ViT-Q-99'"),
])
def test_user_mistakes_are_one_sentence_and_exit_2(capsys, tmp_path, argv, message):
    code, out, err = run_cli(capsys, *argv, "--out", str(tmp_path))
    assert code == 2
    assert message in err
    assert "Traceback" not in err + out
    assert not list(tmp_path.iterdir())


BAD_ARGUMENTS = [
    (["run", "--method", "zeroshot", "--seeds", "a,b"], "wants seeds as a list (1,2,3) or a range (1-5)"),
    (["run", "--method", "zeroshot", "--seeds", "-1"], "seeds are whole numbers from 0"),
    (["run", "--method", "zeroshot", "--seeds", "1,1"], "seed 1 is named twice"),
    (["run", "--method", "zeroshot", "--seeds", "1-999999999"], "holds more than 100 seeds"),
    (["run", "--method", "zeroshot", "--seeds", "5-1"], "runs backwards"),
    (["run", "--method", "zeroshot", "--batch-size", "0"], "--batch-size: must be at least 1"),
    (["run", "--method", "zeroshot", "--shots", "0"], "--shots: must be at least 1"),
    (["run", "--method", "zeroshot", "--precision", "fp64"], "invalid choice: 'fp64'"),
    (["run", "--method", "zeroshot", "--option", "novalue"], "--option wants METHOD.KEY=VALUE"),
    (["run", "--method", "linear-probe", "--option", "linear-probe.=1"], "--option wants METHOD.KEY=VALUE with both"),
    (["run", "--method", "linear-probe", "--option", ".lr=1"], "--option wants METHOD.KEY=VALUE with both"),
    (["leaderboard", "verify", "x.json", "--seeds", "1", "--draw"], "not allowed with argument"),
]


@pytest.mark.parametrize("argv, message", BAD_ARGUMENTS, ids=[" ".join(a[3:]) or a[0] for a, _ in BAD_ARGUMENTS])
def test_bad_arguments_are_one_line_and_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_seeds_are_a_list_never_a_count():
    from clipbench.commands.common import seed_list as _seed_list

    assert _seed_list("2") == [2]  # seed 2, not seeds 1 and 2: --seeds $SLURM_ARRAY_TASK_ID runs one seed
    assert _seed_list("1-3,7") == [1, 2, 3, 7]
    assert _seed_list("999999999") == [999999999]  # one seed, not a billion-element list


def test_list_methods_shows_builtins_and_third_party(capsys):
    code, out, _ = run_cli(capsys, "list", "methods")
    assert code == 0
    for name in ("zeroshot", "linear-probe", "full-ft"):
        assert name in out
    assert "built-in" in out


def test_a_damaged_cell_file_names_its_path_and_a_damaged_merged_file_is_rebuilt(capsys, tmp_path):
    argv = ["run", "--method", "zeroshot", "--task", "shape", "--shots", "1", "--seeds", "1", "--out", str(tmp_path)]
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0 and "shape" in out
    [path] = list(tmp_path.glob("*.json"))
    good = path.read_text()
    path.write_text(good[:100])  # the merged file is rebuilt from the run's cell files
    code, out, err = run_cli(capsys, *argv)
    assert code == 0 and path.read_text() != good[:100]
    [cell] = list(tmp_path.glob("*.cells/cells/*.json"))
    cell.write_text(cell.read_text()[:50])
    code, out, err = run_cli(capsys, *argv)
    text = err.replace("\n", "")
    assert code == 2 and str(cell) in text and "not valid JSON" in text and "Delete it" in text


def test_list_suites_tasks_models(capsys):
    for what, expected in (("suites", "default"), ("tasks", "outline"), ("models", "clipbench-tiny")):
        code, out, _ = run_cli(capsys, "list", what)
        assert code == 0 and expected in out


def _board(*methods):
    from pathlib import Path

    folder = Path(__file__).parent.parent / "leaderboards" / "results"
    files = [str(next(folder.glob(f"default__{m}__*.json"))) for m in methods]
    assert files, "the committed default leaderboard results are missing"
    return files


def test_report_of_two_runs_is_side_by_side_with_the_paired_difference(capsys, monkeypatch):
    """One table per task with a row per method (zero-shot first), then the suite table; the second run's
    score minus the first's, with the paired bootstrap interval of scoring.py."""
    import json
    import re

    from clipbench import scoring

    monkeypatch.setenv("COLUMNS", "200")
    files = _board("lora", "saft")
    code, out, _ = run_cli(capsys, "report", *files)
    assert code == 0
    titles = re.findall(r"default/(\w+): runs side by side", out)
    assert titles == ["animals", "clothing", "colour", "digits", "shape"]
    assert "Suite means over tasks" in out and out.count("Suite means over tasks") == 1
    data = [json.load(open(f)) for f in files]
    boot = scoring.bootstrap({"lora": (data[0]["cells"], data[0]["reference"]),
                              "saft": (data[1]["cells"], data[1]["reference"])})
    obs, lo, hi = boot["difference"][("lora", "saft")]  # lora - saft: the report shows saft - lora
    from clipbench.formatting import signed

    suite_part = out[out.index("Suite means over tasks"):]
    assert f"{signed(-obs, 1)} [{signed(-hi, 1)}, {signed(-lo, 1)}]" in suite_part
    shape = out[out.index("default/shape: runs side by side"):out.index("Suite means over tasks")]
    rows = [line for line in shape.splitlines() if line.startswith("│")]
    assert [r.split("│")[1].strip() for r in rows] == ["zero-shot", "lora", "saft"]
    t_obs, t_lo, t_hi = boot["task_difference"][("lora", "saft")]["shape"]
    assert "baseline" in rows[1] and f"{signed(-t_obs, 1)} [{signed(-t_hi, 1)}, {signed(-t_lo, 1)}]" in rows[2]
    assert "Δ score: score minus lora's on seeds 1,2,3" in out


def test_report_of_one_run_keeps_its_per_measure_tables(capsys):
    code, out, _ = run_cli(capsys, "report", *_board("saft"))
    assert code == 0 and "runs side by side" not in out and "shift uci-digits" in out and "Δ score" not in out


def test_the_plot_has_the_shift_panel_and_the_score_with_its_interval(tmp_path):
    pytest.importorskip("matplotlib")
    import json

    from clipbench import scoring
    from clipbench.plot import tradeoff_figure

    data = [json.load(open(f)) for f in _board("lora", "saft")]
    fig = tradeoff_figure(data)
    forgetting, shift, score = fig.axes
    assert "forgetting" in forgetting.get_xlabel() and "shift" in shift.get_xlabel() and "score" in score.get_xlabel()
    o = scoring.summarise(data[1]["cells"], data[1]["reference"])["overall"]
    points = [tuple(line.get_xydata()[0]) for line in shift.lines if len(line.get_xydata()) == 1]
    assert (o["mean_shift"]["mean"], o["id"]["mean"]) in points
    lo, hi = scoring.bootstrap({"saft": (data[1]["cells"], data[1]["reference"])})["score"]["saft"]
    bars = [c for c in score.collections if len(c.get_segments()) == 1]
    spans = {tuple(round(v, 4) for v in seg[:, 0]) for c in bars for seg in c.get_segments()}
    assert (lo, hi) in spans
    at = {t.get_text(): y for t, y in zip(score.get_yticklabels(), score.get_yticks())}
    assert set(at) == {"lora", "saft"} and at["lora"] > at["saft"]  # the first file (the baseline) on top
    png = tmp_path / "t.png"
    from clipbench.cli import main as cli

    assert cli(["report", *_board("lora", "saft"), "--plot", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_a_run_of_one_method_over_several_tasks_ends_with_its_suite_numbers(capsys, tmp_path):
    argv = ["run", "--method", "zeroshot", "--task", "shape", "colour", "--shots", "1", "--seeds", "1",
            "--out", str(tmp_path)]
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0 and "Suite means over tasks" in out and "score 95%" in out
    code, out, _ = run_cli(capsys, "run", "--method", "zeroshot", "--task", "shape", "--shots", "1", "--seeds", "1",
                           "--out", str(tmp_path / "one"))
    assert code == 0 and "Suite means over tasks" not in out  # one task: its own table says it all


def _result_file(tmp_path, capsys):
    argv = ["run", "--method", "zeroshot", "--task", "shape", "--shots", "1", "--seeds", "1", "--out", str(tmp_path)]
    code, _, _ = run_cli(capsys, *argv)
    assert code == 0
    [path] = list(tmp_path.glob("*.json"))
    return path


def _write(path, data):
    import json

    path.write_text(json.dumps(data))
    return path


BAD_INPUTS = [
    # (label, build argv from tmp_path and a finished result file, message)
    ("out is a file", lambda t, r: ["run", "--method", "zeroshot", "--out", str(_touch(t / "f"))], "is a file"),
    ("out under a file", lambda t, r: ["run", "--method", "zeroshot", "--out", str(_touch(t / "f") / "sub")],
     "which is a file"),
    ("cuda:0 without CUDA", lambda t, r: ["run", "--method", "zeroshot", "--device", "cuda:0", "--out", str(t / "o")],
     "torch sees no CUDA device"),
    ("cuda:x", lambda t, r: ["run", "--method", "zeroshot", "--device", "cuda:x", "--out", str(t / "o")],
     "Unknown device 'cuda:x'"),
    ("tuple option with a bad item", lambda t, r: ["run", "--method", "linear-probe", "--option",
                                                   "linear-probe.penalties=0.1,x", "--out", str(t / "o")],
     "linear-probe.penalties wants a float"),
    ("option NaN", lambda t, r: ["run", "--method", "full-ft", "--option", "full-ft.lr=nan", "--out", str(t / "o")],
     "full-ft.lr wants a float"),
    ("option unknown", lambda t, r: ["run", "--method", "full-ft", "--option", "full-ft.nope=1", "--out", str(t / "o")],
     "has no option(s) nope"),
    ("report a folder", lambda t, r: ["report", str(t)], "is a folder, not a result file"),
    ("report a missing file", lambda t, r: ["report", str(t / "missing.json")], "Result file not found"),
    ("report a wrong-typed reference", lambda t, r: ["report", str(_mutate(r, lambda d: d["reference"].update(
        shape=[1, 2])))], "reference.shape: must be an object"),
    ("report a file of NaN", lambda t, r: ["report", str(_raw(t / "nan.json", '{"schema": NaN}'))],
     "NaN is not a JSON number"),
    ("verify without config.pretrained", lambda t, r: ["leaderboard", "verify", str(_mutate(
        r, lambda d: d["config"].pop("pretrained")))], "config.pretrained: missing"),
    ("verify a folder", lambda t, r: ["leaderboard", "verify", str(t)], "is a folder"),
    ("markup in a path", lambda t, r: ["report", str(t / "x[/b][red]y.json")], "x[/b][red]y.json"),
    ("build from a missing folder", lambda t, r: ["leaderboard", "build", "--results", str(t / "none")],
     "No result folder"),
    ("pretrain into a missing folder", lambda t, r: ["pretrain", "--out", str(t / "no" / "w.pt.xz"), "--steps", "1"],
     "does not exist; create it first"),
    ("pretrain zero steps", lambda t, r: ["pretrain", "--out", str(t / "w.pt.xz"), "--steps", "0"],
     "--steps must be at least 1"),
    ("a missing checkpoint for the embedded model", lambda t, r: ["run", "--method", "zeroshot", "--checkpoint",
                                                                  str(t / "missing.pt"), "--out", str(t / "o")],
     "Checkpoint not found"),
    ("a checkpoint that is not weights", lambda t, r: ["run", "--method", "zeroshot", "--checkpoint",
                                                       str(_raw(t / "junk.pt", "junk")), "--out", str(t / "o")],
     "Could not load clipbench-tiny weights"),
]


def _touch(path):
    path.write_text("")
    return path


def _raw(path, text):
    path.write_text(text)
    return path


def _mutate(result_path, change):
    import json

    data = json.loads(result_path.read_text())
    change(data)
    out = result_path.with_name("changed.json")
    out.write_text(json.dumps(data))
    return out


@pytest.mark.parametrize("label, make_argv, message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_inputs_are_one_sentence_exit_2_and_no_work(capsys, tmp_path, label, make_argv, message):
    result = _result_file(tmp_path / "done", capsys)
    argv = make_argv(tmp_path, result)
    before = sorted(p.name for p in (tmp_path / "done").iterdir())
    code, out, err = run_cli(capsys, *argv)
    assert code == 2, (out, err)
    assert message in " ".join(err.split()), err
    assert "Traceback" not in out + err
    assert err.startswith("error:") and err.count("error:") == 1
    assert not (tmp_path / "o").exists()  # no result folder: the mistake was found before any work
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == before


def test_a_read_only_out_folder_is_one_sentence_before_work(capsys, tmp_path, monkeypatch):
    import os

    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real(p, mode))
    code, out, err = run_cli(capsys, "run", "--method", "zeroshot", "--out", str(tmp_path))
    assert code == 2 and "cannot be written" in err and not list(tmp_path.iterdir())


def test_an_uninstalled_plugin_name_is_an_error(capsys, monkeypatch):
    monkeypatch.setenv("CLIPBENCH_LOAD_PLUGINS", "nosuchplugin")
    code, out, err = run_cli(capsys, "list", "methods")
    assert code == 2 and "'nosuchplugin', which is not an installed clipbench plugin" in " ".join(err.split())


def test_error_text_is_printed_literally(capsys, tmp_path):
    """User text in messages is never read as rich markup: [/b] does not crash, [red] and [plot] stay visible."""
    code, out, err = run_cli(capsys, "report", str(tmp_path / "a[red]b[/b]c[plot].json"))
    assert code == 2 and "a[red]b[/b]c[plot].json" in err.replace("\n", "")


def test_a_full_disk_loses_no_finished_cell(capsys, tmp_path, monkeypatch):
    """The result write fails on the second cell: one sentence naming the file, the first cell kept, no
    temporary left behind; the same command then resumes and finishes."""
    import errno

    from clipbench import results

    real = results.write_atomic
    calls = {"n": 0}

    def full(path, data, exclusive=False):
        calls["n"] += not exclusive  # the merged file's writes (each cell's own file is written exclusively)
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data, exclusive)

    monkeypatch.setattr(results, "write_atomic", full)
    argv = ["run", "--method", "zeroshot", "--task", "shape", "--shots", "1", "--seeds", "1,2", "--out", str(tmp_path),
            "--executor", "sequential"]  # the failing disk is patched into this process
    code, out, err = run_cli(capsys, *argv)
    [path] = list(tmp_path.glob("*.json"))
    assert code == 2 and "Could not write the result file" in err and path.name in err.replace("\n", "")
    assert "No space left on device" in err and not list(tmp_path.glob("*.tmp"))
    assert [c["seed"] for c in results.load_result(path)["cells"]] == [1]
    monkeypatch.setattr(results, "write_atomic", real)
    code, out, err = run_cli(capsys, *argv)
    assert code == 0 and [c["seed"] for c in results.load_result(path)["cells"]] == [1, 2]


def test_a_plain_state_dict_loads_as_the_embedded_model(tmp_path):
    import torch

    from clipbench.models import load_embedded, load_model

    shipped = load_embedded()
    torch.save(shipped.module.state_dict(), tmp_path / "plain.pt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in shipped.module.state_dict().items()}},
               tmp_path / "training.pt")
    for name in ("plain.pt", "training.pt"):
        assert load_model("clipbench-tiny", checkpoint=str(tmp_path / name)).fingerprint() == shipped.fingerprint()


def test_a_tuple_option_is_accepted_as_a_comma_separated_list(capsys, tmp_path):
    """--option linear-probe.penalties=0.1,1 used to be a TypeError after work had started."""
    code, out, err = run_cli(capsys, "run", "--method", "linear-probe", "--task", "shape", "--shots", "1", "--seeds",
                             "1", "--option", "linear-probe.penalties=0.1,1", "--out", str(tmp_path))
    assert code == 0, err
    from clipbench import results

    [path] = list(tmp_path.glob("*.json"))
    assert results.load_result(path)["config"]["method_config"]["penalties"] == [0.1, 1.0]


def test_the_plot_install_hint_is_printed_literally(capsys, tmp_path, monkeypatch):
    """'clipbench[plot]' must not be eaten as rich markup, and it comes before any work."""
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    from clipbench.extras import install_command

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    code, out, err = run_cli(capsys, "report", str(tmp_path / "missing.json"), "--plot", str(tmp_path / "p.png"))
    assert code == 2 and f"{install_command('plot')} (or pip install matplotlib)" in err.replace("\n", "")
    assert "not found" not in err


def test_a_batch_log_gets_tables_wider_than_a_terminals_default(capsys, monkeypatch):
    """stdout not a terminal and no COLUMNS (a Slurm log): 160 columns, so numbers are not squashed to '…'."""
    monkeypatch.delenv("COLUMNS", raising=False)
    code, out, _ = run_cli(capsys, "list", "methods")
    assert code == 0 and max(len(line) for line in out.splitlines()) > 80 and "…" not in out


# --- a harness that third-party methods cannot break (issue 24) -------------------------------------------


def _failing_zeroshot(monkeypatch, fail_on_call=2):
    from clipbench.methods import zeroshot

    real, calls = zeroshot.ZeroShot.adapt, []

    def adapt(self, *args):
        calls.append(1)
        if len(calls) == fail_on_call:
            raise ValueError("the plugin tripped over its own feet")
        return real(self, *args)

    monkeypatch.setattr(zeroshot.ZeroShot, "adapt", adapt)


def test_a_failing_plugin_is_one_sentence_exit_2_and_the_finished_cells_are_kept(capsys, tmp_path, monkeypatch):
    from clipbench import results

    _failing_zeroshot(monkeypatch)
    argv = ["run", "--method", "zeroshot", "--task", "shape", "--shots", "1", "--seeds", "1,2", "--out", str(tmp_path),
            "--executor", "sequential"]  # the failing plugin is patched into this process
    code, out, err = run_cli(capsys, *argv)
    flat = " ".join(err.split())
    assert code == 2 and "Traceback" not in err + out
    assert "Method 'zeroshot' failed on task 'shape', seed 2: ValueError: the plugin tripped over its own feet" in flat
    assert "--debug" in flat  # where the full traceback is
    [path] = list(tmp_path.glob("*.json"))
    assert [c["seed"] for c in results.load_result(path)["cells"]] == [1]


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_debug_shows_the_full_traceback_behind_the_sentence(capsys, tmp_path, monkeypatch, how):
    _failing_zeroshot(monkeypatch, fail_on_call=1)
    argv = ["run", "--method", "zeroshot", "--task", "shape", "--shots", "1", "--seeds", "1", "--out", str(tmp_path)]
    if how == "flag":
        argv = ["--debug", *argv]
    else:
        monkeypatch.setenv("CLIPBENCH_DEBUG", "1")
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and "Traceback" in err and "tripped over its own feet" in err
    assert "Method 'zeroshot' failed" in " ".join(err.split())


def test_an_out_of_range_option_is_one_sentence_before_work(capsys, tmp_path):
    code, out, err = run_cli(capsys, "run", "--method", "linear-probe", "--option", "linear-probe.lr=-1",
                             "--out", str(tmp_path))
    assert code == 2 and "Option linear-probe.lr must be above 0, got -1.0." in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("command", [["list", "methods"], ["report"], ["export"]])
def test_a_closed_stdout_is_no_crash(capsys, monkeypatch, tmp_path, command):
    import sys
    from pathlib import Path

    files = sorted(str(p) for p in (Path(__file__).parent.parent / "leaderboards" / "results").glob("*.json"))[:1]
    argv = command + (files if command[0] in ("report", "export") else [])
    monkeypatch.setattr(sys, "stdout", None)
    code = main(argv)
    err = capsys.readouterr().err
    assert "isatty" not in err and "Traceback" not in err
    if command == ["export"]:
        assert code == 2 and "Standard output is closed" in err and "--out" in err
    else:
        assert code == 0


def test_an_ascii_terminal_gets_the_report_without_a_unicode_error(capsys, monkeypatch):
    import io
    import sys
    from pathlib import Path

    files = sorted(str(p) for p in (Path(__file__).parent.parent / "leaderboards" / "results").glob("*.json"))[:2]
    raw = io.BytesIO()
    ascii_out = io.TextIOWrapper(raw, encoding="ascii")
    monkeypatch.setattr(sys, "stdout", ascii_out)
    assert main(["report", *files]) == 0
    ascii_out.flush()
    assert b"Suite means over tasks" in raw.getvalue()


@pytest.mark.parametrize("command, says", [
    (["run", "--method", "zeroshot"], "Finished cells are saved; run the same command again to resume"),
    (["leaderboard", "build"], "Nothing was left half-written"),
    (["list", "methods"], "Nothing was left half-written"),
])
def test_ctrl_c_says_what_fits_the_command(capsys, monkeypatch, command, says):
    from clipbench import cli

    class Interrupting:
        def __getattr__(self, name):
            def stop(*args):
                raise KeyboardInterrupt

            return stop

    monkeypatch.setattr(cli, "_module", lambda name: Interrupting())
    code, out, err = run_cli(capsys, *command)
    assert code == 130 and says in " ".join(err.split())
    if command[0] != "run":
        assert "Finished cells" not in err


def test_a_dangling_cells_link_is_named_not_called_a_full_disk(capsys, tmp_path):
    argv = ["run", "--method", "zeroshot", "--task", "shape", "--shots", "1", "--seeds", "1", "--out", str(tmp_path)]
    assert run_cli(capsys, *argv)[0] == 0
    [folder] = list(tmp_path.glob("*.cells"))
    import shutil

    shutil.rmtree(folder)
    for f in tmp_path.glob("*.json"):
        f.unlink()
    folder.symlink_to(tmp_path / "gone")
    code, out, err = run_cli(capsys, *argv)
    flat = "".join(err.split())
    assert code == 2 and "Somethingisintheway" in flat and "danglinglink" in flat and "Freespace" not in flat


def test_version_says_which_clipbench_answers(capsys):
    from importlib.metadata import version
    from pathlib import Path

    import clipbench

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == (f"clipbench {version('clipbench')} "
                                               f"({Path(clipbench.__file__).resolve().parent})")
    assert clipbench.__version__ == version("clipbench")  # the package and its metadata agree


def _subparsers(parser, path=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield path + (name,), sub
                yield from _subparsers(sub, path + (name,))


def test_every_command_has_a_description_in_its_help():
    from clipbench.cli import build_parser

    commands = dict(_subparsers(build_parser()))
    assert ("show",) in commands and ("leaderboard", "check") in commands
    missing = [" ".join(path) for path, sub in commands.items() if not sub.description]
    assert missing == []


def test_top_level_help_says_report_takes_several_files(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "compare result files side by side" in out and "show one result file" not in out


@pytest.mark.parametrize("direct_url, command", [
    ('{"url": "file:///home/me/clipbench", "dir_info": {"editable": true}}', "pip install -e '/home/me/clipbench[plot]'"),
    ('{"url": "file:///home/me/clipbench", "dir_info": {}}', "pip install '/home/me/clipbench[plot]'"),
    ('{"url": "https://github.com/o/clipbench", "vcs_info": {"vcs": "git"}}',
     "pip install 'clipbench[plot] @ https://github.com/o/clipbench'"),
    ('{"url": "https://files.example/clipbench-0.1.0-py3-none-any.whl", "archive_info": {}}',
     "pip install 'clipbench[plot]'"),
    (None, "pip install 'clipbench[plot]'"),
])
def test_the_install_hint_fits_how_clipbench_was_installed(monkeypatch, direct_url, command):
    import importlib.metadata

    from clipbench.extras import install_command

    class Dist:
        def read_text(self, name):
            return direct_url if name == "direct_url.json" else None

    monkeypatch.setattr(importlib.metadata, "distributions", lambda name=None: [Dist()])
    assert install_command("plot") == command


def test_the_install_hint_of_this_checkout_is_the_editable_one(monkeypatch, tmp_path):
    """The README's commands install clipbench with pip install -e: the hint must say -e, never the index."""
    from clipbench.extras import install_command

    monkeypatch.chdir(tmp_path)
    assert install_command("plot").startswith("pip install -e '") and install_command("plot").endswith("[plot]'")


def test_bench_finds_the_timed_kernels_of_the_checkout_it_is_installed_from():
    """`clipbench bench` looked in clipbench/tests/benchmarks after the commands moved into a subpackage."""
    from pathlib import Path

    from clipbench.commands.bench import kernels_dir

    assert kernels_dir() == Path(__file__).resolve().parent / "benchmarks"
    assert (kernels_dir() / "test_kernels.py").is_file()


def test_bench_states_the_boards_recorded_time(tmp_path):
    """The board's time as its cells recorded it: adapt seconds plus images scored at the recorded rate,
    over two workers.  Files are read like any result file: a damaged or tampered one is skipped, no
    result files means nothing to say."""
    import json
    import shutil
    from pathlib import Path

    from clipbench.commands.bench import recorded_board_cost

    assert recorded_board_cost(tmp_path) is None
    committed = sorted((Path(__file__).parents[1] / "leaderboards" / "results").glob("default__saft__*.json"))[0]
    shutil.copy(committed, tmp_path / "run.json")
    data = json.loads(committed.read_text())
    tampered = json.loads(committed.read_text())
    tampered["cells"][0]["cost"]["adapt_seconds"] = "lots"
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    (tmp_path / "damaged.json").write_text("{")
    adapt = sum(c["cost"]["adapt_seconds"] for c in data["cells"])
    evaluate = 0.0
    for c in data["cells"]:
        sets = [c["correct"]["id"], *c["correct"]["shifts"].values(), *c["correct"]["probes"].values()]
        evaluate += sum(s["n"] for s in sets) / c["cost"]["eval_images_per_second"]
    said = recorded_board_cost(tmp_path)
    assert said == (f"the committed board ({len(data['cells'])} cells): {adapt / 60:.0f} min adapting and "
                    f"{evaluate / 60:.0f} min evaluating as recorded, about {(adapt + evaluate) / 120:.0f} min "
                    "on 2 workers")
