"""Pretraining the embedded model: the batch mix, the captions, and a short run end to end."""

import json

import numpy as np
import torch

from clipbench import pretrain
from clipbench.data import shipped


def test_real_batches_follow_the_mix_and_never_use_a_tasks_images():
    pools = pretrain.real_pools()
    for name in shipped.COLLECTIONS:
        images, _ = shipped.split(name, "pretrain")
        assert torch.equal(pools[name][0], torch.from_numpy(shipped.to_canvas(images)))
    rng = np.random.default_rng(0)
    images, texts = pretrain.real_batch(rng, pools, 2000, (0.4, 0.2, 0.4))
    assert images.shape == (2000, 3, 32, 32) and images.dtype == torch.uint8
    digits = sum(any(w in t.split() for w in ("zero", "one", "two", "three", "four", "five", "six", "seven",
                                               "eight", "nine", "number", "digit") + tuple("0123456789"))
                 for t in texts)
    assert 0.15 < digits / 2000 < 0.25  # the mnist share of the mix (0.2)


def test_half_the_task_names_never_appear_in_a_caption():
    rng = np.random.default_rng(0)
    for collection in shipped.COLLECTIONS:
        names = list(shipped.CAPTION_WORDS[collection])
        for label, name in enumerate(names):
            texts = [shipped.caption(collection, label, rng, noise=0.0) for _ in range(400)]
            used = sum(f" {name} " in f" {t} " for t in texts) / len(texts)
            assert used == 0.0 if label % 2 else used > 0.15, (collection, name, used)


def test_the_vocabulary_covers_every_prompt_of_the_default_suite(default_suite):
    words = pretrain.vocabulary()
    for task in default_suite.tasks.values():
        for c in task.classnames:
            for t in task.templates + [task.train_template]:
                assert set(t.format(c).replace(".", " ").split()) <= words, t.format(c)


def test_a_short_pretraining_run_writes_weights_that_load(tmp_path):
    from clipbench.models import load_embedded

    cfg = pretrain.PretrainConfig(steps=3, batch_size=16, corpus=64, warmup=1)
    out = tmp_path / "tiny.pt.xz"
    info = pretrain.pretrain(cfg, out, evaluate=lambda m: {"ok": 1}, eval_every=2)
    assert out.is_file() and (tmp_path / "tiny.pt.xz.sha256").read_text().startswith(info["sha256"])
    assert [h["step"] for h in info["history"]] == [2, 3]
    assert json.loads(json.dumps(info))["config"]["real_fraction"] == cfg.real_fraction
    load_embedded(out)


def test_the_commands_defaults_are_the_configs_and_help_needs_no_torch():
    import dataclasses
    import subprocess
    import sys

    from clipbench.commands.pretrain import DEFAULTS

    cfg = dataclasses.asdict(pretrain.PretrainConfig())
    for name in ("steps", "batch_size", "lr", "corpus", "real_fraction", "seed"):
        assert getattr(DEFAULTS, name) == cfg[name], name
    out = subprocess.run([sys.executable, "-c", "import sys; from clipbench.cli import build_parser; build_parser(); "
                          "print('torch' in sys.modules)"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
