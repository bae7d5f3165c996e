"""Image sets read from disk: image files and torchvision datasets, decoded in DataLoader workers.

Real datasets have images of every size; the protocol wants uint8 tensors of
one size.  Every image is resized (shorter side, bicubic) and centre-cropped to
the model's input size, CLIP's own evaluation transform, in worker processes so
that decoding JPEGs overlaps encoding.  The fingerprint names the files (relative
paths and sizes, or the dataset's arrays), the labels and the transform, so the
embedding cache finds a set again without decoding it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from clipbench.errors import ClipbenchError
from clipbench.tasks import ImageSet

SMALL = 64  # below this many images, decoding in the main process beats starting workers


def default_workers() -> int:
    """``$CLIPBENCH_WORKERS`` or one worker per core this process may use, at most 8."""
    if os.environ.get("CLIPBENCH_WORKERS"):
        value = os.environ["CLIPBENCH_WORKERS"]
        if not (value.isascii() and value.isdigit()):  # isdigit alone accepts superscripts (²)
            raise ClipbenchError(f"CLIPBENCH_WORKERS must be a whole number of worker processes, not {value!r}.")
        return int(value)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(8, cores)


def clip_transform(image: Image.Image, size: int) -> torch.Tensor:
    """CLIP's evaluation transform without normalisation: shorter side to ``size``, centre crop, uint8."""
    image = image.convert("RGB")
    w, h = image.size
    scale = size / min(w, h)
    if (w, h) != (size, size):
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BICUBIC)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        image = image.crop((left, top, left + size, top + size))
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


class _Decode(torch.utils.data.Dataset):
    """Rows of a set, decoded and transformed; what DataLoader workers run."""

    def __init__(self, read: Callable[[int], Image.Image], rows: Sequence[int], size: int):
        self.read, self.rows, self.size = read, rows, size

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        try:
            return clip_transform(self.read(int(self.rows[i])), self.size), ""
        except Exception as exc:  # reported by the main process as one sentence, not a worker traceback
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), f"{type(exc).__name__}: {exc}"


def _collate(items: list[tuple[torch.Tensor, str]]) -> tuple[torch.Tensor, list[str]]:
    return torch.stack([image for image, _ in items]), [error for _, error in items]


class DecodedImageSet(ImageSet):
    """A set whose images are decoded on demand: ``read(i)`` returns the i-th PIL image."""

    def __init__(self, read: Callable[[int], Image.Image], labels: torch.Tensor, identity: str, image_size: int,
                 workers: int | None = None, classes: list[int] | None = None):
        self.read = read
        self.labels = labels.long()
        self.image_size = image_size
        self.workers = default_workers() if workers is None else workers
        self.classes = classes
        h = hashlib.sha256(identity.encode())
        h.update(self.labels.numpy().tobytes())
        h.update(f"resize-shorter-bicubic-centre-crop-{image_size}".encode())
        if classes is not None:
            h.update(np.asarray(classes, dtype=np.int64).tobytes())
        self.fingerprint = h.hexdigest()[:16]

    def load(self, indices: torch.Tensor) -> torch.Tensor:
        parts = list(self.load_batches(indices, 64))  # small batches spread over all workers
        if not parts:
            return torch.empty(0, 3, self.image_size, self.image_size, dtype=torch.uint8)
        return torch.cat(parts)

    def load_batches(self, rows: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
        rows = rows.tolist()
        workers = self.workers if len(rows) >= SMALL else 0
        loader = torch.utils.data.DataLoader(_Decode(self.read, rows, self.image_size), batch_size=batch_size,
                                             num_workers=workers, shuffle=False, collate_fn=_collate,
                                             prefetch_factor=4 if workers else None)
        for images, errors in loader:
            failed = [e for e in errors if e]
            if failed:
                raise ClipbenchError(f"{len(failed)} of {len(errors)} images in a batch could not be read "
                                     f"(first: {failed[0]}); `clipbench data check --decode` lists them all.")
            yield images


class _OpenFile:
    """Picklable reader of one list of files (DataLoader workers receive it)."""

    def __init__(self, paths: list[str]):
        self.paths = paths

    def __call__(self, i: int) -> Image.Image:
        with Image.open(self.paths[i]) as im:
            im.load()
            return im


def file_image_set(root: Path, relpaths: list[str], labels: Sequence[int], image_size: int,
                   classes: list[int] | None = None) -> DecodedImageSet:
    """Images named by paths relative to ``root``; the fingerprint hashes names and file sizes."""
    return DecodedImageSet(_OpenFile([str(root / rel) for rel in relpaths]), torch.as_tensor(list(labels)),
                           files_identity(root, relpaths), image_size, classes=classes)


def files_identity(root: Path, relpaths: Sequence[str]) -> str:
    """Identity of a list of files, independent of where the dataset lives: relative names and sizes."""
    h = hashlib.sha256()
    for rel in relpaths:
        h.update(str(rel).encode())
        try:
            h.update(str(os.stat(Path(root) / rel).st_size).encode())
        except OSError:
            h.update(b"missing")
    return "files:" + h.hexdigest()


class _Indexed:
    """Picklable reader of a torchvision dataset that returns (PIL image, label)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __call__(self, i: int) -> Image.Image:
        return self.dataset[i][0]


def torchvision_image_set(dataset, labels: Sequence[int], identity: str, image_size: int) -> DecodedImageSet:
    """A torchvision dataset (images held as arrays or files) as an image set."""
    return DecodedImageSet(_Indexed(dataset), torch.as_tensor(list(labels)), identity, image_size)


def array_identity(*arrays) -> str:
    """Content hash of in-memory dataset arrays (CIFAR, MNIST, SVHN, STL-10 keep theirs in RAM)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return "arrays:" + h.hexdigest()
