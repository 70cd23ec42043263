# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install first.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# torch and torchvision are installed as a matching pair from the registry (a lone torch pin can
# resolve to a CPU wheel that torchvision cannot load its C ops against).
TORCH   := torch==2.14.1 torchvision==0.29.1

.PHONY: install demo test bench-cl bench-export lint-docker clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[train,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/cldet demo --out demo-out

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

bench-cl: $(STAMP)
	$(BIN)/python benchmarks/cl_protocols.py --protocol benchmarks/protocols/chess13-2step.yaml

bench-export: $(STAMP)
	$(BIN)/python benchmarks/export_bench.py

lint-docker: $(STAMP)
	$(BIN)/hadolint Dockerfile.jetson

clean:
	rm -rf $(VENV) demo-out .pytest_cache
