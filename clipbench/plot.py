"""The accuracy-vs-forgetting picture of a set of runs (matplotlib is an optional extra, clipbench[plot])."""

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


def tradeoff_plot(results: list[dict], out: Path) -> None:
    """One point per method: suite-mean ID accuracy (y) against mean probe forgetting (x), each with its
    std over seeds as error bars, and zero-shot CLIP (no forgetting by definition) as the anchor."""
    from clipbench import scoring

    plt = require_matplotlib()
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    xs, ys = [0.0], []
    anchors = {}
    for r in results:
        o = scoring.summarise(r["cells"], r["reference"])["overall"]
        if o.get("id") is None:
            continue
        tasks = sorted({c["task"] for c in r["cells"]})
        key = (r["config"]["model_fingerprint"], tuple(tasks))
        anchors.setdefault(key, (scoring.mean(r["reference"][t]["id"] for t in tasks), r["config"]["model"]))
        fg = o.get("mean_forgetting") or {"mean": 0.0, "std": 0.0}
        x, y = fg["mean"], o["id"]["mean"]
        ax.errorbar([x], [y], xerr=[fg.get("std") or 0.0], yerr=[o["id"].get("std") or 0.0], fmt="o", ms=5,
                    capsize=3, lw=1)
        ax.annotate(r["config"]["method"], (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
        xs += [x - (fg.get("std") or 0), x + (fg.get("std") or 0)]
        ys += [y - (o["id"].get("std") or 0), y + (o["id"].get("std") or 0)]
    for (fp, _), (y0, model) in anchors.items():
        ax.scatter([0.0], [y0], marker="*", s=160, color="black", zorder=3)
        ax.annotate(f"zero-shot ({model})", (0.0, y0), textcoords="offset points", xytext=(6, -12), fontsize=8)
        ys.append(y0)
    ax.axvline(0, color="grey", lw=0.8, ls=":")
    if ys:
        ax.set_xlim(*_span(min(xs), max(xs), MIN_SPAN["x"]))
        ax.set_ylim(*_span(min(ys), max(ys), MIN_SPAN["y"]))
    ax.set_xlabel("mean probe forgetting (points; lower is better; bars: std over seeds)")
    ax.set_ylabel("ID accuracy (%, mean over tasks)")
    suite = results[0]["config"]["suite"] if results else ""
    ax.set_title(f"Accuracy vs forgetting on {suite}")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
