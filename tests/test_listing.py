"""`clipbench list` and `clipbench show`: every listing fits 80 columns and never cuts a name a user types."""

import pytest

from clipbench.cli import main


def _listing(capsys, monkeypatch, *argv) -> list[str]:
    monkeypatch.setenv("COLUMNS", "80")
    assert main(list(argv)) == 0
    return capsys.readouterr().out.splitlines()


@pytest.mark.parametrize("what", ["methods", "suites", "tasks", "models"])
def test_every_listing_fits_80_columns(capsys, monkeypatch, what):
    lines = _listing(capsys, monkeypatch, "list", what)
    assert max(len(line) for line in lines) <= 80


def test_names_a_user_types_are_never_truncated(capsys, monkeypatch):
    from clipbench.plugins import collect, get_plugin_manager

    reg = collect(get_plugin_manager())
    text = "\n".join(_listing(capsys, monkeypatch, "list", "methods"))
    assert "…" not in text and all(f" {name} " in f" {text} ".replace("\n", " ") for name in reg.methods)
    tasks = "\n".join(_listing(capsys, monkeypatch, "list", "tasks"))
    words = set(tasks.split())
    for suite in reg.suites.values():
        assert suite.name in words
        assert all(t in words for t in suite.tasks), suite.name


def test_list_methods_is_compact_and_verbose_adds_citations(capsys, monkeypatch):
    compact = _listing(capsys, monkeypatch, "list", "methods")
    verbose = _listing(capsys, monkeypatch, "list", "methods", "--verbose")
    assert len(compact) <= 50 and "Zhou" not in "\n".join(compact)
    assert "Zhou" in "\n".join(verbose)


def test_list_models_shows_what_is_available_here_first(capsys, monkeypatch):
    lines = _listing(capsys, monkeypatch, "list", "models")
    assert len(lines) <= 20 and any("clipbench-tiny" in line and "world-real" in line for line in lines)
    assert any("--all" in line for line in lines)
    everything = _listing(capsys, monkeypatch, "list", "models", "--all")
    assert any("ViT-B-32" in line for line in everything)


def test_show_method_prints_options_defaults_sources_and_search_grid(capsys, monkeypatch):
    text = "\n".join(_listing(capsys, monkeypatch, "show", "method", "saft"))
    assert "SAFT" in text or "Nguyen" in text
    assert "sparsity" in text and "0.001" in text and "SAFT: 0.1%" in text
    assert "1e-06" in text and "0.003" in text  # the search grid of lr
    assert main(["show", "method", "sfat"]) == 2  # a misspelt name is one sentence with a suggestion
    assert "Did you mean: saft?" in capsys.readouterr().err


def test_show_method_prints_the_deviation_card(capsys, monkeypatch):
    from clipbench.plugins import collect, get_plugin_manager

    method = collect(get_plugin_manager()).methods["coop"]
    text = " ".join(_listing(capsys, monkeypatch, "show", "method", "coop"))
    assert "deviation card" in text and "compared against" in text
    assert "KaiyangZhou/CoOp" in text
    for column in ("aspect", "reference", "clipbench", "effect", "reason"):
        assert column in text
    assert "moves numbers" in text
    assert method.deviations and all(d.aspect.split()[0] in text for d in method.deviations)


def test_a_plugins_card_text_is_printed_literally_not_as_markup(capsys, monkeypatch):
    from clipbench import Deviation, Method, MethodConfig, hookimpl
    from clipbench.commands import listing
    from clipbench.plugins import collect, get_plugin_manager

    class Marked(Method):
        name, citation, summary, config_class = "marked", "[bold]c[/]", "s", MethodConfig
        reference = "[red]x[/] repo"
        deviations = (Deviation("[red]x[/]", "[b]ref[/b]", "[/]clip", False, "[link=a]r[/link]"),)

        def adapt(self, *a):
            raise NotImplementedError

    class Plugin:
        @hookimpl
        def clipbench_register_methods(self, register):
            register(Marked())

    pm = get_plugin_manager(extra=[Plugin()])
    monkeypatch.setattr(listing, "load_plugins", lambda: (pm, collect(pm)))
    text = "\n".join(_listing(capsys, monkeypatch, "show", "method", "marked"))
    for literal in ("[red]x[/] repo", "[red]x[/]", "[b]ref[/b]", "[/]clip", "[link=a]r[/link]", "cosmetic"):
        assert literal in text, literal


def test_show_method_prints_the_tuned_values_run_applies_per_task(capsys, monkeypatch, tmp_path):
    """`show` says what `run` will actually use: the shipped tuned values per task, not only the paper default."""
    import json

    from clipbench import tuning
    from clipbench.plugins import collect, get_plugin_manager

    method = collect(get_plugin_manager()).methods["saft"]
    [shipped] = tuning.SHIPPED.glob("default__saft__*.json")
    chosen = tuning.chosen_values(json.loads(shipped.read_text()))
    monkeypatch.chdir(tmp_path)  # no ./tuned here: only the shipped values
    lines = _listing(capsys, monkeypatch, "show", "method", "saft")
    rows = [line.split() for line in lines]
    for task, values in chosen.items():
        assert any(task in row and f"lr={values['lr']:g}" in row and "shipped" in row for row in rows), task
    # a user's ./tuned file wins over the shipped one for the same key, as in `clipbench run`
    record = json.loads(shipped.read_text())
    record["tasks"]["shape"]["values"] = {"lr": 0.001}
    (tmp_path / "tuned").mkdir()
    (tmp_path / "tuned" / shipped.name).write_text(json.dumps(record))
    rows = [line.split() for line in _listing(capsys, monkeypatch, "show", "method", "saft")]
    assert any("shape" in row and "lr=0.001" in row and "tuned/" in row for row in rows)
    assert "declares no search space" in " ".join(_listing(capsys, monkeypatch, "show", "method", "zeroshot"))
    assert method.name == "saft"


@pytest.mark.parametrize("what, key", [("methods", "name"), ("suites", "name"), ("tasks", "task"),
                                       ("models", "model")])
def test_json_listings_are_records_for_scripts(capsys, what, key):
    import json

    from clipbench.commands.listing import records
    from clipbench.plugins import collect, get_plugin_manager

    assert main(["list", what, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == records(collect(get_plugin_manager()), what)
    assert listed and all(isinstance(r[key], str) for r in listed)
    if what == "methods":
        assert {"saft", "lora"} <= {r["name"] for r in listed} and all(r["citation"] for r in listed)
    if what == "tasks":
        shape = next(r for r in listed if r["suite"] == "default" and r["task"] == "shape")
        assert shape["classes"] == 6 and "outline" in shape["shifts"] and shape["adapted_on"]
    if what == "models":
        assert any(r["model"] == "clipbench-tiny" and "world-real" in r["offline"] for r in listed)


def test_tuned_values_of_both_shipped_suites_fit_80_columns_unbroken(capsys, monkeypatch, tmp_path):
    """With default and default-b2n shipped, each tuned value stays whole on its row at 80 columns: the one
    model and shot count are said once in the title instead of taking two columns."""
    import json

    from clipbench import tuning

    monkeypatch.chdir(tmp_path)
    lines = _listing(capsys, monkeypatch, "show", "method", "saft")
    assert "weights f8aadfabf412419d, 16 shots" in " ".join(" ".join(lines).split())  # the title, wrapped
    for suite in ("default", "default-b2n"):
        [shipped] = tuning.SHIPPED.glob(f"{suite}__saft__*.json")
        for task, values in tuning.chosen_values(json.loads(shipped.read_text())).items():
            assert any(line.split()[:2] == [suite, task] and f"lr={values['lr']:g}" in line.split()
                       for line in lines if line.strip()), (suite, task)
