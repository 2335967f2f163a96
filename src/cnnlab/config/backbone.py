"""Config section of transfer learning: a pretrained backbone plus a head of layer specs."""

from __future__ import annotations

from typing import Literal

from cnnlab.config.base import Strict


class BackboneModelConfig(Strict):
    """A timm or torchvision model by name, with a new head and freezing rules."""

    name: Literal["backbone"]
