"""The documents' commands and examples work as written: CONTRIBUTING's plugin package builds with pip and
passes its own contract test; the README's first commands are right for a machine without a GPU and its
test command is the one CI runs."""

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _files_of(section: str) -> dict[str, str]:
    """The code blocks of a Markdown section that start with a ``# path`` comment, by that path."""
    files = {}
    for block in re.findall(r"```(?:python|toml)\n(.*?)```", section, flags=re.S):
        first = block.partition("\n")[0]
        if re.fullmatch(r"# [\w/.-]+\.\w+", first):
            files[first[2:]] = block
    return files


@pytest.mark.slow
def test_the_contributing_plugin_builds_with_pip_and_passes_its_contract(tmp_path):
    """The package exactly as CONTRIBUTING.md prints it: pip builds its wheel (the pyproject validated as
    pip validates it: no more "`project` must contain ['version']"), the wheel's entry point loads through
    the plugin manager, and the document's own contract test passes under pytest.  Nothing is installed into
    this environment: the wheel is unpacked into a folder of its own."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    files = _files_of(text.split("## Writing a method plugin", 1)[1].split("\n## ", 1)[0])
    assert set(files) == {"clipbench_l2sp/__init__.py", "pyproject.toml", "tests/test_l2sp.py"}
    package = tmp_path / "package"
    for name, content in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(content)
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONPATH=str(ROOT))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-q", "-w", str(tmp_path / "dist"), str(package)],
                           capture_output=True, text=True, env=env)
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("clipbench_l2sp-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
        entry_points = next(n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt"))
        assert "[clipbench]\nl2sp = clipbench_l2sp" in z.read(entry_points).decode()

    # the wheel's own files first, this checkout's clipbench next; no other plugin (the repository ships one
    # of the same name, installed by the test command)
    env = dict(env, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), CLIPBENCH_LOAD_PLUGINS="")
    discover = (
        "import importlib.metadata as md, json\n"
        "from clipbench.plugins import collect, get_plugin_manager\n"
        f"[dist] = [d for d in md.distributions(path=[{str(site)!r}]) if d.metadata['Name'] == 'clipbench-l2sp']\n"
        "[ep] = [e for e in dist.entry_points if e.group == 'clipbench']\n"
        "module = ep.load()\n"
        "method = collect(get_plugin_manager(extra=[module])).method('l2sp')\n"
        "print(json.dumps([module.__file__, type(method).__module__, method.config_class().alpha]))\n")
    found = subprocess.run([sys.executable, "-c", discover], capture_output=True, text=True, env=env)
    assert found.returncode == 0, found.stderr
    where, owner, alpha = json.loads(found.stdout)
    assert Path(where).is_relative_to(site) and owner == "clipbench_l2sp" and alpha == 0.01
    tested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")],
                            capture_output=True, text=True, env=env, cwd=package)
    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-2000:]
    assert "1 passed" in tested.stdout


def _blocks(markdown: str) -> list[str]:
    """Indented (four-space) command blocks, one string each."""
    return [m.group(0) for m in re.finditer(r"(?m)(?:^    \S.*\n)+", markdown)]


def test_the_readme_first_commands_say_what_a_machine_without_a_gpu_adds_before_them():
    text = (ROOT / "README.md").read_text()
    section = text.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    first_command = section.index("python3 -m venv .venv")
    advice = section.index("--extra-index-url https://download.pytorch.org/whl/cpu")
    assert advice < first_command, "the CPU-only advice must come before the command it changes"
    paragraph = section[:first_command]
    assert "without a GPU" in paragraph.replace("Without", "without") and "with a GPU" in paragraph


def test_the_readme_test_command_is_the_one_ci_runs():
    text = (ROOT / "README.md").read_text()
    section = text.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    commands = [b.strip() for b in _blocks(section)]
    assert len(commands) == 2 and commands[0].endswith("clipbench run --method saft")
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci.splitlines(), "README's test command and .ci/run must be the same line"


@pytest.mark.slow
def test_the_contributing_executor_computes_the_cells_of_a_sequential_run(tmp_path):
    """The executor plugin exactly as CONTRIBUTING.md prints it, registered through the plugin manager like an
    installed one: `--executor fresh-process` computes each cell in its own process, and the run's numbers
    are the sequential run's, bit for bit."""
    import importlib.util

    from clipbench import results, runner, sweep
    from clipbench.plugins import collect, get_plugin_manager

    text = (ROOT / "CONTRIBUTING.md").read_text()
    files = _files_of(text.split("## Writing an executor plugin", 1)[1].split("\n## ", 1)[0])
    assert set(files) == {"clipbench_fresh/__init__.py"}
    path = tmp_path / "clipbench_fresh.py"
    path.write_text(files["clipbench_fresh/__init__.py"])
    spec = importlib.util.spec_from_file_location("clipbench_fresh", path)
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    pm = get_plugin_manager(load_entrypoints=False, extra=[plugin])
    registry = collect(pm)
    assert registry.owners[("executor", "fresh-process")] != "built-in"
    grid = dict(methods=["zeroshot", "linear-probe"], tasks=["shape"], seeds=[1, 2], shots=1,
                options={"linear-probe": {"steps": 5}})
    fresh = sweep.dispatch(runner.RunRequest(out_dir=tmp_path / "fresh", **grid), registry, pm,
                          sweep.SweepOptions(executor="fresh-process"))
    import torch

    threads = int(subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
                                 capture_output=True, text=True, check=True).stdout)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # what each fresh process computes at (training reduces by thread count)
    try:
        plain = runner.execute(runner.RunRequest(out_dir=tmp_path / "plain", **grid), registry, pm)
    finally:
        torch.set_num_threads(before)
    assert len(fresh) == len(plain) == 2
    for a, b in zip(sorted(fresh), sorted(plain)):
        cells = [results.load_result(p)["cells"] for p in (a, b)]
        assert [(c["task"], c["seed"], c["id"]) for c in cells[0]] == [(c["task"], c["seed"], c["id"]) for c in cells[1]]
