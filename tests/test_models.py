"""Model loading: local open_clip checkpoints, weights fingerprints, and the errors for missing weights."""

from __future__ import annotations

import pytest
import torch

from clipbench.errors import ClipbenchError
from clipbench.models import EMBEDDED, _load_open_clip, create_embedded, register_embedded_config


@pytest.mark.parametrize("wrap", ["plain", "training-checkpoint"])
def test_local_checkpoint_loads_through_open_clip_with_a_fingerprint_of_its_weights(tmp_path, wrap):
    register_embedded_config()
    source = create_embedded(seed=3)
    state = source.module.state_dict()
    if wrap == "training-checkpoint":  # what open_clip's training script saves: {"state_dict": {"module.*": ...}}
        state = {"epoch": 1, "state_dict": {f"module.{k}": v for k, v in state.items()}}
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    loaded = _load_open_clip(EMBEDDED, None, str(path), "cpu")
    assert loaded.pretrained == str(path)
    assert loaded.fingerprint() == source.fingerprint()
    assert loaded.fingerprint() != create_embedded(seed=4).fingerprint()


def test_openai_format_torchscript_checkpoint_loads(tmp_path):
    """OpenAI released CLIP as TorchScript archives; a traced model is the same format."""
    register_embedded_config()
    source = create_embedded(seed=5)
    traced = torch.jit.trace(source.module, (torch.rand(2, 3, 32, 32), source.tokenize(["a", "b"])), strict=False)
    path = tmp_path / "openai-format.pt"
    torch.jit.save(traced, str(path))
    loaded = _load_open_clip(EMBEDDED, None, str(path), "cpu")
    assert loaded.fingerprint() == source.fingerprint()


def test_a_corrupt_checkpoint_is_one_sentence(tmp_path):
    register_embedded_config()
    path = tmp_path / "broken.pt"
    path.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(ClipbenchError, match=f"from the checkpoint {path}"):
        _load_open_clip(EMBEDDED, None, str(path), "cpu")


def test_bf16_inference_follows_the_current_weights(embedded):
    """Under CPU bf16 autocast the image tower runs as a bf16 copy; it must track in-place weight changes."""
    model = embedded.clone()
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)

    def encode(precision):
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
            return model.encode_image(images)

    fp32, bf16 = encode("fp32"), encode("bf16")
    assert bf16.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(fp32, bf16).min() > 0.99
    with torch.no_grad():
        model.module.visual.proj.mul_(-1.0)  # flips every embedding
    assert torch.nn.functional.cosine_similarity(encode("bf16"), -bf16).min() > 0.99
    model.module.visual.proj.grad = None
    with torch.autocast("cpu", torch.bfloat16):  # training under autocast never takes the copy
        model.encode_image(images).sum().backward()
    assert model.module.visual.proj.grad is not None


# --- damaged shipped files are one sentence saying to reinstall (issue 24, case 7) ---------------------------


@pytest.mark.parametrize("text, says", [("", "empty"), ("  \n", "empty"),
                                         ("not-a-digest  clipbench-tiny.pt.xz", "not a sha256")])
def test_a_damaged_checksum_file_says_to_reinstall(tmp_path, monkeypatch, text, says):
    from clipbench import models
    from clipbench.errors import ClipbenchError

    damaged = tmp_path / "clipbench-tiny.pt.xz.sha256"
    damaged.write_text(text)
    monkeypatch.setattr(models, "EMBEDDED_SHA256", damaged)
    with pytest.raises(ClipbenchError) as err:
        models.load_embedded()
    assert str(damaged) in str(err.value) and says in str(err.value) and "reinstall clipbench" in str(err.value)


@pytest.mark.parametrize("text", ['{"embed_dim": 64, "vision_cfg": {"lay', "[]", ""])
def test_a_damaged_embedded_model_config_says_to_reinstall(tmp_path, monkeypatch, text):
    from clipbench import models
    from clipbench.errors import ClipbenchError

    damaged = tmp_path / "clipbench-tiny.json"
    damaged.write_text(text)
    monkeypatch.setattr(models, "EMBEDDED_CONFIG", damaged)
    import open_clip.factory

    monkeypatch.delitem(open_clip.factory._MODEL_CONFIGS, models.EMBEDDED, raising=False)  # not registered yet
    with pytest.raises(ClipbenchError, match="is damaged .*reinstall clipbench") as err:
        models.register_embedded_config()
    assert str(damaged) in str(err.value)
