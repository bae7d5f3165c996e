"""Generated miniature datasets in the exact on-disk formats of the real ones.

Every image of class ``c`` is filled with ``class_colour(c)`` (plus a little
noise, in a size that varies so resizing and cropping are exercised), so a test
can tell from the decoded pixels which class a loader claims an image is.
Formats: CoOp's layout and split files, ImageNet folders and the four shifts,
FGVC-Aircraft's official archive, CIFAR-10/100 pickles, STL-10 binaries, MNIST
IDX files, SVHN .mat files.
"""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from clipbench.data import real

SIZES = [(40, 30), (30, 44), (36, 36)]


def class_colour(c: int) -> np.ndarray:
    """A distinct RGB colour per class (12 of them, then repeating with an offset)."""
    hue = (c * 5 % 12) / 12.0
    rgb = np.array([np.cos(2 * np.pi * (hue + k / 3)) for k in range(3)]) * 90 + 128 + (c // 12) * 7
    return rgb.clip(0, 255).astype(np.uint8)


def class_grey(c: int) -> int:
    return 20 + 22 * c


def nearest_class(image: np.ndarray, n: int, grey: bool = False) -> int:
    """The class whose colour is closest to the mean colour of a decoded (3, H, W) uint8 image."""
    mean = image.reshape(3, -1).mean(axis=1)
    if grey:
        return int(np.argmin([abs(mean.mean() - class_grey(c)) for c in range(n)]))
    return int(np.argmin([np.abs(mean - class_colour(c)).sum() for c in range(n)]))


def _pixels(c: int, size: tuple[int, int], rng, grey: bool = False) -> np.ndarray:
    w, h = size
    base = np.full((h, w, 3), class_grey(c) if grey else class_colour(c), dtype=np.int16)
    return (base + rng.integers(-4, 5, size=base.shape)).clip(0, 255).astype(np.uint8)


def _write_image(path: Path, c: int, i: int, rng) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_pixels(c, SIZES[i % len(SIZES)], rng)).save(path, quality=95)


def wnid(c: int) -> str:
    return f"n{c + 1:08d}"


IMAGENET_CLASSES = 12  # more than 10, so ImageNet-V2's folder "10" sorts before "2"
A_CLASSES = [1, 3, 4, 8, 10]  # ImageNet-A and -R hold a subset of the classes
R_CLASSES = [0, 2, 3, 5, 9, 11]


def imagenet(root: Path, train: int = 6, test: int = 3, seed: int = 0) -> None:
    """CoOp's ImageNet layout and the four shifts, labelled in the same 12-class space."""
    rng = np.random.default_rng(seed)
    base = root / "imagenet"
    base.mkdir(parents=True, exist_ok=True)
    (base / "classnames.txt").write_text("".join(f"{wnid(c)} class {c} thing\n" for c in range(IMAGENET_CLASSES)))
    for c in range(IMAGENET_CLASSES):
        for i in range(train):
            _write_image(base / "images" / "train" / wnid(c) / f"{wnid(c)}_{i}.JPEG", c, i, rng)
        for i in range(test):
            _write_image(base / "images" / "val" / wnid(c) / f"ILSVRC2012_val_{c:04d}{i}.JPEG", c, i, rng)
    for c in range(IMAGENET_CLASSES):
        for i in range(2):
            _write_image(root / "imagenetv2" / "imagenetv2-matched-frequency-format-val" / str(c) / f"{i}abc.jpeg",
                         c, i, rng)
            _write_image(root / "imagenet-sketch" / "images" / wnid(c) / f"sketch_{i}.JPEG", c, i, rng)
    for folder, sub, classes in (("imagenet-adversarial", "imagenet-a", A_CLASSES),
                                 ("imagenet-rendition", "imagenet-r", R_CLASSES)):
        for c in classes:
            for i in range(2):
                _write_image(root / folder / sub / wnid(c) / f"{sub}_{i}.jpg", c, i, rng)
        (root / folder / sub / "README.txt").write_text("not a class folder\n")


def coop(root: Path, ds: real.Dataset, classes: int = 4, train: int = 6, test: int = 3, seed: int = 0) -> list[str]:
    """A CoOp-split dataset: images under its image folder and ``split_zhou_*.json``; returns class names."""
    rng = np.random.default_rng(seed)
    where = ds.where(root)
    split_file, image_dir = ds.split_file, ds.image_dir
    names = [f"{ds.key}_class_{c}" for c in range(classes)]
    split = {"train": [], "val": [], "test": []}
    for c in range(classes):
        for part, count in (("train", train), ("val", 2), ("test", test)):
            for i in range(count):
                rel = f"{names[c]}/{part}_{i:03d}.jpg"
                _write_image(where / image_dir / rel, c, i, rng)
                split[part].append([rel, c, names[c]])
    (where / split_file).write_text(json.dumps(split))
    return [n.replace("_", " ") for n in names]


def fgvc_aircraft(root: Path, classes: int = 4, train: int = 6, test: int = 3, seed: int = 0) -> list[str]:
    """FGVC-Aircraft's official archive layout: variants.txt and images_variant_<split>.txt."""
    rng = np.random.default_rng(seed)
    data = root / "fgvc-aircraft" / "fgvc-aircraft-2013b" / "data"
    names = [f"Boeing 7{c}7-200" for c in range(classes)]
    data.mkdir(parents=True, exist_ok=True)
    (data / "variants.txt").write_text("".join(n + "\n" for n in names))
    image_id = 1000000
    for part, count in (("train", train), ("val", 2), ("test", test)):
        lines = []
        for c in range(classes):
            for i in range(count):
                image_id += 1
                _write_image(data / "images" / f"{image_id}.jpg", c, i, rng)
                lines.append(f"{image_id} {names[c]}\n")
        (data / f"images_variant_{part}.txt").write_text("".join(lines))
    return names


def _labels_for(n_classes: int, per_class: int, rng) -> np.ndarray:
    return rng.permutation(np.repeat(np.arange(n_classes), per_class))


def cifar(root: Path, hundred: bool = False, train: int = 6, test: int = 3, seed: int = 0) -> list[str]:
    """CIFAR-10 (5 train batches + test_batch + batches.meta) or CIFAR-100 (train, test, meta) pickles."""
    rng = np.random.default_rng(seed)
    n = 12 if hundred else 10  # CIFAR-100 keeps 100 names; the miniature uses the first 12 labels
    names = [f"thing_{c}" for c in range(100 if hundred else 10)]
    base = root / ("cifar100/cifar-100-python" if hundred else "cifar10/cifar-10-batches-py")
    base.mkdir(parents=True, exist_ok=True)
    key = "fine_labels" if hundred else "labels"

    def batch(labels):
        images = np.stack([_pixels(c, (32, 32), rng) for c in labels])  # (N, 32, 32, 3)
        return {"data": images.transpose(0, 3, 1, 2).reshape(len(labels), -1), key: labels.tolist()}

    train_labels = _labels_for(n, train, rng)
    if hundred:
        parts = {"train": train_labels}
        meta = ("meta", {"fine_label_names": names, "coarse_label_names": ["c"]})
    else:
        parts = {f"data_batch_{i + 1}": chunk for i, chunk in enumerate(np.array_split(train_labels, 5))}
        meta = ("batches.meta", {"label_names": names})
    parts["test" if hundred else "test_batch"] = _labels_for(n, test, rng)
    for name, labels in parts.items():
        with open(base / name, "wb") as f:
            pickle.dump(batch(labels), f)
    with open(base / meta[0], "wb") as f:
        pickle.dump(meta[1], f)
    return [x.replace("_", " ") for x in names]


def stl10(root: Path, train: int = 6, test: int = 3, seed: int = 0) -> list[str]:
    """STL-10 binaries: column-major 96x96 images, labels 1..10, class_names.txt."""
    rng = np.random.default_rng(seed)
    base = root / "stl10" / "stl10_binary"
    base.mkdir(parents=True, exist_ok=True)
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (base / "class_names.txt").write_text("\n".join(names) + "\n")
    for part, per in (("train", train), ("test", test)):
        labels = _labels_for(10, per, rng)
        images = np.stack([_pixels(c, (96, 96), rng) for c in labels]).transpose(0, 3, 2, 1)  # (N, 3, W, H)
        (base / f"{part}_X.bin").write_bytes(np.ascontiguousarray(images).tobytes())
        (base / f"{part}_y.bin").write_bytes((labels + 1).astype(np.uint8).tobytes())
    (base / "unlabeled_X.bin").write_bytes(np.zeros((2, 3, 96, 96), dtype=np.uint8).tobytes())
    return names


def mnist(root: Path, train: int = 6, test: int = 3, seed: int = 0) -> list[str]:
    """MNIST's IDX files under MNIST/raw (uncompressed, as torchvision keeps them)."""
    rng = np.random.default_rng(seed)
    raw = root / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, per in (("train", train), ("t10k", test)):
        labels = _labels_for(10, per, rng)
        images = np.stack([_pixels(c, (28, 28), rng, grey=True)[:, :, 0] for c in labels])
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x0803, len(labels), 28, 28)
                                                          + images.astype(np.uint8).tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x0801, len(labels))
                                                          + labels.astype(np.uint8).tobytes())
    return [str(d) for d in range(10)]


def svhn(root: Path, train: int = 6, test: int = 3, seed: int = 0) -> list[str]:
    """SVHN's cropped-digit .mat files: X is (32, 32, 3, N), y uses 10 for the digit 0."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    base = root / "svhn"
    base.mkdir(parents=True, exist_ok=True)
    for part, per in (("train", train), ("test", test)):
        labels = _labels_for(10, per, rng)
        images = np.stack([_pixels(c, (32, 32), rng) for c in labels], axis=-1)  # (32, 32, 3, N)
        savemat(base / f"{part}_32x32.mat", {"X": images, "y": np.where(labels == 0, 10, labels)[:, None]})
    return [str(d) for d in range(10)]


def all_datasets(root: Path) -> dict[str, list[str]]:
    """Every catalogued dataset in miniature under ``root``; returns the expected class names by task."""
    imagenet(root)
    expected = {"imagenet": [f"class {c} thing" for c in range(IMAGENET_CLASSES)]}
    for key, ds in real.COOP.items():
        expected[key] = coop(root, ds)
    expected["fgvc-aircraft"] = fgvc_aircraft(root)
    expected["cifar10"] = cifar(root)
    expected["cifar100"] = cifar(root, hundred=True)
    expected["stl10"] = stl10(root)
    expected["mnist"] = mnist(root)
    expected["svhn"] = svhn(root)
    return expected
