"""Re-running a submitted result from its stored config, and comparing every number.

``leaderboard check`` proves a file is well-formed and self-consistent; only a
re-run proves its numbers.  ``verify`` re-runs every seed by default (or seeds
the verifier chooses or draws, never the submitter's choice), in a private
folder, and compares each cell's accuracies and the zero-shot reference.

A re-run in the environment the result records (device type, thread count,
torch version) reproduces a cell bit for bit, so there it is compared image by
image exactly.  Where the environments differ (a GPU row verified on a CPU),
the tolerance is measured, never a constant: the share of images of the zero-shot
reference that the two environments classify differently, and it is stated.
Costs: trainable parameters are deterministic and compared exactly; adapt time
and peak memory as a ratio to the verifier's own re-run on the same hardware
class, within a stated band.
"""

from __future__ import annotations

import math
import secrets
import tempfile
from pathlib import Path

from clipbench import results, scoring
from clipbench.errors import ClipbenchError
from clipbench.models import EMBEDDED

MAX_MEASURED_TOLERANCE = 5.0  # percent of a set's images: environments further apart than this are not compared
COST_BAND = (0.25, 4.0)  # submitted / re-run adapt seconds and peak memory on the same hardware class
COST_FLOOR = (1.0, 16.0)  # below 1 s or 16 MB in both runs, timer and allocator noise dominate: not compared


DRAW_CATCH = 0.9  # a single forged seed is among the drawn seeds with at least this probability


def draw_seed(data: dict) -> int:
    """A seed of the result chosen by the verifier at random (not the submitter's first)."""
    seeds = sorted({c["seed"] for c in data["cells"]})
    return seeds[secrets.randbelow(len(seeds))]


def draw_seeds(data: dict) -> list[int]:
    """Seeds of the result drawn at random by the verifier, enough that one forged seed among them is drawn
    with probability >= DRAW_CATCH: k of n seeds catch it with probability k / n, so k = ceil(0.9 n)
    (all 3 of a 3-seed result; 9 of 10)."""
    seeds = sorted({c["seed"] for c in data["cells"]})
    k = min(len(seeds), math.ceil(DRAW_CATCH * len(seeds) - 1e-9))
    pool, drawn = list(seeds), []
    for _ in range(k):
        drawn.append(pool.pop(secrets.randbelow(len(pool))))
    return sorted(drawn)


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


def environment(provenance) -> dict:
    """What decides whether a re-run reproduces a result bit for bit: device type, threads, torch version."""
    prov = provenance if isinstance(provenance, dict) else {}
    device, versions = prov.get("device"), prov.get("versions")
    return {"device type": device.split(":")[0] if isinstance(device, str) else None,
            "threads": prov.get("threads"),
            "torch": versions.get("torch") if isinstance(versions, dict) else None}


def check_tolerance(tolerance) -> float | None:
    """A verifier's tolerance: None (exact, or measured across environments) or a finite number >= 0."""
    if tolerance is None:
        return None
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) \
            or tolerance < 0:
        raise ClipbenchError(f"--tolerance must be a finite number of points >= 0, got {tolerance!r}.")
    return float(tolerance)


def measured_tolerance(data: dict, fresh: dict) -> tuple[float, str]:
    """The cross-environment difference of an honest re-run, measured on the zero-shot reference: the largest
    share (percent) of a reference set's images the two environments classify differently."""
    worst, where = 0.0, "no image"
    for task in data["config"]["tasks"]:
        a, b = scoring.record_sets(data["reference"][task]), scoring.record_sets(fresh["reference"][task])
        for key in sorted(set(a) & set(b)):
            differ = scoring.images_differing(a[key], b[key])
            if differ is None:
                continue
            share = 100.0 * differ / b[key]["n"]
            if share > worst:
                worst, where = share, f"{differ} of {b[key]['n']} images of {task} {key}"
    return worst, where


def compare_costs(data: dict, fresh: dict) -> tuple[list[str], list[str], str]:
    """Trainable parameters exactly; adapt time and peak memory as a ratio within COST_BAND where the
    hardware class (device type and name) is the same.  Returns (problems, flags, what was compared): a
    parameter count that differs is a problem; time or memory outside the band is flagged (a loaded
    machine is slower, so it is shown to the reviewer rather than refused)."""
    problems, flags = [], []
    stored = {(c["task"], c["seed"]): c for c in data["cells"]}
    same_class = environment(data.get("provenance"))["device type"] == environment(fresh["provenance"])["device type"] \
        and (data.get("provenance") or {}).get("device_name") == fresh["provenance"].get("device_name")
    lo, hi = COST_BAND
    for cell in fresh["cells"]:
        name = f"{cell['task']} seed {cell['seed']}"
        mine, theirs = cell["cost"], stored[(cell["task"], cell["seed"])]["cost"]
        if mine["trainable_params"] != theirs["trainable_params"]:
            problems.append(f"{name} cost.trainable_params: submitted {theirs['trainable_params']}, "
                            f"re-run {mine['trainable_params']} (a deterministic count, compared exactly)")
        if not same_class:
            continue
        for key, floor in zip(("adapt_seconds", "peak_memory_mb"), COST_FLOOR):
            a, b = theirs[key], mine[key]
            if max(a, b) < floor:
                continue
            if b <= 0 or not lo <= a / b <= hi:
                flags.append(f"flagged: {name} cost.{key}: submitted {a:g}, re-run {b:g} on the same hardware "
                             f"class (outside the band {lo:.2f}x to {hi:g}x)")
    said = (f"costs: trainable parameters compared exactly; adapt seconds and peak memory as a ratio to this "
            f"re-run within {lo:.2f}x to {hi:g}x (where either is at least {COST_FLOOR[0]:g} s / "
            f"{COST_FLOOR[1]:g} MB)" if same_class else
            "costs: trainable parameters compared exactly; time and memory not compared (another hardware class)")
    return problems, flags, said


def verify(data: dict, registry, pm, seeds: list[int] | None = None, tolerance: float | None = None,
           data_root: Path | None = None, tell=None) -> list[str]:
    """Re-run ``seeds`` (default: every seed) of a checked result and list every number that differs.

    ``tolerance`` None (the default): exact, image by image, when the re-run's environment is the one the
    result records; else the measured cross-environment difference.  A number (points and percent of a
    set's images) overrides it.  ``tell`` receives one line saying which comparison was made."""
    from clipbench import runner

    tolerance = check_tolerance(tolerance)
    tell = tell or (lambda line: None)
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
    theirs, mine = environment(data.get("provenance")), environment(fresh["provenance"])
    if tolerance is not None:
        tell(f"compared within the verifier's tolerance of {tolerance:g} points / percent of a set's images")
    elif theirs == mine:
        tolerance = 0.0
        tell("compared image by image, exactly: the re-run's environment is the one the result records "
             f"({', '.join(f'{k} {v}' for k, v in mine.items())})")
    else:
        tolerance, where = measured_tolerance(data, fresh)
        differs = ", ".join(f"{k} {theirs[k]!r} vs {mine[k]!r}" for k in mine if theirs[k] != mine[k])
        tell(f"environments differ ({differs}): tolerance measured from the zero-shot reference re-run here, "
             f"{tolerance:.2f}% of a set's images ({where})")
        if tolerance > MAX_MEASURED_TOLERANCE:
            problems.append(f"the zero-shot reference differs in {tolerance:.2f}% of a set's images between the "
                            f"result's environment and this one (more than {MAX_MEASURED_TOLERANCE:g}%): verify "
                            "it where the result was run")
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
    cost_problems, flags, said = compare_costs(data, fresh)
    tell(said)
    for line in flags:
        tell(line)
    return problems + cost_problems
