"""The real datasets: where each lives under ``--data ROOT``, how it is read, its class names and prompts.

Three kinds of reader, each reusing what already exists:

- torchvision's own dataset classes (CIFAR-10/100, STL-10, MNIST, SVHN,
  FGVC-Aircraft), with ``download=False`` unless the user passes ``--download``;
- CoOp's published split files (``split_zhou_*.json``: ``{"train"|"val"|"test":
  [[path relative to the image folder, label, class name], ...]}``) for the
  few-shot datasets CoOp defines splits for;
- torchvision's ImageFolder scan (``make_dataset``) for ImageNet and its shifts,
  with the class index taken from ImageNet's ``classnames.txt`` (never from the
  alphabetical order of folder names: ImageNet-V2's folders are ``0``..``999``,
  ImageNet-A and -R hold 200 of the 1000 classes).

Nothing here downloads unless asked, and a missing dataset is one sentence
naming the path looked in.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from clipbench.data.files import (DecodedImageSet, array_identity, file_image_set, files_identity,
                                  torchvision_image_set)
from clipbench.errors import ClipbenchError
from clipbench.tasks import DataRoot

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# Prompt templates.  ImageNet and its shifts use the 7 of CLIP's 80 ImageNet templates the CLIP
# authors found best as a subset; the other datasets use CLIP's per-dataset wording (as CoOp's
# zero-shot baseline does).
IMAGENET_TEMPLATES = ["itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
                      "a {} in a video game.", "art of the {}.", "a photo of the small {}."]
DIGIT_TEMPLATES = ['a photo of the number: "{}".']
OBJECT_TEMPLATES = ["a photo of a {}.", "a blurry photo of a {}.", "a low contrast photo of a {}.",
                    "a photo of the small {}.", "a photo of the big {}."]


class DatasetMissing(ClipbenchError):
    """A dataset (or a file it needs) is not where clipbench looks; says where it looked."""

    def __init__(self, looked: Path, what: str, message: str):
        super().__init__(message)
        self.looked, self.what = looked, what


@dataclass
class Dataset:
    """One dataset: its task name, folder under ROOT, layout (for errors and the README) and reader."""

    key: str
    title: str
    folder: str
    layout: str
    templates: list[str]
    read_classnames: Callable[[Path], list[str]]
    read_split: Callable[[Path, str, DataRoot], DecodedImageSet]  # split: "train" or "test"
    official_check: Callable[[Path], list[str]] | None = None  # problems vs the official release (md5s)
    downloadable: bool = False
    splits: tuple[str, ...] = ("train", "test")
    source: str = ""
    split_file: str = ""  # CoOp datasets: the split file and the folder its paths are relative to
    image_dir: str = ""

    def where(self, root: Path) -> Path:
        return root / self.folder

    def located(self, data: DataRoot) -> Path:
        where = self.where(data.require(self.title))
        if not where.is_dir():
            if not (data.download and self.downloadable):
                raise self.missing(where, "folder")
            where.mkdir(parents=True)  # torchvision downloads into it
        return where

    def classnames(self, data: DataRoot) -> list[str]:
        return self.read_classnames(self.located(data))

    def check(self, root: Path, decode: bool = False) -> "Status":
        """Present, missing or corrupt under ``root`` (what `clipbench data check` prints)."""
        return check(self, root, decode)

    def split(self, data: DataRoot, split: str) -> DecodedImageSet:
        return self.read_split(self.located(data), split, data)

    def missing(self, looked: Path, what: str = "") -> "DatasetMissing":
        how = " or add --download to let torchvision fetch it" if self.downloadable else ""
        message = (f"Dataset {self.title} not found: looked for {looked}{f' ({what})' if what else ''}. Put it "
                   f"there (layout: {self.layout}; see the README's dataset section){how}, or pass --data with "
                   "the folder that holds it.")
        return DatasetMissing(looked, what, message)


# ------------------------------------------------------------------ CoOp split files

def _read_json(path: Path, dataset: "Dataset") -> dict:
    if not path.is_file():
        raise dataset.missing(path, "CoOp split file")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ClipbenchError(f"The split file {path} of {dataset.title} is corrupt: {exc}.") from exc


def coop_dataset(key: str, title: str, folder: str, image_dir: str, split_file: str, templates: list[str],
                 source: str) -> Dataset:
    """A dataset whose train/test lists come from CoOp's ``split_zhou_*.json``."""

    def entries(where: Path) -> dict:
        data = _read_json(where / split_file, ds)
        try:
            return {s: [(str(p), int(label), str(name)) for p, label, name in data[s]] for s in ("train", "test")}
        except (KeyError, TypeError, ValueError) as exc:
            raise ClipbenchError(f"The split file {where / split_file} of {title} is not in CoOp's format "
                                 f"({{\"train\": [[path, label, classname], ...], ...}}): {exc!r}.") from exc

    def read_classnames(where: Path) -> list[str]:
        names: dict[int, str] = {}
        for split in entries(where).values():
            for _, label, name in split:
                names[label] = name.replace("_", " ")
        if sorted(names) != list(range(len(names))):
            raise ClipbenchError(f"The split file {where / split_file} of {title} has labels that are not "
                                 f"0..{len(names) - 1}.")
        return [names[i] for i in range(len(names))]

    def read_split(where: Path, split: str, data: DataRoot) -> DecodedImageSet:
        images = where / image_dir
        if not images.is_dir():
            raise ds.missing(images, "image folder")
        rows = entries(where)[split]
        return file_image_set(images, [p for p, _, _ in rows], [label for _, label, _ in rows], data.image_size)

    layout = f"{folder}/{split_file} and the images under {folder}/{image_dir}/"
    ds = Dataset(key, title, folder, layout, templates, read_classnames, read_split, source=source,
                 split_file=split_file, image_dir=image_dir)
    return ds


# ------------------------------------------------------------------ ImageNet and its shifts

def _imagenet_classes(root_of_dataset: Path) -> list[tuple[str, str]]:
    """(wnid, class name) pairs in label order, from CoOp's ``imagenet/classnames.txt``."""
    for path in (root_of_dataset / "classnames.txt", root_of_dataset.parent / "imagenet" / "classnames.txt"):
        if path.is_file():
            pairs = []
            for line in path.read_text().splitlines():
                if line.strip():
                    wnid, _, name = line.strip().partition(" ")
                    pairs.append((wnid, name.strip()))
            return pairs
    raise IMAGENET.missing(root_of_dataset.parent / "imagenet" / "classnames.txt", "class-name file")


def _scan(folder: Path, class_to_idx: dict[str, int], dataset: Dataset) -> tuple[list[str], list[int]]:
    from torchvision.datasets.folder import make_dataset

    if not folder.is_dir():
        raise dataset.missing(folder)
    present = {d.name for d in os.scandir(folder) if d.is_dir()}
    mapping = {name: idx for name, idx in class_to_idx.items() if name in present}
    if not mapping:
        raise ClipbenchError(f"{dataset.title}: none of the class folders under {folder} is a known class "
                             f"(expected {dataset.layout}).")
    samples = make_dataset(str(folder), mapping, extensions=IMAGE_EXTENSIONS, allow_empty=True)
    return [os.path.relpath(p, folder) for p, _ in samples], [label for _, label in samples]


def imagenet_like(key: str, title: str, folder: str, splits: dict[str, str], by: str, layout: str,
                  source: str) -> Dataset:
    """An ImageFolder tree labelled in ImageNet's 1000-class space.

    ``by`` says how class folders are named: ``wnid`` (n01440764) or ``index``
    (ImageNet-V2's 0..999).  Sets that hold only some classes record which, so
    predictions are restricted to those (ImageNet-A/-R).
    """

    def read_classnames(where: Path) -> list[str]:
        return [name for _, name in _imagenet_classes(where)]

    def read_split(where: Path, split: str, data: DataRoot) -> DecodedImageSet:
        pairs = _imagenet_classes(where)
        class_to_idx = ({wnid: i for i, (wnid, _) in enumerate(pairs)} if by == "wnid"
                        else {str(i): i for i in range(len(pairs))})
        images = where / splits[split]
        relpaths, labels = _scan(images, class_to_idx, ds)
        present = sorted(set(labels))
        classes = present if len(present) < len(pairs) else None
        return file_image_set(images, relpaths, labels, data.image_size, classes=classes)

    ds = Dataset(key, title, folder, layout, IMAGENET_TEMPLATES, read_classnames, read_split,
                 splits=tuple(splits), source=source)
    return ds


# ------------------------------------------------------------------ torchvision datasets

def _without_md5(cls):
    """The torchvision class reading files that need not be byte-identical to the official release.

    torchvision refuses files whose md5 differs; clipbench's loaders only need
    them present and readable (so generated miniatures in the same format load),
    and `clipbench data check` reports md5 differences from the official files.
    """
    attrs = {}
    for name in ("train_list", "test_list"):
        if hasattr(cls, name):
            attrs[name] = [[f, None] for f, _ in getattr(cls, name)]
    if hasattr(cls, "meta"):
        attrs["meta"] = {**cls.meta, "md5": None}
    if hasattr(cls, "split_list"):
        attrs["split_list"] = {k: [url, f, None] for k, (url, f, _) in cls.split_list.items()}
    return type(cls.__name__, (cls,), attrs)


def _md5_problems(cls, base: Path) -> list[str]:
    """Files whose md5 differs from torchvision's record of the official release."""
    from torchvision.datasets.utils import check_integrity

    rows = []
    for name in ("train_list", "test_list"):
        rows += [(f, md5) for f, md5 in getattr(cls, name, [])]
    if hasattr(cls, "meta"):
        rows.append((cls.meta["filename"], cls.meta["md5"]))
    for _, f, md5 in getattr(cls, "split_list", {}).values():
        rows.append((f, md5))
    present = [(f, md5) for f, md5 in rows if (base / f).is_file()]
    differ = [f for f, md5 in present if not check_integrity(str(base / f), md5)]
    return [f"{len(differ)} of {len(present)} files differ from the official release (md5): {', '.join(differ)}"] \
        if differ else []


def torchvision_dataset(key: str, title: str, folder: str, layout: str, templates: list[str], make,
                        classnames: Callable[[object], list[str]], labels: Callable[[object], list[int]],
                        identity: Callable[[object, Path], str], official: Callable[[Path], list[str]] | None,
                        source: str) -> Dataset:
    """A dataset torchvision reads; ``make(where, split, download)`` builds torchvision's object."""

    def build(where: Path, split: str, download: bool):
        try:
            return make(where, split, download)
        except RuntimeError as exc:  # torchvision: "Dataset not found or corrupted..."
            raise ds.missing(where) from exc
        except (OSError, ValueError, EOFError, KeyError) as exc:
            raise ClipbenchError(f"{title} under {where} could not be read ({type(exc).__name__}: {exc}); "
                                 "it is corrupt or not in torchvision's format.") from exc

    def read_classnames(where: Path) -> list[str]:
        return classnames(build(where, "test", False))

    def read_split(where: Path, split: str, data: DataRoot) -> DecodedImageSet:
        dataset = build(where, split, data.download)
        return torchvision_image_set(dataset, labels(dataset), identity(dataset, where), data.image_size)

    ds = Dataset(key, title, folder, layout, templates, read_classnames, read_split, official, downloadable=True,
                 source=source)
    return ds


def _tv(name: str):
    import torchvision.datasets as tvd

    return _without_md5(getattr(tvd, name))


def _official(name: str, sub: str = ""):
    def check(where: Path) -> list[str]:
        import torchvision.datasets as tvd

        return _md5_problems(getattr(tvd, name), where / sub if sub else where)
    return check


def _digits(_ds) -> list[str]:
    return [str(i) for i in range(10)]


def _files_identity(ds, where: Path) -> str:
    return files_identity(where, [os.path.relpath(f, where) for f in ds._image_files])


def _load_aircraft(where: Path, split: str, download: bool):
    import torchvision.datasets as tvd

    return tvd.FGVCAircraft(str(where), split=split, annotation_level="variant", download=download)


# ------------------------------------------------------------------ the catalogue

IMAGENET = imagenet_like(
    "imagenet", "ImageNet", "imagenet", {"train": "images/train", "test": "images/val"}, "wnid",
    "imagenet/classnames.txt ('n01440764 tench' per line, CoOp's file) and imagenet/images/{train,val}/<wnid>/*.JPEG",
    "ILSVRC-2012 (image-net.org), CoOp's classnames.txt")

IMAGENET_SHIFTS = {
    "imagenet-v2": imagenet_like(
        "imagenet-v2", "ImageNet-V2", "imagenetv2", {"test": "imagenetv2-matched-frequency-format-val"}, "index",
        "imagenetv2/imagenetv2-matched-frequency-format-val/<0..999>/*.jpeg", "ImageNet-V2 matched-frequency"),
    "imagenet-sketch": imagenet_like(
        "imagenet-sketch", "ImageNet-Sketch", "imagenet-sketch", {"test": "images"}, "wnid",
        "imagenet-sketch/images/<wnid>/*.JPEG", "ImageNet-Sketch"),
    "imagenet-a": imagenet_like(
        "imagenet-a", "ImageNet-A", "imagenet-adversarial", {"test": "imagenet-a"}, "wnid",
        "imagenet-adversarial/imagenet-a/<wnid>/*.jpg (200 classes)", "ImageNet-A"),
    "imagenet-r": imagenet_like(
        "imagenet-r", "ImageNet-R", "imagenet-rendition", {"test": "imagenet-r"}, "wnid",
        "imagenet-rendition/imagenet-r/<wnid>/*.jpg (200 classes)", "ImageNet-R"),
}

COOP = {ds.key: ds for ds in [
    coop_dataset("caltech101", "Caltech101", "caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json",
                 ["a photo of a {}."], "Caltech-101, CoOp split"),
    coop_dataset("oxford-pets", "OxfordPets", "oxford_pets", "images", "split_zhou_OxfordPets.json",
                 ["a photo of a {}, a type of pet."], "Oxford-IIIT Pet, CoOp split"),
    coop_dataset("stanford-cars", "StanfordCars", "stanford_cars", ".", "split_zhou_StanfordCars.json",
                 ["a photo of a {}."], "Stanford Cars, CoOp split"),
    coop_dataset("flowers102", "Flowers102", "oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json",
                 ["a photo of a {}, a type of flower."], "Oxford Flowers-102, CoOp split"),
    coop_dataset("food101", "Food101", "food-101", "images", "split_zhou_Food101.json",
                 ["a photo of {}, a type of food."], "Food-101, CoOp split"),
    coop_dataset("sun397", "SUN397", "sun397", "SUN397", "split_zhou_SUN397.json",
                 ["a photo of a {}."], "SUN397, CoOp split"),
    coop_dataset("dtd", "DTD", "dtd", "images", "split_zhou_DescribableTextures.json",
                 ["{} texture."], "Describable Textures, CoOp split"),
    coop_dataset("eurosat", "EuroSAT", "eurosat", "2750", "split_zhou_EuroSAT.json",
                 ["a centered satellite photo of {}."], "EuroSAT RGB, CoOp split"),
    coop_dataset("ucf101", "UCF101", "ucf101", "UCF-101-midframes", "split_zhou_UCF101.json",
                 ["a photo of a person doing {}."], "UCF101 middle frames, CoOp split"),
]}

FGVC_AIRCRAFT = torchvision_dataset(
    "fgvc-aircraft", "FGVCAircraft", "fgvc-aircraft", "fgvc-aircraft/fgvc-aircraft-2013b/data/ (the official archive: "
    "images/, variants.txt, images_variant_{train,val,test}.txt)", ["a photo of a {}, a type of aircraft."],
    _load_aircraft, lambda ds: list(ds.classes), lambda ds: list(ds._labels), _files_identity, None,
    "FGVC-Aircraft 2013b variants, official split (as CoOp)")


def _cifar(name: str):
    return lambda where, split, download: _tv(name)(str(where), train=(split == "train"), download=download)


PROBES = {ds.key: ds for ds in [
    torchvision_dataset("cifar10", "CIFAR-10", "cifar10", "cifar10/cifar-10-batches-py/ (data_batch_1..5, test_batch, "
                        "batches.meta)", OBJECT_TEMPLATES, _cifar("CIFAR10"), lambda ds: [c.replace("_", " ") for c in ds.classes],
                        lambda ds: list(ds.targets), lambda ds, w: array_identity(ds.data),
                        _official("CIFAR10", "cifar-10-batches-py"), "CIFAR-10 (torchvision)"),
    torchvision_dataset("cifar100", "CIFAR-100", "cifar100", "cifar100/cifar-100-python/ (train, test, meta)",
                        OBJECT_TEMPLATES, _cifar("CIFAR100"), lambda ds: [c.replace("_", " ") for c in ds.classes],
                        lambda ds: list(ds.targets), lambda ds, w: array_identity(ds.data),
                        _official("CIFAR100", "cifar-100-python"), "CIFAR-100 (torchvision)"),
    torchvision_dataset("stl10", "STL-10", "stl10", "stl10/stl10_binary/ (train_X.bin, train_y.bin, test_X.bin, "
                        "test_y.bin, class_names.txt)", ["a photo of a {}.", "a photo of the {}."],
                        lambda where, split, download: _tv("STL10")(str(where), split=split, download=download),
                        lambda ds: list(ds.classes), lambda ds: ds.labels.tolist(),
                        lambda ds, w: array_identity(ds.data), _official("STL10", "stl10_binary"),
                        "STL-10 (torchvision)"),
    torchvision_dataset("mnist", "MNIST", "mnist", "mnist/MNIST/raw/ ({train,t10k}-{images-idx3,labels-idx1}-ubyte)",
                        DIGIT_TEMPLATES,
                        lambda where, split, download: _tv("MNIST")(str(where), train=(split == "train"),
                                                                     download=download),
                        _digits, lambda ds: ds.targets.tolist(), lambda ds, w: array_identity(ds.data.numpy()),
                        None, "MNIST (torchvision)"),
    torchvision_dataset("svhn", "SVHN", "svhn", "svhn/{train,test}_32x32.mat (cropped digits)", DIGIT_TEMPLATES,
                        lambda where, split, download: _tv("SVHN")(str(where), split=split, download=download),
                        _digits, lambda ds: ds.labels.tolist(), lambda ds, w: array_identity(ds.data),
                        _official("SVHN"), "SVHN cropped digits (torchvision)"),
]}

FEWSHOT11 = {"imagenet": IMAGENET, **{k: COOP[k] for k in ("caltech101", "oxford-pets", "stanford-cars",
                                                            "flowers102", "food101")},
             "fgvc-aircraft": FGVC_AIRCRAFT, **{k: COOP[k] for k in ("sun397", "dtd", "eurosat", "ucf101")}}

ALL: dict[str, Dataset] = {**FEWSHOT11, **IMAGENET_SHIFTS, **PROBES}


@dataclass
class Status:
    """What `clipbench data check` found for one dataset."""

    dataset: str
    path: Path
    state: str  # "present", "missing" or "corrupt"
    classes: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def check(dataset: Dataset, root: Path, decode: bool = False) -> Status:
    """Whether ``dataset`` is under ``root``: image counts per split, missing or unreadable files."""
    data = DataRoot(root, image_size=32)
    where = dataset.where(root)
    status = Status(dataset.title, where, "present")
    if not where.is_dir():
        status.state = "missing"
        status.problems.append("no folder there")
        return status
    try:
        n_classes = len(dataset.classnames(data))
        sets = {split: dataset.split(data, split) for split in dataset.splits}
        covered = {len(s.classes) for s in sets.values() if s.classes is not None}
        status.classes = f"{max(covered)} of {n_classes}" if covered else str(n_classes)
    except DatasetMissing as exc:
        status.state = "missing"
        status.problems.append(f"no {exc.what or 'folder'} at {exc.looked}")
        return status
    except ClipbenchError as exc:
        status.state = "corrupt"
        status.problems.append(str(exc))
        return status
    for split, images in sets.items():
        status.counts[split] = len(images)
        status.problems += _unreadable(images, split, decode)
    if dataset.official_check is not None:
        status.problems += dataset.official_check(where)
    if status.problems:
        status.state = "corrupt"
    return status


def _unreadable(images: DecodedImageSet, split: str, decode: bool) -> list[str]:
    problems = []
    paths = getattr(images.read, "paths", None)
    if paths is not None:
        bad = [p for p in paths if not os.path.isfile(p) or os.path.getsize(p) == 0]
        if bad:
            problems.append(f"{split}: {len(bad)} of {len(paths)} listed image files missing or empty "
                            f"(first: {bad[0]})")
    if decode:
        failed = 0
        first = ""
        for i in range(len(images)):
            try:
                images.read(i)
            except Exception as exc:  # any decoder error counts as an unreadable image
                failed += 1
                first = first or f"{i}: {type(exc).__name__}: {exc}"
        if failed:
            problems.append(f"{split}: {failed} of {len(images)} images do not decode (first: {first})")
    return problems


def datasets_of(suite) -> list[Dataset]:
    """The catalogued datasets a suite's tasks, shifts and probes are named after, in suite order."""
    out: list[Dataset] = []
    for task in suite.tasks.values():
        for key in [task.name, *task.shifts]:
            if key in ALL and ALL[key] not in out:
                out.append(ALL[key])
    return out
