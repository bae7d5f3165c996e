"""Built-in plugin: zero-shot CLIP, the reference every gain and every forgetting is measured against.

Deviation card: `ZeroShot.deviations` below; `clipbench show method zeroshot`.
"""

from dataclasses import dataclass

from clipbench.cards import Deviation
from clipbench.config import MethodConfig
from clipbench.hookspecs import hookimpl
from clipbench.method import Adapted, Method


@dataclass(frozen=True)
class ZeroShotConfig(MethodConfig):
    """No options: prompts are the task's templates, averaged per class (Radford et al. 2021, sec. 3.1.4)."""


class ZeroShot(Method):
    name = "zeroshot"
    citation = "Radford et al., Learning Transferable Visual Models From Natural Language Supervision, ICML 2021"
    summary = "no training: prompt-ensemble zero-shot classifier"
    config_class = ZeroShotConfig
    reference = ("mlfoundations/open_clip: src/open_clip/zero_shot_classifier.py (build_zero_shot_classifier), "
                 "src/open_clip_train/zero_shot.py (run)")
    deviations = (
        Deviation("logit scale",
                  "100, hard-coded (logits = 100. * image_features @ classifier)",
                  "the model's own logit_scale",
                  False, "accuracy takes the argmax, which no positive scale changes"),
        Deviation("precision",
                  "under autocast with --precision amp (fp16)",
                  "fp32 (bf16 autocast only with --precision bf16)",
                  True, "reduced precision can flip near-tied predictions; fp32 is clipbench's reference precision"),
        Deviation("prompts",
                  "the dataset's template list (OpenAI's 80 for ImageNet)",
                  "the task's templates, averaged per class the same way",
                  True, "a task's templates are part of its definition in the suite and serve every method's "
                        "zero-shot head"),
    )

    def adapt(self, model, fewshot, task, config, ctx):
        return Adapted(model, trainable=0, task=task)


@hookimpl
def clipbench_register_methods(register):
    register(ZeroShot())
