"""Models: the ``MODELS`` registry, the Keras-style ``sequential`` builder and its layers,
``summarize`` (Keras's ``model.summary()``) and ``l2_penalty`` (Keras's kernel L2 loss).

Every model maps (B, C, H, W) images to (B, num_classes) logits; see ``build_model``.
"""

from cnnlab.models.factory import MODELS, build_model
from cnnlab.models.layers import ACTIVATIONS, INITIALIZERS, l2_penalty
from cnnlab.models.sequential import LAYERS  # registers "sequential"
from cnnlab.models import fastnet as _fastnet  # noqa: F401  registers "fastnet"
from cnnlab.models import backbones as _backbones  # noqa: F401  registers "backbone"
from cnnlab.models import resnet_cifar as _resnet_cifar  # noqa: F401  registers "resnet_cifar"
from cnnlab.models import squeezenet as _squeezenet  # noqa: F401  registers "squeezenet"
from cnnlab.models import vgg as _vgg  # noqa: F401  registers "vgg"
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
