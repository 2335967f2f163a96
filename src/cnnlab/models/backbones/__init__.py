"""The ``backbone`` model: a timm, torchvision or cnnlab network as a feature extractor, a head
built from the sequential vocabulary, and freezing "by layers" as the reports describe it.

Structure of the built module (:class:`BackboneNet`), which is also what the summary shows::

    resizing   (Resizing)                      only with model.input_size
    backbone   (timm:mobilenetv2_100, frozen)  FeatureExtractor: the library model's feature maps
    global_average_pooling2d, dense, ...       model.head, built by the sequential builder
    dense_N    (Dense)                         Dense(num_classes), logits

* **Feature maps.** timm models give ``forward_features`` (created with ``num_classes=0``);
  torchvision models their ``.features`` (densenet: plus its final ReLU) or, without one,
  their children up to the global pool (ResNets); a cnnlab run's sequential model is cut
  before its first layer with a 2D output (``flatten``, ``global_avg_pool``, ``dense``).
  Modules the feature maps do not depend on (timm VGG's 4096-wide ``pre_logits``, ConvNeXt's
  head norm) are found by one backward pass at build time and removed.
* **Layers.** A layer is a module holding parameters of its own; ``layer_names`` lists them in
  the order the forward pass first calls them (found with forward hooks at build time), under
  the library's own module names. ``unfreeze: {last: N}`` / ``{range: [a, b]}`` slice that
  list, ``{stages: [...]}`` selects by name prefix.
* **BatchNorm.** With ``bn: frozen`` (default) a BatchNorm whose parameters are frozen is put
  back in eval mode whenever the net is put in train mode, so its running statistics stay
  those of the pretrained weights (Keras's behaviour for ``trainable = False``).
* **Input scaling.** ``input_normalization`` is (mean, std) on the 0-255 scale that the
  pipeline hands to the :class:`~cnnlab.train.Classifier` instead of the data's, when the
  pretrained weights expect their own (timm ``pretrained_cfg``, torchvision weights'
  ``transforms()``, or the mean/std stored in a cnnlab ``model.safetensors``). Grayscale
  inputs are repeated to 3 channels inside ``forward`` (and a 3-channel mean broadcasts a
  1-channel image to 3 channels in the Classifier), so ``data.channels: 1`` works too.
* **Weights.** ``pretrained: true`` uses the library's cache (Hugging Face hub cache for timm,
  ``<torch hub>/checkpoints`` for torchvision and timm's URL weights) and downloads only when
  the host answers within a few seconds; offline it fails at once with a ConfigError naming
  the file and the folder it belongs in. ``pretrained: <file>`` loads a .safetensors or torch
  state dict (``weights_only=True``) whose keys are the library model's, under any prefix;
  ``pretrained: package:<name>`` takes weights shipped in a pip package, converted to the
  library model's keys.

Where things are, by task::

    catalogue.py  which names exist (timm / torchvision), close-name hints, the listing
    weights.py    where pretrained weights come from (caches, download, offline errors)
    packages.py   weights shipped in pip packages (package:efficientnet_lite0)
    keys.py       reading a weights file, fitting its keys, converting by module order
    resize.py     resizing inside the model (model.input_size)
    features.py   the feature extractor, and the trace that finds its layers
    freeze.py     unfreeze selections, stages, the two-phase finetune plan
    net.py        BackboneNet: forward, freezing switches, LR groups, run records
    build.py      the "backbone" model builder and preflight
"""

from __future__ import annotations

from cnnlab.models.backbones.build import build_backbone, preflight
from cnnlab.models.backbones.catalogue import BackboneName, check_arch, list_backbones
from cnnlab.models.backbones.keys import load_matching, load_tensors
from cnnlab.models.backbones.net import BackboneNet
from cnnlab.models.backbones.resize import Resizing
from cnnlab.models.backbones.weights import (CONNECT_TIMEOUT_S, Weights, hf_cache_dir,
                                             resolve_weights, skip_pretrained_weights,
                                             torch_checkpoints_dir)

__all__ = ["CONNECT_TIMEOUT_S", "BackboneName", "BackboneNet", "Resizing", "Weights",
           "build_backbone", "check_arch", "hf_cache_dir", "list_backbones", "load_matching",
           "load_tensors", "preflight", "resolve_weights", "skip_pretrained_weights",
           "torch_checkpoints_dir"]
