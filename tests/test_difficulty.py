"""Task difficulty (A-CLIP): both silhouettes and the cosine per task, and their rank correlation with
measured outcomes across the suite's tasks."""

import math

from clipbench import difficulty
from clipbench.cli import main


def test_every_default_task_gets_the_three_measures(embedded, default_suite):
    for name in default_suite.adapt_on:
        row = difficulty.task_difficulty(embedded, default_suite.task(name))
        assert row["task"] == name and row["images"] == len(default_suite.task(name).test.value)
        assert -1 <= row["silhouette_modality"] <= 1 and -1 <= row["silhouette_class"] <= 1
        assert -1 <= row["cosine"] <= 1


def test_correlation_needs_three_tasks_and_follows_spearman():
    rows = [{"task": t, "silhouette_modality": s, "silhouette_class": -s, "cosine": c}
            for t, s, c in (("a", 0.1, 0.5), ("b", 0.2, 0.4), ("c", 0.3, 0.45), ("d", 0.4, 0.3))]
    summary = {"tasks": {t: {"id_gain": {"mean": g}, "mean_forgetting": {"mean": f}}
                         for t, g, f in (("a", 1.0, 4.0), ("b", 2.0, 3.0), ("c", 3.0, 2.0), ("d", 4.0, 1.0))}}
    [gain, forgetting] = difficulty.correlate(rows, [("m", summary)])
    assert gain["tasks"] == 4 and gain["silhouette_modality"] == 1.0 and gain["silhouette_class"] == -1.0
    assert forgetting["silhouette_modality"] == -1.0
    few = {"tasks": {t: summary["tasks"][t] for t in ("a", "b")}}
    assert math.isnan(difficulty.correlate(rows, [("m", few)])[0]["cosine"])


def test_the_command_names_both_silhouettes_and_which_way_is_harder(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["difficulty", "--task", "shape", "digits"]) == 0
    out = capsys.readouterr().out
    assert "silhouette by modality" in out and "silhouette by class" in out and "harder" in out


def test_the_command_says_why_a_correlation_is_missing(capsys, monkeypatch):
    """Zero-shot forgets nothing on every task: no ranking to correlate, which is not "too few tasks"."""
    from pathlib import Path

    monkeypatch.setenv("COLUMNS", "200")
    [zeroshot] = (Path(__file__).parent.parent / "leaderboards" / "results").glob("default__zeroshot__*.json")
    assert main(["difficulty", "--task", "shape", "colour", "digits", "--results", str(zeroshot)]) == 0
    out = capsys.readouterr().out
    assert "n/a (constant)" in out and "< 3 tasks" not in out


def test_correlations_carry_their_p_value_and_the_command_prints_it(capsys, monkeypatch):
    from pathlib import Path

    rows = [{"task": t, "silhouette_modality": s, "silhouette_class": -s, "cosine": c}
            for t, s, c in (("a", 0.1, 0.5), ("b", 0.2, 0.4), ("c", 0.3, 0.45), ("d", 0.4, 0.3), ("e", 0.5, 0.2))]
    summary = {"tasks": {t: {"id_gain": {"mean": g}, "mean_forgetting": {"mean": g}}
                         for t, g in zip("abcde", (1, 2, 3, 5, 4))}}
    [gain, _] = difficulty.correlate(rows, [("m", summary)])
    assert abs(gain["silhouette_modality"] - 0.9) < 1e-12 and abs(gain["silhouette_modality_p"] - 10 / 120) < 1e-12
    monkeypatch.setenv("COLUMNS", "250")
    [saft] = (Path(__file__).parent.parent / "leaderboards" / "results").glob("default__saft__*.json")
    assert main(["difficulty", "--task", "shape", "colour", "digits", "--results", str(saft)]) == 0
    assert "(p 0." in capsys.readouterr().out


def test_a_second_difficulty_run_encodes_no_image(capsys, monkeypatch, embedded, default_suite):
    """The test sets' embeddings come from the embedding cache (the same ones a run scores with)."""
    from clipbench.models import ClipModel

    monkeypatch.setenv("COLUMNS", "200")
    assert main(["difficulty", "--task", "shape"]) == 0
    calls = []
    real = ClipModel.encode_image
    monkeypatch.setattr(ClipModel, "encode_image", lambda self, x: calls.append(len(x)) or real(self, x))
    assert main(["difficulty", "--task", "shape"]) == 0
    assert calls == []
    cached = capsys.readouterr().out
    direct = difficulty.task_difficulty(embedded, default_suite.task("shape"))
    assert f"{direct['silhouette_modality']:.4f}" in cached and f"{direct['cosine']:.4f}" in cached
