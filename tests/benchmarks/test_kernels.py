"""Timed kernels (pytest-benchmark), kept out of the default run: `pytest -m benchmarks` or `clipbench bench`.

Each reports its achieved GFLOP/s and the ratio to this machine's fp32 matmul
peak measured in the same session, so numbers compare across machines.
"""

from __future__ import annotations

import time

import pytest
import torch

pytestmark = pytest.mark.benchmarks

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync():
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


@pytest.fixture(scope="session")
def matmul_peak() -> float:
    """Best fp32 GFLOP/s of large square matmuls (2048 and 4096) on this device."""
    best = 0.0
    for n in (2048, 4096):
        a, b = torch.randn(n, n, device=DEVICE), torch.randn(n, n, device=DEVICE)
        for _ in range(2):
            a @ b
        sync()
        for _ in range(4):
            start = time.perf_counter()
            a @ b
            sync()
            best = max(best, 2 * n ** 3 / (time.perf_counter() - start) / 1e9)
    return best


@pytest.fixture(scope="session")
def measured() -> dict:
    """Throughputs measured earlier in the same session, for ratios (bf16 vs fp32, warm vs cold)."""
    return {}


def report(benchmark, flops: float, peak: float, items: int | None = None, unit: str = "images"):
    seconds = benchmark.stats.stats.min
    gflops = flops / seconds / 1e9
    benchmark.extra_info.update({"gflops": round(gflops, 1), "peak_gflops": round(peak, 1),
                                 "fraction_of_peak": round(gflops / peak, 3)})
    if items:
        benchmark.extra_info[f"{unit}_per_second"] = round(items / seconds, 1)


def vit_image_flops(model, batch: int) -> float:
    """Forward FLOPs of a ViT image tower: 2 x MACs of its matmuls (projections, MLP, attention)."""
    v = model.visual
    width = v.conv1.out_channels
    patch = v.conv1.kernel_size[0]
    size = v.image_size[0] if isinstance(v.image_size, (tuple, list)) else v.image_size
    tokens = (size // patch) ** 2 + 1
    layers = len(v.transformer.resblocks)
    mlp = v.transformer.resblocks[0].mlp.c_fc.out_features
    per_layer = 2 * tokens * (4 * width * width + 2 * width * mlp) + 2 * 2 * tokens * tokens * width
    embed = 2 * (tokens - 1) * 3 * patch * patch * width
    return batch * (layers * per_layer + embed)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("arch", ["clipbench-tiny", "ViT-B-32"])
def test_image_encoding(benchmark, matmul_peak, measured, arch, precision):
    import open_clip

    from clipbench.models import register_embedded_config

    from clipbench.models import ClipModel

    register_embedded_config()
    model = open_clip.create_model(arch, pretrained=None).to(DEVICE).eval()  # random weights: speed only
    clip = ClipModel(model, None, arch, "random")  # clipbench's encoding path, as the evaluator runs it
    size = clip.image_size
    batch = 256 if arch == "clipbench-tiny" else 32
    x = torch.rand(batch, 3, size, size, device=DEVICE)

    def run():
        with torch.inference_mode(), torch.autocast(DEVICE.type, torch.bfloat16, enabled=precision == "bf16"):
            clip.encode_image(x)
        sync()

    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    report(benchmark, vit_image_flops(model, batch), matmul_peak, batch)
    measured[(arch, precision)] = benchmark.stats.stats.min
    if precision == "bf16" and (arch, "fp32") in measured:
        benchmark.extra_info["ratio"] = round(measured[(arch, "fp32")] / benchmark.stats.stats.min, 2)
        benchmark.extra_info["ratio_of"] = "bf16/fp32 throughput"


def _one_step_overrides(method) -> dict:
    fields = method.config_class.__dataclass_fields__
    return {name: 1 for name in ("epochs", "steps") if name in fields}


def _methods():
    from clipbench.plugins import collect, get_plugin_manager

    registry = collect(get_plugin_manager(load_entrypoints=False))
    return registry, sorted(n for n in registry.methods if n != "zeroshot")


@pytest.mark.parametrize("name", _methods()[1])
def test_training_step(benchmark, name):
    """A method's adapt with a one-step schedule on one batch (8 colour images): setup plus one step."""
    from clipbench.method import AdaptContext
    from clipbench.models import load_embedded
    from clipbench.suites.default import build_default_suite
    from clipbench.tasks import sample_fewshot

    registry, _ = _methods()
    method = registry.methods[name]
    config = method.make_config(_one_step_overrides(method))
    task = build_default_suite().task("colour")
    fewshot = sample_fewshot(task.train.value, task.num_classes, 1, seed=1)
    fewshot.images, fewshot.val_images  # render outside the timing
    model = load_embedded().to(DEVICE)

    def run():
        method.adapt(model.clone(), fewshot, task, config, AdaptContext(device=DEVICE, seed=1))
        sync()

    benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    benchmark.extra_info["images_per_second"] = round(len(fewshot.labels) / benchmark.stats.stats.min, 1)


def test_saft_mask_selection(benchmark, matmul_peak):
    """SAFT's global top-k of |gradient| over every weight of ViT-B/32 (k = 0.1% of 88M parameters)."""
    import open_clip

    from clipbench.methods.saft import select_mask, tower_parameters

    model = open_clip.create_model("ViT-B-32", pretrained=None)
    named = tower_parameters(model)
    for _, p in named:
        p.grad = torch.randn_like(p)
    total = sum(p.numel() for _, p in named)
    k = total // 1000
    benchmark.pedantic(lambda: select_mask(named, k), rounds=3, warmup_rounds=1)
    benchmark.extra_info["parameters_per_second"] = round(total / benchmark.stats.stats.min, 1)


@pytest.mark.parametrize("name", ["zeroshot", "linear-probe"])
def test_second_run_of_a_frozen_encoder_method(benchmark, tmp_path, monkeypatch, name):
    """One seed of the default suite, in process: a cold embedding cache, then the same run again (warm)."""
    from clipbench import runner
    from clipbench.plugins import collect, get_plugin_manager

    monkeypatch.setenv("CLIPBENCH_CACHE_DIR", str(tmp_path / "cache"))
    pm = get_plugin_manager(load_entrypoints=False)
    registry = collect(pm)

    def run(out):
        runner.execute(runner.RunRequest(methods=[name], seeds=[1], out_dir=tmp_path / out, device=str(DEVICE)),
                       registry, pm)

    start = time.perf_counter()
    run("cold")
    cold = time.perf_counter() - start
    runs = iter(range(100))
    benchmark.pedantic(lambda: run(f"warm{next(runs)}"), rounds=2)
    benchmark.extra_info["ratio"] = round(cold / benchmark.stats.stats.min, 1)
    benchmark.extra_info["ratio_of"] = "cold/warm wall time"


def test_cayley_transform(benchmark, matmul_peak):
    from clipbench.methods.orthcr import cayley

    a = torch.randn(96, 32, 32, device=DEVICE)
    s = 0.5 * (a - a.transpose(-1, -2))
    benchmark(lambda: (cayley(s), sync()))
    report(benchmark, 96 * (2 / 3 * 32 ** 3 + 2 * 32 ** 3), matmul_peak)


def test_knn_neighbour_search(benchmark, matmul_peak):
    """The kNN adapter's blend weights: each query's cosine distance to its nearest centre."""
    from clipbench.methods.knn_adapter import blend_weight

    q = torch.nn.functional.normalize(torch.randn(4096, 512, device=DEVICE), dim=-1)
    keys = torch.nn.functional.normalize(torch.randn(16000, 512, device=DEVICE), dim=-1)
    rbf = torch.tensor(-10.0)
    benchmark.pedantic(lambda: (blend_weight(q, keys, rbf, 0.5), sync()), rounds=3, warmup_rounds=1)
    report(benchmark, 2 * 4096 * 16000 * 512, matmul_peak, 4096, "queries")


def test_silhouette(benchmark, matmul_peak):
    from clipbench.metrics import silhouette_class as silhouette

    emb = torch.nn.functional.normalize(torch.randn(2000, 512), dim=-1)
    labels = torch.randint(0, 10, (2000,))
    text = torch.nn.functional.normalize(torch.randn(10, 512), dim=-1)
    benchmark.pedantic(lambda: silhouette(emb, labels, text), rounds=3)
    report(benchmark, 2 * 2010 * 2010 * 512, matmul_peak)


@pytest.mark.parametrize("name", ["full-ft", "saft"])
def test_adaptation_peak_memory_on_vit_b_32(benchmark, measured, name):
    """Peak memory of one adaptation step on ViT-B/32 (random weights, 8 images at 224 px, batch 8).

    SAFT keeps no dense gradients once its mask is chosen; the ratio to full-ft's peak is reported.
    """
    import open_clip

    from clipbench.method import AdaptContext
    from clipbench.models import ClipModel
    from clipbench.plugins import collect, get_plugin_manager
    from clipbench.protocol import PeakMemory
    from clipbench.tasks import Lazy, Task, TensorImageSet, sample_fewshot

    method = collect(get_plugin_manager(load_entrypoints=False)).methods[name]
    config = method.make_config({"epochs": 1, "batch_size": 8})
    g = torch.Generator().manual_seed(0)
    pool = TensorImageSet(torch.randint(0, 256, (24, 3, 224, 224), dtype=torch.uint8, generator=g),
                          torch.arange(4).repeat_interleave(6))
    task = Task("bench", ["cat", "dog", "car", "tree"], ["a photo of a {}."], Lazy(lambda: pool), Lazy(lambda: pool))
    fewshot = sample_fewshot(pool, 4, 2, seed=1)
    fewshot.images
    base = ClipModel(open_clip.create_model("ViT-B-32", pretrained=None).to(DEVICE), open_clip.get_tokenizer("ViT-B-32"),
                     "ViT-B-32", "random")
    peaks = []

    def run():
        model = base.clone()
        with PeakMemory(DEVICE) as mem:
            method.adapt(model, fewshot, task, config, AdaptContext(device=DEVICE, seed=1))
        peaks.append(mem.peak_mb)
        del model

    benchmark.pedantic(run, rounds=2)
    peak = min(peaks)
    benchmark.extra_info["peak_memory_mb"] = round(peak, 1)
    measured[("peak", name)] = peak
    if name == "saft" and ("peak", "full-ft") in measured:
        benchmark.extra_info["ratio"] = round(peak / measured[("peak", "full-ft")], 2)
        benchmark.extra_info["ratio_of"] = "SAFT/full-ft peak memory"


def embedded_text_flops(model, prompts: int) -> float:
    """Forward FLOPs of the embedded text tower on ``prompts`` prompts (its matmuls, as for the image tower)."""
    t = model.transformer
    width, layers = t.width, len(t.resblocks)
    mlp = t.resblocks[0].mlp.c_fc.out_features
    tokens = model.context_length
    per_layer = 2 * tokens * (4 * width * width + 2 * width * mlp) + 2 * 2 * tokens * tokens * width
    return prompts * layers * per_layer


@pytest.fixture(scope="module")
def embedded():
    from clipbench.models import load_embedded

    return load_embedded().to(DEVICE)


def test_embedded_training_step(benchmark, matmul_peak, embedded):
    """One full fine-tuning step of the embedded model as the default suite runs it: 32 images and the
    10 class prompts forward and backward (about 3x the forward FLOPs), then fused AdamW."""
    import torch.nn.functional as F

    model = embedded.clone()
    model.module.train()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (32, 3, model.image_size, model.image_size), dtype=torch.uint8, generator=g)
    y = torch.arange(32) % 10
    prompts = [f"a photo of a {c}." for c in "zero one two three four five six seven eight nine".split()]
    opt = torch.optim.AdamW(model.module.parameters(), lr=1e-5, fused=True)

    def step():
        logits = model.logit_scale * model.encode_image(x.to(DEVICE)) @ model.encode_text(prompts).T
        loss = F.cross_entropy(logits, y.to(DEVICE))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()

    benchmark.pedantic(step, rounds=5, warmup_rounds=2)
    flops = 3 * (vit_image_flops(model.module, 32) + embedded_text_flops(model.module, 10))
    report(benchmark, flops, matmul_peak, 32)


@pytest.mark.parametrize("batch", [512, "default"])
def test_embedded_evaluation(benchmark, matmul_peak, measured, embedded, batch):
    """Scoring 1,024 images through the evaluator's encoding path (an adapted image tower, no cache), at the
    old batch of 512 and at the default CPU/GPU batch; the embeddings are bit for bit the same."""
    from clipbench.protocol import default_batch_size

    size = default_batch_size(DEVICE) if batch == "default" else batch
    x = torch.randint(0, 256, (1024, 3, embedded.image_size, embedded.image_size), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0))

    def run():
        with torch.inference_mode():
            out = torch.cat([embedded.encode_image(x[i:i + size]) for i in range(0, len(x), size)])
        sync()
        return out

    out = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    report(benchmark, vit_image_flops(embedded.module, len(x)), matmul_peak, len(x))
    measured[("eval", batch)] = (benchmark.stats.stats.min, out)
    if batch == "default" and ("eval", 512) in measured:
        before, reference = measured[("eval", 512)]
        assert torch.equal(out, reference), "the evaluation batch changed an embedding"
        benchmark.extra_info["ratio"] = round(before / benchmark.stats.stats.min, 2)
        benchmark.extra_info["ratio_of"] = f"batch 512 / batch {size} time"


KINDS = {"linear-probe": "frozen encoder", "full-ft": "full fine-tune", "saft": "sparse mask",
         "orthcr": "reparametrised", "coop": "prompt learner"}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_where_a_cell_spends_its_time(benchmark, tmp_path, name):
    """One default-suite cell (shape, seed 1) of a method of each kind, in process with a warm cache and the
    zero-shot reference already scored: the shares of adapting, evaluating, and the harness around them
    (sampling, checks, copies, the store's files, merging, hooks)."""
    from clipbench import runner
    from clipbench.plugins import collect, get_plugin_manager

    pm = get_plugin_manager(load_entrypoints=False)
    registry = collect(pm)
    request = runner.RunRequest(methods=[name], tasks=["shape"], seeds=[1], device=str(DEVICE))
    p = runner.plan(request, registry)
    model = runner.load_for(request, p.suite, registry, p.device)
    evaluator = runner.evaluator_for(request, model)
    runner.execute(runner.RunRequest(methods=["zeroshot"], tasks=["shape"], seeds=[1], device=str(DEVICE),
                                     out_dir=tmp_path / "warm"), registry, pm, model=model, evaluator=evaluator)
    shares = []
    runs = iter(range(100))

    def run():
        before = evaluator.seconds
        start = time.perf_counter()
        [path] = runner.execute(dataclass_replace(request, out_dir=tmp_path / f"run{next(runs)}"), registry, pm,
                                model=model, evaluator=evaluator)
        total = time.perf_counter() - start
        import json

        [cell] = json.loads(path.read_text())["cells"]
        adapt, evaluate = cell["cost"]["adapt_seconds"], evaluator.seconds - before
        shares.append((total, adapt / total, evaluate / total, (total - adapt - evaluate) / total))

    benchmark.pedantic(run, rounds=2)  # the second round in steady state: a process's one-time loads are done
    total, adapt, evaluate, harness = min(shares, key=lambda share: share[3])
    benchmark.extra_info["breakdown"] = (f"{KINDS[name]}: adapt {adapt:.0%}, evaluate {evaluate:.0%}, "
                                         f"harness {harness:.1%} of {total:.1f} s")
    benchmark.extra_info["harness_fraction"] = round(harness, 4)


def dataclass_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


def test_the_main_command_from_a_cold_cache(benchmark, tmp_path):
    """README's main command (`clipbench run --method saft`: 15 cells, the auto layout of two workers at one
    thread) as a newcomer runs it, in a fresh process with an empty cache (every image rendered, every
    reference encoded); its cells must equal the published SAFT row's image by image."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "CLIPBENCH_CACHE_DIR": str(tmp_path / "cache"), "CLIPBENCH_LOAD_PLUGINS": ""}
    runs = iter(range(10))

    def run():
        out = tmp_path / f"out{next(runs)}"
        subprocess.run([sys.executable, "-m", "clipbench.cli", "run", "--method", "saft", "--out", str(out),
                        "--no-progress"], env=env, check=True, capture_output=True)
        return out

    out = benchmark.pedantic(run, rounds=1)
    [mine] = out.glob("default__saft__*.json")
    board = Path(__file__).resolve().parents[2] / "leaderboards" / "results"
    [published] = board.glob("default__saft__*.json")
    cells = {(c["task"], c["seed"]): c["correct"] for c in json.loads(mine.read_text())["cells"]}
    theirs = {(c["task"], c["seed"]): c["correct"] for c in json.loads(published.read_text())["cells"]}
    benchmark.extra_info["cells_equal_to_published"] = f"{sum(cells[k] == theirs.get(k) for k in cells)}/{len(cells)}"
    benchmark.extra_info["ratio"] = round(benchmark.stats.stats.min / 150, 2)
    benchmark.extra_info["ratio_of"] = "wall time / the 150 s target"
