"""The picture of a set of runs: ID accuracy vs forgetting and vs shift, and each score with its interval
(matplotlib is an optional extra, clipbench's `plot`)."""

from __future__ import annotations

from pathlib import Path

from clipbench.errors import ClipbenchError

MIN_SPAN = {"x": 6.0, "y": 12.0}  # points: the axes never zoom in so far that seed noise looks like a gap


def require_matplotlib():
    """matplotlib's pyplot on the Agg backend, or the one-sentence install hint (said before any work)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from clipbench.extras import install_command

        raise ClipbenchError(f"--plot needs matplotlib, an optional extra: {install_command('plot')} "
                             "(or pip install matplotlib).") from None
    return plt


def _span(lo: float, hi: float, minimum: float) -> tuple[float, float]:
    if hi - lo >= minimum:
        pad = 0.08 * (hi - lo)
        return lo - pad, hi + pad
    mid = (lo + hi) / 2
    return mid - minimum / 2, mid + minimum / 2


def tradeoff_figure(results: list[dict], score_ci: dict | None = None):
    """Three panels of the same runs (one point each, zero-shot CLIP as the black star):

    1. suite-mean ID accuracy (y) against mean probe forgetting (x), std over seeds as error bars;
    2. the same ID accuracy (shared y axis) against mean shift accuracy (x): robustness under shift;
    3. each run's score (harmonic mean above chance) with its 95% bootstrap interval, zero-shot's as a line.

    ``score_ci`` maps a run's label (:func:`clipbench.ui.run_labels`) to its interval; computed if not given.
    """
    from clipbench import scoring
    from clipbench.ui import run_labels

    plt = require_matplotlib()
    labels = run_labels(results)
    if score_ci is None:
        score_ci = {label: scoring.bootstrap({label: (r["cells"], r["reference"])})["score"].get(label)
                    for label, r in zip(labels, results)}
    fig, (ax_f, ax_s, ax_score) = plt.subplots(1, 3, figsize=(15, 4.8), dpi=120,
                                               gridspec_kw={"width_ratios": [1, 1, 0.9]})
    ax_s.sharey(ax_f)
    spans = {"f": [0.0], "s": [], "y": []}
    anchors = {}
    points = []
    for k, (r, label) in enumerate(zip(results, labels)):
        colour = f"C{k % 10}"  # one colour per run, the same in every panel
        o = scoring.summarise(r["cells"], r["reference"])["overall"]
        if o.get("id") is None:
            continue
        tasks = sorted({c["task"] for c in r["cells"]})
        refs = [r["reference"][t] for t in tasks]
        shifted = [scoring.mean(ref["shifts"].values()) for ref in refs if ref["shifts"]]
        zero_score = scoring.mean(scoring.task_score(ref, ref["id"], ref.get("new"), ref["shifts"], ref["probes"])[0]
                                  for ref in refs)
        anchors.setdefault((r["config"]["model_fingerprint"], tuple(tasks)),
                           (scoring.mean(ref["id"] for ref in refs), scoring.mean(shifted) if shifted else None,
                            zero_score, r["config"]["model"]))
        y, y_err = o["id"]["mean"], o["id"].get("std") or 0.0
        fg = o.get("mean_forgetting") or {"mean": 0.0, "std": 0.0}
        ax_f.errorbar([fg["mean"]], [y], xerr=[fg.get("std") or 0.0], yerr=[y_err], fmt="o", ms=5, capsize=3, lw=1,
                      color=colour)
        ax_f.annotate(label, (fg["mean"], y), textcoords="offset points", xytext=(6, 4), fontsize=8)
        spans["f"] += [fg["mean"] - (fg.get("std") or 0), fg["mean"] + (fg.get("std") or 0)]
        spans["y"] += [y - y_err, y + y_err]
        if o.get("mean_shift"):
            sh = o["mean_shift"]
            ax_s.errorbar([sh["mean"]], [y], xerr=[sh.get("std") or 0.0], yerr=[y_err], fmt="o", ms=5, capsize=3,
                          lw=1, color=colour)
            ax_s.annotate(label, (sh["mean"], y), textcoords="offset points", xytext=(6, 4), fontsize=8)
            spans["s"] += [sh["mean"] - (sh.get("std") or 0), sh["mean"] + (sh.get("std") or 0)]
        points.append((label, o["score"]["mean"], score_ci.get(label), colour))
    for (fp, _), (y0, shift0, _, model) in anchors.items():
        ax_f.scatter([0.0], [y0], marker="*", s=160, color="black", zorder=3)
        ax_f.annotate(f"zero-shot ({model})", (0.0, y0), textcoords="offset points", xytext=(6, -12), fontsize=8)
        if shift0 is not None:
            ax_s.scatter([shift0], [y0], marker="*", s=160, color="black", zorder=3)
            ax_s.annotate(f"zero-shot ({model})", (shift0, y0), textcoords="offset points", xytext=(6, -12),
                          fontsize=8)
            spans["s"].append(shift0)
        spans["y"].append(y0)
    ax_f.axvline(0, color="grey", lw=0.8, ls=":")
    if spans["y"]:
        ax_f.set_xlim(*_span(min(spans["f"]), max(spans["f"]), MIN_SPAN["x"]))
        ax_f.set_ylim(*_span(min(spans["y"]), max(spans["y"]), MIN_SPAN["y"]))
    if spans["s"]:
        ax_s.set_xlim(*_span(min(spans["s"]), max(spans["s"]), MIN_SPAN["x"]))
    ax_f.set_xlabel("mean probe forgetting (points, lower is better)")
    ax_f.set_ylabel("ID accuracy (%, mean over tasks)")
    ax_f.set_title("ID accuracy vs forgetting", fontsize=10)
    ax_s.set_xlabel("mean shift accuracy (%, tasks with shifts)")
    ax_s.set_title("ID accuracy vs robustness under shift", fontsize=10)
    ax_s.tick_params(labelleft=False)
    rows = list(range(len(points)))[::-1]  # the first run on top
    for row, (label, score, ci, colour) in zip(rows, points):
        err = [[score - ci[0]], [ci[1] - score]] if ci else None
        ax_score.errorbar([score], [row], xerr=err, fmt="o", ms=5, capsize=3, lw=1, color=colour)
    for (_, _, zero_score, model) in anchors.values():
        ax_score.axvline(zero_score, color="black", lw=1, ls="--", label=f"zero-shot ({model})")
    ax_score.set_yticks(rows, [p[0] for p in points], fontsize=8)
    ax_score.set_ylim(-0.7, len(points) - 0.3)
    ax_score.set_xlabel("score (harmonic mean above chance)")
    ax_score.set_title("Score, 95% bootstrap interval", fontsize=10)
    if anchors:
        ax_score.legend(fontsize=7, loc="lower right")
    suite = results[0]["config"]["suite"] if results else ""
    fig.suptitle(f"{suite}: accuracy, forgetting and robustness (bars in the first two panels: std over seeds)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def tradeoff_plot(results: list[dict], out: Path, score_ci: dict | None = None) -> None:
    """Write :func:`tradeoff_figure` to ``out`` (PNG)."""
    plt = require_matplotlib()
    fig = tradeoff_figure(results, score_ci)
    fig.savefig(out)
    plt.close(fig)
