"""Models: the ``MODELS`` registry, the Keras-style ``sequential`` builder and its layers,
``summarize`` (Keras's ``model.summary()``) and ``l2_penalty`` (Keras's kernel L2 loss).

Every model maps (B, C, H, W) images to (B, num_classes) logits; see ``build_model``.
"""

from cnnlab.models.factory import MODELS, build_model
from cnnlab.models.layers import ACTIVATIONS, INITIALIZERS, l2_penalty
from cnnlab.models.sequential import LAYERS  # registers "sequential"
from cnnlab.models.summary import ModelSummary, summarize

__all__ = [
    "ACTIVATIONS",
    "INITIALIZERS",
    "LAYERS",
    "MODELS",
    "ModelSummary",
    "build_model",
    "l2_penalty",
    "summarize",
]
