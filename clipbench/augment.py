"""Augmented views of support images, drawn from a seed: the random resized crop and flip the references train on.

CoOp, Tip-Adapter and CLIP-Adapter augment every training image afresh each epoch (torchvision's
RandomResizedCrop and RandomHorizontalFlip).  A method whose image encoder is frozen trains on embeddings,
so clipbench draws a fixed number of views per image from the cell's seed and encodes them once
(cached across runs when the encoder is the pretrained one, see :meth:`clipbench.tasks.FewShot.views`);
epoch ``e`` then trains on view ``e mod views``.  The draw is torchvision's crop-box rule with torch's
seeded generator (torchvision's own transforms read the global random state).
"""

from __future__ import annotations

import hashlib
import inspect
import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torchvision
from torchvision.transforms.v2 import functional as TF

from clipbench.cards import Deviation


@dataclass(frozen=True)
class ViewPlan:
    """How the views of one image set are drawn: ``views`` per image, crops covering ``scale`` of the area
    with aspect ratios in ``ratio``, flipped with probability 0.5 when ``flip``; ``seed`` fixes every draw."""

    views: int
    seed: int
    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True

    def __post_init__(self):
        """Refuse a plan no draw could honour (checked wherever one is made, the harness's included)."""
        if not isinstance(self.views, int) or isinstance(self.views, bool) or not 1 <= self.views <= MAX_VIEWS:
            raise ValueError(f"views must be a whole number from 1 to {MAX_VIEWS}, not {self.views!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be a whole number, not {self.seed!r}")
        for name, pair, top in (("scale", self.scale, 1.0), ("ratio", self.ratio, None)):
            if (not isinstance(pair, tuple) or len(pair) != 2 or not all(isinstance(v, (int, float)) for v in pair)
                    or not 0 < pair[0] <= pair[1] or (top is not None and pair[1] > top)):
                bound = "0 < low <= high <= 1" if top else "0 < low <= high"
                raise ValueError(f"{name} must be a (low, high) pair with {bound}, not {pair!r}")
        if not isinstance(self.flip, bool):
            raise ValueError(f"flip must be True or False, not {self.flip!r}")

    def key(self) -> str:
        """The cache key of this plan's embeddings: every draw parameter (exactly: floats in hex), this
        module's drawing code and the versions whose arithmetic makes the pixels (a resize kernel that changes
        between releases changes the views)."""
        numbers = ",".join(float(v).hex() for v in (*self.scale, *self.ratio))
        return (f"views{self.views}-seed{self.seed}-{numbers}-flip{int(self.flip)}-code{code_version()}"
                f"-torch{torch.__version__}-torchvision{torchvision.__version__}")


MAX_VIEWS = 64


@lru_cache(maxsize=1)
def code_version() -> str:
    """A hash of the functions that draw views: editing them changes every cached view's key."""
    source = "".join(inspect.getsource(f) for f in (crop_box, random_crops))
    return hashlib.sha256(source.encode()).hexdigest()[:12]


def view_seed(cell_seed: int, purpose: str) -> int:
    """A plan seed for one use of a cell's support set ("keys", "train"): independent draws per purpose."""
    digest = hashlib.sha256(f"{cell_seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2 ** 63 - 1)


def view_plan(cell_seed: int, views: int, purpose: str, scale=(0.5, 1.0)) -> ViewPlan:
    """The plan of ``views`` views of a cell's support set for one ``purpose``, from plain values only
    (checked: a bad count or scale is one clear error)."""
    if not isinstance(purpose, str):
        raise ValueError(f"purpose must be a string such as 'train', not {purpose!r}")
    try:
        pair = tuple(float(v) for v in scale)
    except (TypeError, ValueError):
        raise ValueError(f"scale must be a (low, high) pair of numbers, not {scale!r}") from None
    return ViewPlan(views, view_seed(cell_seed, purpose), scale=pair)


def crop_box(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
             generator: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop covering a uniform share ``scale`` of the area with a log-uniform
    aspect ratio in ``ratio`` (ten tries, then the centre crop clipped to ``ratio``): RandomResizedCrop's rule."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))  # float32 arithmetic, as torchvision's, so the boxes agree
    for _ in range(10):
        target = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator)).item()
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_crops(images: torch.Tensor, generator: torch.Generator, scale: tuple[float, float] = (0.5, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True) -> torch.Tensor:
    """One augmented view of each of ``images`` (N, 3, H, W): a random crop (:func:`crop_box`) resized back to
    (H, W) (bilinear, antialiased), flipped with probability 0.5 when ``flip``; every draw from ``generator``."""
    height, width = images.shape[-2:]
    out = torch.empty_like(images)
    for i, image in enumerate(images):
        top, left, h, w = crop_box(height, width, scale, ratio, generator)
        view = TF.resized_crop(image, top, left, h, w, [height, width], antialias=True)
        if flip and float(torch.rand(1, generator=generator)) < 0.5:
            view = TF.horizontal_flip(view)
        out[i] = view
    return out


def draw_views(images: torch.Tensor, plan: ViewPlan) -> torch.Tensor:
    """``plan.views`` augmented copies of ``images`` (N, 3, H, W), view-major: rows ``v*N .. v*N+N-1`` are view
    ``v`` of every image (:func:`random_crops` from a generator seeded with ``plan.seed``)."""
    generator = torch.Generator().manual_seed(plan.seed)
    return torch.cat([random_crops(images, generator, plan.scale, plan.ratio, plan.flip) for _ in range(plan.views)])


def encode_views(encode_image, images: torch.Tensor, plan: ViewPlan, batch_size: int = 512) -> torch.Tensor:
    """Embeddings of the plan's views of ``images`` as (views, N, D), encoded by ``encode_image``: drawn and
    encoded a batch at a time (the draws in :func:`draw_views`' order, so the same views), never all at once."""
    generator = torch.Generator().manual_seed(plan.seed)
    out = []
    with torch.no_grad():
        for _ in range(plan.views):
            for i in range(0, len(images), batch_size):
                crops = random_crops(images[i:i + batch_size], generator, plan.scale, plan.ratio, plan.flip)
                out.append(encode_image(crops).float())
    return torch.cat(out).view(plan.views, len(images), -1)


# The card entry of every method that augments with :func:`random_crops` (the arithmetic, not the recipe).
AUGMENTATION_ARITHMETIC = Deviation(
    "augmentation arithmetic",
    "PIL crops of each original image resized to the model's input (bicubic in CLIP's, Tip-Adapter's and Dassl's "
    "transforms; bilinear in torchvision's default), then normalised",
    "torchvision's crop-box rule on the image as the suite loads it (the embedded suite's 28-32 pixel images; a real "
    "suite's images already resized and centre-cropped to the model's input), resized back to that size (bilinear, "
    "antialiased), then the model's preprocessing; every draw from torch's seeded generator",
    True, "methods receive loaded image tensors, not the original files; the seeded draws make every run draw the "
          "same views")


def cached_views_deviation(reference: str) -> Deviation:
    """The card entry of a frozen-encoder method that trains on :meth:`FewShot.views` where its reference
    augments every epoch (``reference``: what the reference's transforms are)."""
    return Deviation(
        "augmentation", reference,
        "10 augmented views per support image (random resized crop, area 0.5-1, and flip) drawn once from the "
        "cell's seed; epoch e trains on view e mod 10",
        True, "the image tower is frozen, so a fixed set of views is encoded once (and cached across runs); the "
              "crop scale of Tip-Adapter's code, because the embedded suite's objects fill 28-32 pixel images "
              "that an 8% crop would mostly lose")
