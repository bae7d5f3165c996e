"""`clipbench data check` checks what a suite declares, a plugin's own datasets included; --probes runs a
forgetting suite with the probes that are present."""

from pathlib import Path

import pytest

from clipbench import runner
from clipbench.cli import main
from clipbench.data.real import Status
from clipbench.errors import ClipbenchError
from clipbench.plugins import collect, get_plugin_manager
from tests.fakes import FakePlugin, mini_suite


class LabDataset:
    """A plugin's own dataset: present when its folder holds a labels file."""

    title = "Lab microscopy"

    def check(self, root: Path, decode: bool = False) -> Status:
        where = root / "lab"
        if not (where / "labels.csv").is_file():
            return Status(self.title, where, "missing", problems=["no labels.csv"])
        return Status(self.title, where, "present", classes="3", counts={"test": 12})


def test_a_plugin_suites_own_datasets_are_checked(tmp_path, capsys, monkeypatch):
    from clipbench import hookimpl
    from clipbench.commands import data

    class LabPlugin:
        @hookimpl
        def clipbench_register_suites(self, register):
            suite = mini_suite("lab")
            suite.datasets = [LabDataset()]
            register(suite)

    def plugins():
        pm = get_plugin_manager(load_entrypoints=False, extra=[LabPlugin()])
        return pm, collect(pm)

    monkeypatch.setattr(data, "load_plugins", plugins)
    assert main(["data", "check", "--suite", "lab", "--data", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "Lab microscopy" in out and "missing" in out and "0 present, 1 missing" in out
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "labels.csv").write_text("x")
    assert main(["data", "check", "--suite", "lab", "--data", str(tmp_path)]) == 0
    assert "1 present, 0 missing, 0 corrupt of 1 datasets" in capsys.readouterr().out


def test_the_real_suites_declare_their_datasets():
    reg = collect(get_plugin_manager(load_entrypoints=False))
    assert len(reg.suite("fewshot11").datasets) == 11 and len(reg.suite("forgetting").datasets) == 5
    assert len(reg.suite("imagenet-dg").datasets) == 5 and reg.suite("default").datasets == []


def test_probes_runs_with_the_probes_named_as_a_run_of_its_own(tmp_path):
    pm = get_plugin_manager(load_entrypoints=False, extra=[FakePlugin()])
    reg = collect(pm)
    request = dict(suite="mini", shots=2, seeds=[1], out_dir=tmp_path)
    [full] = runner.execute(runner.RunRequest(["counting"], **request), reg, pm)
    [none] = runner.execute(runner.RunRequest(["counting"], probes=[], **request), reg, pm)
    import json

    assert full != none
    cells = json.loads(none.read_text())["cells"]
    assert cells[0]["probes"] == {} and json.loads(none.read_text())["config"]["probes"] == []
    assert set(json.loads(full.read_text())["cells"][0]["probes"]) == {"size"}
    with pytest.raises(ClipbenchError, match="--probes names 'colour', which is no probe of suite 'mini'"):
        runner.execute(runner.RunRequest(["counting"], probes=["colour"], **request), reg, pm)
