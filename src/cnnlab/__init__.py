"""cnnlab: a lab for convolutional image classification.

The package reads top to bottom as the flow of a run:
``config -> data -> models -> train -> evaluate -> store -> report``, wired by
``pipeline`` and driven by ``cli``. Lower layers never import higher ones.
"""

__version__ = "0.1.0"
