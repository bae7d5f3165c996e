"""clipbench: benchmark parameter-efficient fine-tuning of CLIP.

The public API a plugin imports (everything else is internal)::

    from clipbench import (hookimpl, Method, Adapted, AdaptContext, MethodConfig, AdamWRecipe, SGDRecipe,
                           option, finetune, train_epochs, random_crops, Schedule, count_parameters, FewShot,
                           Task, Suite, Deviation, Executor, flag, run_cells, ClipbenchError)

- :data:`hookimpl` marks a plugin's hook implementations (the hooks: :mod:`clipbench.hookspecs`);
- :class:`Method` is what a method plugin registers; ``adapt`` returns an :class:`Adapted`;
- :class:`MethodConfig` (or a shared recipe, :class:`AdamWRecipe` / :class:`SGDRecipe`) is the base of a
  method's config dataclass, :func:`option` declares a field with its help, source and search grid;
- :func:`finetune` is the shared training loop, run by a :class:`Schedule` (``config.schedule()``);
  :func:`train_epochs` the minibatch loop of methods that train on embeddings (``views=``: on cached
  augmented views, ``FewShot.views``); :func:`random_crops` the references' crop-and-flip augmentation;
- :class:`FewShot`, :class:`AdaptContext`, :class:`Task` and :class:`Suite` are what methods and suites
  receive and build;
- :class:`Deviation` is one entry of a method's deviation card (``Method.reference``, ``Method.deviations``);
- :class:`Executor` is what an executor plugin registers (its ``--executor`` name, :func:`flag` declarations,
  ``run``), computing each cell with :func:`run_cells` wherever it runs jobs;
- :class:`ClipbenchError` is the one exception the command line turns into a sentence (exit 2);
- :func:`run_id` is a run's stable identity, for tracker plugins (the reporting hooks' ``run`` records).

Running the benchmark from Python (a notebook, a script): :func:`evaluate` (one method) and
:func:`evaluate_many` return a :class:`Result` / :class:`Results` (``.summary``, ``.cells``,
``.to_pandas()``); :func:`load` reads result files back (:mod:`clipbench.api`)::

    run = clipbench.evaluate(method="linear-probe", tasks=["shape"], seeds=[1, 2])

Names are imported on first use, so ``import clipbench`` (and ``clipbench --help``) stays fast.
"""

from clipbench.hookspecs import hookimpl

__version__ = "0.1.0"

_EXPORTS = {
    "Method": "clipbench.method", "Adapted": "clipbench.method", "AdaptContext": "clipbench.method",
    "MethodConfig": "clipbench.config", "AdamWRecipe": "clipbench.config", "SGDRecipe": "clipbench.config",
    "option": "clipbench.config",
    "finetune": "clipbench.training", "Schedule": "clipbench.config", "count_parameters": "clipbench.training",
    "train_epochs": "clipbench.training", "random_crops": "clipbench.augment",
    "FewShot": "clipbench.tasks", "Task": "clipbench.tasks", "Suite": "clipbench.tasks",
    "run_id": "clipbench.store",
    "Deviation": "clipbench.cards",
    "ClipbenchError": "clipbench.errors",
    "Executor": "clipbench.sweep", "flag": "clipbench.sweep", "run_cells": "clipbench.sweep",
    "evaluate": "clipbench.api", "evaluate_many": "clipbench.api", "load": "clipbench.api",
    "Result": "clipbench.api", "Results": "clipbench.api",
}

__all__ = ["hookimpl", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'clipbench' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
