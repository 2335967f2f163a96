"""``python -m cnnlab``: what torchrun's ``-m cnnlab`` and Lightning's DDP launcher execute."""

from cnnlab.cli import main

main()
