"""The public API: what a plugin imports from the top-level package, and nothing it should not need."""

import ast
import subprocess
import sys
from pathlib import Path

import clipbench

ROOT = Path(__file__).resolve().parent.parent


def test_every_exported_name_resolves():
    for name in clipbench.__all__:
        assert getattr(clipbench, name) is not None, name
    assert set(dir(clipbench)) >= set(clipbench.__all__)


def test_importing_clipbench_stays_light():
    """`clipbench --help` must not pay for torch: the exports are imported on first use."""
    out = subprocess.run([sys.executable, "-c", "import sys, clipbench; print('torch' in sys.modules)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _clipbench_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "clipbench":
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.split(".")[0] == "clipbench"]
    return out


def test_the_example_plugin_and_contributing_import_only_the_public_api():
    for path in (ROOT / "plugins").glob("*/*/*.py"):
        assert set(_clipbench_imports(path)) <= {"clipbench"}, path
    text = (ROOT / "CONTRIBUTING.md").read_text()
    example = text.split("```python", 1)[1].split("```", 1)[0]
    assert "from clipbench import" in example and "from clipbench." not in example


def test_a_config_base_turns_a_recipe_into_the_schedule():
    from clipbench.config import AdamWRecipe, SGDRecipe
    from clipbench.training import Schedule

    assert AdamWRecipe().schedule() == Schedule("adamw", 1e-5, 0.1, batch_size=32, epochs=20, warmup_fraction=0.1)
    assert SGDRecipe().schedule() == Schedule("sgd", 1e-6, 1e-4, 0.9, 128, 30, warmup_fraction=0.0)
    assert AdamWRecipe(lr=3e-5).schedule(weight_decay=0.0).weight_decay == 0.0
    described = {d["name"]: d for d in AdamWRecipe.describe()}
    assert described["lr"]["search"] and described["lr"]["source"] == "FLYP: 1e-5"
