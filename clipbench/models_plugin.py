"""Built-in plugin: the embedded model as a model source (open_clip names need no registration)."""

from clipbench.hookspecs import hookimpl
from clipbench import models


@hookimpl
def clipbench_register_models(register):
    register(
        models.EMBEDDED,
        lambda pretrained=None, checkpoint=None, device="cpu": models.load_model(
            models.EMBEDDED, pretrained, checkpoint, device),
        "7.7M-parameter CLIP (ViT 4x128, patch 4, 32px; text 3x128) pretrained on the procedural world and "
        "the shipped real images; ships with clipbench",
        tags=[models.EMBEDDED_TAG],
        available=models.EMBEDDED_WEIGHTS.is_file(),
    )
