"""Models from outside Nexus: import (GGUF, Hugging Face directory, ``s3://``, SageMaker ``model.tar.gz``)
into a normalized Hugging Face directory, and facts about a model directory (``nexus model info``)."""
