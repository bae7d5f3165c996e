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


def test_a_corrupt_checkpoint_is_one_sentence(tmp_path):
    register_embedded_config()
    path = tmp_path / "broken.pt"
    path.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(ClipbenchError, match=f"from the checkpoint {path}"):
        _load_open_clip(EMBEDDED, None, str(path), "cpu")
