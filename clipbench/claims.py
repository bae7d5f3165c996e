"""The papers' claims, checked against a board: each claim is data (a statement, its source, and comparisons
of board quantities); its verdict is derived by ``clipbench leaderboard build`` from the paired bootstrap
the board already runs, so the table changes when the numbers do and is never written by hand.

A comparison is "quantity of row ``a`` minus row ``b`` (or minus a stated constant) is on the claimed side
of zero".  Its verdict comes from the paired 95% interval of that difference
(:func:`clipbench.scoring.difference_interval`, the same replicates as the score intervals): reproduced
when the interval lies wholly on the claimed side, contradicted when wholly on the other, not separable
when it covers zero, not measured when the board lacks a row or a quantity the comparison needs.

Pure: it reads the bootstrap of result files only (no model, no cache), so the build stays pure.  A claim
that needs the model's embeddings says so instead of being measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from clipbench import formatting, scoring

REPRODUCED, CONTRADICTED, NOT_SEPARABLE, NOT_MEASURED = "reproduced", "contradicted", "not separable", \
    "not measured"

QUANTITY = {"score": "score", "id": "ID acc", "new": "new-class acc", "mean_shift": "mean shift acc",
            "mean_forgetting": "probe forgetting", "base_new_hm": "base-to-new harmonic mean"}
MISSING = {"new": "no base-to-new task on this board", "base_new_hm": "no base-to-new task on this board",
           "mean_shift": "no shift on this board", "mean_forgetting": "no scorable probe on this board"}

A_CLIP_COMPARED = ("full-ft", "clip-adapter", "lora", "bitfit", "aclip")  # the five methods of Niss et al.
UNTOUCHED_TOLERANCE = 1.0  # points of probe forgetting read as "untouched" (the blend weight is never exactly 0)


@dataclass(frozen=True)
class Test:
    """``quantity`` of method ``a`` minus method ``b`` (each of ``among`` but ``a``; or the constant ``than``)
    lies on ``side`` (+1 above, -1 below) of zero."""

    quantity: str
    a: str
    side: int
    b: str | None = None
    among: tuple[str, ...] = ()
    than: float = 0.0
    untouched_may_win: bool = False  # the claim is that ``a`` leaves probes alone: zero is then the claim


@dataclass(frozen=True)
class Claim:
    statement: str
    source: str
    testable: str  # how a vague claim was made testable, said under the table
    tests: tuple[Test, ...] = ()
    unmeasured: str = ""  # why the board cannot measure it at all


CLAIMS = (
    Claim("SAFT beats full fine-tuning out of distribution",
          "Nguyen et al. 2024, SAFT (arXiv 2407.03036)",
          "the paper's claim is about OOD accuracy: mean shift accuracy, SAFT above full fine-tuning.",
          (Test("mean_shift", "saft", +1, "full-ft"),)),
    Claim("A-CLIP balances generalisation and forgetting",
          "Niss et al. 2024, A-CLIP (arXiv 2402.09613)",
          "the paper finds A-CLIP gives the best balance of its five methods (full fine-tuning, CLIP-Adapter, "
          "LoRA, BitFit, A-CLIP), full fine-tuning gaining OOD at a forgetting cost. Testable as two parts: "
          "its score (the harmonic mean of ID, shift and retention above chance, which any weak axis sinks: "
          "the board's measure of balance) is above each other method of those five on the board, and its "
          "probe forgetting is below full fine-tuning's.",
          (Test("score", "aclip", +1, among=A_CLIP_COMPARED), Test("mean_forgetting", "aclip", -1, "full-ft"))),
    Claim("LoRA forgets least",
          "Niss et al. 2024, A-CLIP (arXiv 2402.09613); Biderman et al. 2024, LoRA Learns Less and Forgets Less",
          "probe forgetting of LoRA below each other method of the A-CLIP paper's five on the board whose "
          "forgetting is measured (a row with encoders untouched, zero by construction, is left out).",
          (Test("mean_forgetting", "lora", -1, among=A_CLIP_COMPARED),)),
    Claim("BitFit forgets badly",
          "Niss et al. 2024, A-CLIP (arXiv 2402.09613)",
          "the paper: BitFit suffers forgetting despite strong ID results. \"Badly\" is read against the "
          "method that changes every weight: BitFit's probe forgetting above full fine-tuning's.",
          (Test("mean_forgetting", "bitfit", +1, "full-ft"),)),
    Claim("The kNN adapter leaves far-away inputs untouched",
          "Ibing et al. 2022, Localized Latent Updates (arXiv 2212.06556)",
          f"the probes are other datasets, far from the support set: the kNN adapter's probe forgetting "
          f"below {UNTOUCHED_TOLERANCE:g} point (its blend weight decays with distance but is never exactly "
          f"zero, so \"untouched\" needs a tolerance; {UNTOUCHED_TOLERANCE:g} point is clipbench's, stated "
          f"here).",
          (Test("mean_forgetting", "knn-adapter", -1, than=UNTOUCHED_TOLERANCE, untouched_may_win=True),)),
    Claim("The kNN adapter does well on unseen classes",
          "Ibing et al. 2022, Localized Latent Updates (arXiv 2212.06556)",
          "the paper: results on unseen classes comparable with or better than the state of the art (CoCoOp "
          "then). Testable as new-class accuracy above CoCoOp's; \"not separable\" is the paper's "
          "\"comparable\".",
          (Test("new", "knn-adapter", +1, "cocoop"),)),
    Claim("OrthCR keeps zero-shot skill",
          "Li et al. 2024, OrthCR (arXiv 2407.08374)",
          "its cross-regularization toward the frozen model exists to keep zero-shot skill that fine-tuning "
          "loses: probe forgetting below full fine-tuning's.",
          (Test("mean_forgetting", "orthcr", -1, "full-ft"),)),
    Claim("OrthCR generalises base-to-new",
          "Li et al. 2024, OrthCR (arXiv 2407.08374)",
          "the paper reports base-to-new generalisation against the prompt learners: the base-to-new harmonic "
          "mean of base (ID) and new-class accuracy above CoCoOp's.",
          (Test("base_new_hm", "orthcr", +1, "cocoop"),)),
    Claim("CoCoOp beats CoOp on new classes",
          "Zhou et al. 2022, CoCoOp (CVPR 2022)",
          "new-class accuracy, CoCoOp above CoOp.",
          (Test("new", "cocoop", +1, "coop"),)),
    Claim("WiSE-FT beats full fine-tuning out of distribution",
          "Wortsman et al. 2022, WiSE-FT (CVPR 2022)",
          "mean shift accuracy, WiSE-FT above full fine-tuning.",
          (Test("mean_shift", "wise-ft", +1, "full-ft"),)),
    Claim("LP-FT beats full fine-tuning out of distribution",
          "Kumar et al. 2022, LP-FT (ICLR 2022)",
          "mean shift accuracy, LP-FT above full fine-tuning.",
          (Test("mean_shift", "lp-ft", +1, "full-ft"),)),
    Claim("Silhouette predicts outcomes better than cosine",
          "Niss et al. 2024, A-CLIP (arXiv 2402.09613)",
          "needs the pretrained model's embeddings of every task, which result files do not hold; the build "
          "reads result files only, so it stays pure and does not measure this. "
          "`clipbench difficulty --results leaderboards/results` prints each measure's rank correlation with "
          "every method's ID gain and forgetting.",
          unmeasured="the build reads result files only; see `clipbench difficulty`"),
)


@dataclass
class Candidate:
    """A row a claim may name: its method, its name in the bootstrap, and whether its probes are untouched."""

    method: str
    name: str
    untouched: bool


@dataclass
class Outcome:
    """One comparison of a claim as the board shows it."""

    text: str  # the comparison in words
    estimate: str  # "+1.4 [+0.2, +2.5]", or "-" when not measured
    verdict: str
    why: str = ""  # the reason a comparison is not measured


@dataclass
class Verdict:
    """One claim on one group of rows: its comparisons (parts (a), (b), ... where several) and the verdict
    they give together (``kind``: one of the four words; ``why``: what is missing where not measured)."""

    number: int
    claim: Claim
    outcomes: list[Outcome] = field(default_factory=list)
    kind: str = NOT_MEASURED
    why: str = ""

    def _parts(self, texts: list[str]) -> str:
        if len(texts) == 1:
            return texts[0]
        return "; ".join(f"({chr(ord('a') + i)}) {t}" for i, t in enumerate(texts)) or "-"

    @property
    def comparison(self) -> str:
        return self._parts([o.text for o in self.outcomes])

    @property
    def estimate(self) -> str:
        return self._parts([o.estimate for o in self.outcomes])

    @property
    def verdict(self) -> str:
        """The verdict as the board prints it: the word, what is missing, and each part's where several."""
        text = f"{self.kind} ({self.why})" if self.why else self.kind
        if len(self.outcomes) > 1:
            text += " (" + ", ".join(f"({chr(ord('a') + i)}) {o.verdict}" for i, o in enumerate(self.outcomes)) + ")"
        return text


def evaluate(rows: list[Candidate], boot: dict, claims: tuple[Claim, ...] = CLAIMS) -> list[Verdict]:
    """Every claim against one group of rows bootstrapped together (``boot`` from ``bootstrap(draws=True)``);
    ``rows`` in ranking order, so a method's highest-ranked row stands for it."""
    by_method: dict[str, Candidate] = {}
    for row in rows:
        by_method.setdefault(row.method, row)
    out = []
    for number, claim in enumerate(claims, 1):
        v = Verdict(number, claim)
        if claim.unmeasured:
            v.why = claim.unmeasured
        else:
            v.outcomes = [_test(t, by_method, boot) for t in claim.tests]
            v.kind, v.why = combine(v.outcomes)
        out.append(v)
    return out


def combine(outcomes: list[Outcome]) -> tuple[str, str]:
    """(verdict, why) of a claim whose parts must all hold: not measured if the board cannot hold a part's
    quantity at all (the claim does not apply to such a board: on a base-to-new board without probes,
    A-CLIP's balance is not half-tested), then contradicted if any part is, then not measured if any part
    is (and why), reproduced if every part is, else not separable."""
    verdicts = [o.verdict for o in outcomes]
    inapplicable = [o.why for o in outcomes if o.verdict == NOT_MEASURED and o.why in MISSING.values()]
    if inapplicable:
        return NOT_MEASURED, "; ".join(dict.fromkeys(inapplicable))
    if CONTRADICTED in verdicts:
        return CONTRADICTED, ""
    missing = [o.why for o in outcomes if o.verdict == NOT_MEASURED]
    if missing:
        return NOT_MEASURED, "; ".join(dict.fromkeys(missing))
    return (REPRODUCED if all(v == REPRODUCED for v in verdicts) else NOT_SEPARABLE), ""


def side_verdict(lo: float, hi: float, side: int) -> str:
    """Where a 95% interval of (a - b) lies against the claimed side (+1: above zero, -1: below)."""
    lo, hi = (lo, hi) if side > 0 else (-hi, -lo)
    return REPRODUCED if lo > 0 else CONTRADICTED if hi < 0 else NOT_SEPARABLE


def _test(t: Test, by_method: dict[str, Candidate], boot: dict) -> Outcome:
    name = QUANTITY[t.quantity]
    sign = ">" if t.side > 0 else "<"
    forgetting = t.quantity == "mean_forgetting"
    if t.b is None and not t.among:
        text = f"{name}: {t.a} {sign} {formatting.fixed(t.than, 1)}"
    elif t.among:
        text = f"{name}: {t.a} − each of " + ", ".join(m for m in t.among if m != t.a) + f" {sign} 0"
    else:
        text = f"{name}: {t.a} − {t.b} {sign} 0"
    a = by_method.get(t.a)
    if a is None:
        return Outcome(text, "-", NOT_MEASURED, f"no {t.a} row on this board")
    if forgetting and a.untouched and not t.untouched_may_win:
        return Outcome(text, "-", NOT_MEASURED, f"{t.a}'s forgetting is zero by construction: encoders untouched")
    if t.among:
        others = [m for m in t.among if m != t.a and m in by_method]
        if forgetting:  # a row untouched by construction never counts as winning a forgetting comparison
            others = [m for m in others if not by_method[m].untouched]
        if not others:
            return Outcome(text, "-", NOT_MEASURED, f"none of {', '.join(m for m in t.among if m != t.a)} "
                                                    "on this board" + (" with measured forgetting" if forgetting
                                                                      else ""))
        pairs = [_pair(t, a, by_method[m], boot) for m in others]
        if any(p[0] == NOT_MEASURED for p in pairs):
            return Outcome(text, "-", NOT_MEASURED, next(p[1] for p in pairs if p[0] == NOT_MEASURED))
        verdicts = [p[0] for p in pairs]
        shown = min(pairs, key=lambda p: t.side * p[2])  # the least favourable: the nearest rival
        text += (f" (shown: {t.a} − {shown[3]}, the least favourable of {len(pairs)}; "
                 f"{verdicts.count(REPRODUCED)} reproduced, {verdicts.count(CONTRADICTED)} contradicted, "
                 f"{verdicts.count(NOT_SEPARABLE)} not separable)")
        absent = [m for m in t.among if m != t.a and m not in others]
        if absent:
            text += " (not compared: " + ", ".join(absent) + ")"
        verdict = (CONTRADICTED if CONTRADICTED in verdicts else
                   REPRODUCED if all(v == REPRODUCED for v in verdicts) else NOT_SEPARABLE)
        return Outcome(text, shown[1], verdict)
    b = by_method.get(t.b) if t.b is not None else None
    if t.b is not None and b is None:
        return Outcome(text, "-", NOT_MEASURED, f"no {t.b} row on this board")
    if forgetting and b is not None and b.untouched:  # a zero by construction is no measurement to beat
        return Outcome(text, "-", NOT_MEASURED, f"{t.b}'s forgetting is zero by construction: encoders untouched")
    verdict, estimate, _, _ = _pair(t, a, b, boot)
    if verdict == NOT_MEASURED:
        return Outcome(text, "-", NOT_MEASURED, estimate)
    return Outcome(text, estimate, verdict)


def _pair(t: Test, a: Candidate, b: Candidate | None, boot: dict) -> tuple[str, str, float, str]:
    """(verdict, "estimate [lo, hi]", estimate, b's method) of ``quantity`` a - b (or a - the constant);
    (not measured, why, 0, "") where the bootstrap lacks it."""
    observed = boot.get("observed", {})
    for row in (a, b):
        if row is None:
            continue
        if row.name not in observed:
            return NOT_MEASURED, f"no per-image correctness in {row.method}'s result", 0.0, ""
        if _value(observed[row.name], t.quantity) is None:
            return NOT_MEASURED, MISSING.get(t.quantity, f"no {QUANTITY[t.quantity]}"), 0.0, ""
    interval = scoring.difference_interval(boot, t.quantity, a.name, b.name if b else None)
    if interval is None:
        return NOT_MEASURED, MISSING.get(t.quantity, f"no {QUANTITY[t.quantity]}"), 0.0, ""
    shift = _value(observed[b.name], t.quantity) if b else t.than
    estimate = _value(observed[a.name], t.quantity) - shift
    lo, hi = interval[0] - (0.0 if b else t.than), interval[1] - (0.0 if b else t.than)
    text = (f"{formatting.signed(estimate, 1)} [{formatting.signed(lo, 1)}, {formatting.signed(hi, 1)}]" if b else
            f"{formatting.unsigned_zero(estimate + t.than, 1)} [{formatting.unsigned_zero(interval[0], 1)}, "
            f"{formatting.unsigned_zero(interval[1], 1)}]")
    return side_verdict(lo, hi, t.side), text, estimate, b.method if b else ""


def _value(overall: dict, quantity: str) -> float | None:
    """A suite number of :func:`clipbench.scoring.overall` ({"mean", "std"} or a plain number)."""
    v = overall.get(quantity)
    if isinstance(v, dict):
        v = v.get("mean")
    return v if scoring.is_finite(v) else None
