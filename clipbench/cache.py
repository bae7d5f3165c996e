"""Content-addressed cache of frozen-encoder image embeddings.

Keyed by (model fingerprint, image-set fingerprint, preprocessing key), so an
image is encoded once per model and the result is reused across runs and
across methods.  Entries are written atomically (temporary file + rename, safe
under concurrent runs), name their own key and carry a sha256 of key and
payload: a corrupt entry, one moved under another key's name, or one of the
wrong shape is reported once and recomputed, never served.

The folder is ``$CLIPBENCH_CACHE_DIR`` or the user's cache directory
(``$XDG_CACHE_HOME/clipbench`` or ``~/.cache/clipbench``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import torch

from clipbench.results import file_mode, remove_stale_temporaries

FORMAT = b"clipbench-emb-2\n"  # header, sha256 of (key line + payload), key line, payload


def default_dir() -> Path:
    if os.environ.get("CLIPBENCH_CACHE_DIR"):
        return Path(os.environ["CLIPBENCH_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "clipbench"


class EmbeddingCache:
    """Embeddings on disk.  An entry names its own key and is checked against it on read: a file
    moved or swapped to another key's name is a miss, as is one of the wrong shape.  A cache that
    cannot be written (read-only, disk full) warns once and the run carries on without it."""

    def __init__(self, root: Path | None = None, enabled: bool = True):
        self.root = Path(root) if root else default_dir()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0
        self._warned: set[str] = set()
        self._writable = True
        self._swept: set[Path] = set()

    def path(self, model_fp: str, data_fp: str, key: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
        return self.root / model_fp / f"{data_fp}-{safe}.pt"

    def get_or_compute(self, model_fp: str, data_fp: str, key: str, compute: Callable[[], torch.Tensor],
                       rows: int | None = None, ndim: int = 2) -> torch.Tensor:
        """The cached tensor for (model_fp, data_fp, key), else ``compute()`` stored; ``rows`` is the
        number of rows and ``ndim`` the number of dimensions the tensor must have (a cached entry of
        another shape is recomputed)."""
        if not self.enabled:
            return compute()
        path = self.path(model_fp, data_fp, key)
        ident = json.dumps({"model": model_fp, "data": data_fp, "key": key}, sort_keys=True).encode()
        cached = self._read(path, ident, rows, ndim)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        value = compute()
        self._write(path, ident, value)
        return value

    def _read(self, path: Path, ident: bytes, rows: int | None, ndim: int = 2) -> torch.Tensor | None:
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        header, digest, body = raw[:len(FORMAT)], raw[len(FORMAT):len(FORMAT) + 64], raw[len(FORMAT) + 64:]
        line, _, payload = body.partition(b"\n")
        if header != FORMAT or hashlib.sha256(body).hexdigest().encode() != digest:
            self._warn("corrupt", f"clipbench: corrupt embedding cache entry {path}; recomputing it.")
            self._discard(path)
            return None
        if line != ident:  # a valid entry of another key, moved here: never serve it
            self._warn("foreign", f"clipbench: the embedding cache entry {path} belongs to another key; recomputing.")
            self._discard(path)
            return None
        try:
            value = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        except Exception:
            value = None
        if not isinstance(value, torch.Tensor) or value.ndim != ndim or (rows is not None and len(value) != rows):
            self._warn("shape", f"clipbench: the embedding cache entry {path} has the wrong shape; recomputing.")
            self._discard(path)
            return None
        return value

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            warnings.warn(message, stacklevel=4)
            self._warned.add(kind)

    @staticmethod
    def _discard(path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass

    def _write(self, path: Path, ident: bytes, value: torch.Tensor) -> None:
        if not self._writable:
            return
        buf = io.BytesIO()
        torch.save(value.detach().cpu().contiguous(), buf)
        body = ident + b"\n" + buf.getvalue()
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.parent not in self._swept:
                self._swept.add(path.parent)
                remove_stale_temporaries(path.parent, "*.pt.*.tmp")
            fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
            os.fchmod(fd, file_mode())
            with os.fdopen(fd, "wb") as f:
                f.write(FORMAT + hashlib.sha256(body).hexdigest().encode() + body)
            os.replace(tmp, path)
        except OSError as exc:  # a read-only or full cache must not stop a run, nor fill the disk with leftovers
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
            self._writable = False
            self._warn("write", f"clipbench: could not write the embedding cache at {path.parent} "
                                f"({exc.strerror or exc}); carrying on without caching.")


def rendered_images(fingerprint: str, rows: int, render: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Images generated from a recipe (the built-in world's sets), rendered once and kept in the cache folder.

    Rendering a default-suite world task's sets takes about 5 s of a core in every process that scores
    it (each sweep worker, each tuning run); reading them back takes milliseconds and gives the same
    bytes.  ``fingerprint`` names the recipe (it hashes the generator's source); numpy's version is part
    of the key, since the images are drawn with numpy's generators.
    """
    import numpy

    return EmbeddingCache().get_or_compute("rendered", fingerprint, f"uint8-numpy{numpy.__version__}", render,
                                           rows=rows, ndim=4)
