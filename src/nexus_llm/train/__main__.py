"""``python -m nexus_llm.train -c nexus.yaml``: the entry for ``torchrun --nproc-per-node N -m nexus_llm.train``:
``nexus train`` without the ``nexus`` app around it."""

import sys

from nexus_llm.cli import main

sys.argv = [sys.argv[0], "train", *sys.argv[1:]]
main()
