"""Loading CLIP models: open_clip names + pretrained tags, local checkpoints, the embedded model.

Everything downstream sees a :class:`ClipModel`: the open_clip module plus its
tokenizer and image normalisation, with a fingerprint computed from the actual
weights so two results are comparable only when the weights really match.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import lzma
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from clipbench.errors import ClipbenchError

ASSETS = Path(__file__).parent / "assets"
EMBEDDED = "clipbench-tiny"
EMBEDDED_CONFIG = ASSETS / f"{EMBEDDED}.json"
EMBEDDED_WEIGHTS = ASSETS / f"{EMBEDDED}.pt.xz"
EMBEDDED_SHA256 = ASSETS / f"{EMBEDDED}.pt.xz.sha256"
EMBEDDED_TAG = "world-real"  # pretrained on the procedural world and the shipped real images

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)

def register_embedded_config() -> None:
    """Make `clipbench-tiny` an open_clip model name like any other (once: open_clip keeps the registry)."""
    import open_clip

    if EMBEDDED not in open_clip.list_models():

        try:
            config = json.loads(EMBEDDED_CONFIG.read_text())
        except FileNotFoundError:
            raise ClipbenchError(f"The embedded model's config is missing: looked for {EMBEDDED_CONFIG}. "
                                 "Reinstall clipbench.") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ClipbenchError(f"The embedded model's config {EMBEDDED_CONFIG} is damaged "
                                 f"({type(exc).__name__}); reinstall clipbench.") from None
        if not isinstance(config, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(config):
            raise ClipbenchError(f"The embedded model's config {EMBEDDED_CONFIG} is damaged (not an open_clip "
                                 "model config); reinstall clipbench.")
        open_clip.add_model_config(EMBEDDED_CONFIG)


@dataclass
class ClipModel:
    """An open_clip CLIP module with what it takes to feed it.

    Images enter as uint8 or [0, 1] float tensors at ``image_size``; the model
    normalises them itself, so datasets never need to know which model runs.
    """

    module: torch.nn.Module
    tokenizer: object
    name: str
    pretrained: str
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD

    @property
    def image_size(self) -> int:
        size = self.module.visual.image_size
        return size[0] if isinstance(size, (tuple, list)) else int(size)

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def to(self, device) -> "ClipModel":
        self.module.to(device)
        return self

    def clone(self) -> "ClipModel":
        """A deep copy whose weights a method may change freely."""
        return ClipModel(copy.deepcopy(self.module), self.tokenizer, self.name, self.pretrained, self.mean, self.std)

    def prepare_images(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device)
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        if images.shape[-1] != self.image_size:
            images = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear",
                                   antialias=True, align_corners=False)
        mean = torch.tensor(self.mean, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(texts).to(self.device)

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """L2-normalised image embeddings, or with ``normalize=False`` the tower's raw output (what a head fit
        on raw features reads); under a CPU bf16 autocast, from a bf16 copy of the image tower."""
        x = self.prepare_images(images)
        if _cpu_bf16_inference(x):
            with torch.autocast("cpu", enabled=False):
                out = self._bf16_visual()(x.to(torch.bfloat16)).float()
        else:
            out = self.module.encode_image(x)
        return F.normalize(out, dim=-1) if normalize else out

    def _bf16_visual(self) -> torch.nn.Module:
        """A bf16 copy of the image tower, remade whenever the tower's weights change.

        Under CPU autocast, PyTorch's attention takes its slow path (a batched matmul
        over a broadcast copy of the weights) and bf16 runs no faster than fp32;
        the same tower cast to bf16 and run without autocast is about 4x faster
        (ViT-B/32 here), with embeddings as close to fp32 as autocast's.
        """
        key = tuple((p.data_ptr(), p._version) for p in self.module.visual.parameters())
        cached = getattr(self, "_bf16_cache", None)
        if cached is None or cached[0] != key:
            tower = copy.deepcopy(self.module.visual).to(torch.bfloat16).eval()
            self._bf16_cache = cached = (key, tower)
        return cached[1]

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """L2-normalised text embeddings."""
        return F.normalize(self.module.encode_text(self.tokenize(texts)), dim=-1)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.module.logit_scale.exp()

    def fingerprint(self) -> str:
        return state_fingerprint(self.module.state_dict())

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


def _cpu_bf16_inference(x: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and not torch.is_grad_enabled() and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16)


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """sha256 over parameter names and their exact bytes (fp32, CPU), order-independent of device."""
    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().to("cpu").contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------ loading

def create_embedded(seed: int | None = None) -> ClipModel:
    """The embedded architecture with freshly initialised weights (for pretraining and tests)."""
    import open_clip

    register_embedded_config()
    if seed is not None:
        torch.manual_seed(seed)
    logging.disable(logging.WARNING)  # open_clip warns that no pretrained weights were loaded: we load ours
    try:
        module = open_clip.create_model(EMBEDDED, pretrained=None)
    finally:
        logging.disable(logging.NOTSET)
    return ClipModel(module, open_clip.get_tokenizer(EMBEDDED), EMBEDDED, "random")


def save_embedded_weights(module: torch.nn.Module, path: Path) -> str:
    """Write weights as xz-compressed fp16 and return their sha256 (what ships in the package)."""
    state = {k: v.detach().to("cpu", torch.float16) for k, v in module.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    data = lzma.compress(buf.getvalue(), preset=9)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return hashlib.sha256(data).hexdigest()


def shipped_checksum(path: Path) -> str:
    """The sha256 a shipped ``.sha256`` file holds ("<hex>  <name>"); a damaged one is one sentence."""
    try:
        words = path.read_text().split()
    except (OSError, UnicodeDecodeError) as exc:
        raise ClipbenchError(f"The checksum file {path} cannot be read ({type(exc).__name__}); "
                             "reinstall clipbench.") from None
    digest = words[0].lower() if words else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ClipbenchError(f"The checksum file {path} is damaged ({'empty' if not words else 'not a sha256'}); "
                             "reinstall clipbench.")
    return digest


def load_embedded(weights: Path = EMBEDDED_WEIGHTS, check: bool = True) -> ClipModel:
    """The shipped pretrained tiny CLIP, verified against its checksum; or the same architecture from
    ``weights``: an xz file as `clipbench pretrain` writes, or a plain torch state dict / training checkpoint."""
    weights = Path(weights)
    if not weights.is_file():
        if weights != EMBEDDED_WEIGHTS:
            raise ClipbenchError(f"Checkpoint not found: looked for {weights}.")
        raise ClipbenchError(
            f"The embedded model weights are missing: looked for {weights}. "
            "Reinstall clipbench, or recreate them with `clipbench pretrain`.")
    data = weights.read_bytes()
    if check and weights == EMBEDDED_WEIGHTS and EMBEDDED_SHA256.is_file():
        expected = shipped_checksum(EMBEDDED_SHA256)
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise ClipbenchError(
                f"The embedded model weights at {weights} are corrupt (sha256 {actual[:12]}..., "
                f"expected {expected[:12]}...). Reinstall clipbench or run `clipbench pretrain`.")
    model = create_embedded()
    try:
        try:
            raw = lzma.decompress(data)
        except lzma.LZMAError:  # not xz: a plain torch file (state dict or training checkpoint)
            raw = data
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"holds a {type(state).__name__}, not a state dict")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        model.module.load_state_dict({k: v.float() for k, v in state.items()})
    except Exception as exc:  # corrupt archive or wrong architecture: one sentence, not a traceback
        raise ClipbenchError(f"Could not load {EMBEDDED} weights from {weights}: it is not an xz archive of "
                             f"them nor a torch state dict of this architecture ({_first_line(exc)[:160]}).") from exc
    model.pretrained = EMBEDDED_TAG if weights == EMBEDDED_WEIGHTS else str(weights)
    return model


def load_model(name: str = EMBEDDED, pretrained: str | None = None, checkpoint: str | None = None,
               device: str = "cpu") -> ClipModel:
    """Resolve a model by open_clip name + tag, a checkpoint file, or the embedded default."""
    if name == EMBEDDED:
        path = Path(checkpoint) if checkpoint else EMBEDDED_WEIGHTS
        return load_embedded(path).to(device)
    return _load_open_clip(name, pretrained, checkpoint, device)


def _load_open_clip(name: str, pretrained: str | None, checkpoint: str | None, device: str) -> ClipModel:
    import open_clip

    if name not in open_clip.list_models():
        raise ClipbenchError(f"Unknown model {name!r}: not an open_clip architecture "
                             f"(see `clipbench list models`).")
    source = checkpoint or pretrained
    if not source:
        tags = [t for arch, t in open_clip.list_pretrained() if arch == name]
        raise ClipbenchError(f"Model {name} needs weights: pass --pretrained TAG ({', '.join(tags[:6]) or 'none known'}"
                             f"{', ...' if len(tags) > 6 else ''}) or --checkpoint PATH.")
    if checkpoint and not Path(checkpoint).is_file():
        raise ClipbenchError(f"Checkpoint not found: looked for {checkpoint}.")
    if not checkpoint and pretrained not in open_clip.list_pretrained_tags_by_model(name) \
            and not Path(pretrained).is_file():
        raise ClipbenchError(f"Unknown pretrained tag {pretrained!r} for {name}: known tags are "
                             f"{', '.join(open_clip.list_pretrained_tags_by_model(name)) or 'none'}.")
    jit = bool(checkpoint) and _is_torchscript(Path(checkpoint))
    logging.disable(logging.ERROR)  # open_clip logs its own download failure; we say it once, below
    try:
        module, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=None if jit else source, device=device)
        if jit:
            _load_torchscript_weights(module, Path(checkpoint))
    except ClipbenchError:
        raise
    except Exception as exc:
        if checkpoint:
            raise ClipbenchError(f"Could not load model {name} from the checkpoint {checkpoint}: "
                                 f"{type(exc).__name__}: {_first_line(exc)}.") from exc
        raise ClipbenchError(
            f"The weights of {name} (pretrained tag {pretrained!r}) are not available offline: looked in the "
            f"Hugging Face cache {_hf_cache_dir()} and open_clip's cache {Path.home() / '.cache' / 'clip'} and "
            f"could not download them ({type(exc).__name__}); download them where there is network (the cache "
            "location is set by HF_HOME or HF_HUB_CACHE) or pass a local file with --checkpoint PATH.") from exc
    finally:
        logging.disable(logging.NOTSET)
    norm = next((t for t in getattr(preprocess, "transforms", []) if t.__class__.__name__ == "Normalize"), None)
    mean = tuple(norm.mean) if norm is not None else OPENAI_MEAN
    std = tuple(norm.std) if norm is not None else OPENAI_STD
    return ClipModel(module, open_clip.get_tokenizer(name), name, source or "random", mean, std)


def open_clip_catalogue() -> list[tuple[str, list[str], list[str]]]:
    """Every open_clip architecture with its pretrained tags and the tags whose weights are already on this
    machine (the Hugging Face hub cache or open_clip's URL cache): (arch, tags, offline tags)."""
    import open_clip

    cache = Path(_hf_cache_dir())
    cached = {p.name for p in cache.glob("models--*")} if cache.is_dir() else set()
    by_arch: dict[str, list[str]] = {}
    for arch, tag in open_clip.list_pretrained():
        by_arch.setdefault(arch, []).append(tag)
    out = []
    for arch in sorted(by_arch):
        offline = []
        for tag in by_arch[arch]:
            cfg = open_clip.get_pretrained_cfg(arch, tag) or {}
            parts = cfg.get("hf_hub", "").strip("/").split("/")
            repo = f"models--{parts[0]}--{parts[1]}" if len(parts) >= 2 and parts[1] else None
            url_file = Path.home() / ".cache" / "clip" / Path(cfg.get("url") or "-").name
            if (repo and repo in cached) or url_file.is_file():
                offline.append(tag)
        out.append((arch, by_arch[arch], offline))
    return out


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0].rstrip(".") if str(exc) else ""


def _hf_cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:  # open_clip without huggingface_hub: only URL downloads
        return str(Path.home() / ".cache" / "huggingface" / "hub")


def _is_torchscript(path: Path) -> bool:
    """OpenAI's released CLIP checkpoints are TorchScript archives (a zip holding code and constants)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in archive.namelist())


def _load_torchscript_weights(module: torch.nn.Module, path: Path) -> None:
    """Copy the weights of an OpenAI-format (TorchScript) checkpoint into an open_clip module of that architecture."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.load's deprecation notice
        state = torch.jit.load(str(path), map_location="cpu").state_dict()
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ClipbenchError(f"The TorchScript checkpoint {path} does not fit this architecture: it lacks "
                             f"{len(missing)} weights (first: {missing[0]}).")
    module.load_state_dict({k: state[k].to(expected[k].dtype) for k in expected})
