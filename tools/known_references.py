"""Write clipbench/assets/known-references.json: the zero-shot references of the shipped weights.

`clipbench leaderboard check` compares a submission's zero-shot reference with
these for the shipped model, so a lowered reference (an inflated gain) is caught
without re-running anything.  Re-run this whenever the embedded weights, the
default or default-b2n suite or the protocol's scoring of the pretrained model changes; a test
recomputes the file and fails if it is stale.

    python tools/known_references.py
"""

from __future__ import annotations

import json
from pathlib import Path

from clipbench import protocol
from clipbench.models import EMBEDDED, EMBEDDED_TAG, load_embedded
from clipbench.suites.default import build_default_b2n_suite, build_default_suite

OUT = Path(__file__).resolve().parent.parent / "clipbench" / "assets" / "known-references.json"


def compute() -> dict:
    model = load_embedded()
    model.module.eval()
    evaluator = protocol.Evaluator()
    refs = {suite.name: {t: protocol.zeroshot_reference(model, suite, suite.task(t), evaluator) for t in suite.adapt_on}
            for suite in (build_default_suite(), build_default_b2n_suite())}
    return {"how": "tools/known_references.py: protocol.zeroshot_reference of the shipped clipbench-tiny weights "
                   "on the default and default-b2n suites (fp32); models: the weights each known fingerprint is "
                   "(name, pretrained tag, parameter count)",
            "references": {model.fingerprint(): refs},
            "models": known_models(model)}


def known_models(model) -> dict:
    """The registry of known weights: fingerprint -> what a result must call them, and their size."""
    return {model.fingerprint(): {"architecture": EMBEDDED, "model": EMBEDDED, "pretrained": EMBEDDED_TAG,
                                  "parameters": model.num_parameters()}}


if __name__ == "__main__":
    OUT.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")
