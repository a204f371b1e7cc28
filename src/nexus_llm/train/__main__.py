"""``python -m nexus_llm.train -c nexus.yaml``: the entry for ``torchrun --nproc-per-node N -m nexus_llm.train``."""

from nexus_llm.train.cli import main

main()
