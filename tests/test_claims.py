"""The papers' claims on the board: each verdict follows the paired 95% interval of its comparison, on small
synthetic result sets built so that a claim is reproduced, contradicted, not separable or not measured; and
the committed board prints its claims current."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np
import pytest

from clipbench import claims, formatting, leaderboard, scoring, site

ROOT = Path(__file__).resolve().parent.parent / "leaderboards"
N = 400  # images per scored set: enough that a 15-point gap is told apart, a 0-point one never
SEEDS = (1, 2, 3)
REFERENCE = {"id": 50.0, "shift": 40.0, "probe": 60.0, "new": 50.0}


def _flags(acc: float, key: str) -> list[bool]:
    """``acc`` percent of N images right, which ones drawn from ``key`` (two keys: two independent subsets)."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    flags = np.zeros(N, dtype=bool)
    flags[rng.choice(N, round(acc * N / 100), replace=False)] = True
    return [bool(f) for f in flags]


def _set(flags: list[bool]) -> tuple[float, dict]:
    packed = scoring.pack_correct(flags)
    return scoring.accuracy_from_correct(packed), packed


def _reference(new: bool) -> dict:
    sets = {k: _set(_flags(REFERENCE[k], f"reference {k}")) for k in ("id", "shift", "probe", "new")}
    ref = {"id": sets["id"][0], "shifts": {"s": sets["shift"][0]}, "probes": {"p": sets["probe"][0]},
           "chance": {"id": 10.0, "shifts": {"s": 10.0}, "probes": {"p": 10.0}},
           "correct": {"id": sets["id"][1], "shifts": {"s": sets["shift"][1]}, "probes": {"p": sets["probe"][1]}}}
    if new:
        ref["new"], ref["correct"]["new"] = sets["new"]
        ref["chance"]["new"] = 10.0
    return ref


def result(method: str, accs: dict, new: bool = False, model: str = "tiny") -> dict:
    """A result file of one task "t" on seeds 1-3: ``accs`` gives the percent right on id, shift, new and
    probe (each seed other images), or ``probe_flips``: the reference's probe images with that many of its
    right ones wrong, the same on every seed (0: encoders untouched, scored exactly as zero-shot)."""
    ref = _reference(new)
    cells = []
    for seed in SEEDS:
        def draw(k: str) -> tuple[float, dict]:
            return _set(_flags(accs[k], f"{method} {k} {seed}"))

        if "probe_flips" in accs:
            flags = _flags(REFERENCE["probe"], "reference probe")
            for i in [i for i, f in enumerate(flags) if f][:accs["probe_flips"]]:
                flags[i] = False
            probe = _set(flags)
        else:
            probe = draw("probe")
        (id_acc, id_bits), (shift, shift_bits) = draw("id"), draw("shift")
        cell = {"task": "t", "seed": seed, "method": method, "shots": 2, "id": id_acc, "shifts": {"s": shift},
                "probes": {"p": probe[0]}, "cost": {"trainable_pct": 1.0, "adapt_seconds": 1.0,
                                                    "peak_memory_mb": 1.0},
                "correct": {"id": id_bits, "shifts": {"s": shift_bits}, "probes": {"p": probe[1]}}}
        if new:
            cell["new"], cell["correct"]["new"] = draw("new")
        cells.append(cell)
    config = {"suite": "fixture", "method": method, "model": model, "pretrained": "synthetic", "architecture": "x",
              "model_fingerprint": f"{zlib.crc32(model.encode()):016x}", "precision": "fp32", "shots": 2,
              "tasks": ["t"], "seeds": list(SEEDS), "method_config": {}}
    return {"config": config, "cells": cells, "reference": {"t": ref}, "provenance": {}}


def board(spec: dict[str, dict], new: bool = False, model: str = "tiny") -> leaderboard.Board:
    entries = [(Path(f"{model}-{m}.json"), result(m, accs, new, model)) for m, accs in spec.items()]
    return leaderboard.board("fixture", entries, known_models={})


def verdicts(b: leaderboard.Board) -> dict[str, claims.Verdict]:
    [table] = b.claims
    return {v.claim.statement: v for v in table.verdicts}


def interval(estimate: str) -> tuple[float, float]:
    lo, hi = re.search(r"\[([-+0-9.]+), ([-+0-9.]+)\]", estimate).groups()
    return float(lo), float(hi)


FT = {"id": 80, "shift": 40, "probe": 40}  # full fine-tuning: forgets 20 points of the reference's 60
SPEC = {
    "full-ft": FT,
    "saft": {**FT, "shift": 55},  # OOD well above full-ft: reproduced
    "wise-ft": {**FT, "shift": 25},  # well below: contradicted
    "lp-ft": FT,  # the same accuracies on other images: not separable
    "bitfit": {**FT, "probe": 20},
    "aclip": {**FT, "shift": 50, "probe": 55},
    "clip-adapter": FT,
    "lora": {"id": 80, "shift": 40, "probe_flips": 0},  # encoders untouched
    "knn-adapter": {"id": 70, "shift": 40, "probe_flips": 1},  # forgets 0.25 points
    "orthcr": {**FT, "probe": 50},
    "cocoop": {"id": 70, "shift": 35, "probe": 45, "new": 60},
    "coop": {"id": 75, "shift": 35, "probe": 40, "new": 35},
}


@pytest.fixture(scope="module")
def main_board():
    return board(SPEC)


def test_each_verdict_is_where_the_paired_interval_lies(main_board):
    v = verdicts(main_board)
    rows = {r.method: r.summary["overall"] for r in main_board.rows}
    cases = {"SAFT beats full fine-tuning out of distribution": ("saft", claims.REPRODUCED),
             "WiSE-FT beats full fine-tuning out of distribution": ("wise-ft", claims.CONTRADICTED),
             "LP-FT beats full fine-tuning out of distribution": ("lp-ft", claims.NOT_SEPARABLE)}
    for statement, (method, kind) in cases.items():
        assert v[statement].kind == kind, statement
        lo, hi = interval(v[statement].estimate)
        assert {claims.REPRODUCED: lo > 0, claims.CONTRADICTED: hi < 0, claims.NOT_SEPARABLE: lo <= 0 <= hi}[kind]
        diff = rows[method]["mean_shift"]["mean"] - rows["full-ft"]["mean_shift"]["mean"]  # the board's numbers
        assert v[statement].estimate.startswith(f"{formatting.signed(diff, 1)} [")
    assert v["BitFit forgets badly"].kind == claims.REPRODUCED
    assert v["OrthCR keeps zero-shot skill"].kind == claims.REPRODUCED
    assert v["The kNN adapter leaves far-away inputs untouched"].kind == claims.REPRODUCED


def test_what_the_board_lacks_is_not_measured_and_says_why(main_board):
    v = verdicts(main_board)
    for statement in ("The kNN adapter does well on unseen classes", "OrthCR generalises base-to-new",
                      "CoCoOp beats CoOp on new classes"):
        assert v[statement].verdict == "not measured (no base-to-new task on this board)"
        assert v[statement].estimate == "-"
    assert v["Silhouette predicts outcomes better than cosine"].kind == claims.NOT_MEASURED
    assert "`clipbench difficulty`" in v["Silhouette predicts outcomes better than cosine"].verdict
    fewer = verdicts(board({m: a for m, a in SPEC.items() if m not in ("bitfit", "saft")}))
    assert fewer["BitFit forgets badly"].verdict == "not measured (no bitfit row on this board)"
    assert fewer["SAFT beats full fine-tuning out of distribution"].verdict == "not measured (no saft row on this board)"


def test_base_to_new_claims_are_measured_once_results_carry_new_classes():
    spec = {m: {**a, "new": a.get("new", 50)} for m, a in SPEC.items()}
    spec["knn-adapter"]["new"] = 35  # far below CoCoOp's 60: contradicted
    spec["orthcr"].update(id=90, new=70)  # base-to-new harmonic mean well above CoCoOp's
    v = verdicts(board(spec, new=True))
    assert v["CoCoOp beats CoOp on new classes"].kind == claims.REPRODUCED
    assert v["The kNN adapter does well on unseen classes"].kind == claims.CONTRADICTED
    assert v["OrthCR generalises base-to-new"].kind == claims.REPRODUCED


def test_a_row_untouched_by_construction_never_wins_a_forgetting_claim(main_board):
    """LoRA scored exactly as zero-shot on every probe image: its zero forgetting is the design, not a result."""
    v = verdicts(main_board)
    assert v["LoRA forgets least"].verdict == ("not measured (lora's forgetting is zero by construction: encoders "
                                               "untouched)")
    spec = {**SPEC, "lora": {**FT, "probe": 58}, "aclip": {**FT, "probe": 45},  # lora forgets 2, aclip 15
            "clip-adapter": {"id": 80, "shift": 40, "probe_flips": 0}}  # untouched: would forget least
    lora = verdicts(board(spec))["LoRA forgets least"]
    assert lora.kind == claims.REPRODUCED
    assert "least favourable of 3" in lora.comparison and "(not compared: clip-adapter)" in lora.comparison
    assert "lora − aclip" in lora.comparison  # the nearest rival is the one shown
    spec["lora"] = {**FT, "probe": 30}  # forgets 30: more than full-ft's 20
    assert verdicts(board(spec))["LoRA forgets least"].kind == claims.CONTRADICTED


def test_untouched_within_the_stated_tolerance():
    """The kNN adapter's "untouched" is forgetting below 1 point: 0.25 is, 5 is not, 1.0 cannot be told."""
    for flips, kind in ((20, claims.CONTRADICTED), (4, claims.NOT_SEPARABLE)):
        v = verdicts(board({**SPEC, "knn-adapter": {"id": 70, "shift": 40, "probe_flips": flips}}))
        claim = v["The kNN adapter leaves far-away inputs untouched"]
        assert claim.kind == kind, flips
        assert claim.estimate.startswith(formatting.fixed(100 * flips / N, 1) + " [")


def test_a_claim_of_two_parts_needs_both(main_board):
    aclip = verdicts(main_board)["A-CLIP balances generalisation and forgetting"]
    assert aclip.kind == claims.REPRODUCED and aclip.comparison.startswith("(a) score: aclip − each of")
    worse = verdicts(board({**SPEC, "aclip": {"id": 95, "shift": 85, "probe": 30},  # a top score, forgets 30
                            "lora": {"id": 80, "shift": 20, "probe_flips": 0}}))
    aclip = worse["A-CLIP balances generalisation and forgetting"]
    assert aclip.kind == claims.CONTRADICTED
    assert aclip.verdict.endswith("((a) reproduced, (b) contradicted)")


def test_a_claim_whose_quantity_the_board_cannot_hold_does_not_apply_to_it():
    """A-CLIP's balance on a base-to-new board (no probes): its score part alone must not decide the claim,
    while a part missing only because a row is absent leaves a contradicted part standing."""
    lost = claims.Outcome("score", "-1.0 [-2.0, -0.5]", claims.CONTRADICTED)
    no_probes = claims.Outcome("forgetting", "-", claims.NOT_MEASURED, claims.MISSING["mean_forgetting"])
    no_row = claims.Outcome("forgetting", "-", claims.NOT_MEASURED, "no full-ft row on this board")
    assert claims.combine([lost, no_probes]) == (claims.NOT_MEASURED, "no scorable probe on this board")
    assert claims.combine([lost, no_row]) == (claims.CONTRADICTED, "")


def test_markdown_and_site_print_the_claims_escaped(main_board):
    """Two models make two claims tables titled by model: a hostile model name is inert in both renderings."""
    hostile = "<script>alert(1)</script>|**x**"
    two = leaderboard.board("fixture", [(Path(f"{m}-{i}.json"), result(m, SPEC[m], model=m_name))
                                        for i, m_name in enumerate(("tiny", hostile))
                                        for m in ("saft", "full-ft")], known_models={})
    assert [t.title is not None for t in two.claims] == [True, True]
    page = leaderboard.render_board(two)
    assert "<script>" not in page and r"\<script\>alert(1)\</script\>\|\*\*x\*\*" in page
    assert page.count("## Claims of the papers (") == 2
    index = site.render({"fixture": two})["index.html"]
    assert "<script>alert" not in index and "&lt;script&gt;alert(1)&lt;/script&gt;" in index
    md = leaderboard.render_board(main_board)
    rows = [line for line in md.split("## Claims of the papers")[1].splitlines() if re.match(r"\| \d", line)]
    assert len(rows) == len(claims.CLAIMS)
    html = site.render({"fixture": main_board})["index.html"]
    for v in verdicts(main_board).values():
        assert f"<td>{v.estimate}</td>" in html or v.estimate == "-"


def test_the_committed_board_prints_its_claims_current():
    """The claims section of each committed board (default.md, default-b2n.md) is what a fresh build derives from
    the results, and on the base-to-new board the claims about new classes are measured."""
    from clipbench import submission
    from clipbench.plugins import collect, get_plugin_manager

    reg = collect(get_plugin_manager(load_entrypoints=False))
    entries = leaderboard.load_checked(ROOT / "results", dict(reg.methods), reg.suites,
                                       submission.shipped_references(), known_models=submission.known_models())
    boards = leaderboard.boards(entries)
    assert set(boards) == {"default", "default-b2n"}

    def section(text: str) -> str:
        return text.split("## Claims of the papers", 1)[1].split("\n## ", 1)[0]

    for suite, board in boards.items():
        assert section((ROOT / f"{suite}.md").read_text()) == section(leaderboard.render_board(board)), suite
    new_classes = verdicts(boards["default-b2n"])
    for claim in ("CoCoOp beats CoOp on new classes", "OrthCR generalises base-to-new",
                  "The kNN adapter does well on unseen classes"):
        assert new_classes[claim].kind != claims.NOT_MEASURED, claim
    b = boards["default"]
    v = verdicts(b)
    shift = {r.method: r.summary["overall"]["mean_shift"]["mean"] for r in b.rows}
    assert v["SAFT beats full fine-tuning out of distribution"].estimate.startswith(
        formatting.signed(shift["saft"] - shift["full-ft"], 1) + " [")
    assert {v.kind for v in v.values()} <= {claims.REPRODUCED, claims.CONTRADICTED, claims.NOT_SEPARABLE,
                                            claims.NOT_MEASURED}


def test_the_claims_use_the_score_bootstrap_itself():
    """Keeping the draws changes no score interval, and the score difference through the kept draws is the
    board's own paired interval: one statistic, extended to the other numbers, not a second one."""
    runs = {m: (d["cells"], d["reference"]) for m in ("saft", "full-ft") for d in [result(m, SPEC[m])]}
    plain, kept = scoring.bootstrap(runs, replicates=200), scoring.bootstrap(runs, replicates=200, draws=True)
    assert kept["score"] == plain["score"] and kept["difference"] == plain["difference"]
    assert scoring.difference_interval(kept, "score", "full-ft", "saft") == plain["difference"][("full-ft", "saft")][1:]
    for q in ("id", "mean_shift", "mean_forgetting"):
        lo, hi = scoring.difference_interval(kept, q, "saft")
        assert lo <= kept["observed"]["saft"][q]["mean"] <= hi, q
    assert scoring.difference_interval(kept, "new", "saft") is None  # no base-to-new task: no draws of it
