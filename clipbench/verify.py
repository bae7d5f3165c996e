"""Re-running a submitted result from its stored config, and comparing every number.

``leaderboard check`` proves a file is well-formed and self-consistent; only a
re-run proves its numbers.  ``verify`` re-runs every seed by default (or seeds
the verifier chooses or draws, never the submitter's choice), in a private
folder, and compares each cell's accuracies and the zero-shot reference.
"""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path

from clipbench import results, scoring
from clipbench.models import EMBEDDED


def draw_seed(data: dict) -> int:
    """A seed of the result chosen by the verifier at random (not the submitter's first)."""
    seeds = sorted({c["seed"] for c in data["cells"]})
    return seeds[secrets.randbelow(len(seeds))]


def compare(name: str, submitted: dict, fresh: dict, tolerance: float) -> list[str]:
    """Every accuracy of a cell or reference against the re-run's, and which images were right.

    ``check`` has already recomputed each submitted accuracy from its per-image
    correctness; here the images themselves must agree: a submission whose
    accuracies match but whose correct images differ in more than ``tolerance``
    percent of a set (shuffled bits fool the paired bootstrap) is caught too.
    """
    problems = []
    a, b = scoring.record_accuracies(submitted), scoring.record_accuracies(fresh)
    bits_a, bits_b = scoring.record_sets(submitted), scoring.record_sets(fresh)
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            problems.append(f"{name} {key}: present in only one of the submission and the re-run")
        elif abs(a[key] - b[key]) > tolerance:
            problems.append(f"{name} {key}: submitted {a[key]:.2f}, re-run {b[key]:.2f}")
        elif key in bits_a and key in bits_b:
            differ = scoring.images_differing(bits_a[key], bits_b[key])
            if differ is None:
                problems.append(f"{name} {key}: the submission scored a different number of images")
            elif 100.0 * differ / bits_b[key]["n"] > tolerance:
                problems.append(f"{name} {key}: {differ} of {bits_b[key]['n']} images are classified "
                                "differently by the re-run")
    return problems


class _threads:
    """Re-run with the thread count the result records: CPU reductions may round differently with another."""

    def __init__(self, n):
        self.n = n if isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 1024 else None

    def __enter__(self):
        import torch

        self.before = torch.get_num_threads()
        if self.n:
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        import torch

        torch.set_num_threads(self.before)
        return False


def verify(data: dict, registry, pm, seeds: list[int] | None = None, tolerance: float = 0.5,
           data_root: Path | None = None) -> list[str]:
    """Re-run ``seeds`` (default: every seed) of a checked result; list every number off by more than ``tolerance``."""
    from clipbench import runner

    cfg = data["config"]
    stored_seeds = sorted({c["seed"] for c in data["cells"]})
    seeds = stored_seeds if seeds is None else seeds
    missing = [s for s in seeds if s not in stored_seeds]
    if missing:
        return [f"seed {missing[0]} is not in the result's seeds {stored_seeds}"]
    options = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg["method_config"].items()}
    threads = (data.get("provenance") or {}).get("threads")
    with tempfile.TemporaryDirectory() as tmp, _threads(threads):
        request = runner.RunRequest(methods=[cfg["method"]], suite=cfg["suite"], tasks=cfg["tasks"],
                                    shots=cfg["shots"], seeds=list(seeds), model=cfg["model"],
                                    pretrained=None if cfg["model"] == EMBEDDED or cfg["pretrained"] == "random" else cfg["pretrained"],
                                    out_dir=Path(tmp), options={cfg["method"]: options},
                                    precision=cfg.get("precision", "fp32"), data=data_root,
                                    tuned=cfg.get("tuned") or {})
        [path] = runner.execute(request, registry, pm)
        fresh = results.load_result(path)
    problems = []
    if fresh["config"]["model_fingerprint"] != cfg.get("model_fingerprint"):
        problems.append(f"model fingerprint {fresh['config']['model_fingerprint']} differs from the "
                        f"submission's {cfg.get('model_fingerprint')}: not the same weights")
    stored_data = data.get("provenance", {}).get("data", {})
    for name, fp in sorted(fresh["provenance"]["data"].items()):
        if name in stored_data and stored_data[name] != fp:
            problems.append(f"data {name}: fingerprint {fp} differs from the submission's {stored_data[name]}: "
                            "not the same images")
    for task in cfg["tasks"]:
        problems += compare(f"{task} zero-shot reference", data["reference"][task], fresh["reference"][task],
                            tolerance)
        if data["reference"][task].get("chance") != fresh["reference"][task].get("chance"):
            problems.append(f"{task} zero-shot reference chance: submitted {data['reference'][task].get('chance')}, "
                            f"re-run {fresh['reference'][task].get('chance')}")
    stored = {(c["task"], c["seed"]): c for c in data["cells"]}
    for cell in fresh["cells"]:
        problems += compare(f"{cell['task']} seed {cell['seed']}", stored[(cell["task"], cell["seed"])], cell,
                            tolerance)
    return problems
