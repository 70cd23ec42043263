# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install first.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# torch and torchvision are installed as a matching pair from the registry (a lone torch pin can
# resolve to a CPU wheel that torchvision cannot load its C ops against).
TORCH   := torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test wheel-demo bench-cl bench-export lint-docker clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[train,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/cldet demo --out demo-out

# PYTHONPATH: the code under test is this tree's, also where the virtualenv is shared with another clone (.ci/run)
test: $(STAMP)
	PYTHONPATH=$(CURDIR) $(BIN)/python -m pytest -q tests $(PYTEST_ARGS)

# a wheel installed into a fresh virtualenv outside the checkout runs `cldet demo` (its data and models inside it)
wheel-demo:
	PY=$(PY) TORCH="$(TORCH)" .ci/wheel-demo

# The studies behind the README tables (benchmarks/, run against the installed package). bench-export scores
# the INT8 export of a run that bench-cl trains; RUN and DATA pick another one.
RUN     ?= benchmarks/work/chess13-2step/seed0/ours/step1
DATA    ?= ../shared/data/chess13/data.yaml

bench-cl: $(STAMP)
	$(BIN)/python -m benchmarks.cl_protocols --protocol benchmarks/protocols/chess13-2step.yaml

bench-export: $(STAMP)
	$(BIN)/python -m benchmarks.export_bench --run $(RUN) --data $(DATA) --qat-epochs 3

lint-docker: $(STAMP)
	$(BIN)/hadolint Dockerfile.jetson

clean:
	rm -rf $(VENV) demo-out .pytest_cache
