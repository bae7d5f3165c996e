"""Built-in plugin: zero-shot CLIP, the reference every gain and every forgetting is measured against."""

from dataclasses import dataclass

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

    def adapt(self, model, fewshot, task, config, ctx):
        return Adapted(model, trainable=0, task=task)


@hookimpl
def clipbench_register_methods(register):
    register(ZeroShot())
