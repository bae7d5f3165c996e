"""Loaders of the real datasets, proven on generated miniatures in each dataset's exact on-disk format."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from clipbench import protocol, scoring
from clipbench.cli import main
from clipbench.data import real
from clipbench.data.files import clip_transform, file_image_set
from clipbench.errors import ClipbenchError
from clipbench.models import ClipModel
from clipbench.tasks import DataRoot
from tests import miniatures


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("datasets")
    return root, miniatures.all_datasets(root)


def data_at(path, size=32) -> DataRoot:
    return DataRoot(path, image_size=size)


def assert_labels_match_pixels(images, n_classes, grey=False):
    decoded = images.load(torch.arange(len(images)))
    assert decoded.dtype == torch.uint8 and decoded.shape[1:] == (3, images.image_size, images.image_size)
    seen = [miniatures.nearest_class(img.numpy(), n_classes, grey) for img in decoded]
    assert seen == images.labels.tolist()


@pytest.mark.parametrize("key", sorted(real.ALL))
def test_every_dataset_reads_its_class_names_and_labels(root, key):
    path, expected = root
    ds = real.ALL[key]
    data = data_at(path)
    names = ds.classnames(data)
    if key in expected:
        assert names == expected[key]
    else:  # the ImageNet shifts share ImageNet's label space
        assert names == expected["imagenet"]
    n_colours = 12 if key == "cifar100" else len(names)
    for split in ds.splits:
        images = ds.split(data, split)
        assert len(images) > 0
        assert int(images.labels.max()) < len(names)
        assert_labels_match_pixels(images, n_colours, grey=(key == "mnist"))


def test_imagenet_v2_folders_are_class_indices_not_alphabetical(root):
    path, _ = root
    v2 = real.IMAGENET_SHIFTS["imagenet-v2"].split(data_at(path), "test")
    # folder "10" sorts before "2": an alphabetical mapping would give it label 2
    labels_of_ten = {int(lbl) for rel, lbl in zip(v2.read.paths, v2.labels) if "/10/" in rel}
    assert labels_of_ten == {10}
    assert v2.classes is None  # all 12 classes present


@pytest.mark.parametrize("key, present", [("imagenet-a", miniatures.A_CLASSES), ("imagenet-r", miniatures.R_CLASSES)])
def test_imagenet_a_and_r_keep_imagenet_indices_and_record_their_subset(root, key, present):
    path, _ = root
    images = real.IMAGENET_SHIFTS[key].split(data_at(path), "test")
    assert images.classes == present
    assert sorted(set(images.labels.tolist())) == present


def test_predictions_on_a_class_subset_choose_among_those_classes_only():
    logits = torch.tensor([[5.0, 1.0, 2.0, 0.0], [0.0, 3.0, 9.0, 4.0]])
    assert protocol.predict(logits, None).tolist() == [0, 2]
    assert protocol.predict(logits, [1, 3]).tolist() == [1, 3]


def test_coop_split_file_decides_train_and_test(root):
    path, _ = root
    dtd = real.COOP["dtd"]
    split = json.loads((dtd.where(path) / dtd.split_file).read_text())
    train = dtd.split(data_at(path), "train")
    assert len(train) == len(split["train"])
    assert [p.split("/images/")[-1] for p in train.read.paths] == [row[0] for row in split["train"]]
    assert train.labels.tolist() == [row[1] for row in split["train"]]


def test_clip_transform_resizes_the_shorter_side_and_centre_crops():
    from PIL import Image

    wide = np.zeros((20, 60, 3), dtype=np.uint8)
    wide[:, 20:40] = 255  # a white centre third
    out = clip_transform(Image.fromarray(wide), 20)
    assert out.shape == (3, 20, 20)
    assert out.float().mean() > 240  # the crop kept only the centre


def test_worker_processes_decode_the_same_images(root):
    path, _ = root
    data = data_at(path)
    images = real.IMAGENET.split(data, "train")
    assert len(images) >= 64  # large enough that workers are used
    images.workers = 2
    with_workers = images.load(torch.arange(len(images)))
    images.workers = 0
    assert torch.equal(with_workers, images.load(torch.arange(len(images))))


def test_fingerprint_names_files_labels_and_transform(root, tmp_path):
    path, _ = root
    a = real.IMAGENET.split(data_at(path, 32), "test")
    assert a.fingerprint == real.IMAGENET.split(data_at(path, 32), "test").fingerprint
    assert a.fingerprint != real.IMAGENET.split(data_at(path, 64), "test").fingerprint
    copy = tmp_path / "copy"
    shutil.copytree(path / "imagenet", copy / "imagenet")
    assert real.IMAGENET.split(data_at(copy, 32), "test").fingerprint == a.fingerprint  # location-independent
    victim = next((copy / "imagenet" / "images" / "val").rglob("*.JPEG"))
    victim.write_bytes(victim.read_bytes() + b"\0")
    assert real.IMAGENET.split(data_at(copy, 32), "test").fingerprint != a.fingerprint


def test_missing_dataset_names_the_path_looked_in(tmp_path):
    with pytest.raises(ClipbenchError, match=f"looked for {tmp_path}/dtd") as err:
        real.COOP["dtd"].split(data_at(tmp_path), "train")
    assert "--data" in str(err.value)
    with pytest.raises(ClipbenchError, match="--download"):
        real.PROBES["cifar10"].split(data_at(tmp_path), "test")
    with pytest.raises(ClipbenchError, match="pass --data ROOT"):
        real.IMAGENET.classnames(DataRoot(None))


def test_cli_missing_data_and_missing_weights_are_one_sentence_and_exit_2(capsys, tmp_path):
    cases = [
        (["--model", "clipbench-tiny", "--data", str(tmp_path / "none")], f"looked for {tmp_path / 'none'}/imagenet"),
        (["--model", "clipbench-tiny"], "pass --data ROOT"),
        (["--model", "ViT-B-32", "--pretrained", "openai", "--data", str(tmp_path)], "not available offline"),
    ]
    for extra, message in cases:
        code = main(["run", "--method", "saft", "--suite", "imagenet-dg", "--out", str(tmp_path / "out"), *extra])
        out, err = capsys.readouterr()
        assert code == 2, extra
        assert message in err and "Traceback" not in out + err
        assert err.count("\n") == 1  # one line
    assert not (tmp_path / "out").exists()


def test_data_check_reports_present_missing_and_corrupt(capsys, root, tmp_path):
    path, _ = root
    copy = tmp_path / "data"
    shutil.copytree(path / "imagenet", copy / "imagenet")
    shutil.copytree(path / "imagenetv2", copy / "imagenetv2")
    shutil.copytree(path / "imagenet-rendition", copy / "imagenet-rendition")
    next((copy / "imagenet-rendition").rglob("*.jpg")).unlink()  # listed by nothing: still present
    (copy / "imagenet-sketch").mkdir()  # an empty folder: its images folder is missing
    code = main(["data", "check", "--suite", "imagenet-dg", "--data", str(copy)])
    out = capsys.readouterr().out
    assert code == 1
    assert "3 present, 2 missing, 0 corrupt of 5" in " ".join(out.split())
    dtd = real.COOP["dtd"]
    shutil.copytree(dtd.where(path), copy / "dtd")
    status = real.check(dtd, copy)
    assert status.state == "present" and status.counts == {"train": 24, "test": 12} and status.classes == "4"
    next((copy / "dtd" / "images").rglob("test_*.jpg")).unlink()  # listed in the split file, gone from disk
    status = real.check(dtd, copy)
    assert status.state == "corrupt" and "1 of 12 listed image files missing" in status.problems[0]
    (copy / "dtd" / dtd.split_file).write_text("{not json")
    assert real.check(dtd, copy).state == "corrupt"


def test_data_check_compares_torchvision_files_with_the_official_md5(root):
    path, _ = root
    status = real.check(real.PROBES["cifar10"], path)
    assert status.counts == {"train": 60, "test": 30}
    assert status.state == "corrupt" and "differ from the official release" in status.problems[0]
    assert real.check(real.PROBES["mnist"], path).state == "present"  # torchvision records no md5 for raw MNIST


def test_data_check_decode_finds_undecodable_images(root, tmp_path):
    path, _ = root
    ds = real.COOP["eurosat"]
    shutil.copytree(ds.where(path), tmp_path / "eurosat")
    victim = next((tmp_path / "eurosat").rglob("train_*.jpg"))
    victim.write_bytes(b"not a jpeg at all")
    assert real.check(ds, tmp_path).state == "present"  # without --decode only presence is checked
    status = real.check(ds, tmp_path, decode=True)
    assert status.state == "corrupt" and "1 of 24 images do not decode" in status.problems[0]


def run_json(tmp_path, *argv) -> dict:
    out = tmp_path / "out"
    assert main(["run", *argv, "--model", "clipbench-tiny", "--shots", "2", "--seeds", "1", "--out", str(out),
                 "--no-progress"]) == 0
    [path] = list(out.glob("*.json"))
    return json.loads(path.read_text())


def test_imagenet_dg_runs_end_to_end_on_the_miniatures(root, tmp_path):
    path, _ = root
    result = run_json(tmp_path, "--method", "saft", "--suite", "imagenet-dg", "--data", str(path))
    [cell] = result["cells"]
    assert set(cell["shifts"]) == {"imagenet-v2", "imagenet-sketch", "imagenet-a", "imagenet-r"}
    assert result["reference"]["imagenet"]["shifts"]["imagenet-a"] >= 0
    data_fps = result["provenance"]["data"]
    assert {"imagenet/train", "imagenet/test", "imagenet/imagenet-a"} <= set(data_fps)


@pytest.mark.slow
def test_fewshot11_runs_base_to_new_on_the_miniatures(root, tmp_path):
    path, _ = root
    result = run_json(tmp_path, "--method", "zeroshot", "--suite", "fewshot11", "--data", str(path))
    tasks = scoring.summary_of(result)["tasks"]
    assert set(tasks) == set(real.FEWSHOT11)
    for name, t in tasks.items():  # base half adapted and scored ID, new half held out
        assert "new" in t and "base_new_hm" in t
    assert result["reference"]["dtd"]["new"] >= 0


def test_forgetting_suite_probes_the_other_datasets(root, tmp_path):
    path, _ = root
    result = run_json(tmp_path, "--method", "linear-probe", "--suite", "forgetting", "--data", str(path),
                      "--task", "mnist")
    [cell] = result["cells"]
    assert set(cell["probes"]) == {"cifar10", "cifar100", "stl10", "svhn"}
    assert all(v == pytest.approx(result["reference"]["mnist"]["probes"][k]) for k, v in cell["probes"].items())


def test_second_run_of_a_frozen_encoder_method_encodes_no_image(root, tmp_path, monkeypatch):
    path, _ = root
    argv = ["--method", "zeroshot", "--suite", "imagenet-dg", "--data", str(path)]
    monkeypatch.setenv("CLIPBENCH_CACHE_DIR", str(tmp_path / "cache"))
    run_json(tmp_path / "first", *argv)
    encoded = []
    original = ClipModel.encode_image
    monkeypatch.setattr(ClipModel, "encode_image", lambda self, images: encoded.append(len(images))
                        or original(self, images))
    run_json(tmp_path / "second", *argv)
    from clipbench.protocol import Evaluator

    # only the cache's canary batch (a few synthetic images, pretrained and adapted), never a dataset image
    assert set(encoded) <= {Evaluator.CANARY_IMAGES}


def test_file_sets_of_missing_files_fail_with_the_path(tmp_path):
    images = file_image_set(tmp_path, ["gone.jpg"], [0], 32)
    with pytest.raises(ClipbenchError, match="gone.jpg.*data check --decode"):
        images.load(torch.tensor([0]))


def test_torchvision_downloads_only_with_download(tmp_path, monkeypatch):
    import torchvision

    calls = []
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", lambda self: calls.append(self.root))
    with pytest.raises(ClipbenchError, match="--download"):
        real.PROBES["cifar10"].split(DataRoot(tmp_path), "test")
    assert calls == [] and not (tmp_path / "cifar10").exists()
    with pytest.raises(ClipbenchError):  # the stand-in download fetched nothing
        real.PROBES["cifar10"].split(DataRoot(tmp_path, download=True), "test")
    assert calls == [str(tmp_path / "cifar10")]


@pytest.mark.parametrize("value", ["two", "\u00b2", "\u0663", "-1"])  # superscript two, Arabic-Indic three
def test_a_bad_worker_count_is_one_sentence(monkeypatch, value):
    from clipbench.data.files import default_workers

    monkeypatch.setenv("CLIPBENCH_WORKERS", value)
    with pytest.raises(ClipbenchError, match="CLIPBENCH_WORKERS must be a whole number"):
        default_workers()
    monkeypatch.setenv("CLIPBENCH_WORKERS", "0")
    assert default_workers() == 0


def test_verify_reruns_a_real_data_result_and_notices_other_images(root, tmp_path):
    from clipbench import verify
    from clipbench.plugins import collect, get_plugin_manager

    path, _ = root
    result = run_json(tmp_path, "--method", "zeroshot", "--suite", "imagenet-dg", "--data", str(path))
    pm = get_plugin_manager(load_entrypoints=False)
    assert verify.verify(result, collect(pm), pm, [1], data_root=path) == []
    copy = tmp_path / "copy"
    for folder in ("imagenet", "imagenetv2", "imagenet-sketch", "imagenet-adversarial", "imagenet-rendition"):
        shutil.copytree(path / folder, copy / folder)
    victim = next((copy / "imagenet-sketch").rglob("*.JPEG"))
    victim.write_bytes(victim.read_bytes() + b"\0")
    problems = verify.verify(result, collect(pm), pm, [1], data_root=copy)
    assert any("imagenet/imagenet-sketch" in p and "not the same images" in p for p in problems)


@pytest.mark.slow
def test_aclip_and_bitfit_run_on_a_real_suite_with_tuned_rates(root, tmp_path):
    """The papers' full-data SGD rates are not what runs on a real suite: `tune` chooses, `run` applies."""
    from clipbench import tuning

    path, _ = root
    common = ["--suite", "imagenet-dg", "--data", str(path), "--model", "clipbench-tiny", "--shots", "2"]
    assert main(["tune", "--method", "aclip", "bitfit", *common, "--out", str(tmp_path / "tuned")]) == 0
    for method in ("aclip", "bitfit"):
        [tuned_file] = list((tmp_path / "tuned").glob(f"imagenet-dg__{method}__*.json"))
        record = json.loads(tuned_file.read_text())
        assert record["tasks"]["imagenet"]["done"] and len(record["tasks"]["imagenet"]["trials"]) >= 8
        result = run_json(tmp_path / method, "--method", method, "--suite", "imagenet-dg", "--data", str(path),
                          "--tuned", str(tmp_path / "tuned"))
        assert result["config"]["tuned"] == {"imagenet": record["tasks"]["imagenet"]["values"]}
        assert result["provenance"]["tuning"]["seeds"] == list(tuning.TUNING_SEEDS)


@pytest.mark.slow
@pytest.mark.parametrize("method, epochs", [("coop", 3), ("cocoop", 1)])
def test_prompt_learners_run_base_to_new_on_the_fewshot11_miniatures(root, tmp_path, method, epochs):
    """CoOp and CoCoOp learn on the base classes and are scored on the held-out new classes of all eleven."""
    path, _ = root
    result = run_json(tmp_path, "--method", method, "--suite", "fewshot11", "--data", str(path),
                      "--option", f"{method}.epochs={epochs}")
    tasks = scoring.summary_of(result)["tasks"]
    assert set(tasks) == set(real.FEWSHOT11)
    for name, t in tasks.items():
        assert "new" in t and "base_new_hm" in t
    cell = result["cells"][0]
    assert cell["cost"]["trainable_params"] > 0
