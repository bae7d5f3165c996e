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
    (["run", "--method", "zeroshot", "--task", "size", "--shots", "500"], "Use --shots"),
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


def test_bad_seeds_are_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--method", "zeroshot", "--seeds", "a,b"])
    assert exit_.value.code == 2
    assert "--seeds wants a count" in capsys.readouterr().err


def test_list_methods_shows_builtins_and_third_party(capsys):
    code, out, _ = run_cli(capsys, "list", "methods")
    assert code == 0
    for name in ("zeroshot", "linear-probe", "full-ft"):
        assert name in out
    assert "built-in" in out


def test_corrupt_result_file_names_its_path(capsys, tmp_path):
    argv = ["run", "--method", "zeroshot", "--task", "size", "--shots", "1", "--seeds", "1", "--out", str(tmp_path)]
    code, out, _ = run_cli(capsys, *argv)
    assert code == 0 and "size" in out
    [path] = list(tmp_path.glob("*.json"))
    path.write_text(path.read_text()[:100])
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and str(path) in err.replace("\n", "") and "not valid JSON" in err


def test_list_suites_tasks_models(capsys):
    for what, expected in (("suites", "default"), ("tasks", "outline"), ("models", "clipbench-tiny")):
        code, out, _ = run_cli(capsys, "list", what)
        assert code == 0 and expected in out


def test_report_shows_runs_and_plots(capsys, tmp_path):
    from pathlib import Path

    files = sorted(str(p) for p in (Path(__file__).parent.parent / "leaderboards" / "results").glob("*.json"))[:2]
    assert files, "the committed default leaderboard results are missing"
    code, out, _ = run_cli(capsys, "report", *files)
    assert code == 0 and "Suite means over tasks" in out
    pytest.importorskip("matplotlib")
    png = tmp_path / "t.png"
    assert main(["report", *files, "--plot", str(png)]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
