"""The real images that ship inside clipbench: clothing, handwritten digits, animal silhouettes.

Three small collections of 28x28 greyscale images are package assets (built
from their public sources, licences and checksums recorded, by
``tools/build_default_images.py``), each split once into a *pretrain* pool (the
only images the embedded model was pretrained on), a *train* pool (k shots and
validation images come from here) and a *test* set.  scikit-learn's 8x8 digits,
other writers at another resolution, are read from scikit-learn itself.

Images are placed on the embedded model's 32x32 canvas (centred, 2 pixels of
black border) as three identical channels.  Shifts are pure, seeded functions of
the test images (a low-resolution copy, a partly blanked view), so a
set is known by its recipe and fingerprinted without decoding anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
from functools import lru_cache
from pathlib import Path

import numpy as np

from clipbench.errors import ClipbenchError

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "images"
MANIFEST = ASSETS / "MANIFEST.json"
COLLECTIONS = ("fashion", "mnist", "animals")
SPLITS = ("pretrain", "train", "test")
CANVAS = 32


@lru_cache(maxsize=None)
def manifest() -> dict:
    try:
        data = json.loads(MANIFEST.read_text())
    except FileNotFoundError:
        raise ClipbenchError(f"The default suite's images are missing: looked for {MANIFEST}. "
                             "Reinstall clipbench (they ship with it).") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ClipbenchError(f"The default suite's image manifest {MANIFEST} is damaged ({type(exc).__name__}); "
                             "reinstall clipbench.") from None
    collections = data.get("collections") if isinstance(data, dict) else None
    if not isinstance(collections, dict) or not all(
            isinstance(collections.get(c), dict) and {"file", "sha256", "classes"} <= set(collections[c])
            for c in COLLECTIONS):
        raise ClipbenchError(f"The default suite's image manifest {MANIFEST} is damaged (a collection's file, "
                             "sha256 or classes is missing); reinstall clipbench.")
    return data


def classes(collection: str) -> list[str]:
    return list(manifest()["collections"][collection]["classes"])


@lru_cache(maxsize=None)
def _arrays(collection: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    entry = manifest()["collections"][collection]
    path = ASSETS / entry["file"]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ClipbenchError(f"The default suite's {collection} images are missing: looked for {path}. "
                             "Reinstall clipbench.") from None
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise ClipbenchError(f"{path} is corrupt (its sha256 differs from {MANIFEST.name}). Reinstall clipbench, "
                             "or rebuild it with tools/build_default_images.py.")
    buf = io.BytesIO(lzma.decompress(data))
    images, labels, splits = (np.load(buf, allow_pickle=False) for _ in range(3))
    return images, labels, splits


def split(collection: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """28x28 uint8 images and int64 labels of one split of a shipped collection."""
    images, labels, splits = _arrays(collection)
    rows = splits == SPLITS.index(name)
    return images[rows], labels[rows].astype(np.int64)


def split_labels(collection: str, name: str) -> np.ndarray:
    return split(collection, name)[1]


def sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits (UCI, other writers), drawn as MNIST draws digits.

    MNIST centres each digit in a 20x20 box inside 28x28; the 8x8 grid is scaled
    to that box (bilinear) and its 0-16 levels to 0-255.
    """
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]
    x = F.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False)
    x = F.pad(x, (4, 4, 4, 4))
    images = np.clip(np.round(x[:, 0].numpy() * 255.0), 0, 255).astype(np.uint8)
    return images, digits.target.astype(np.int64)


# ------------------------------------------------------------------ placing and shifting


def to_canvas(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) greyscale -> (N, 32, 32), centred on a black border."""
    pad = (CANVAS - images.shape[-1]) // 2
    canvas = np.zeros((len(images), CANVAS, CANVAS), dtype=np.uint8)
    canvas[:, pad:pad + images.shape[1], pad:pad + images.shape[2]] = images
    return canvas


def to_rgb(canvas: np.ndarray) -> np.ndarray:
    """(N, 32, 32) greyscale -> (N, 3, 32, 32): the three identical channels the model takes."""
    return np.repeat(canvas[:, None], 3, axis=1)


def lowres(images: np.ndarray, rng: np.random.Generator, size: int = 10) -> np.ndarray:
    """A thumbnail: averaged down to ``size`` x ``size`` and scaled back up (bilinear)."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(images.astype(np.float32))[:, None]
    x = F.interpolate(F.adaptive_avg_pool2d(x, size), size=images.shape[-2:], mode="bilinear", align_corners=False)
    return np.clip(np.round(x[:, 0].numpy()), 0, 255).astype(np.uint8)


def occlude(images: np.ndarray, rng: np.random.Generator, side: int = 10) -> np.ndarray:
    """A partial view: a ``side`` x ``side`` square blanked, centred on a random pixel of the figure.

    The centre is drawn among the pixels at least half as bright as the image's
    brightest, so the square always hides part of the object: a square placed
    anywhere in the frame fell on the empty border of small silhouettes and left
    them unchanged.
    """
    out = images.copy()
    height, width = images.shape[1:]
    draws = rng.random(len(images))
    for i, image in enumerate(images):
        rows, cols = np.nonzero(image >= max(int(image.max()), 1) / 2)
        if len(rows) == 0:  # a blank image has nothing to hide
            continue
        pick = min(int(draws[i] * len(rows)), len(rows) - 1)
        top = min(max(int(rows[pick]) - side // 2, 0), height - side)
        left = min(max(int(cols[pick]) - side // 2, 0), width - side)
        out[i, top:top + side, left:left + side] = 0
    return out


SHIFTS = {"lowres": lowres, "occluded": occlude}


def canvas_images(images: np.ndarray, shift: str | None = None, seed: int = 0) -> np.ndarray:
    """28x28 greyscale -> the model's (N, 3, 32, 32) uint8, with a shift applied to the whole canvas."""
    canvas = to_canvas(images)
    if shift is not None:
        canvas = SHIFTS[shift](canvas, np.random.default_rng(seed))
    return to_rgb(canvas)


# ------------------------------------------------------------------ captions (pretraining)

# The captioners' words for each class.  The task's class name (Fashion-MNIST's official label, the
# numeral, the animal's common name) competes with the words captioners prefer ("tee", "seven",
# "kitten"), and for every other class (odd labels) the captioners never use it at all: a downstream
# label vocabulary the pretraining never saw, as for real tasks whose class names are rare or absent on
# the web.  Contrastive pretraining aligns even a rare word well (2% of a class's captions was enough,
# measured), so only an absent one leaves zero-shot prompts unaligned with images that the features,
# trained on the captioners' own words, still tell apart: the gap a few labelled examples can close.
TASK_WORD_RATE = {"common": 0.3, "absent": 0.0}


def task_word_rate(label: int) -> float:
    return TASK_WORD_RATE["absent" if label % 2 else "common"]


CAPTION_WORDS = {
    "fashion": {"t-shirt": ["tee", "tee shirt", "top"], "trouser": ["pants", "jeans", "slacks"],
                "pullover": ["sweater", "jumper"], "dress": ["gown", "frock"],
                "coat": ["jacket", "overcoat", "parka"], "sandal": ["flip flop", "slipper"],
                "shirt": ["blouse", "button shirt"], "sneaker": ["trainer", "running shoe"],
                "bag": ["handbag", "purse", "tote"], "ankle boot": ["boot", "bootie"]},
    "mnist": {d: [w] for d, w in zip("0123456789", ["zero", "one", "two", "three", "four", "five", "six",
                                                     "seven", "eight", "nine"])},
    "animals": {"bear": ["grizzly", "cub"], "bird": ["sparrow", "robin", "crow"], "cat": ["kitten", "kitty"],
                "cow": ["cattle", "calf", "bull"], "dog": ["puppy", "hound"], "elephant": ["tusker", "jumbo"],
                "giraffe": ["camelopard"], "horse": ["pony", "stallion", "mare"], "sheep": ["lamb", "ewe", "ram"],
                "zebra": ["quagga"]},
}
CAPTION_TEMPLATES = {
    "fashion": ["a photo of a {}", "a {}", "a product photo of a {}", "a black and white photo of a {}", "{}",
                "a {} for sale"],
    "mnist": ["a handwritten {}", "the digit {}", "the number {}", "a photo of the number {}", "{}",
              "a drawing of a {}"],
    "animals": ["a silhouette of a {}", "a {}", "a black and white picture of a {}", "the shape of a {}",
                "a {} in silhouette", "{}"],
}
UNINFORMATIVE = {"fashion": "a black and white photo", "mnist": "a handwritten number",
                 "animals": "a black and white picture"}


def caption(collection: str, label: int, rng: np.random.Generator, noise: float = 0.1,
            missing: float = 0.1) -> str:
    """A web-like caption: the class in a captioner's words, sometimes another class's, sometimes none."""
    names = list(CAPTION_WORDS[collection])
    if rng.random() < missing:
        return UNINFORMATIVE[collection]
    if rng.random() < noise:
        label = int(rng.integers(0, len(names)))
    words = CAPTION_WORDS[collection][names[label]]
    word = names[label] if rng.random() < task_word_rate(label) else words[int(rng.integers(0, len(words)))]
    templates = CAPTION_TEMPLATES[collection]
    return templates[int(rng.integers(0, len(templates)))].format(word)


def vocabulary() -> set[str]:
    """Every word a shipped-image caption can contain."""
    words = set()
    for collection in COLLECTIONS:
        for name, values in CAPTION_WORDS[collection].items():
            for v in values + [name]:
                words.update(v.split())
        for t in CAPTION_TEMPLATES[collection]:
            words.update(t.replace("{}", "").split())
        words.update(UNINFORMATIVE[collection].split())
    return words


def transforms_version() -> str:
    """A hash of the code that turns assets into the images a task scores (placing, shifting, the UCI digits),
    line endings normalised: a set's fingerprint changes only when that code or the assets do, never when a
    caption word does."""
    import inspect

    source = "".join(inspect.getsource(f) for f in (to_canvas, to_rgb, lowres, occlude, canvas_images,
                                                    sklearn_digits))
    return hashlib.sha256(source.replace("\r\n", "\n").encode()).hexdigest()[:12]
