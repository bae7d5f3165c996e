"""The accuracy-vs-forgetting picture of a set of runs (matplotlib is an optional extra)."""

from __future__ import annotations

from pathlib import Path

from clipbench.errors import ClipbenchError


def tradeoff_plot(results: list[dict], out: Path) -> None:
    """One point per method: suite-mean ID accuracy (y) against mean probe forgetting (x)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ClipbenchError("--plot needs matplotlib: pip install 'clipbench[plot]'.") from None
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    from clipbench import scoring

    for r in results:
        o = scoring.summarise(r["cells"], r["reference"])["overall"]
        if o.get("id") is None:
            continue
        x = (o.get("mean_forgetting") or {}).get("mean", 0.0)
        y = o["id"]["mean"]
        ax.scatter([x], [y], s=40)
        ax.annotate(r["config"]["method"], (x, y), textcoords="offset points", xytext=(5, 4), fontsize=9)
    ax.axvline(0, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("mean probe forgetting (points, lower is better)")
    ax.set_ylabel("ID accuracy (%)")
    suite = results[0]["config"]["suite"] if results else ""
    ax.set_title(f"Accuracy vs forgetting on {suite}")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
